package gateway

import (
	"slices"
	"sync"
	"sync/atomic"
)

// Hub is the node-local registry of links: which links carry which user and
// which online users belong to which conversation. Grains hand it encoded
// frames (actors.Fanout); it writes each to the subscribed links' queues.
type Hub struct {
	mu    sync.RWMutex
	links map[uint64]*link
	users map[string]*hubUser
	convs map[string]map[*hubUser]struct{}
	// sessions maps a session to the open link that carries it, from the
	// session grain's Open or Resume (BindSession) to the link's close.
	sessions map[string]*link
	// early holds the joins and leaves pushed to the session of a link
	// that is open but not yet attached (its login or resume is between
	// reading the user's conversation list and attach). attach applies
	// them, in order, after the list: a join in that window is not missed
	// live, and a leave in it does not leave the link subscribed to a
	// conversation the list still named.
	early map[uint64][]earlyOp

	// Published counts frames written to link queues (deliveries).
	Published atomic.Int64

	// resync is the catch-up Resync runs (Server.catchUp); resyncing and
	// resyncAgain make runs one at a time, coalesced (catchup.go).
	resync                 atomic.Pointer[func()]
	resyncing, resyncAgain atomic.Bool
}

type hubUser struct {
	id    string
	links []*link
	// convs lists the conversations u is in h.convs of (a slice, not a
	// set: a map per online user costs more; h.convs answers membership).
	convs []string
	rate  tokenBucket
}

// NewHub returns an empty hub.
func NewHub() *Hub {
	return &Hub{links: map[uint64]*link{}, users: map[string]*hubUser{}, convs: map[string]map[*hubUser]struct{}{}, sessions: map[string]*link{}, early: map[uint64][]earlyOp{}}
}

func (h *Hub) addLink(l *link) {
	h.mu.Lock()
	h.links[l.id] = l
	h.mu.Unlock()
}

// attach binds an authenticated link to its user and subscribes the user to
// convs. It returns the user's shared rate limiter.
func (h *Hub) attach(l *link, user string, convs []string, rate, burst float64) *hubUser {
	h.mu.Lock()
	defer h.mu.Unlock()
	u := h.users[user]
	if u == nil {
		u = &hubUser{id: user}
		u.rate.init(rate, burst)
		h.users[user] = u
	}
	u.links = append(u.links, l)
	l.hubAttached = true
	for _, c := range convs {
		h.joinLocked(c, u)
	}
	for _, op := range h.early[l.id] {
		if op.join {
			h.joinLocked(op.conv, u)
		} else {
			h.leaveLocked(op.conv, u)
		}
	}
	delete(h.early, l.id)
	return u
}

// earlyOp is a join or leave kept for a link's attach (Hub.early).
type earlyOp struct {
	conv string
	join bool
}

// keepEarlyLocked keeps a join or leave for link if it is open and not
// yet attached.
func (h *Hub) keepEarlyLocked(link uint64, conv string, join bool) {
	if l := h.links[link]; link != 0 && l != nil && !l.hubAttached {
		h.early[link] = append(h.early[link], earlyOp{conv: conv, join: join})
	}
}

// removeLink forgets a link; the user goes offline with its last link.
func (h *Hub) removeLink(l *link) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.links, l.id)
	delete(h.early, l.id)
	h.unbindLocked(l)
	u := l.user
	if u == nil {
		return
	}
	for i, x := range u.links {
		if x == l {
			u.links = append(u.links[:i], u.links[i+1:]...)
			break
		}
	}
	if len(u.links) > 0 {
		return
	}
	for _, c := range u.convs {
		if set := h.convs[c]; set != nil {
			delete(set, u)
			if len(set) == 0 {
				delete(h.convs, c)
			}
		}
	}
	delete(h.users, u.id)
}

func (h *Hub) joinLocked(conv string, u *hubUser) {
	set := h.convs[conv]
	if set == nil {
		set = map[*hubUser]struct{}{}
		h.convs[conv] = set
	}
	if _, in := set[u]; !in {
		set[u] = struct{}{}
		u.convs = append(u.convs, conv)
	}
}

// Join subscribes the user's local links (if any) to conv. link, if not
// 0, is the link of the session the join was pushed to: if it is open
// but not attached yet, the join is kept for its attach.
func (h *Hub) Join(conv, user string, link uint64) {
	h.mu.Lock()
	if u := h.users[user]; u != nil {
		h.joinLocked(conv, u)
	}
	h.keepEarlyLocked(link, conv, true)
	h.mu.Unlock()
}

