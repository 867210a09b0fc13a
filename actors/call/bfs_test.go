package call

import (
	"encoding/binary"
	"fmt"
	"hash/maphash"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	pb "github.com/parley-chat/parley/gateway/protocol"
)

// The exhaustive ordering test: a breadth-first search over every state
// reachable by the real machines (one Room, the Device machine of every
// device, the Slot of every user) plus the multiset of messages in flight
// between them. Every message may be delivered in any order and may be
// duplicated once (delivered twice). The users act at any moment (start,
// accept, decline, hang up, each at most once per device), the clock
// jumps to the room's next deadline at any moment (ring timeout, setup
// timeout, link grace), and one device's link may be cut and come back.
// Visited states are hashed (128 bits), and after every step the
// invariants are checked; the search fails if it hits its state limit.
//
// The environment around the machines is the smallest faithful model of
// the grains: the user grain rings every device of a user (or answers busy
// from the user's Slot) and applies claims and releases to the Slot; the
// call grain parks requests and answers them on Resolve; a session reports
// its link state when bound and on every change. Participant-list notices
// and media are not modelled: no machine decision depends on them.

// bfsConfig is one scenario.
type bfsConfig struct {
	name string
	// users[i] owns devices[i]; users[0] is the caller.
	users   []string
	devices [][]string
	// cut names a device whose link may be cut (and come back) once.
	cut string
	// busyIn: users already in another call.
	busyIn []string
	// maxDups bounds the duplications along one execution (-1: every
	// message may be duplicated once). internalDups lets the grain-to-grain
	// messages (claims, rings, link reports) be duplicated too.
	maxDups      int
	internalDups bool
	// syncInternal applies the grain-to-grain messages (claims, rings,
	// link reports) at once, in the step that sends them, instead of
	// leaving them in flight (a smaller model for more parties).
	syncInternal bool
	// maxStates bounds the search; exceeding it fails the test.
	maxStates int
	// must lists outcomes the search has to reach (see outcomes), so
	// that a model that cannot get anywhere does not pass vacuously.
	must []string
}

func TestExhaustiveOrderings(t *testing.T) {
	configs := []bfsConfig{
		{name: "two users, grain messages in flight, link cut", users: []string{"A", "B"}, devices: [][]string{{"a1"}, {"b1"}},
			cut: "b1", maxDups: 0, maxStates: 3_000_000,
			must: []string{"2 in room", "left link_lost", "left left", "left cancelled", "declined declined", "missed missed",
				"left setup_timeout", "ended cancelled", "ended empty"}},
		{name: "three users, one duplicate", users: []string{"A", "B", "C"}, devices: [][]string{{"a1"}, {"b1"}, {"c1"}},
			maxDups: 1, syncInternal: true, maxStates: 3_000_000,
			must: []string{"3 in room", "left left", "left cancelled", "declined declined", "missed missed", "ended cancelled", "ended empty"}},
		{name: "invitee with two devices, one duplicate", users: []string{"A", "B"}, devices: [][]string{{"a1"}, {"b1", "b2"}},
			maxDups: 1, syncInternal: true, maxStates: 3_000_000,
			must: []string{"2 in room", "refused answered_elsewhere", "declined declined", "missed missed", "left left"}},
		{name: "one invitee busy, one duplicate", users: []string{"A", "B", "C"}, devices: [][]string{{"a1"}, {"b1"}, {"c1"}}, busyIn: []string{"C"},
			maxDups: 1, syncInternal: true, maxStates: 3_000_000,
			must: []string{"2 in room", "busy busy"}},
	}
	if testing.Short() {
		t.Skip("exhaustive search skipped in -short mode")
	}
	total := 0
	for _, cfg := range configs {
		t.Run(cfg.name, func(t *testing.T) {
			n := explore(t, cfg)
			total += n
		})
	}
	t.Logf("exhaustive ordering test: %d states explored in all", total)
}

// Message kinds in flight.
const (
	mReq   = iota // device -> room: a request
	mRep          // room -> device: the reply to a request
	mInv          // user grain -> device: invitation
	mStop         // user grain -> device: stop ringing
	mEnded        // room -> device (session event): part ended
	mClaim        // room -> user grain -> room: claim (answered) or release
	mRing         // room -> user grain: ring (busy answered) or stop
	mLink         // session -> room: link state
)

type msg struct {
	kind int
	dev  int // device index (mReq from, mRep/mInv/mStop/mEnded to)
	user int // user index (mClaim, mRing)
	out  Outgoing
	rep  Reply
	ring RingOp
	clm  ClaimOp
	ok   bool
	link Link
	str  string // reason / join for mStop, mEnded
	str2 string
	// dup: the message may still be delivered a second time.
	dup bool
	// key is the message's canonical encoding (set by send).
	key string
}

