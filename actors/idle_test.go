package actors

import (
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/asynkron/protoactor-go/cluster"
)

// grainCtx lets a plain actor drive an idler (which takes a GrainContext).
type grainCtx struct{ actor.Context }

func (grainCtx) Identity() string          { return "test" }
func (grainCtx) Kind() string              { return "Test" }
func (grainCtx) Cluster() *cluster.Cluster { return nil }

// TestIdlerKeepChecksOnceAtItsEnd: a grain kept for a while gets its next
// idle check when the keep ends (not one every idle period), then stops;
// a grain not kept stops one idle period after its last request.
func TestIdlerKeepChecksOnceAtItsEnd(t *testing.T) {
	const after, keepFor = 20 * time.Millisecond, 400 * time.Millisecond
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) }))
	defer sys.Shutdown()
	w := newIdleWheel(sys.Root, after, time.Second)
	defer w.close()

	run := func(keep bool) (checks int64, lived time.Duration) {
		var n atomic.Int64
		stopped := make(chan time.Time, 1)
		var until time.Time
		start := time.Now()
		var i idler
		pid := sys.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
			switch c.Message().(type) {
			case *actor.Started:
				until = time.Now().Add(keepFor)
				i.start(grainCtx{c}, w)
			case idleCheck:
				n.Add(1)
				k := time.Duration(0)
				if keep {
					k = max(0, time.Until(until))
				}
				i.receive(grainCtx{c}, k)
			case *actor.Stopped:
				stopped <- time.Now()
			}
		}))
		defer sys.Root.Stop(pid)
		select {
		case at := <-stopped:
			return n.Load(), at.Sub(start)
		case <-time.After(5 * time.Second):
			t.Fatalf("keep=%v: not stopped after 5 s (%d checks)", keep, n.Load())
		}
		return 0, 0
	}

	checks, lived := run(true)
	// Checked every period, the kept grain would have had ~keepFor/after
	// (20) checks.
	if checks > 4 || lived < keepFor {
		t.Fatalf("kept grain: %d idle checks, stopped after %s (want <= 4 checks, >= %s)", checks, lived, keepFor)
	}
	if _, lived := run(false); lived >= keepFor {
		t.Fatalf("grain not kept stopped after %s, want about %s", lived, after)
	}
}
