package replication

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	rpb "go.etcd.io/raft/v3/raftpb"
)

// NumGroups is the number of raft groups: one per shard of the seam.
const NumGroups = 64

// ErrFenced reports a write from a stale activation: the entity was claimed
// by a newer one, or the writer's expected version is not the stored one.
var ErrFenced = errors.New("replication: write fenced (stale writer)")

// ErrStopped reports a call on a stopped Engine.
var ErrStopped = errors.New("replication: engine stopped")

// Sender sends raft messages to a peer; Transport implements it.
type Sender interface {
	Send(to uint64, msgs []Envelope) bool
}

// Options configure an Engine.
type Options struct {
	// ID is this node's id (> 0).
	ID uint64
	// Members are the voters of every group when it is first created.
	Members []uint64
	// Join: this node joins a running cluster (members.go). Its groups,
	// when first created, have no voters: they wait for a leader to add
	// this node and send a snapshot. Members is then ignored.
	Join bool
	// DB is the node's Pebble store (the one persistence.Store opened).
	DB *pebble.DB
	// Sender delivers messages to peers. Required.
	Sender Sender
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Tick is the raft tick; default 50ms. Heartbeats go every tick and an
	// election starts after ElectionTicks..2*ElectionTicks silent ticks.
	Tick time.Duration
	// ElectionTicks; default 10 (a failover in 0.5-1 s at the default tick).
	ElectionTicks int
	// Alive, if set, reports whether the transport heard from a peer
	// lately; a group with no leader and no live majority then fails its
	// waiting writes at once (ErrNoQuorum, quorum.go).
	Alive func(node uint64) bool
	// TruncateAfter: a group's leader cuts the log once this many applied
	// entries could go (truncate.go); default 4096.
	TruncateAfter uint64
	// Internal is the client of the peers' internal HTTP (Transport's
	// InternalClient), which fetches snapshots (snapshot.go); the peers
	// serve SnapshotHandler at /raft/snapshot/{token}. Nil: a replica
	// that needs a snapshot cannot catch up.
	Internal *http.Client
}

// Engine runs this node's replica of every group.
type Engine struct {
	opts   Options
	log    *slog.Logger
	boot   uint64
	groups [NumGroups]*group

	mu        sync.Mutex
	inbox     []Envelope
	props     []*proposal
	reads     []*readReq
	transfers [][2]uint64          // shard, target node
	confs     []confReq            // membership changes to propose
	waiters   map[uint64]*proposal // by proposal number
	number    uint64
	wake      chan struct{}

	stop    chan struct{}
	done    chan struct{}
	stopped bool
	ticks   uint64 // loop goroutine
	// installs are fetched snapshots for the loop to step into raft.
	installs []fetched
	snaps    snapshots

	// status is a snapshot of every group, refreshed each tick.
	statusMu sync.Mutex
	status   []GroupStatus

	snapshotsOffered, snapshotsInstalled, noQuorum atomic.Uint64
}

// Stats are an engine's counters since it started (exported as metrics).
type Stats struct {
	// SnapshotsOffered counts snapshots this node made as a leader;
	// SnapshotsInstalled, snapshots its replicas installed.
	SnapshotsOffered, SnapshotsInstalled uint64
	// NoQuorum counts writes and claims failed with ErrNoQuorum.
	NoQuorum uint64
}

// Stats returns the engine's counters.
func (e *Engine) Stats() Stats {
	return Stats{e.snapshotsOffered.Load(), e.snapshotsInstalled.Load(), e.noQuorum.Load()}
}

// GroupStatus is one group's replica as this node sees it.
type GroupStatus struct {
	Shard   uint8  `json:"shard"`
	State   string `json:"state"` // StateLeader, StateFollower, ...
	Leader  uint64 `json:"leader"`
	Term    uint64 `json:"term"`
	Commit  uint64 `json:"commit"`
	Applied uint64 `json:"applied"`
	// LogFirst is the first index still in this replica's log.
	LogFirst uint64 `json:"log_first"`
	// Voters and Learners are the group's members as this replica applied
	// them (learners receive the log and do not vote).
	Voters   []uint64 `json:"voters"`
	Learners []uint64 `json:"learners,omitempty"`
}

