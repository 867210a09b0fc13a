package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/parley-chat/parley/actors/grainpb"
)

// relayName is the per-node actor that receives other nodes' frames for
// this node's links.
const relayName = "parley-relay"

// LinkNodeShift places the node id in a link id's high bits (cluster mode):
// a link id then says which node's gateway holds the link.
const LinkNodeShift = 48

// NodeOfLink returns the node whose gateway holds link (0: single node).
func NodeOfLink(link uint64) uint64 { return link >> LinkNodeShift }

// Directory finds other nodes: the membership provider implements it.
type Directory interface {
	// Address is member node id's actor endpoint, "" if it is no member.
	Address(id uint64) string
	// Nodes are the cluster's node ids, members or not.
	Nodes() []uint64
}

// relay is the Fanout of a node in a cluster. A grain may run on any node
// while the links of its audience are spread over all of them: the relay
// serves this node's links through the local hub and sends the rest to
// the relay actors of the nodes that hold them. Conversation traffic goes
// to every member node, since any may hold a member's link; link traffic
// goes to the node named in the link id. Sends are one-way actor messages
// (FIFO per pair of nodes); a node that left loses them, as its links are
// gone with it and their sessions will be rebuilt elsewhere.
type relay struct {
	local Fanout
	self  uint64
	dir   Directory
	root  *actor.RootContext
}

func (r *relay) pid(node uint64) *actor.PID {
	addr := r.dir.Address(node)
	if addr == "" {
		return nil
	}
	return actor.NewPID(addr, relayName)
}

// others sends msg to the relay of every other member node.
func (r *relay) others(msg any) {
	for _, id := range r.dir.Nodes() {
		if id == r.self {
			continue
		}
		if pid := r.pid(id); pid != nil {
			r.root.Send(pid, msg)
		}
	}
}

// to sends msg to node's relay; false if the node is no member.
func (r *relay) to(node uint64, msg any) bool {
	pid := r.pid(node)
	if pid == nil {
		return false
	}
	r.root.Send(pid, msg)
	return true
}

func (r *relay) isLocal(link uint64) bool {
	n := NodeOfLink(link)
	return n == r.self || n == 0
}

func (r *relay) Publish(conv string, seq int64, frame []byte) {
	r.local.Publish(conv, seq, frame)
	r.others(&grainpb.RelayPublish{Conv: conv, Seq: seq, Frame: frame})
}

func (r *relay) PublishTargeted(conv string, seq int64, frame []byte, audience map[string]struct{}, placeholder []byte) {
	r.local.PublishTargeted(conv, seq, frame, audience, placeholder)
	users := make([]string, 0, len(audience))
	for u := range audience {
		users = append(users, u)
	}
	r.others(&grainpb.RelayPublish{Conv: conv, Seq: seq, Frame: frame, Targeted: true, Audience: users, Placeholder: placeholder})
}

func (r *relay) Join(conv, user string, link uint64) {
	r.local.Join(conv, user, r.localOnly(link))
	r.others(&grainpb.RelayMembership{Conv: conv, User: user, Link: link, Join: true})
}

func (r *relay) Leave(conv, user string, link uint64) {
	r.local.Leave(conv, user, r.localOnly(link))
	r.others(&grainpb.RelayMembership{Conv: conv, User: user, Link: link})
}

// localOnly is link if this node holds it, else 0 (the hub keeps early
// joins for its own links only).
func (r *relay) localOnly(link uint64) uint64 {
	if link != 0 && r.isLocal(link) {
		return link
	}
	return 0
}

func (r *relay) SendToLink(link uint64, frame []byte) bool {
	if r.isLocal(link) {
		return r.local.SendToLink(link, frame)
	}
	return r.to(NodeOfLink(link), &grainpb.RelayFrames{Links: []uint64{link}, Frames: [][]byte{frame}})
}

func (r *relay) CloseLink(link uint64, code uint16, reason string) {
	if r.isLocal(link) {
		r.local.CloseLink(link, code, reason)
		return
	}
	r.to(NodeOfLink(link), &grainpb.RelayClose{Link: link, Code: uint32(code), Reason: reason})
}

func (r *relay) SendToLinks(links []uint64, frame []byte) (gone []uint64) {
	return r.SendManyToLinks(links, [][]byte{frame})
}

// SendManyToLinks serves local links at once and sends each other node its
// share; a remote link is reported gone only if its node is no member.
func (r *relay) SendManyToLinks(links []uint64, frames [][]byte) (gone []uint64) {
	var local []uint64
	remote := map[uint64][]uint64{}
	for _, l := range links {
		if r.isLocal(l) {
			local = append(local, l)
		} else {
			remote[NodeOfLink(l)] = append(remote[NodeOfLink(l)], l)
		}
	}
	if len(local) > 0 {
		gone = r.local.SendManyToLinks(local, frames)
	}
	for node, ls := range remote {
		if !r.to(node, &grainpb.RelayFrames{Links: ls, Frames: frames}) {
			gone = append(gone, ls...)
		}
	}
	return gone
}

func (r *relay) BindSession(session string, link uint64) {
	if r.isLocal(link) {
		r.local.BindSession(session, link)
		return
	}
	r.to(NodeOfLink(link), &grainpb.RelayBind{Session: session, Link: link})
}

// sessionLinkTimeout bounds the question to other nodes in SessionLink: it
// runs in a session grain's activation.
const sessionLinkTimeout = 500 * time.Millisecond

// Resync implements Fanout: only this node's links are caught up here
// (every node gets its own departure event).
func (r *relay) Resync() { r.local.Resync() }

// SessionLink asks this node's hub, then the other members'.
func (r *relay) SessionLink(session string) uint64 {
	if l := r.local.SessionLink(session); l != 0 {
		return l
	}
	var futures []*actor.Future
	for _, id := range r.dir.Nodes() {
		if id == r.self {
			continue
		}
		if pid := r.pid(id); pid != nil {
			futures = append(futures, r.root.RequestFuture(pid, &grainpb.RelaySessionLink{Session: session}, sessionLinkTimeout))
		}
	}
	for _, f := range futures {
		res, err := f.Result()
		if err != nil {
			continue
		}
		if rep, ok := res.(*grainpb.RelaySessionLinkReply); ok && rep.Link != 0 {
			return rep.Link
		}
	}
	return 0
}

// relayActor applies other nodes' relay messages to this node's hub.
type relayActor struct {
	local Fanout
	self  uint64
}

func (a *relayActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *grainpb.RelayPublish:
		if m.Targeted {
			audience := make(map[string]struct{}, len(m.Audience))
			for _, u := range m.Audience {
				audience[u] = struct{}{}
			}
			a.local.PublishTargeted(m.Conv, m.Seq, m.Frame, audience, m.Placeholder)
		} else {
			a.local.Publish(m.Conv, m.Seq, m.Frame)
		}
	case *grainpb.RelayMembership:
		link := m.Link
		if NodeOfLink(link) != a.self {
			link = 0 // another node's link: only its own hub keeps it early
		}
		if m.Join {
			a.local.Join(m.Conv, m.User, link)
		} else {
			a.local.Leave(m.Conv, m.User, link)
		}
	case *grainpb.RelayFrames:
		a.local.SendManyToLinks(m.Links, m.Frames)
	case *grainpb.RelayClose:
		a.local.CloseLink(m.Link, uint16(m.Code), m.Reason)
	case *grainpb.RelayBind:
		a.local.BindSession(m.Session, m.Link)
	case *grainpb.RelaySessionLink:
		ctx.Respond(&grainpb.RelaySessionLinkReply{Link: a.local.SessionLink(m.Session)})
	}
}
