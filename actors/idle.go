package actors

import (
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
)

// idleCheck is sent to a grain by the node's idle wheel (see idler).
type idleCheck struct{}

// idler passivates a grain that served no request for a while: the grain
// stops, and the next request re-activates it from its stored state.
// Grains whose state is stored records (User, Username, Session) use it,
// so that an online user does not keep them in memory between its rare
// requests (login, membership changes, profile lookups, session events).
//
// The node's idle wheel sends the grain an idleCheck, and the grain
// poisons itself if it is still idle, as the session grain does for cut
// sessions; protoactor's ReceiveTimeout is not used (it races in this
// version, issue #1139).
type idler struct {
	wheel *idleWheel // nil: never passivate
	last  time.Time  // when the grain last served a request
}

// start arms the first check; call it from Init.
func (i *idler) start(ctx cluster.GrainContext, w *idleWheel) {
	i.wheel = w
	i.touch()
	if w != nil {
		w.schedule(ctx.Self(), w.after)
	}
}

// touch records that the grain serves a request.
func (i *idler) touch() {
	if i.wheel != nil {
		i.last = time.Now()
	}
}

// receive handles an idleCheck (from ReceiveDefault): the grain stops if
// it has been idle for the whole period and keep is 0, else the check is
// re-armed for the end of the new period. keep is how much longer the
// grain must stay regardless of requests (a cut session's grace, or while
// it holds state that is not stored, such as a session's P2SP holdings).
// A kept grain is checked again when its keep ends, not every period: a
// storm of thousands of cut sessions otherwise costs one mailbox message
// per session per period (measured at ~4 % of the rebuild storm's CPU).
func (i *idler) receive(ctx cluster.GrainContext, keep time.Duration) {
	if _, ok := ctx.Message().(idleCheck); !ok || i.wheel == nil {
		return
	}
	if keep > 0 {
		i.touch()
		i.wheel.schedule(ctx.Self(), keep)
		return
	}
	if left := i.wheel.after - time.Since(i.last); left > 0 {
		i.wheel.schedule(ctx.Self(), left)
		return
	}
	ctx.Poison(ctx.Self())
}

// idleWheel delivers the idle checks of a node's grains: one goroutine
// ticking every after/4 over a ring of slots, instead of a runtime timer
// per activated grain (and a goroutine each time one fires). A grain is
// stopped between after and after+tick after its last request. The ring
// spans horizon (at least after); a later check is made at the horizon
// and re-armed from there.
type idleWheel struct {
	after time.Duration
	tick  time.Duration
	root  *actor.RootContext
	stop  chan struct{}

	mu    sync.Mutex
	pos   int
	slots [][]*actor.PID
}

func newIdleWheel(root *actor.RootContext, after, horizon time.Duration) *idleWheel {
	tick := max(after/4, 10*time.Millisecond)
	w := &idleWheel{after: after, tick: tick, root: root, stop: make(chan struct{}),
		slots: make([][]*actor.PID, int(max(after, horizon)/tick)+2)}
	go w.run()
	return w
}

// schedule sends pid an idleCheck in d, rounded up to a tick (at most the
// wheel's horizon).
func (w *idleWheel) schedule(pid *actor.PID, d time.Duration) {
	n := min(int((d+w.tick-1)/w.tick), len(w.slots)-1)
	w.mu.Lock()
	s := (w.pos + max(n, 1)) % len(w.slots)
	w.slots[s] = append(w.slots[s], pid)
	w.mu.Unlock()
}

func (w *idleWheel) run() {
	t := time.NewTicker(w.tick)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		w.mu.Lock()
		w.pos = (w.pos + 1) % len(w.slots)
		due := w.slots[w.pos]
		w.slots[w.pos] = nil
		w.mu.Unlock()
		for _, pid := range due {
			w.root.Send(pid, idleCheck{})
		}
	}
}

func (w *idleWheel) close() { close(w.stop) }