// Status returns every group's status as of the last tick.
func (e *Engine) Status() []GroupStatus {
	e.statusMu.Lock()
	defer e.statusMu.Unlock()
	return append([]GroupStatus(nil), e.status...)
}

// LedBy returns the shards that node leads according to groups.
func LedBy(node uint64, groups []GroupStatus) []uint8 {
	var led []uint8
	for _, g := range groups {
		if g.Leader == node && g.State == raft.StateLeader.String() {
			led = append(led, g.Shard)
		}
	}
	return led
}

func (e *Engine) snapshotStatus() {
	out := make([]GroupStatus, 0, NumGroups)
	for _, g := range e.groups {
		st := g.rn.BasicStatus()
		out = append(out, GroupStatus{Shard: g.shard, State: st.RaftState.String(), Leader: st.Lead,
			Term: st.GetTerm(), Commit: st.GetCommit(), Applied: g.applied, LogFirst: g.st.first,
			Voters:   slices.Sorted(slices.Values(g.st.conf.GetVoters())),
			Learners: slices.Sorted(slices.Values(g.st.conf.GetLearners()))})
	}
	e.statusMu.Lock()
	e.status = out
	e.statusMu.Unlock()
}

// group is one shard's replica.
type group struct {
	shard   uint8
	rn      *raft.RawNode
	st      *logStore
	applied uint64
	lead    uint64
	// queue holds proposals raft has not accepted yet (no leader known).
	queue []*proposal
	// pending are this node's fenced writes and claims proposed and not yet
	// applied; they are proposed again when the leader changes, since one
	// forwarded to a leader that lost its term may be gone. A second copy
	// is harmless: a fenced write applies at most once (its version moved
	// on), and a claim recognises its own copy. Unfenced writes are not
	// proposed twice: a caller that times out on one gets "outcome
	// unknown".
	pending map[uint64]*proposal
	reads   map[string]*readReq // by request context, awaiting a ReadState
	barrier []*readReq          // have an index, awaiting apply
	// truncAt is the index of the last truncate this node proposed, at
	// tick truncTick.
	truncAt, truncTick uint64
	// fetching: a snapshot's state is being fetched; snapData is a
	// fetched state raft is restoring; snapSince is, per follower this
	// leader is sending a snapshot, the tick it started.
	fetching  bool
	snapData  *pebble.Batch
	snapSince map[uint64]uint64
}

// proposal is one command waiting for its result.
type proposal struct {
	shard  uint8
	cmd    command
	data   []byte
	result chan result
}

type result struct {
	fence fence
	err   error
}

type readReq struct {
	shard uint8
	ctx   string
	index uint64
	done  chan struct{}
}

// Start opens every group's replica from db and starts the loop.
func Start(opts Options) (*Engine, error) {
	if opts.ID == 0 || opts.DB == nil || opts.Sender == nil || len(opts.Members) == 0 && !opts.Join {
		return nil, errors.New("replication: Options need ID, Members (or Join), DB and Sender")
	}
	if opts.Join {
		opts.Members = nil
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Tick == 0 {
		opts.Tick = 50 * time.Millisecond
	}
	if opts.ElectionTicks == 0 {
		opts.ElectionTicks = 10
	}
	if opts.TruncateAfter == 0 {
		opts.TruncateAfter = defaultTruncateAfter
	}
	var seed [8]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, err
	}
	e := &Engine{
		opts: opts, log: opts.Logger.With("component", "replication", "node", opts.ID),
		boot:    binary.BigEndian.Uint64(seed[:]) >> 1,
		waiters: make(map[uint64]*proposal),
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}), done: make(chan struct{}),
	}
	for s := range NumGroups {
		g, err := e.openGroup(uint8(s))
		if err != nil {
			return nil, err
		}
		e.groups[s] = g
	}
	go e.run()
	return e, nil
}