// network reports a message that crosses a link (client <-> server).
func (m msg) network() bool {
	switch m.kind {
	case mReq, mRep, mInv, mStop, mEnded:
		return true
	}
	return false
}

type parked struct {
	dev  int
	op   Op
	join string
}

type linkEnv struct {
	up    bool
	gen   uint64
	bound bool
	used  int // 0: never cut, 1: cut, 2: cut and back
}

type world struct {
	dups   int
	now    int64
	room   *Room
	devs   []*Device
	acted  []uint8 // per device: bit 0 started/accepted, 1 declined, 2 hung up
	slots  []Slot
	links  []linkEnv
	parked []parked
	msgs   []msg
}

type bfs struct {
	cfg     bfsConfig
	devUser []int
	devID   []string
	lim     Limits
	members []string
	seed    maphash.Seed
	seed2   maphash.Seed
	// Interned strings of the encoding, and step labels.
	strs     []string
	strIDs   map[string]int
	labels   []string
	labelIDs map[string]int32
}

func (b *bfs) clone(w *world) *world {
	c := &world{dups: w.dups, now: w.now, room: w.room.Clone()}
	c.devs = make([]*Device, len(w.devs))
	for i, d := range w.devs {
		c.devs[i] = d.Clone()
	}
	c.acted = slices.Clone(w.acted)
	c.slots = slices.Clone(w.slots)
	c.links = slices.Clone(w.links)
	c.parked = slices.Clone(w.parked)
	c.msgs = slices.Clone(w.msgs)
	return c
}

func explore(t *testing.T, cfg bfsConfig) int {
	// The frontier is large and long-lived: collect less often.
	defer debug.SetGCPercent(debug.SetGCPercent(400))
	b := &bfs{cfg: cfg, lim: Limits{RingMs: 100, SetupMs: 60, GraceMs: 30}, seed: maphash.MakeSeed(), seed2: maphash.MakeSeed(),
		strIDs: map[string]int{}, labelIDs: map[string]int32{}}
	b.lim.EnsureDefaults()
	w0 := &world{now: 1, room: NewRoom("k1")}
	for u, devs := range cfg.devices {
		for _, id := range devs {
			w0.devs = append(w0.devs, &Device{User: cfg.users[u], ID: id})
			w0.acted = append(w0.acted, 0)
			w0.links = append(w0.links, linkEnv{up: true, gen: 1})
			b.devUser = append(b.devUser, u)
			b.devID = append(b.devID, id)
		}
	}
	b.members = cfg.users
	w0.slots = make([]Slot, len(cfg.users))
	for u, name := range cfg.users {
		if slices.Contains(cfg.busyIn, name) {
			w0.slots[u] = Slot{Call: "other", Version: 1, Active: true}
		}
	}
	enc0 := b.encode(w0)
	seen := map[[2]uint64]struct{}{b.hashBytes(enc0): {}}
	// The frontier holds pointer-free encodings; levels keep, per state,
	// its parent's index and the step's label, to print a failing path.
	frontier := [][]byte{enc0}
	levels := [][]edge{{{parent: -1}}}
	start := time.Now()
	depth, transitions := 0, 0
	reached := map[string]bool{}
	var scratch []byte
	for len(frontier) > 0 {
		var next [][]byte
		var edges []edge
		for fi, e := range frontier {
			w := b.decode(e)
			for _, s := range b.successors(w) {
				transitions++
				b.prune(s.w)
				if err := b.check(s.w); err != nil {
					path := b.path(levels, fi, s.label())
					t.Fatalf("%s: invariant violated at depth %d: %v\npath:\n  %s\nstate:\n%s", cfg.name, depth+1, err, path, b.dump(s.w))
				}
				scratch = b.encodeTo(scratch[:0], s.w)
				h := b.hashBytes(scratch)
				if _, ok := seen[h]; ok {
					continue
				}
				enc := slices.Clone(scratch)
				seen[h] = struct{}{}
				b.outcomes(s.w, reached)
				if len(seen) > cfg.maxStates {
					t.Fatalf("%s: search truncated at %d states (depth %d): raise maxStates or shrink the model", cfg.name, len(seen), depth)
				}
				next = append(next, enc)
				edges = append(edges, edge{parent: int32(fi), label: b.label(s.label())})
			}
		}
		frontier = next
		levels = append(levels, edges)
		depth++
		if testing.Verbose() {
			fmt.Printf("%s: depth %d frontier %d seen %d (%v)\n", cfg.name, depth, len(frontier), len(seen), time.Since(start).Round(time.Millisecond))
		}
	}
	t.Logf("%s: %d states explored, %d transitions, depth %d, %v",
		cfg.name, len(seen), transitions, depth, time.Since(start).Round(time.Millisecond))
	for _, o := range cfg.must {
		if !reached[o] {
			var got []string
			for k := range reached {
				got = append(got, k)
			}
			slices.Sort(got)
			t.Errorf("%s: outcome %q never reached; reached: %s", cfg.name, o, strings.Join(got, ", "))
		}
	}
	return len(seen)
}

