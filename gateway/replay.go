package gateway

import pb "github.com/parley-chat/parley/gateway/protocol"

// replayPage is the history page size of a replay.
const replayPage = 500

// trackCursors starts delivery tracking for the conversations the client
// named, before the link is subscribed: live messages of those are held
// until their replay has caught up.
func (l *link) trackCursors(cursors []*pb.Cursor, member map[string]bool) map[string]*convCursor {
	l.mu.Lock()
	defer l.mu.Unlock()
	var started map[string]*convCursor
	for _, c := range cursors {
		if !member[c.ConversationId] || c.Seq < 0 || l.cursors[c.ConversationId] != nil {
			continue // not (or no longer) a member, or named twice
		}
		if l.cursors == nil {
			// Made on demand: most links give no cursor.
			l.cursors = map[string]*convCursor{}
		}
		if started == nil {
			started = map[string]*convCursor{}
		}
		cs := &convCursor{floor: c.Seq, replaying: true}
		l.cursors[c.ConversationId] = cs
		started[c.ConversationId] = cs
	}
	return started
}

// replay writes every message after each named cursor, then the held live
// ones, so each message reaches the link once and in order. It runs on its
// own goroutine, one conversation after another.
func (l *link) replay(states map[string]*convCursor) {
	for conv, cs := range states {
		for l.replayPage(conv, cs) {
		}
		// Held frames are re-read under the lock on every step: live
		// delivery may append while a frame is being queued.
		l.mu.Lock()
		for i := 0; i < len(cs.held); i++ {
			if h := cs.held[i]; h.seq > cs.floor {
				cs.floor = h.seq
				l.enqueueLocked(h.frame)
				l.mu.Lock()
			}
		}
		cs.held, cs.replaying = nil, false
		l.mu.Unlock()
	}
}

// replayPage writes one history page; it reports whether more may follow.
func (l *link) replayPage(conv string, cs *convCursor) bool {
	l.mu.Lock()
	after, closed := cs.floor, l.closed
	l.mu.Unlock()
	if closed {
		return false
	}
	page, err := l.srv.history(conv, l.userID, after, replayPage)
	if err != nil {
		return false
	}
	for _, m := range page.Messages {
		frame := replayFrames.frame(m)
		l.mu.Lock()
		if m.Seq > cs.floor {
			cs.floor = m.Seq
			l.enqueueLocked(frame)
		} else {
			l.mu.Unlock()
		}
	}
	l.mu.Lock()
	if cs.floor > page.LastSeq {
		// A cursor beyond the log is the client's mistake; clamping it
		// keeps live messages flowing.
		cs.floor = page.LastSeq
	}
	more := len(page.Messages) == replayPage && cs.floor < page.LastSeq
	l.mu.Unlock()
	return more
}