func (e *Engine) openGroup(shard uint8) (*group, error) {
	st, err := openLogStore(e.opts.DB, shard, e.opts.Members)
	if err != nil {
		return nil, err
	}
	var applied uint64
	if v, err := get(e.opts.DB, sysKey(shard, subApplied)); err != nil {
		return nil, err
	} else if len(v) == 8 {
		applied = binary.BigEndian.Uint64(v)
	}
	rn, err := raft.NewRawNode(&raft.Config{
		ID: e.opts.ID, ElectionTick: e.opts.ElectionTicks, HeartbeatTick: 1,
		Storage: st, Applied: applied,
		MaxSizePerMsg: 1 << 20, MaxInflightMsgs: 256, MaxUncommittedEntriesSize: 1 << 30,
		CheckQuorum: true, PreVote: true, StepDownOnRemoval: true,
		Logger: raftLogger{e.log.With("shard", shard)},
	})
	if err != nil {
		return nil, fmt.Errorf("replication: shard %d: %w", shard, err)
	}
	g := &group{shard: shard, rn: rn, st: st, applied: applied,
		pending: make(map[uint64]*proposal), reads: make(map[string]*readReq), snapSince: map[uint64]uint64{}}
	st.offer = func() (*rpb.Snapshot, error) { return e.snapshot(g) }
	return g, nil
}

// Deliver hands messages received from a peer to the loop. It never blocks.
func (e *Engine) Deliver(from uint64, batch []Envelope) {
	e.mu.Lock()
	e.inbox = append(e.inbox, batch...)
	e.mu.Unlock()
	e.signal()
}

func (e *Engine) signal() {
	select {
	case e.wake <- struct{}{}:
	default:
	}
}

// Stop stops the loop; pending calls fail with ErrStopped.
func (e *Engine) Stop() {
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		<-e.done
		return
	}
	e.stopped = true
	e.mu.Unlock()
	close(e.stop)
	<-e.done
}

func (e *Engine) run() {
	defer close(e.done)
	defer e.snaps.expire(time.Time{}, true)
	t := time.NewTicker(e.opts.Tick)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			e.failAll()
			return
		case <-t.C:
			e.ticks++
			for _, g := range e.groups {
				g.rn.Tick()
				if len(g.queue) > 0 {
					e.propose(g)
				}
				e.maybeTruncate(g)
				e.giveUpSnapshots(g)
				e.failCutOff(g)
			}
			if e.ticks%100 == 0 {
				e.snaps.expire(time.Now(), false)
			}
			e.snapshotStatus()
		case <-e.wake:
		}
		e.drainInputs()
		if err := e.handleReady(); err != nil {
			// A failed disk write leaves raft's view ahead of the disk:
			// the only safe move is to stop this replica.
			e.log.Error("replication stopped: storage failed", "err", err)
			e.failAll()
			return
		}
	}
}

func (e *Engine) drainInputs() {
	e.mu.Lock()
	inbox, props, reads, transfers, installs, confs := e.inbox, e.props, e.reads, e.transfers, e.installs, e.confs
	e.inbox, e.props, e.reads, e.transfers, e.installs, e.confs = nil, nil, nil, nil, nil, nil
	e.mu.Unlock()
	for _, c := range confs {
		// Dropped (no leader, a change pending): ChangeMember retries.
		_ = e.groups[c.shard].rn.ProposeConfChange(c.cc)
	}
	for _, f := range installs {
		e.install(f)
	}
	for _, tr := range transfers {
		e.groups[tr[0]].rn.TransferLeader(tr[1])
	}
	for _, env := range inbox {
		if int(env.Shard) >= NumGroups {
			continue
		}
		if env.Msg.GetType() == rpb.MessageType_MsgSnap {
			// Its state is fetched first; the message is stepped then.
			e.fetchSnapshot(e.groups[env.Shard], env.Msg)
			continue
		}
		// Errors are stale or misdirected messages: raft ignores them.
		_ = e.groups[env.Shard].rn.Step(env.Msg)
	}
	for _, p := range props {
		g := e.groups[p.shard]
		g.queue = append(g.queue, p)
		e.propose(g)
	}
	for _, r := range reads {
		g := e.groups[r.shard]
		g.reads[r.ctx] = r
		g.rn.ReadIndex([]byte(r.ctx))
	}
}

// propose hands g's queued proposals to raft. One that raft drops (no
// leader known yet, or a leadership transfer) was never proposed, so it
// stays queued and is tried again at the next tick or leader change.
func (e *Engine) propose(g *group) {
	kept := g.queue[:0]
	for _, p := range g.queue {
		e.mu.Lock()
		live := e.waiters[p.cmd.number] == p
		e.mu.Unlock()
		if !live {
			continue // its caller gave up before it was proposed
		}
		if err := g.rn.Propose(p.data); err != nil {
			kept = append(kept, p)
			continue
		}
		if len(p.cmd.entity) > 0 {
			g.pending[p.cmd.number] = p
		}
	}
	clear(g.queue[len(kept):])
	g.queue = kept
}

