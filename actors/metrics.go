package actors

import "sync/atomic"

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
}

// NewMetrics returns zeroed metrics.
func NewMetrics() *Metrics { return &Metrics{} }
