package gateway

import (
	"cmp"
	"slices"
	"time"

	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/actors/grainpb"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// Catch-up after a node left the cluster. A conversation grain commits a
// message, then relays it to every node's links; if its node dies between
// the two, the message is durable but the other nodes' links never get it
// live, and their clients would see it only when a later message shows the
// gap, or at reconnect. So when a member leaves, each node re-delivers to
// its links what they missed: per conversation with local subscribers, one
// History call tells whether anything lies past the lowest delivered seq
// (the common answer: no); if so, each lagging user's view is read and
// given to its links, where the per-link floor drops what a link already
// has (no message is written twice). Links whose delivery is not tracked
// (nothing delivered on the conversation yet) or that are replaying are
// left alone: the replay covers the latter.

// catchUpTries bounds the attempts at a conversation's first read.
const catchUpTries = 3

// trackedLink is a link's delivery floor on one conversation.
type trackedLink struct {
	l     *link
	floor int64
}

// Resync implements actors.Fanout: a member node left, catch up (in the
// background; a resync asked while one runs runs again after it).
func (h *Hub) Resync() {
	f := h.resync.Load()
	if f == nil {
		return
	}
	if h.resyncing.Swap(true) {
		h.resyncAgain.Store(true)
		return
	}
	go func() {
		for {
			h.resyncAgain.Store(false)
			(*f)()
			if !h.resyncAgain.Load() {
				break
			}
		}
		h.resyncing.Store(false)
	}()
}

// trackedFloors returns, per conversation, the tracked links of each user.
func (h *Hub) trackedFloors() map[string]map[string][]trackedLink {
	out := map[string]map[string][]trackedLink{}
	h.mu.RLock()
	defer h.mu.RUnlock()
	for conv, users := range h.convs {
		for u := range users {
			for _, l := range u.links {
				l.mu.Lock()
				cs := l.cursors[conv]
				if cs != nil && !cs.replaying && !l.closed {
					if out[conv] == nil {
						out[conv] = map[string][]trackedLink{}
					}
					out[conv][u.id] = append(out[conv][u.id], trackedLink{l, cs.floor})
				}
				l.mu.Unlock()
			}
		}
	}
	return out
}

// catchUp re-delivers what this node's links missed (see above).
func (s *Server) catchUp() {
	convs := s.hub.trackedFloors()
	caught := 0
	for conv, users := range convs {
		caught += s.catchUpConv(conv, users)
	}
	if caught > 0 {
		s.caughtUp.Add(int64(caught))
		s.log.Info("caught up after a node left", "conversations", len(convs), "deliveries", caught)
	}
}

// catchUpConv catches up one conversation's tracked links and returns the
// messages written.
func (s *Server) catchUpConv(conv string, users map[string][]trackedLink) int {
	lowest, anyUser := int64(-1), ""
	for u, ls := range users {
		for _, t := range ls {
			if lowest < 0 || t.floor < lowest {
				lowest, anyUser = t.floor, u
			}
		}
	}
	// The conversation's grain may be moving off the dead node (its shard
	// electing a leader): a failed read is tried again.
	var page *pb.HistoryPage
	var err error
	for try := range catchUpTries {
		if page, err = s.history(conv, anyUser, lowest, 1); err == nil {
			break
		}
		time.Sleep(time.Duration(try+1) * time.Second)
	}
	if err != nil || len(page.Messages) == 0 {
		return 0
	}
	n := 0
	for u, ls := range users {
		after := slices.MinFunc(ls, func(a, b trackedLink) int { return cmp.Compare(a.floor, b.floor) }).floor
		for {
			page, err := s.history(conv, u, after, replayPage)
			if err != nil || len(page.Messages) == 0 {
				break
			}
			for _, m := range page.Messages {
				frame := replayFrames.frame(m)
				for _, t := range ls {
					if t.l.deliverTracked(conv, m.Seq, frame) {
						n++
					}
				}
				after = m.Seq
			}
			if len(page.Messages) < replayPage {
				break
			}
		}
	}
	return n
}

// history reads conv's messages after seq as user sees them (a replay's
// or a catch-up's page).
func (s *Server) history(conv, user string, after int64, limit int32) (*pb.HistoryPage, error) {
	p, err := s.node.Request(actors.KindConversation, conv, "History", &grainpb.HistoryReq{Actor: user, AfterSeq: after, Limit: limit})
	if err != nil {
		return nil, err
	}
	res, err := p.Result()
	if err != nil {
		s.log.Debug("history page", "conversation_id", conv, "err", err)
		return nil, err
	}
	return res.(*pb.HistoryPage), nil
}
