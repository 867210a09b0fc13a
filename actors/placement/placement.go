// Package placement is protoactor-go's cluster/identitylookup/disthash
// (Apache License 2.0, github.com/asynkron/protoactor-go, version pinned
// in go.mod) with one change: the placement actor keeps an index from a
// grain's PID to its identity, so handling a grain's Terminated is O(1).
// disthash looks the PID up by iterating over every activation, which made
// each idle stop of a grain cost O(activations): with 10,000+ grains
// active and thousands stopping after a rebuild storm, that loop was ~7%
// of the server's CPU. The rendezvous is also swapped atomically (disthash
// reassigns it while requests read it), activation terminations are
// broadcast to the members of the last topology kept here (MemberList.
// BroadcastEvent races with topology updates), and an activation request
// to a member that leaves meanwhile is abandoned (New's gone).
package placement

import (
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	clustering "github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/eventstream"
)

// ActivatorName is the placement actor's name (the parent of every grain).
const ActivatorName = "partition-activator"

// IdentityLookup is a cluster.IdentityLookup for a cluster whose grains
// are placed by rendezvous hashing over the members.
type IdentityLookup struct {
	pm       *manager
	gone     func(addr string) <-chan struct{}
	excluded func(addr string) bool
}

// New returns the identity lookup. gone, if set, returns a channel closed
// once the member at addr has left: an activation request to a member
// that died is then abandoned at once instead of at its timeout (the
// remote's connection attempts to a dead address take seconds).
// excluded, if set, names members that host no grains (a node being
// drained): they are left out of the rendezvous.
func New(gone func(addr string) <-chan struct{}, excluded func(addr string) bool) clustering.IdentityLookup {
	return &IdentityLookup{gone: gone, excluded: excluded}
}

func (p *IdentityLookup) Get(ci *clustering.ClusterIdentity) *actor.PID { return p.pm.get(ci) }

func (p *IdentityLookup) RemovePid(ci *clustering.ClusterIdentity, pid *actor.PID) {
	p.pm.broadcast(&clustering.ActivationTerminated{Pid: pid, ClusterIdentity: ci})
}

func (p *IdentityLookup) Setup(c *clustering.Cluster, kinds []string, isClient bool) {
	p.pm = &manager{cluster: c, gone: p.gone, excluded: p.excluded}
	p.pm.rdv.Store(clustering.NewRendezvous())
	p.pm.start()
}

func (p *IdentityLookup) Shutdown() { p.pm.stop() }

type manager struct {
	cluster        *clustering.Cluster
	topologySub    *eventstream.Subscription
	placementActor *actor.PID
	rdv            atomic.Pointer[clustering.Rendezvous]
	// members are the member addresses of the last topology. Kept here:
	// MemberList.BroadcastEvent reads the member list without the lock
	// its updates take (a data race in this protoactor version).
	members  atomic.Pointer[[]string]
	gone     func(addr string) <-chan struct{}
	excluded func(addr string) bool
}

// rendezvous is the hash over the members that may host grains.
func (pm *manager) rendezvous(members []*clustering.Member) *clustering.Rendezvous {
	rdv := clustering.NewRendezvous()
	if pm.excluded != nil {
		kept := make([]*clustering.Member, 0, len(members))
		for _, m := range members {
			if !pm.excluded(m.Address()) {
				kept = append(kept, m)
			}
		}
		members = kept
	}
	rdv.UpdateMembers(members)
	return rdv
}

func (pm *manager) start() {
	system := pm.cluster.ActorSystem
	props := actor.PropsFromProducer(func() actor.Actor {
		return &placementActor{cluster: pm.cluster, pm: pm, actors: map[string]grainMeta{}, byPID: map[string]string{}}
	})
	pm.placementActor, _ = system.Root.SpawnNamed(props, ActivatorName)
	pm.topologySub = system.EventStream.Subscribe(func(ev any) {
		if t, ok := ev.(*clustering.ClusterTopology); ok {
			pm.rdv.Store(pm.rendezvous(t.Members))
			addrs := make([]string, 0, len(t.Members))
			for _, m := range t.Members {
				addrs = append(addrs, m.Address())
			}
			pm.members.Store(&addrs)
			pm.cluster.ActorSystem.Root.Send(pm.placementActor, t)
		}
	})
}

// broadcast sends an event to the event stream of every member, this one
// included (other members drop their cached PID of a stopped grain).
func (pm *manager) broadcast(ev any) {
	addrs := pm.members.Load()
	if addrs == nil {
		pm.cluster.ActorSystem.EventStream.Publish(ev)
		return
	}
	for _, a := range *addrs {
		pm.cluster.ActorSystem.Root.Send(actor.NewPID(a, "eventstream"), ev)
	}
}

func (pm *manager) stop() {
	system := pm.cluster.ActorSystem
	system.EventStream.Unsubscribe(pm.topologySub)
	if err := system.Root.PoisonFuture(pm.placementActor).Wait(); err != nil {
		pm.cluster.Logger().Error("Failed to shutdown partition placement actor", slog.Any("error", err))
	}
}