// outcomes records what a state shows: devices in the room, how
// participants left, how the call ended.
func (b *bfs) outcomes(w *world, reached map[string]bool) {
	n := 0
	for _, d := range w.devs {
		if d.State == InRoom {
			n++
		}
	}
	reached[fmt.Sprintf("%d in room", n)] = true
	for _, p := range w.room.Parts {
		if p.State >= Declined {
			reached[p.State.String()+" "+p.Reason] = true
		}
		for _, x := range p.Refusals {
			reached["refused "+x.Code] = true
		}
	}
	if w.room.Phase == PhaseEnded {
		reached["ended "+w.room.EndReason] = true
	}
}

// edge links a state to its parent in the previous level.
type edge struct {
	parent int32
	label  int32
}

func (b *bfs) label(l string) int32 {
	if id, ok := b.labelIDs[l]; ok {
		return id
	}
	id := int32(len(b.labels))
	b.labels = append(b.labels, l)
	b.labelIDs[l] = id
	return id
}

// path renders the steps to the state at index i of the last level, then
// the failing step.
func (b *bfs) path(levels [][]edge, i int, last string) string {
	var steps []string
	for l := len(levels) - 1; l > 0; l-- {
		e := levels[l][i]
		steps = append(steps, b.labels[e.label])
		i = int(e.parent)
	}
	slices.Reverse(steps)
	steps = append(steps, last)
	return strings.Join(steps, "\n  ")
}

type step struct {
	label func() string
	w     *world
}

func lbl(s string) func() string { return func() string { return s } }

func (b *bfs) user(dev int) string    { return b.cfg.users[b.devUser[dev]] }
func (b *bfs) session(dev int) string { return "s-" + b.devID[dev] }

func (b *bfs) devBySession(s string) int {
	for i := range b.devUser {
		if b.session(i) == s {
			return i
		}
	}
	return -1
}

func (b *bfs) userIndex(name string) int { return slices.Index(b.cfg.users, name) }

// successors lists every enabled transition.
func (b *bfs) successors(w *world) []step {
	var out []step
	// Deliver each distinct message: once (consumed) or, if it may still
	// be duplicated, once while keeping a copy.
	canDup := b.cfg.maxDups < 0 || w.dups < b.cfg.maxDups
	for i := range w.msgs {
		if i > 0 && w.msgs[i].key == w.msgs[i-1].key && w.msgs[i].dup == w.msgs[i-1].dup {
			continue // same message: same successors
		}
		c := b.clone(w)
		m := c.msgs[i]
		c.msgs = slices.Delete(c.msgs, i, i+1)
		b.deliver(c, m)
		out = append(out, step{func() string { return "deliver " + b.describe(m) }, c})
		if m.dup && canDup {
			c := b.clone(w)
			c.msgs[i].dup = false
			c.dups++
			b.deliver(c, m)
			out = append(out, step{func() string { return "deliver (and keep a duplicate) " + b.describe(m) }, c})
		}
	}
	// User actions.
	for i, d := range w.devs {
		u := b.user(i)
		if w.acted[i]&1 == 0 && !d.Active() {
			if i == 0 {
				c := b.clone(w)
				c.acted[i] |= 1
				b.device(c, i, Start{Conv: "g1", Join: "j-" + d.ID})
				out = append(out, step{lbl("start " + d.ID), c})
			}
			for _, inv := range d.Ringing {
				c := b.clone(w)
				c.acted[i] |= 1
				b.device(c, i, Accept{Call: inv.Call, Join: "j-" + d.ID})
				out = append(out, step{lbl("accept " + d.ID), c})
			}
		}
		if w.acted[i]&2 == 0 && len(d.Ringing) > 0 {
			c := b.clone(w)
			c.acted[i] |= 2
			b.device(c, i, Decline{Call: d.Ringing[0].Call})
			out = append(out, step{lbl("decline " + d.ID), c})
		}
		if w.acted[i]&4 == 0 && d.Active() {
			c := b.clone(w)
			c.acted[i] |= 4
			b.device(c, i, Hangup{})
			out = append(out, step{lbl("hangup " + d.ID + " (" + u + ")"), c})
		}
	}
	// The clock jumps to the next deadline.
	if next := w.room.NextDeadline(b.lim); next > 0 {
		c := b.clone(w)
		if next > c.now {
			c.now = next
		}
		b.room(c, Tick{Now: c.now}, -1, Request{})
		out = append(out, step{lbl(fmt.Sprintf("tick %d", c.now)), c})
	}
	// The cut device's link goes and comes back (once).
	for i, d := range w.devs {
		if d.ID != b.cfg.cut || w.links[i].used >= 2 {
			continue
		}
		c := b.clone(w)
		l := &c.links[i]
		l.used++
		l.up = !l.up
		l.gen++
		if l.bound {
			b.send(c, msg{kind: mLink, link: Link{Session: b.session(i), Linked: l.up, Gen: l.gen}})
			b.sortMsgs(c)
		}
		out = append(out, step{lbl(fmt.Sprintf("link %s up=%v", d.ID, l.up)), c})
	}
	return out
}

