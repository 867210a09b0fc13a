package client

import (
	"context"
	"sync"
	"time"

	pb "github.com/parley-chat/parley/gateway/protocol"
)

// stream merges live messages and history pages into per-conversation
// order: a message is emitted once, after every lower seq. Live messages
// above a gap wait until catch-up fills it.
type stream struct {
	c   *Client
	out chan Event

	mu      sync.Mutex
	cursor  map[string]int64
	held    map[string]map[int64]*pb.Message
	syncing map[string]bool
	again   map[string]bool
	queue   []Event
	wake    chan struct{}
	done    bool
	acked   int64 // highest session event seq received
	// ackSent is the highest seq acknowledged to the server; ackTimer is
	// the pending delayed ack (see scheduleAckLocked).
	ackSent  int64
	ackTimer *time.Timer
}

// Session events are acknowledged cumulatively and a little late, as the
// web client does: one ack covers every event received within ackDelay,
// or is sent at once when ackBatch events wait (well under the server's
// buffer of 1024 unacknowledged events). An ack per event would cost the
// server a request per event of a burst. The delay stays short so that
// the ack finds the session grain still in memory (the server stops an
// idle one after 100 ms by default; an ack that re-activates it costs a
// store read, a spawn and a stop). An event the server still holds when
// the link is cut is only replayed if it is after the resume's
// lastSessionSeq, which is what was received, so a late ack loses and
// duplicates nothing.
const (
	ackDelay = 50 * time.Millisecond
	ackBatch = 256
)

func newStream(c *Client, cursors map[string]int64) *stream {
	s := &stream{
		c: c, out: make(chan Event, 256), cursor: map[string]int64{}, held: map[string]map[int64]*pb.Message{},
		syncing: map[string]bool{}, again: map[string]bool{}, wake: make(chan struct{}, 1),
	}
	for k, v := range cursors {
		s.cursor[k] = v
	}
	go s.pump()
	return s
}

// pump moves queued events to the channel, so the read loop never blocks
// on a slow consumer.
func (s *stream) pump() {
	for {
		s.mu.Lock()
		q := s.queue
		s.queue = nil
		done := s.done
		s.mu.Unlock()
		for _, ev := range q {
			s.out <- ev
		}
		if len(q) == 0 {
			if done {
				close(s.out)
				return
			}
			<-s.wake
		}
	}
}

func (s *stream) emitLocked(ev Event) {
	s.queue = append(s.queue, ev)
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *stream) close() {
	s.mu.Lock()
	s.done = true
	if s.ackTimer != nil {
		s.ackTimer.Stop()
		s.ackTimer = nil
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// cursorList returns the cursors as protocol values.
func (s *stream) cursorList() []*pb.Cursor {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*pb.Cursor, 0, len(s.cursor))
	for k, v := range s.cursor {
		out = append(out, &pb.Cursor{ConversationId: k, Seq: v})
	}
	return out
}

// lastSessionSeq is the highest session event seq received.
func (s *stream) lastSessionSeq() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked
}

// newSession resets session-event numbering for a fresh session.
func (s *stream) newSession() {
	s.mu.Lock()
	s.acked, s.ackSent = 0, 0
	s.mu.Unlock()
}

// scheduleAckLocked arranges the acknowledgement of s.acked (see ackDelay).
func (s *stream) scheduleAckLocked() {
	switch {
	case s.acked-s.ackSent >= ackBatch:
		if s.ackTimer != nil {
			s.ackTimer.Stop()
			s.ackTimer = nil
		}
		s.ackLocked()
	case s.ackTimer == nil:
		s.ackTimer = time.AfterFunc(ackDelay, func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.ackTimer = nil
			if !s.done {
				s.ackLocked()
			}
		})
	}
}

// ackLocked acknowledges every session event received, if any is new.
func (s *stream) ackLocked() {
	if s.acked <= s.ackSent {
		return
	}
	s.ackSent = s.acked
	f := &pb.ClientFrame{Command: &pb.ClientFrame_Ack{Ack: &pb.Ack{SessionSeq: s.acked}}}
	go s.c.Start(f)
}