// handleReady persists, sends and applies what every group has ready.
func (e *Engine) handleReady() error {
	var rds []ready
	wb := e.opts.DB.NewBatch()
	defer wb.Close()
	mustSync := false
	early, late := map[uint64][]Envelope{}, map[uint64][]Envelope{}
	for _, g := range e.groups {
		if !g.rn.HasReady() {
			continue
		}
		rd := g.rn.Ready()
		if !raft.IsEmptySnap(rd.Snapshot) {
			if err := g.stageSnapshot(wb, rd.Snapshot); err != nil {
				return err
			}
			e.snapshotsInstalled.Add(1)
			mustSync = true
		}
		if err := g.st.stage(wb, &rd); err != nil {
			return err
		}
		mustSync = mustSync || rd.MustSync
		rds = append(rds, ready{g, rd})
		lead := g.lead
		if rd.SoftState != nil {
			lead = rd.SoftState.Lead
		}
		// A leader may send its appends before its own disk write (Raft
		// thesis §10.2.1; etcd does so): the followers write in parallel
		// with it, and the leader counts its own entry only once this
		// iteration's write has returned, before anything is applied.
		// Every other message waits for the write.
		out := late
		if lead == e.opts.ID {
			out = early
		}
		for _, m := range rd.Messages {
			out[m.GetTo()] = append(out[m.GetTo()], Envelope{Shard: g.shard, Msg: m})
		}
	}
	if len(rds) == 0 {
		return nil
	}
	e.send(early)
	if !wb.Empty() {
		opt := pebble.NoSync
		if mustSync {
			opt = pebble.Sync
		}
		if err := wb.Commit(opt); err != nil {
			return fmt.Errorf("replication: persist log: %w", err)
		}
	}
	for _, r := range rds {
		r.g.st.staged(&r.rd)
		if r.g.snapData != nil { // installed, or not taken by raft
			r.g.snapData.Close()
			r.g.snapData = nil
		}
	}
	e.send(late)
	if err := e.apply(rds); err != nil {
		return err
	}
	for _, r := range rds {
		e.afterApply(r.g, &r.rd)
		r.g.rn.Advance(r.rd)
	}
	return nil
}

// send hands each peer its messages; an unreachable peer is reported to
// the groups of the messages it missed.
func (e *Engine) send(out map[uint64][]Envelope) {
	for to, msgs := range out {
		if !e.opts.Sender.Send(to, msgs) {
			for _, env := range msgs {
				e.groups[env.Shard].rn.ReportUnreachable(to)
			}
		}
	}
}

// ready is one group's Ready of a loop iteration.
type ready struct {
	g  *group
	rd raft.Ready
}

// afterApply handles leadership changes and read states of a Ready.
func (e *Engine) afterApply(g *group, rd *raft.Ready) {
	if rd.SoftState != nil && rd.SoftState.Lead != g.lead {
		g.lead = rd.SoftState.Lead
		if g.lead != raft.None {
			e.mu.Lock()
			for n, p := range g.pending {
				if e.waiters[n] != p {
					delete(g.pending, n) // its caller gave up
					continue
				}
				_ = g.rn.Propose(p.data)
			}
			e.mu.Unlock()
			e.propose(g)
			// Read requests sent while no leader was known were dropped.
			for ctx := range g.reads {
				g.rn.ReadIndex([]byte(ctx))
			}
		}
	}
	for _, rs := range rd.ReadStates {
		if r, ok := g.reads[string(rs.RequestCtx)]; ok {
			delete(g.reads, string(rs.RequestCtx))
			r.index = rs.Index
			g.barrier = append(g.barrier, r)
		}
	}
	kept := g.barrier[:0]
	for _, r := range g.barrier {
		if g.applied >= r.index {
			close(r.done)
		} else {
			kept = append(kept, r)
		}
	}
	g.barrier = kept
}

// finish delivers the result of this node's proposal number (a no-op if
// its caller gave up or a copy already finished it). Loop goroutine only.
func (e *Engine) finish(g *group, number uint64, res result) {
	delete(g.pending, number)
	e.mu.Lock()
	p := e.waiters[number]
	delete(e.waiters, number)
	e.mu.Unlock()
	if p != nil {
		p.result <- res
	}
}