func (b *bfs) send(w *world, m msg) {
	if b.cfg.syncInternal && !m.network() {
		b.deliver(w, m)
		return
	}
	m.dup = m.network() || b.cfg.internalDups
	m.key = b.msgKey(m)
	w.msgs = append(w.msgs, m)
}

// dead reports a message whose delivery can never change anything: the
// state it would act on is gone for good. Each device uses one join id,
// once (its action bits), so a device that is done with the call (the call
// or join is in its Gone lists and it is not active in it) stays done, and
// an ended room stays ended. Dropping such messages keeps the search from
// enumerating when (and whether) inert leftovers arrive; every message that
// can still matter stays in flight.
func (b *bfs) dead(w *world, m msg) bool {
	switch m.kind {
	case mRep, mInv, mStop, mEnded:
	case mReq:
		// An ended room answers everything the same way (call_ended, or ok
		// for leave/cancel/decline), and the answer goes to a device that
		// may still need it: not dead unless the device is done too.
		if w.room.Phase != PhaseEnded {
			return false
		}
	default:
		return false
	}
	d := w.devs[m.dev]
	done := slices.Contains(d.GoneCalls, w.room.ID) && !(d.Active() && d.Call == w.room.ID) && w.acted[m.dev]&1 != 0
	doneJoin := slices.Contains(d.GoneJoins, "j-"+d.ID)
	switch m.kind {
	case mRep:
		if m.rep.Err == nil && m.rep.Op == OpCreate {
			return false // a confirm of a gone create makes the device cancel
		}
		return doneJoin
	case mReq:
		return doneJoin && m.out.Op != OpCreate
	case mInv, mStop:
		return done || (slices.Contains(d.GoneCalls, w.room.ID) && !d.Active() && !d.IsRinging(w.room.ID))
	case mEnded:
		return doneJoin
	}
	return false
}

func (b *bfs) prune(w *world) {
	w.msgs = slices.DeleteFunc(w.msgs, func(m msg) bool { return b.dead(w, m) })
}

func (b *bfs) sortMsgs(w *world) {
	slices.SortFunc(w.msgs, func(x, y msg) int {
		if c := strings.Compare(x.key, y.key); c != 0 {
			return c
		}
		switch {
		case x.dup == y.dup:
			return 0
		case x.dup:
			return 1
		}
		return -1
	})
}

func dupFlag(m msg) string {
	if m.dup {
		return "+"
	}
	return ""
}

// device steps device i and sends what it asks for.
func (b *bfs) device(w *world, i int, ev DeviceEvent) {
	fx := w.devs[i].Step(ev)
	for _, o := range fx.Send {
		b.send(w, msg{kind: mReq, dev: i, out: o})
	}
	b.sortMsgs(w)
}

// room steps the room; from is the requesting device (-1 for others).
func (b *bfs) room(w *world, ev Event, from int, q Request) {
	fx := w.room.Step(ev, b.lim)
	if fx.Reply != nil && from >= 0 {
		rep := *fx.Reply
		rep.Participants = nil // not modelled (no decision depends on it)
		b.send(w, msg{kind: mRep, dev: from, rep: rep})
	}
	if fx.Park {
		p := parked{dev: from, op: q.Op, join: q.Join}
		if !slices.Contains(w.parked, p) {
			w.parked = append(w.parked, p)
		}
	}
	for _, r := range fx.Resolve {
		w.parked = slices.DeleteFunc(w.parked, func(p parked) bool {
			if b.user(p.dev) == r.User && p.op == r.Reply.Op && p.join == r.Reply.Join {
				rep := r.Reply
				rep.Participants = nil
				b.send(w, msg{kind: mRep, dev: p.dev, rep: rep})
				return true
			}
			return false
		})
	}
	for _, c := range fx.Claims {
		b.send(w, msg{kind: mClaim, user: b.userIndex(c.User), clm: c})
	}
	for _, r := range fx.Rings {
		b.send(w, msg{kind: mRing, user: b.userIndex(r.User), ring: r})
	}
	for _, n := range fx.Notices {
		if n.Ended != "" {
			b.send(w, msg{kind: mEnded, dev: b.devBySession(n.Session), str: n.Join, str2: n.Ended})
		}
	}
	for _, bd := range fx.Binds {
		i := b.devBySession(bd.Session)
		l := &w.links[i]
		l.bound = bd.Bind
		if bd.Bind {
			// The bind's reply: the session's link state now.
			b.send(w, msg{kind: mLink, link: Link{Session: bd.Session, Linked: l.up, Gen: l.gen}})
		}
	}
	slices.SortFunc(w.parked, func(x, y parked) int {
		if x.dev != y.dev {
			return x.dev - y.dev
		}
		if x.op != y.op {
			return int(x.op) - int(y.op)
		}
		return strings.Compare(x.join, y.join)
	})
	b.sortMsgs(w)
}

