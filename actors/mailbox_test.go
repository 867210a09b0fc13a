package actors

import (
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/asynkron/protoactor-go/actor"
)

// TestStopSafeAnswersRequestsLeftBehindThePill: a request that reaches an
// actor's mailbox after its poison pill gets a dead-letter answer at once
// (the caller retries on a new activation), not silence until its timeout.
func TestStopSafeAnswersRequestsLeftBehindThePill(t *testing.T) {
	for _, safe := range []bool{false, true} {
		sys := actor.NewActorSystem(actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return slog.New(slog.DiscardHandler) }))
		inside, proceed := make(chan struct{}), make(chan struct{})
		mb := actor.Unbounded()
		if safe {
			mb = stopSafe(mb)
		}
		pid := sys.Root.Spawn(actor.PropsFromFunc(func(c actor.Context) {
			if c.Message() == "idle" {
				c.Poison(c.Self()) // the pill is queued now
				close(inside)
				<-proceed // meanwhile a request is queued behind it
			}
		}, actor.WithMailbox(mb)))
		sys.Root.Send(pid, "idle")
		<-inside
		f := sys.Root.RequestFuture(pid, "request", 500*time.Millisecond)
		close(proceed)
		start := time.Now()
		_, err := f.Result()
		took := time.Since(start)
		switch {
		case safe && !errors.Is(err, actor.ErrDeadLetter):
			// A dead letter, not the future's timeout: answered at once.
			t.Fatalf("stopSafe: %v after %s, want a dead letter", err, took)
		case !safe && !errors.Is(err, actor.ErrTimeout):
			// Documents protoactor's behaviour that stopSafe exists for.
			t.Fatalf("plain mailbox: %v after %s, want a timeout", err, took)
		}
		sys.Shutdown()
	}
}