func (pm *manager) get(ci *clustering.ClusterIdentity) *actor.PID {
	owner := pm.rdv.Load().GetByClusterIdentity(ci)
	if owner == "" {
		return nil
	}
	req := &clustering.ActivationRequest{ClusterIdentity: ci}
	f := pm.cluster.ActorSystem.Root.RequestFuture(actor.NewPID(owner, ActivatorName), req, 5*time.Second)
	var gone <-chan struct{}
	if pm.gone != nil && owner != pm.cluster.ActorSystem.Address() {
		gone = pm.gone(owner)
	}
	res, err, departed := Await(f, gone)
	if departed || err != nil {
		return nil // departed: the caller looks up again, on the new members
	}
	typed, ok := res.(*clustering.ActivationResponse)
	if !ok || typed.Failed {
		return nil
	}
	return typed.Pid
}

// Await waits for f's answer, or until gone is closed (the member it was
// sent to left the cluster: the request was lost with its connection and
// would only time out). A nil gone waits for the answer alone.
func Await(f *actor.Future, gone <-chan struct{}) (res any, err error, departed bool) {
	if gone == nil {
		res, err = f.Result()
		return res, err, false
	}
	type answer struct {
		res any
		err error
	}
	ch := make(chan answer, 1)
	go func() {
		r, e := f.Result()
		ch <- answer{r, e}
	}()
	select {
	case a := <-ch:
		return a.res, a.err, false
	case <-gone:
		return nil, nil, true
	}
}

type grainMeta struct {
	ID  *clustering.ClusterIdentity
	PID *actor.PID
}

type placementActor struct {
	cluster *clustering.Cluster
	pm      *manager
	actors  map[string]grainMeta // by identity key
	byPID   map[string]string    // PID id -> identity key
}

func (p *placementActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *actor.Stopping:
		p.onStopping(ctx)
	case *actor.Terminated:
		p.onTerminated(msg)
	case *clustering.ActivationRequest:
		p.onActivationRequest(msg, ctx)
	case *clustering.ClusterTopology:
		p.onClusterTopology(msg, ctx)
	case *actor.Started, *actor.Stopped:
	default:
		ctx.Logger().Error("Invalid message", slog.Any("message", msg), slog.Any("sender", ctx.Sender()))
	}
}

func (p *placementActor) onTerminated(msg *actor.Terminated) {
	if msg.Who == nil {
		return
	}
	key, found := p.byPID[msg.Who.Id]
	if !found {
		return
	}
	meta := p.actors[key]
	delete(p.byPID, msg.Who.Id)
	delete(p.actors, key)
	if k := p.cluster.GetClusterKind(meta.ID.Kind); k != nil {
		k.Dec()
	}
	p.pm.broadcast(&clustering.ActivationTerminated{Pid: msg.Who, ClusterIdentity: meta.ID})
}

func (p *placementActor) onStopping(ctx actor.Context) {
	futures := make(map[string]*actor.Future, len(p.actors))
	for key, meta := range p.actors {
		futures[key] = ctx.PoisonFuture(meta.PID)
	}
	for key, f := range futures {
		if err := f.Wait(); err != nil {
			ctx.Logger().Error("Failed to poison actor", slog.String("identity", key), slog.Any("error", err))
		}
	}
}

func (p *placementActor) onActivationRequest(msg *clustering.ActivationRequest, ctx actor.Context) {
	key := msg.ClusterIdentity.AsKey()
	if meta, found := p.actors[key]; found {
		ctx.Respond(&clustering.ActivationResponse{Pid: meta.PID})
		return
	}
	if p.pm.excluded != nil && p.pm.excluded(p.cluster.ActorSystem.Address()) {
		// Draining: other members may still place grains here for a
		// moment; an activation now would write from a node that is
		// leaving. No activation: the caller looks up again.
		ctx.Respond(&clustering.ActivationResponse{Failed: true})
		return
	}
	kind := p.cluster.GetClusterKind(msg.ClusterIdentity.Kind)
	if kind == nil {
		ctx.Logger().Error("Unknown cluster kind", slog.String("kind", msg.ClusterIdentity.Kind))
		ctx.Respond(nil)
		return
	}
	pid := ctx.SpawnPrefix(clustering.WithClusterIdentity(kind.Props, msg.ClusterIdentity), msg.ClusterIdentity.Identity)
	kind.Inc()
	p.actors[key] = grainMeta{ID: msg.ClusterIdentity, PID: pid}
	p.byPID[pid.Id] = key
	ctx.Respond(&clustering.ActivationResponse{Pid: pid})
}

func (p *placementActor) onClusterTopology(msg *clustering.ClusterTopology, ctx actor.Context) {
	rdv := p.pm.rendezvous(msg.Members)
	me := p.cluster.ActorSystem.Address()
	for identity, meta := range p.actors {
		if rdv.GetByIdentity(identity) != me {
			ctx.Poison(meta.PID)
		}
	}
}