func (e *Engine) failAll() {
	e.mu.Lock()
	ws := e.waiters
	e.waiters = make(map[uint64]*proposal)
	e.mu.Unlock()
	for _, p := range ws {
		p.result <- result{err: ErrStopped}
	}
}

// Write commits repr (a Pebble batch of one shard's keys) through the
// shard's group and returns once it is applied on this node. With a
// non-empty entity the write is fenced: it applies only if the entity's
// stored epoch and version equal epoch and version, and then raises the
// version by one; otherwise ErrFenced.
func (e *Engine) Write(ctx context.Context, shard uint8, entity []byte, epoch, version uint64, repr []byte) error {
	_, err := e.submit(ctx, shard, command{op: opWrite, entity: entity, epoch: epoch, version: version, repr: repr})
	return err
}

// Claim makes a new activation of entity the only one allowed to write: it
// raises the entity's epoch through the log and returns the new epoch and
// the current version, which the next Write must name.
func (e *Engine) Claim(ctx context.Context, shard uint8, entity []byte) (epoch, version uint64, err error) {
	if len(entity) == 0 {
		return 0, 0, errors.New("replication: claim of an empty entity")
	}
	f, err := e.submit(ctx, shard, command{op: opClaim, entity: entity})
	return f.epoch, f.version, err
}

func (e *Engine) submit(ctx context.Context, shard uint8, c command) (fence, error) {
	if int(shard) >= NumGroups {
		return fence{}, fmt.Errorf("replication: shard %d out of range", shard)
	}
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return fence{}, ErrStopped
	}
	e.number++
	c.proposer, c.number, c.boot = e.opts.ID, e.number, e.boot
	p := &proposal{shard: shard, cmd: c, data: c.encode(), result: make(chan result, 1)}
	e.waiters[c.number] = p
	e.props = append(e.props, p)
	e.mu.Unlock()
	e.signal()
	select {
	case r := <-p.result:
		return r.fence, r.err
	case <-ctx.Done():
		e.mu.Lock()
		delete(e.waiters, c.number)
		e.mu.Unlock()
		// The loop may still apply it: the outcome is unknown.
		return fence{}, fmt.Errorf("replication: shard %d: outcome unknown: %w", shard, ctx.Err())
	}
}

// ReadBarrier returns once this node has applied every write the shard's
// leader had committed when the barrier was requested, so that reads from
// the local store that follow see them (raft's ReadIndex).
func (e *Engine) ReadBarrier(ctx context.Context, shard uint8) error {
	if int(shard) >= NumGroups {
		return fmt.Errorf("replication: shard %d out of range", shard)
	}
	var id [16]byte
	_, _ = rand.Read(id[:])
	r := &readReq{shard: shard, ctx: string(id[:]), done: make(chan struct{})}
	e.mu.Lock()
	if e.stopped {
		e.mu.Unlock()
		return ErrStopped
	}
	e.reads = append(e.reads, r)
	e.mu.Unlock()
	e.signal()
	select {
	case <-r.done:
		return nil
	case <-e.done:
		return ErrStopped
	case <-ctx.Done():
		return fmt.Errorf("replication: shard %d read barrier: %w", shard, ctx.Err())
	}
}

// Epoch returns entity's claim epoch (0: never claimed) once a read
// barrier on shard has passed, so every claim committed before the call
// is counted.
func (e *Engine) Epoch(ctx context.Context, shard uint8, entity []byte) (uint64, error) {
	if err := e.ReadBarrier(ctx, shard); err != nil {
		return 0, err
	}
	v, err := get(e.opts.DB, fenceKey(shard, entity))
	if err != nil || v == nil {
		return 0, err
	}
	f, err := decodeFence(v)
	return f.epoch, err
}

// Leader returns the node this replica believed led shard's group at the
// last tick (0: none known).
func (e *Engine) Leader(shard uint8) uint64 {
	for _, g := range e.Status() {
		if g.Shard == shard {
			return g.Leader
		}
	}
	return 0
}

