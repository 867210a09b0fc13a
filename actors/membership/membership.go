// Package membership is the protoactor cluster provider of a Parley
// cluster: the nodes of the roster (roster.go), whose records live in the
// replicated store, and whose liveness is what the raft transport hears.
//
// Each node writes its NodeRecord (its actor endpoint, this run's actor
// system id, its public gateway address) through the replicated store when
// it starts, so every node reads the same records over the same mutually
// authenticated links that carry raft; no other service is needed (the
// automanaged provider would add a plain-HTTP port on every address, and
// consul or etcd a separate system to run). A node is a member while the
// transport heard from it within Options.Within; the topology is refreshed
// every Options.Every and handed to protoactor, whose placement
// (actors/placement) then moves grains off nodes that left.
package membership

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/parley-chat/parley/actors/grainpb"
	"github.com/parley-chat/parley/persistence"
	"google.golang.org/protobuf/proto"
)

// Options configure a Provider.
type Options struct {
	// Self is this node's id; Seeds the nodes the cluster started with
	// (-cluster-peers, Self too), the roster before any change.
	Self  uint64
	Seeds Roster
	// OnRoster, if set, is called with the roster when the provider starts
	// and whenever it changes (from the refresh goroutine).
	OnRoster func(Roster)
	// Store is the replicated store.
	Store *persistence.Store
	// Alive reports whether a node was heard from within d.
	Alive func(node uint64, d time.Duration) bool
	// Hold, if set, is asked before this node registers: while it reports
	// true the node stays out of the members (no grains are placed on it).
	// A joining node holds until its replicas have caught up.
	Hold func() bool
	// Gateway is this node's public WebSocket URL, published for clients.
	Gateway string
	// Every is the refresh period (default 100ms); Within the silence after
	// which a node is no member (default 1.5s: a raft election happens
	// after 0.5-1 s of silence, so membership follows close behind).
	Every, Within time.Duration
	// Logger; nil means slog.Default().
	Logger *slog.Logger
}

// DefaultWithin is Options.Within's default: a node not heard from for
// this long is no member.
const DefaultWithin = 1500 * time.Millisecond

// Provider implements cluster.ClusterProvider.
type Provider struct {
	o        Options
	log      *slog.Logger
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once

	// draining is set by Drain: this node leaves the others' members and
	// hosts no grains (Excluded).
	draining atomic.Bool
	cluster  *cluster.Cluster

	mu      sync.Mutex
	self    *grainpb.NodeRecord
	records map[uint64]*grainpb.NodeRecord // the members, by node id
	members []*cluster.Member              // the last topology
	last    string                         // fingerprint of the last topology
	roster  Roster                         // the last roster read
}

