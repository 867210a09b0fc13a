package actors

import (
	"sync/atomic"

	"github.com/asynkron/protoactor-go/actor"
)

// Metrics are the grains' counters, exposed as data; the gateway registers
// them with Prometheus.
type Metrics struct {
	// Commits counts synced commits of conversation batches.
	Commits atomic.Int64
	// CommittedMessages counts log entries made durable.
	CommittedMessages atomic.Int64
	// Deliveries counts frames handed to the hub (one per message per node).
	Deliveries atomic.Int64
	// StorageErrors counts failed commits.
	StorageErrors atomic.Int64
	// OutboxRetries counts retried cross-grain notifications.
	OutboxRetries atomic.Int64
	// P2SP: bytes downloaders reported from peers, downloads reported
	// complete, whole-file check failures, bad-piece reports, banned
	// holders.
	P2SPPeerBytes atomic.Int64
	P2SPDownloads atomic.Int64
	P2SPFailures  atomic.Int64
	P2SPReports   atomic.Int64
	P2SPBans      atomic.Int64
	// MailboxDepth is the number of messages waiting in the mailboxes of
	// all grains of a kind, by kind name.
	MailboxDepth map[string]*atomic.Int64
	// Activations counts the grains of a kind started on this node (a
	// passivated grain's next request starts it again), by kind name.
	Activations map[string]*atomic.Int64
	// CallsStarted and CallsEnded count calls; CallRequestsDropped counts
	// call requests that did not fit the call's state (early or stale),
	// answered with call_state and otherwise ignored.
	CallsStarted        atomic.Int64
	CallsEnded          atomic.Int64
	CallRequestsDropped atomic.Int64
	// ResumeListRereads counts rebuilds whose conversation list was read
	// a second time: a membership change reached the session between the
	// first read and its Resume (see Node.ResumeSession).
	ResumeListRereads atomic.Int64
}

// depthCounter is a mailbox middleware keeping a kind's queued-message
// count and counting its grains' starts.
type depthCounter struct{ n, started *atomic.Int64 }

func (d depthCounter) MailboxStarted()     { d.started.Add(1) }
func (d depthCounter) MessagePosted(any)   { d.n.Add(1) }
func (d depthCounter) MessageReceived(any) { d.n.Add(-1) }
func (d depthCounter) MailboxEmpty()       {}

// mailbox returns the props option counting the depth of kind's mailboxes
// (and answering the requests a stopped grain left unread, see stopSafe).
func (m *Metrics) mailbox(kind string) actor.PropsOption {
	return actor.WithMailbox(stopSafe(actor.Unbounded(depthCounter{m.MailboxDepth[kind], m.Activations[kind]})))
}

// NewMetrics returns zeroed metrics.
func NewMetrics() *Metrics {
	m := &Metrics{MailboxDepth: map[string]*atomic.Int64{}, Activations: map[string]*atomic.Int64{}}
	for _, k := range []string{KindUsername, KindUser, KindSession, KindConversation, KindUpload, KindFile, KindChannel, KindCall} {
		m.MailboxDepth[k], m.Activations[k] = new(atomic.Int64), new(atomic.Int64)
	}
	return m
}