func (b *bfs) deliver(w *world, m msg) {
	switch m.kind {
	case mReq:
		o := m.out
		q := Request{Op: o.Op, Actor: b.user(m.dev), Device: w.devs[m.dev].ID, Session: b.session(m.dev),
			Join: o.Join, Conv: o.Conv, Muted: o.Muted, Now: w.now}
		if o.Op == OpCreate {
			q.Members = b.members
		}
		b.room(w, q, m.dev, q)
	case mRep:
		b.device(w, m.dev, Answer{Reply: m.rep})
	case mInv:
		b.device(w, m.dev, Incoming{Invitation: Invitation{Call: "k1", Conv: "g1", Caller: b.cfg.users[0], Expires: m.ring.Expires}, Now: w.now})
	case mStop:
		b.device(w, m.dev, RingStopped{Call: "k1", Reason: m.str, Device: m.str2})
	case mEnded:
		b.device(w, m.dev, Ended{Call: "k1", Join: m.str, Reason: m.str2})
	case mClaim:
		s := &w.slots[m.user]
		// The grain call and its answer: the room steps the result as
		// soon as the slot applied the claim.
		if m.clm.Release {
			s.Release("k1", m.clm.Version)
			b.sortMsgs(w)
		} else {
			ok := s.Claim("k1", m.clm.Version)
			b.room(w, ClaimResult{User: b.cfg.users[m.user], Version: m.clm.Version, OK: ok, Now: w.now}, -1, Request{})
		}
	case mRing:
		r := m.ring
		if r.Invite && w.slots[m.user].Busy("k1") {
			b.room(w, RingResult{User: b.cfg.users[m.user], Busy: true, Now: w.now}, -1, Request{})
		} else {
			for i := range w.devs {
				if b.devUser[i] != m.user {
					continue
				}
				if r.Invite {
					b.send(w, msg{kind: mInv, dev: i, ring: r})
				} else {
					b.send(w, msg{kind: mStop, dev: i, str: r.Reason, str2: r.Device})
				}
			}
		}
		b.sortMsgs(w)
	case mLink:
		l := m.link
		l.Now = w.now
		b.room(w, l, -1, Request{})
	}
}