func (s *stream) cursors() map[string]int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int64, len(s.cursor))
	for k, v := range s.cursor {
		out[k] = v
	}
	return out
}

// live handles a message pushed by the server.
func (s *stream) live(m *pb.Message) {
	s.mu.Lock()
	gap := s.acceptLocked(m)
	s.mu.Unlock()
	if gap {
		s.sync(m.ConversationId)
	}
}

// acceptLocked emits m if it is next, holds it if above a gap (returning
// true), drops it if already delivered.
func (s *stream) acceptLocked(m *pb.Message) bool {
	conv := m.ConversationId
	cur := s.cursor[conv]
	switch {
	case m.Seq <= cur:
		return false
	case m.Seq > cur+1:
		h := s.held[conv]
		if h == nil {
			h = map[int64]*pb.Message{}
			s.held[conv] = h
		}
		h[m.Seq] = m
		return true
	}
	s.emitLocked(Event{Message: m})
	cur = m.Seq
	h := s.held[conv]
	for {
		next, ok := h[cur+1]
		if !ok {
			break
		}
		delete(h, cur+1)
		s.emitLocked(Event{Message: next})
		cur++
	}
	for seq := range h {
		if seq <= cur {
			delete(h, seq)
		}
	}
	s.cursor[conv] = cur
	return len(h) > 0
}

// sync pulls history after the cursor until caught up. One sync per
// conversation runs at a time; a request during a sync runs it again.
func (s *stream) sync(conv string) {
	s.mu.Lock()
	if s.syncing[conv] {
		s.again[conv] = true
		s.mu.Unlock()
		return
	}
	s.syncing[conv] = true
	s.mu.Unlock()
	go s.catchUp(conv)
}

func (s *stream) catchUp(conv string) {
	ctx := context.Background()
	backoff := 100 * time.Millisecond
	for {
		s.mu.Lock()
		after := s.cursor[conv]
		s.mu.Unlock()
		page, err := s.c.History(ctx, conv, after, s.c.opts.HistoryPage)
		if err != nil {
			// A transient failure (a cut link, a restarting server) must
			// not leave a gap behind: retry until the client ends or the
			// conversation is no longer ours.
			code := Code(err)
			gone := code == pb.CodeNotMember || code == pb.CodeNotFound
			select {
			case <-s.c.closed:
				gone = true
			case <-time.After(backoff):
			}
			if !gone {
				backoff = min(backoff*2, 2*time.Second)
				continue
			}
			s.mu.Lock()
			s.syncing[conv] = false
			s.mu.Unlock()
			return
		}
		s.mu.Lock()
		for _, m := range page.Messages {
			s.acceptLocked(m)
		}
		more := len(page.Messages) > 0 && s.cursor[conv] < page.LastSeq
		if !more {
			if s.again[conv] {
				s.again[conv] = false
				s.mu.Unlock()
				continue
			}
			s.syncing[conv] = false
			s.mu.Unlock()
			return
		}
		s.mu.Unlock()
	}
}

// session handles a session-local event: emit, follow membership, ack.
func (s *stream) session(ev *pb.SessionEvent) {
	s.mu.Lock()
	if ev.Seq <= s.acked {
		s.mu.Unlock()
		return
	}
	s.acked = ev.Seq
	s.emitLocked(Event{Session: ev})
	s.scheduleAckLocked()
	s.mu.Unlock()
	if j := ev.GetConversationJoined(); j != nil {
		s.sync(j.GetConversation().GetId())
	}
	switch ev.Event.(type) {
	case *pb.SessionEvent_CallInvited, *pb.SessionEvent_CallRingStopped, *pb.SessionEvent_CallEnded,
		*pb.SessionEvent_CallParticipant, *pb.SessionEvent_CallSignal:
		s.c.calls.event(ev)
	}
}

// other emits a live event that has no order to keep (channel frames).
func (s *stream) other(ev Event) {
	s.mu.Lock()
	s.emitLocked(ev)
	s.mu.Unlock()
}
