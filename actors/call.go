package actors

import (
	"errors"
	"fmt"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
	"github.com/parley-chat/parley/actors/grainpb"
	"github.com/parley-chat/parley/actors/placement"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Pending is a grain request in flight. Requests issued from one goroutine
// to one grain reach its mailbox in issue order, so a link can pipeline many
// commands and still have them applied in order.
type Pending struct {
	n      *Node
	kind   string
	id     string
	req    *cluster.GrainRequest
	future *actor.Future
	target *actor.PID // the grain's activation the request went to
}

// method returns the generated method index of service.method, from the
// descriptor the generator used, so the index can never drift.
func method(service, name string) int32 {
	sd := grainpb.File_actors_grainpb_grains_proto.Services().ByName(protoreflect.Name(service))
	if sd == nil {
		panic("actors: no service " + service)
	}
	md := sd.Methods().ByName(protoreflect.Name(name))
	if md == nil {
		panic("actors: no method " + service + "." + name)
	}
	return int32(md.Index())
}

// Request starts a call to method of the grain (kind, id) without waiting.
func (n *Node) Request(kind, id, methodName string, req proto.Message) (*Pending, error) {
	data, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("actors: marshal %T: %w", req, err)
	}
	p := &Pending{n: n, kind: kind, id: id, req: &cluster.GrainRequest{MethodIndex: method(kind, methodName), MessageData: data}}
	p.send()
	return p, nil
}

func (p *Pending) send() {
	pid := p.n.pid(p.kind, p.id)
	if pid == nil {
		p.future = nil
		return
	}
	p.target = pid
	p.future = p.n.System.Root.RequestFuture(pid, p.req, p.n.opts.RequestTimeout)
}

func (n *Node) pid(kind, id string) *actor.PID {
	if pid, ok := n.Cluster.PidCache.Get(id, kind); ok && pid != nil {
		return pid
	}
	pid := n.Cluster.Get(id, kind)
	if pid != nil {
		n.Cluster.PidCache.Set(id, kind, pid)
	}
	return pid
}

// wait waits for the future; departed reports that the grain's node left
// the cluster first (the request is then sent again, to the grain's new
// node: grain requests are idempotent or deduplicated by client id).
func (p *Pending) wait() (res any, err error, departed bool) {
	var gone <-chan struct{}
	if d := p.n.departures; d != nil && p.target != nil && p.target.Address != p.n.System.Address() {
		gone = d.watch(p.target.Address)
	}
	return placement.Await(p.future, gone)
}

// Result waits for the answer. A grain error comes back as
// *cluster.GrainErrorResponse whose Reason is a protocol error code. A
// request that reached a stopped grain is sent once more (the grain is
// re-activated from its stored state).
func (p *Pending) Result() (proto.Message, error) {
	for attempt := 0; ; attempt++ {
		if p.future == nil {
			if p.n.departures != nil && attempt < 6 {
				// The grain's node just left or is draining: the members
				// change within a refresh or two, then the lookup finds
				// its new node.
				time.Sleep(100 * time.Millisecond)
				p.send()
				continue
			}
			return nil, fmt.Errorf("%w: no activation for %s/%s", ErrTimeout, p.kind, p.id)
		}
		res, err, departed := p.wait()
		if _, dead := res.(*actor.DeadLetterResponse); dead || departed || errors.Is(err, actor.ErrDeadLetter) {
			if attempt >= 2 {
				return nil, fmt.Errorf("%w: %s/%s unreachable", ErrTimeout, p.kind, p.id)
			}
			p.n.Cluster.PidCache.Remove(p.id, p.kind)
			p.send()
			continue
		}
		if errors.Is(err, actor.ErrTimeout) {
			return nil, fmt.Errorf("%w: %s/%s", ErrTimeout, p.kind, p.id)
		}
		if err != nil {
			return nil, fmt.Errorf("actors: %s/%s: %w", p.kind, p.id, err)
		}
		switch r := res.(type) {
		case *cluster.GrainErrorResponse:
			if r.Reason == pb.CodeStorage && p.n.departures != nil && attempt < 3 {
				// In a cluster a storage error is mostly a grain whose
				// claim was taken by a newer activation (its node left the
				// placement, or came back) or that could not claim while
				// its shard elected a leader. Stop that activation and send
				// again: the next one claims afresh. Requests are
				// idempotent or deduplicated by client id.
				p.n.System.Root.Poison(p.target)
				p.n.Cluster.PidCache.Remove(p.id, p.kind)
				time.Sleep(50 * time.Millisecond)
				p.send()
				continue
			}
			return nil, r
		case proto.Message:
			return r, nil
		default:
			return nil, fmt.Errorf("actors: %s/%s answered %T", p.kind, p.id, res)
		}
	}
}

// ask calls method of the grain (kind, id) through Request and Result and
// returns its typed answer (a grain error comes back as the error). Unlike
// the generated grain clients, a request whose grain was on a node that
// left, or whose activation lost its claim, goes again to the grain's new
// activation at once rather than after its timeout.
func ask[T proto.Message](n *Node, kind, id, methodName string, req proto.Message) (T, error) {
	var zero T
	p, err := n.Request(kind, id, methodName, req)
	if err != nil {
		return zero, err
	}
	res, err := p.Result()
	if err != nil {
		return zero, err
	}
	t, ok := res.(T)
	if !ok {
		return zero, fmt.Errorf("actors: %s/%s %s answered %T", kind, id, methodName, res)
	}
	return t, nil
}