// check verifies the invariants of one state.
func (b *bfs) check(w *world) error {
	r := w.room
	quiet := len(w.msgs) == 0
	// Nobody in a room twice, server side (always): one participant per
	// user, and the room's peers are distinct users and devices. (A user's
	// old device may still think it is in while the notice that the server
	// ended its join is in flight; once quiet, see below.)
	users, devices := map[string]bool{}, map[string]bool{}
	for _, p := range r.Parts {
		if users[p.User] {
			return fmt.Errorf("user %s has two participants", p.User)
		}
		users[p.User] = true
		if p.State == InRoom {
			if devices[p.Device] {
				return fmt.Errorf("device %s is in the room twice", p.Device)
			}
			devices[p.Device] = true
		}
	}
	// No one in an ended room (server side, always).
	if r.Phase == PhaseEnded {
		for _, p := range r.Parts {
			if p.State.Active() || p.State == Invited {
				return fmt.Errorf("call ended but %s is %s", p.User, p.State)
			}
		}
	}
	// Participants whose link is gone are removed after the grace period.
	for _, p := range r.Parts {
		if p.State.Active() && p.CutAt > 0 && p.CutAt+b.lim.GraceMs <= w.now {
			return fmt.Errorf("%s is %s without a link since %d (now %d, grace %d)", p.User, p.State, p.CutAt, w.now, b.lim.GraceMs)
		}
	}
	for _, p := range r.Parts {
		if !p.State.Active() && p.State != Invited && p.State != None && p.Deadline != 0 {
			return fmt.Errorf("%s is %s with a deadline", p.User, p.State)
		}
	}
	if !quiet {
		return nil
	}
	// Once quiet: both sides agree.
	for i, d := range w.devs {
		p := r.Part(b.user(i))
		inRoom := p != nil && p.State == InRoom && p.Device == d.ID
		switch {
		case d.State == InRoom && !(inRoom && p.Join == d.Join && d.Call == r.ID):
			return fmt.Errorf("device %s is in the room, the server says %v", d.ID, partString(p))
		case d.State != InRoom && inRoom:
			return fmt.Errorf("server has %s in the room on %s, the device is %s", p.User, d.ID, d.State)
		case d.State != InRoom && d.State != None:
			return fmt.Errorf("device %s is stuck in %s (server: %v)", d.ID, d.State, partString(p))
		}
		ringing := d.IsRinging(r.ID)
		if ringing != (p != nil && p.State == Invited) {
			return fmt.Errorf("device %s ringing=%v, the server says %v", d.ID, ringing, partString(p))
		}
		if r.Phase == PhaseEnded && (d.Active() || ringing) {
			return fmt.Errorf("call ended, device %s is %s (ringing %v)", d.ID, d.State, ringing)
		}
		if !w.links[i].up && inRoom && p.CutAt == 0 {
			return fmt.Errorf("the server does not know %s lost its link", d.ID)
		}
	}
	for u := range b.cfg.users {
		n := 0
		for i, d := range w.devs {
			if b.devUser[i] == u && d.State == InRoom {
				n++
			}
		}
		if n > 1 {
			return fmt.Errorf("quiet, and user %s is in the room on %d devices", b.cfg.users[u], n)
		}
	}
	for _, p := range r.Parts {
		if p.State.Active() && p.State != InRoom {
			return fmt.Errorf("quiet, but %s is %s", p.User, p.State)
		}
		// The busy slot holds exactly while the user is in the call.
		s := w.slots[b.userIndex(p.User)]
		held := s.Active && s.Call == r.ID
		if held != p.State.Active() {
			return fmt.Errorf("quiet, %s is %s but its busy slot holds=%v", p.User, p.State, held)
		}
	}
	if len(w.parked) > 0 {
		return fmt.Errorf("quiet, but requests are still parked: %v", w.parked)
	}
	return nil
}

func partString(p *Part) string {
	if p == nil {
		return "no participant"
	}
	return fmt.Sprintf("%s %s device=%s join=%s cut=%d", p.User, p.State, p.Device, p.Join, p.CutAt)
}

// hashBytes is the 128-bit visited-state hash of an encoding.
func (b *bfs) hashBytes(enc []byte) [2]uint64 {
	return [2]uint64{maphash.Bytes(b.seed, enc), maphash.Bytes(b.seed2, enc)}
}

// The state codec: a canonical, pointer-free encoding of a world (message
// multiset and parked requests sorted), with strings interned.

type encoder struct {
	b   *bfs
	buf []byte
}

func (e *encoder) u(x uint64) { e.buf = binary.AppendUvarint(e.buf, x) }
func (e *encoder) i(x int64)  { e.buf = binary.AppendVarint(e.buf, x) }
func (e *encoder) f(x bool) {
	if x {
		e.buf = append(e.buf, 1)
	} else {
		e.buf = append(e.buf, 0)
	}
}
func (e *encoder) s(x string) {
	id, ok := e.b.strIDs[x]
	if !ok {
		id = len(e.b.strs)
		e.b.strs = append(e.b.strs, x)
		e.b.strIDs[x] = id
	}
	e.u(uint64(id))
}
func (e *encoder) ss(xs []string) {
	e.u(uint64(len(xs)))
	for _, x := range xs {
		e.s(x)
	}
}

type decoder struct {
	b   *bfs
	buf []byte
}

func (d *decoder) u() uint64 {
	x, n := binary.Uvarint(d.buf)
	d.buf = d.buf[n:]
	return x
}
func (d *decoder) i() int64 {
	x, n := binary.Varint(d.buf)
	d.buf = d.buf[n:]
	return x
}
func (d *decoder) f() bool {
	x := d.buf[0] == 1
	d.buf = d.buf[1:]
	return x
}
func (d *decoder) s() string { return d.b.strs[d.u()] }
func (d *decoder) ss() []string {
	n := int(d.u())
	if n == 0 {
		return nil
	}
	xs := make([]string, n)
	for i := range xs {
		xs[i] = d.s()
	}
	return xs
}