// New returns a provider; protoactor starts it with StartMember.
func New(o Options) *Provider {
	if o.Every == 0 {
		o.Every = 100 * time.Millisecond
	}
	if o.Within == 0 {
		o.Within = DefaultWithin
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return &Provider{o: o, log: o.Logger.With("component", "membership"), records: map[uint64]*grainpb.NodeRecord{}}
}

// Key is the store key of node id's record.
func Key(id uint64) []byte { return persistence.EncodeKey(persistence.KindMeta, recordID(id), nil) }

func recordID(id uint64) string { return "node/" + strconv.FormatUint(id, 10) }

// StartMember registers this node and starts refreshing the topology.
func (p *Provider) StartMember(c *cluster.Cluster) error {
	host, port, err := c.ActorSystem.GetHostPort()
	if err != nil {
		return fmt.Errorf("membership: actor endpoint: %w", err)
	}
	p.self = &grainpb.NodeRecord{
		NodeId: p.o.Self, SystemId: c.ActorSystem.ID, Host: host, Port: int32(port),
		Kinds: c.GetClusterKinds(), StartedMs: time.Now().UnixMilli(), Gateway: p.o.Gateway,
	}
	p.stop, p.done = make(chan struct{}), make(chan struct{})
	p.cluster = c
	go p.run(c)
	return nil
}

// Drain publishes that this node is draining (through the replicated
// store, so every node reads it) and takes it out of its own placement:
// its grains stop and the next requests activate them on the others.
func (p *Provider) Drain() error {
	p.mu.Lock()
	rec := proto.CloneOf(p.self)
	rec.Draining = true
	p.self = rec
	p.mu.Unlock()
	p.draining.Store(true)
	if err := p.register(); err != nil {
		return fmt.Errorf("membership: publish drain: %w", err)
	}
	// Same members, new exclusion: the placement recomputes its owners.
	p.mu.Lock()
	members := p.topology()
	p.mu.Unlock()
	p.cluster.ActorSystem.EventStream.Publish(&cluster.ClusterTopology{Members: members})
	return nil
}

// Excluded reports whether the member at addr must host no grains: this
// node once it is draining. (Other draining nodes are no members at all.)
func (p *Provider) Excluded(addr string) bool {
	if !p.draining.Load() {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.self != nil && addr == Endpoint(p.self)
}

// StartClient is not supported: every Parley node is a full member.
func (p *Provider) StartClient(*cluster.Cluster) error {
	return errors.New("membership: client members are not supported")
}

// Shutdown stops the refresh loop (once; later calls do nothing).
func (p *Provider) Shutdown(bool) error {
	p.stopOnce.Do(func() {
		if p.stop != nil {
			close(p.stop)
			<-p.done
		}
	})
	return nil
}

func (p *Provider) run(c *cluster.Cluster) {
	defer close(p.done)
	registered := false
	t := time.NewTicker(p.o.Every)
	defer t.Stop()
	for {
		if !registered && (p.o.Hold == nil || !p.o.Hold()) {
			// Needs a majority of the shard's replicas: a node starting
			// alone waits for a second one.
			if err := p.register(); err != nil {
				p.log.Debug("register node record", "err", err)
			} else {
				registered = true
			}
		}
		p.refresh(c)
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
	}
}

func (p *Provider) register() error {
	p.mu.Lock()
	v, err := proto.Marshal(p.self)
	p.mu.Unlock()
	if err != nil {
		return err
	}
	b := p.o.Store.NewBatch(persistence.KindMeta, recordID(p.o.Self))
	b.Set(Key(p.o.Self), v)
	return b.Commit()
}

// refreshRoster reads the roster and reports a change to OnRoster.
func (p *Provider) refreshRoster() Roster {
	r, _, err := ReadRoster(p.o.Store, p.o.Seeds)
	p.mu.Lock()
	defer p.mu.Unlock()
	if err != nil {
		p.log.Warn("read roster", "err", err)
		return p.roster
	}
	if p.roster == nil || r.String() != p.roster.String() {
		p.log.Info("cluster roster", "nodes", r.String())
		p.roster = r
		if p.o.OnRoster != nil {
			p.o.OnRoster(r)
		}
	}
	return p.roster
}

// Nodes returns the ids of the roster's nodes (members or not).
func (p *Provider) Nodes() []uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.roster == nil {
		return p.o.Seeds.IDs()
	}
	return p.roster.IDs()
}

// refresh recomputes the members and tells protoactor if they changed.
func (p *Provider) refresh(c *cluster.Cluster) {
	roster := p.refreshRoster()
	p.mu.Lock()
	records := map[uint64]*grainpb.NodeRecord{p.o.Self: p.self}
	p.mu.Unlock()
	for _, id := range roster.IDs() {
		if id == p.o.Self || !p.o.Alive(id, p.o.Within) {
			continue
		}
		v, err := p.o.Store.Get(Key(id))
		if err != nil {
			continue // not registered yet (or not replicated here yet)
		}
		rec := &grainpb.NodeRecord{}
		if err := proto.Unmarshal(v, rec); err != nil || rec.NodeId != id {
			p.log.Warn("bad node record", "node", id, "err", err)
			continue
		}
		if rec.Draining {
			continue // leaving: no longer a member for the others
		}
		records[id] = rec
	}
	ids := make([]uint64, 0, len(records))
	for id := range records {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	members := make([]*cluster.Member, 0, len(ids))
	fp := ""
	for _, id := range ids {
		r := records[id]
		members = append(members, &cluster.Member{Id: r.SystemId, Host: r.Host, Port: r.Port, Kinds: r.Kinds})
		fp += fmt.Sprintf("%d=%s@%s:%d;", id, r.SystemId, r.Host, r.Port)
	}
	p.mu.Lock()
	changed := fp != p.last
	p.last, p.records, p.members = fp, records, members
	p.mu.Unlock()
	if changed {
		p.log.Info("cluster members", "members", fp)
		c.MemberList.UpdateClusterTopology(members)
	}
}

func (p *Provider) topology() []*cluster.Member { return p.members }

// Address returns the actor endpoint ("host:port") of member node id, or
// "" if it is not a member now.
func (p *Provider) Address(id uint64) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	r := p.records[id]
	if r == nil {
		return ""
	}
	return Endpoint(r)
}

// NodeAt returns the member whose actor endpoint is addr (false: none).
func (p *Provider) NodeAt(addr string) (uint64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, r := range p.records {
		if Endpoint(r) == addr {
			return id, true
		}
	}
	return 0, false
}

// Endpoint is the actor endpoint ("host:port") a node record advertises.
func Endpoint(r *grainpb.NodeRecord) string { return r.Host + ":" + strconv.Itoa(int(r.Port)) }

// Members returns the current members' records, by node id.
func (p *Provider) Members() []*grainpb.NodeRecord {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]*grainpb.NodeRecord, 0, len(p.records))
	for _, r := range p.records {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b *grainpb.NodeRecord) int { return cmp.Compare(a.NodeId, b.NodeId) })
	return out
}