// Leave unsubscribes the user's local links from conv. link is as for
// Join: a link not attached yet drops conv at its attach.
func (h *Hub) Leave(conv, user string, link uint64) {
	h.mu.Lock()
	if u := h.users[user]; u != nil {
		h.leaveLocked(conv, u)
	}
	h.keepEarlyLocked(link, conv, false)
	h.mu.Unlock()
}

func (h *Hub) leaveLocked(conv string, u *hubUser) {
	if i := slices.Index(u.convs, conv); i >= 0 {
		u.convs = slices.Delete(u.convs, i, i+1)
	}
	if set := h.convs[conv]; set != nil {
		delete(set, u)
		if len(set) == 0 {
			delete(h.convs, conv)
		}
	}
}

// Publish frames payload once and queues it on every subscribed link.
func (h *Hub) Publish(conv string, seq int64, payload []byte) {
	frame := wsTextFrame(payload)
	var n int64
	h.mu.RLock()
	for u := range h.convs[conv] {
		for _, l := range u.links {
			if l.deliver(conv, seq, frame) {
				n++
			}
		}
	}
	h.mu.RUnlock()
	h.Published.Add(n)
}

// SendToLink queues payload on one link.
func (h *Hub) SendToLink(id uint64, payload []byte) bool {
	h.mu.RLock()
	l := h.links[id]
	h.mu.RUnlock()
	return l != nil && l.enqueue(wsTextFrame(payload))
}

// CloseLink closes a link with a close code.
func (h *Hub) CloseLink(id uint64, code uint16, reason string) {
	h.mu.RLock()
	l := h.links[id]
	h.mu.RUnlock()
	if l != nil {
		l.close(code, reason)
	}
}

// BindSession records that the open link carries session.
func (h *Hub) BindSession(session string, link uint64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := h.links[link]
	if l == nil {
		return // closed meanwhile
	}
	h.unbindLocked(l)
	h.sessions[session], l.boundSession = l, session
}

func (h *Hub) unbindLocked(l *link) {
	if l.boundSession != "" && h.sessions[l.boundSession] == l {
		delete(h.sessions, l.boundSession)
	}
	l.boundSession = ""
}

// SessionLink returns the open link that carries session, or 0.
func (h *Hub) SessionLink(session string) uint64 {
	h.mu.RLock()
	defer h.mu.RUnlock()
	if l := h.sessions[session]; l != nil {
		return l.id
	}
	return 0
}

// Links returns the number of open links.
func (h *Hub) Links() int {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return len(h.links)
}

func (h *Hub) allLinks() []*link {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make([]*link, 0, len(h.links))
	for _, l := range h.links {
		out = append(out, l)
	}
	return out
}

// PublishTargeted frames both payloads once and queues, on every link
// subscribed to conv, frame for the users in audience and placeholder for
// the others (a message sent to a sub-group).
func (h *Hub) PublishTargeted(conv string, seq int64, payload []byte, audience map[string]struct{}, placeholder []byte) {
	full, hidden := wsTextFrame(payload), wsTextFrame(placeholder)
	var n int64
	h.mu.RLock()
	for u := range h.convs[conv] {
		f := hidden
		if _, ok := audience[u.id]; ok {
			f = full
		}
		for _, l := range u.links {
			if l.deliver(conv, seq, f) {
				n++
			}
		}
	}
	h.mu.RUnlock()
	h.Published.Add(n)
}

// SendToLinks frames payload once and queues it on each of links; it
// returns the links that are gone (closed, closing, or unknown).
func (h *Hub) SendToLinks(links []uint64, payload []byte) (gone []uint64) {
	return h.SendManyToLinks(links, [][]byte{payload})
}

// SendManyToLinks frames each payload once and queues them all, in order,
// on each of links, link by link, so a link's writer finds the whole burst
// queued and writes it with one writev. It returns the links that are gone
// (or closed under the burst).
func (h *Hub) SendManyToLinks(links []uint64, payloads [][]byte) (gone []uint64) {
	frames := make([][]byte, len(payloads))
	for i, p := range payloads {
		frames[i] = wsTextFrame(p)
	}
	var n int64
	h.mu.RLock()
	for _, id := range links {
		l := h.links[id]
		ok := l != nil
		for _, f := range frames {
			if ok = ok && l.enqueue(f); ok {
				n++
			}
		}
		if !ok {
			gone = append(gone, id)
		}
	}
	h.mu.RUnlock()
	h.Published.Add(n)
	return gone
}