func (e *encoder) msg(m msg) {
	e.u(uint64(m.kind))
	e.i(int64(m.dev))
	e.i(int64(m.user))
	switch m.kind {
	case mReq:
		e.u(uint64(m.out.Op))
		e.s(m.out.Call)
		e.s(m.out.Join)
		e.s(m.out.Conv)
		e.f(m.out.Muted)
	case mRep:
		e.u(uint64(m.rep.Op))
		e.s(m.rep.Call)
		e.s(m.rep.Join)
		code := ""
		if m.rep.Err != nil {
			code = m.rep.Err.Code
		}
		e.s(code)
		e.f(m.rep.Duplicate)
	case mInv:
		e.i(m.ring.Expires)
	case mStop, mEnded:
		e.s(m.str)
		e.s(m.str2)
	case mClaim:
		e.s(m.clm.User)
		e.u(m.clm.Version)
		e.f(m.clm.Release)
	case mRing:
		e.s(m.ring.User)
		e.f(m.ring.Invite)
		e.i(m.ring.Expires)
		e.s(m.ring.Reason)
		e.s(m.ring.Device)
	case mLink:
		e.s(m.link.Session)
		e.f(m.link.Linked)
		e.u(m.link.Gen)
	}
}

func (d *decoder) msg() msg {
	m := msg{kind: int(d.u()), dev: int(d.i()), user: int(d.i())}
	switch m.kind {
	case mReq:
		m.out = Outgoing{Op: Op(d.u()), Call: d.s(), Join: d.s(), Conv: d.s(), Muted: d.f()}
	case mRep:
		m.rep = Reply{Op: Op(d.u()), Call: d.s(), Join: d.s()}
		if code := d.s(); code != "" {
			m.rep.Err = &Error{Code: code, Message: code}
		}
		m.rep.Duplicate = d.f()
	case mInv:
		m.ring.Expires = d.i()
	case mStop, mEnded:
		m.str, m.str2 = d.s(), d.s()
	case mClaim:
		m.clm = ClaimOp{User: d.s(), Version: d.u(), Release: d.f()}
	case mRing:
		m.ring = RingOp{User: d.s(), Invite: d.f(), Expires: d.i(), Reason: d.s(), Device: d.s()}
	case mLink:
		m.link = Link{Session: d.s(), Linked: d.f(), Gen: d.u()}
	}
	return m
}

// msgKey is a message's canonical encoding (without its dup flag).
func (b *bfs) msgKey(m msg) string {
	e := encoder{b: b}
	e.msg(m)
	return string(e.buf)
}

func (b *bfs) encode(w *world) []byte { return b.encodeTo(make([]byte, 0, 256), w) }

// encodeTo appends the encoding of w to buf.
func (b *bfs) encodeTo(buf []byte, w *world) []byte {
	e := &encoder{b: b, buf: buf}
	e.i(w.now)
	e.u(uint64(w.dups))
	r := w.room
	e.u(uint64(r.Phase))
	e.s(r.Conv)
	e.s(r.Caller)
	e.ss(r.Members)
	e.i(r.Created)
	e.i(r.Ended)
	e.s(r.EndReason)
	e.u(r.Version)
	e.u(uint64(len(r.Parts)))
	for _, p := range r.Parts {
		e.s(p.User)
		e.u(uint64(p.State))
		e.s(p.Device)
		e.s(p.Session)
		e.s(p.Join)
		e.f(p.CallerJoin)
		e.f(p.Muted)
		e.i(p.Deadline)
		e.i(p.CutAt)
		e.u(p.LinkGen)
		e.u(p.Claim)
		e.ss(p.OldJoins)
		e.s(p.Reason)
		e.s(p.Refused)
		e.f(p.Entered)
		e.u(uint64(len(p.Refusals)))
		for _, x := range p.Refusals {
			e.s(x.Join)
			e.s(x.Code)
		}
	}
	for i, d := range w.devs {
		e.u(uint64(d.State))
		e.s(d.Call)
		e.s(d.Join)
		e.s(d.Conv)
		e.f(d.Caller)
		e.f(d.Muted)
		e.u(uint64(len(d.Ringing)))
		for _, x := range d.Ringing {
			e.s(x.Call)
			e.s(x.Conv)
			e.s(x.Caller)
			e.i(x.Expires)
		}
		e.ss(d.GoneCalls)
		e.ss(d.GoneJoins)
		e.u(uint64(w.acted[i]))
		l := w.links[i]
		e.f(l.up)
		e.f(l.bound)
		e.u(l.gen)
		e.u(uint64(l.used))
	}
	for _, sl := range w.slots {
		e.s(sl.Call)
		e.u(sl.Version)
		e.f(sl.Active)
	}
	e.u(uint64(len(w.parked)))
	for _, p := range w.parked {
		e.u(uint64(p.dev))
		e.u(uint64(p.op))
		e.s(p.join)
	}
	e.u(uint64(len(w.msgs)))
	for _, m := range w.msgs {
		e.msg(m)
		e.f(m.dup)
	}
	return e.buf
}

