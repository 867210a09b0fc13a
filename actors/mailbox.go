package actors

import (
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
)

// stopSafe wraps the mailboxes of grains so that a request that reached a
// grain's mailbox after the grain decided to stop (behind its poison pill,
// before it left the process registry) is answered as a dead letter, like
// a request sent a moment later. protoactor drops user messages left in a
// stopped actor's mailbox: the caller would wait for its whole request
// timeout and fail. Answered, it retries at once and re-activates the
// grain. Grains stop when idle (see idler), so this window is hit in
// normal operation, not only on errors.
func stopSafe(p actor.MailboxProducer) actor.MailboxProducer {
	return func() actor.Mailbox { return &stopSafeMailbox{Mailbox: p()} }
}

type stopSafeMailbox struct{ actor.Mailbox }

func (m *stopSafeMailbox) RegisterHandlers(inv actor.MessageInvoker, d actor.Dispatcher) {
	m.Mailbox.RegisterHandlers(&stopSafeInvoker{MessageInvoker: inv}, workerDispatcher{d})
}

// actorRef is what the invoker (protoactor's actor context) tells about
// its actor.
type actorRef interface {
	ActorSystem() *actor.ActorSystem
	Self() *actor.PID
}

type stopSafeInvoker struct {
	actor.MessageInvoker
	stopped atomic.Bool
}

func (i *stopSafeInvoker) InvokeSystemMessage(m any) {
	i.MessageInvoker.InvokeSystemMessage(m)
	if _, ok := m.(*actor.Stop); ok {
		// A grain has no children: the Stop made it leave the registry.
		i.stopped.Store(true)
	}
}

func (i *stopSafeInvoker) InvokeUserMessage(m any) {
	if !i.stopped.Load() {
		i.MessageInvoker.InvokeUserMessage(m)
		return
	}
	if a, ok := i.MessageInvoker.(actorRef); ok {
		a.ActorSystem().DeadLetter.SendUserMessage(a.Self(), m)
	}
}
