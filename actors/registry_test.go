package actors

import (
	"log/slog"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// TestCompactRegistryKeepsProcesses: after compactRegistry the system has
// one bucket, the processes registered before it still resolve, and actors
// spawned, asked and stopped afterwards behave as before (their futures
// register and unregister in the one map).
func TestCompactRegistryKeepsProcesses(t *testing.T) {
	sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) }))
	before := sys.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if s, ok := c.Message().(string); ok {
			c.Respond("before:" + s)
		}
	}))
	compactRegistry(sys)
	if n := len(sys.ProcessRegistry.LocalPIDs.LocalPIDs); n != 1 {
		t.Fatalf("%d buckets after compaction, want 1", n)
	}
	if _, ok := sys.ProcessRegistry.GetLocal(before.Id); !ok {
		t.Fatalf("actor spawned before the compaction is gone from the registry")
	}
	after := sys.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
		if s, ok := c.Message().(string); ok {
			c.Respond("after:" + s)
		}
	}))
	for i, pid := range []*actor.PID{before, after} {
		for range 100 {
			res, err := sys.Root.RequestFuture(pid, "x", time.Second).Result()
			if err != nil {
				t.Fatalf("actor %d: %v", i, err)
			}
			if want := []string{"before:x", "after:x"}[i]; res != want {
				t.Fatalf("actor %d answered %v, want %s", i, res, want)
			}
		}
	}
	if err := sys.Root.StopFuture(after).Wait(); err != nil {
		t.Fatal(err)
	}
	if _, ok := sys.ProcessRegistry.GetLocal(after.Id); ok {
		t.Fatalf("stopped actor still registered")
	}
	// Futures unregister themselves: only the system's own processes and
	// the one live actor remain.
	if n := sys.ProcessRegistry.LocalPIDs.LocalPIDs[0].Count(); n > 5 {
		t.Fatalf("%d processes registered after 200 finished requests, want the few live ones", n)
	}
}