func (b *bfs) decode(buf []byte) *world {
	d := &decoder{b: b, buf: buf}
	w := &world{now: d.i(), dups: int(d.u())}
	r := NewRoom("k1")
	r.Phase = Phase(d.u())
	r.Conv, r.Caller, r.Members = d.s(), d.s(), d.ss()
	r.Created, r.Ended, r.EndReason, r.Version = d.i(), d.i(), d.s(), d.u()
	n := int(d.u())
	for range n {
		p := &Part{User: d.s(), State: State(d.u()), Device: d.s(), Session: d.s(), Join: d.s(), CallerJoin: d.f(), Muted: d.f(),
			Deadline: d.i(), CutAt: d.i(), LinkGen: d.u(), Claim: d.u(), OldJoins: d.ss(), Reason: d.s(), Refused: d.s(), Entered: d.f()}
		nr := int(d.u())
		for range nr {
			p.Refusals = append(p.Refusals, Refusal{Join: d.s(), Code: d.s()})
		}
		r.Parts = append(r.Parts, p)
	}
	w.room = r
	for i := range b.devID {
		dv := &Device{User: b.user(i), ID: b.devID[i], State: State(d.u()), Call: d.s(), Join: d.s(), Conv: d.s(), Caller: d.f(), Muted: d.f()}
		nr := int(d.u())
		for range nr {
			dv.Ringing = append(dv.Ringing, Invitation{Call: d.s(), Conv: d.s(), Caller: d.s(), Expires: d.i()})
		}
		dv.GoneCalls, dv.GoneJoins = d.ss(), d.ss()
		w.devs = append(w.devs, dv)
		w.acted = append(w.acted, uint8(d.u()))
		w.links = append(w.links, linkEnv{up: d.f(), bound: d.f(), gen: d.u(), used: int(d.u())})
	}
	for range b.cfg.users {
		w.slots = append(w.slots, Slot{Call: d.s(), Version: d.u(), Active: d.f()})
	}
	np := int(d.u())
	for range np {
		w.parked = append(w.parked, parked{dev: int(d.u()), op: Op(d.u()), join: d.s()})
	}
	nm := int(d.u())
	for range nm {
		m := d.msg()
		m.dup = d.f()
		m.key = b.msgKey(m)
		w.msgs = append(w.msgs, m)
	}
	return w
}

// describe renders a message for paths and dumps.
func (b *bfs) describe(m msg) string {
	switch m.kind {
	case mReq:
		return fmt.Sprintf("request %s from %s (call=%s join=%s)", m.out.Op, b.devID[m.dev], m.out.Call, m.out.Join)
	case mRep:
		res := "ok"
		if m.rep.Err != nil {
			res = m.rep.Err.Code
		}
		if m.rep.Duplicate {
			res += " (dup)"
		}
		return fmt.Sprintf("reply %s to %s: %s (join=%s)", m.rep.Op, b.devID[m.dev], res, m.rep.Join)
	case mInv:
		return fmt.Sprintf("invitation to %s", b.devID[m.dev])
	case mStop:
		return fmt.Sprintf("ring-stopped to %s: %s (device %s)", b.devID[m.dev], m.str, m.str2)
	case mEnded:
		return fmt.Sprintf("ended to %s: join=%s %s", b.devID[m.dev], m.str, m.str2)
	case mClaim:
		if m.clm.Release {
			return fmt.Sprintf("release %s v%d", m.clm.User, m.clm.Version)
		}
		return fmt.Sprintf("claim %s v%d", m.clm.User, m.clm.Version)
	case mRing:
		if m.ring.Invite {
			return fmt.Sprintf("ring %s", m.ring.User)
		}
		return fmt.Sprintf("stop ringing %s: %s (device %s)", m.ring.User, m.ring.Reason, m.ring.Device)
	case mLink:
		return fmt.Sprintf("link %s up=%v gen=%d", m.link.Session, m.link.Linked, m.link.Gen)
	}
	return "?"
}

func (b *bfs) dump(w *world) string {
	var s strings.Builder
	fmt.Fprintf(&s, "now=%d\n%s", w.now, w.room.String(b.lim))
	for i, d := range w.devs {
		fmt.Fprintf(&s, "device %s (%s): %s  link=%+v\n", d.ID, b.user(i), strings.TrimSpace(d.String()), w.links[i])
	}
	fmt.Fprintf(&s, "slots %+v parked %v\n", w.slots, w.parked)
	for _, m := range w.msgs {
		fmt.Fprintf(&s, "in flight: %s%s\n", b.describe(m), dupFlag(m))
	}
	return s.String()
}

var _ = pb.CodeBusy