// TransferLeaderships moves the leadership of every group this node leads
// to the other members that alive reports up (round robin), and returns
// once it leads none, or ctx ends. A node being drained calls it so that
// no write waits for an election when it leaves.
func (e *Engine) TransferLeaderships(ctx context.Context, alive func(node uint64) bool) error {
	for {
		groups := e.Status()
		led := LedBy(e.opts.ID, groups)
		if len(led) == 0 {
			return nil
		}
		e.mu.Lock()
		for i, sh := range led {
			// The targets are the group's other voters that are up.
			var targets []uint64
			for _, id := range groups[sh].Voters {
				if id != e.opts.ID && alive(id) {
					targets = append(targets, id)
				}
			}
			if len(targets) == 0 {
				e.mu.Unlock()
				return fmt.Errorf("replication: shard %d: no live peer to hand its leadership to", sh)
			}
			e.transfers = append(e.transfers, [2]uint64{uint64(sh), targets[i%len(targets)]})
		}
		e.mu.Unlock()
		e.signal()
		select {
		case <-ctx.Done():
			return fmt.Errorf("replication: still leading %d groups: %w", len(led), ctx.Err())
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// Balance hands over some of this node's leaderships when it leads more
// than its share: after a node restarts it leads no group until an
// election, and the others carry all the writes. eligible says which
// nodes may take a group (live members, this one included). Only this
// node's own groups move; every node balancing itself evens them out.
func (e *Engine) Balance(eligible []uint64) {
	if len(eligible) < 2 {
		return
	}
	count := map[uint64]int{}
	for _, id := range eligible {
		count[id] = 0
	}
	groups := e.Status()
	for _, g := range groups {
		if _, ok := count[g.Leader]; ok {
			count[g.Leader]++
		}
	}
	mine := LedBy(e.opts.ID, groups)
	share := (NumGroups + len(eligible) - 1) / len(eligible)
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, sh := range mine {
		if count[e.opts.ID] <= share {
			break
		}
		to, least := uint64(0), share
		for id, c := range count {
			if id != e.opts.ID && c < least && slices.Contains(groups[sh].Voters, id) {
				to, least = id, c
			}
		}
		if to == 0 {
			break
		}
		e.transfers = append(e.transfers, [2]uint64{uint64(sh), to})
		count[e.opts.ID]--
		count[to]++
	}
	if len(e.transfers) > 0 {
		e.signal()
	}
}

// raftLogger sends raft's log to slog; raft's Info is chatty (every
// election of 64 groups), so it goes to Debug.
type raftLogger struct{ l *slog.Logger }

func (r raftLogger) Debug(v ...any)              { r.l.Debug(fmt.Sprint(v...)) }
func (r raftLogger) Debugf(f string, v ...any)   { r.l.Debug(fmt.Sprintf(f, v...)) }
func (r raftLogger) Info(v ...any)               { r.l.Debug(fmt.Sprint(v...)) }
func (r raftLogger) Infof(f string, v ...any)    { r.l.Debug(fmt.Sprintf(f, v...)) }
func (r raftLogger) Warning(v ...any)            { r.l.Warn(fmt.Sprint(v...)) }
func (r raftLogger) Warningf(f string, v ...any) { r.l.Warn(fmt.Sprintf(f, v...)) }
func (r raftLogger) Error(v ...any)              { r.l.Error(fmt.Sprint(v...)) }
func (r raftLogger) Errorf(f string, v ...any)   { r.l.Error(fmt.Sprintf(f, v...)) }
func (r raftLogger) Fatal(v ...any)              { r.fatal(fmt.Sprint(v...)) }
func (r raftLogger) Fatalf(f string, v ...any)   { r.fatal(fmt.Sprintf(f, v...)) }

// fatal logs raft's fatal error and panics, as raft requires. The one an
// operator can cause gets a remedy: a replica whose log is behind what
// the group committed ("tocommit ... out of range") lost its data, or is
// a new disk under an old node id.
func (r raftLogger) fatal(msg string) {
	if strings.Contains(msg, "tocommit") {
		msg += "; this node's log is behind what its group committed: its data directory was lost or replaced." +
			" Remove the node (DELETE /admin/nodes/{id} on a member) and add it back under a new id with -cluster-join (docs/operations.md §7)"
	}
	r.l.Error(msg)
	panic(msg)
}
func (r raftLogger) Panic(v ...any)            { r.Fatal(v...) }
func (r raftLogger) Panicf(f string, v ...any) { r.Fatalf(f, v...) }
