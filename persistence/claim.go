package persistence

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrClaimLost reports a write of an entity whose activation on this node
// lost its claim: a newer activation claimed it, or a write's outcome is
// unknown. The grain must stop; its next activation claims again.
var ErrClaimLost = errors.New("persistence: activation lost its claim on the entity")

// claim is one entity's activation on this node: the fence its writes carry.
// A grain may commit from more than one goroutine (its outbox cleanup runs
// beside its own commits), so write serializes the entity's writes: each
// must name the version the previous one left.
type claim struct {
	write          sync.Mutex
	epoch, version uint64 // guarded by write
	lost           bool   // guarded by write
}

// entityKey names the entity a batch of (kind, id) belongs to: its family
// and id, as every key of the entity shares them.
func entityKey(kind Kind, id string) []byte {
	return EntityPrefix(kindFamily(kind), id)[1:]
}

// Claim is called by a grain as it activates, before it reads its state.
// In cluster mode it makes this activation the entity's only writer (an
// older one elsewhere gets ErrClaimLost on its next write) and brings this
// node's copy of the shard up to date, so the reads that follow see every
// acknowledged write. A single-node store does nothing: one process never
// runs two activations of a grain.
func (s *Store) Claim(kind Kind, id string) error {
	if s.repl == nil {
		return nil
	}
	ent := entityKey(kind, id)
	ctx, cancel := context.WithTimeout(context.Background(), s.replTimeout)
	defer cancel()
	epoch, version, err := s.repl.Claim(ctx, uint8(ShardOf(kind, id)), ent)
	if err != nil {
		return fmt.Errorf("persistence: claim %c/%s: %w", kind, id, err)
	}
	s.claimsMu.Lock()
	if s.claims == nil {
		s.claims = make(map[string]*claim)
	}
	s.claims[string(ent)] = &claim{epoch: epoch, version: version}
	s.claimsMu.Unlock()
	return nil
}

// Fresh makes the reads that follow see every write of entity (kind, id)'s
// shard acknowledged before the call, on any node (cluster mode: a raft
// read barrier; a single node is always fresh). For reads of another
// grain's records outside that grain, such as a token check.
func (s *Store) Fresh(kind Kind, id string) error {
	if s.repl == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.replTimeout)
	defer cancel()
	if err := s.repl.ReadBarrier(ctx, uint8(ShardOf(kind, id))); err != nil {
		return fmt.Errorf("persistence: read barrier %c/%s: %w", kind, id, err)
	}
	return nil
}

// FreshAll is Fresh for every shard at once (cluster mode; a single node
// is always fresh): the reads that follow see every write acknowledged
// before the call.
func (s *Store) FreshAll() error {
	if s.repl == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.replTimeout)
	defer cancel()
	errs := make(chan error, NumShards)
	for shard := range NumShards {
		go func() { errs <- s.repl.ReadBarrier(ctx, uint8(shard)) }()
	}
	var first error
	for range NumShards {
		if err := <-errs; err != nil && first == nil {
			first = fmt.Errorf("persistence: read barrier: %w", err)
		}
	}
	return first
}

// Current returns nil while this node's activation of (kind, id) still
// holds its claim, checked against the shard's log as of the call (cluster
// mode: a read barrier, then the entity's epoch; a single node always
// holds it), and ErrClaimLost once a newer activation elsewhere claimed
// it. Fencing stops a stale activation's writes, not its reads: a grain
// answering from what it holds in memory (a conversation's last seq)
// calls this first, or a client could be told a stale head and miss the
// messages after it.
func (s *Store) Current(kind Kind, id string) error {
	if s.repl == nil {
		return nil
	}
	c := s.fenceFor(kind, id)
	if c == nil {
		return fmt.Errorf("%w: %c/%s is not claimed here", ErrClaimLost, kind, id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.replTimeout)
	defer cancel()
	epoch, err := s.repl.Epoch(ctx, uint8(ShardOf(kind, id)), entityKey(kind, id))
	if err != nil {
		return fmt.Errorf("persistence: claim check %c/%s: %w", kind, id, err)
	}
	if epoch != c.epoch { // c.epoch never changes after Claim
		return fmt.Errorf("%w: %c/%s is at epoch %d, this activation holds %d", ErrClaimLost, kind, id, epoch, c.epoch)
	}
	return nil
}

// Replicated reports whether commits go through replica groups (cluster).
func (s *Store) Replicated() bool { return s.repl != nil }

// Release forgets this node's claim on an entity whose grain stopped.
func (s *Store) Release(kind Kind, id string) {
	if s.repl == nil {
		return
	}
	s.claimsMu.Lock()
	delete(s.claims, string(entityKey(kind, id)))
	s.claimsMu.Unlock()
}

// fenceFor returns the claim a batch of (kind, id) must carry (nil: the
// entity is not claimed on this node; its write goes unfenced).
func (s *Store) fenceFor(kind Kind, id string) *claim {
	if s.repl == nil {
		return nil
	}
	s.claimsMu.Lock()
	defer s.claimsMu.Unlock()
	return s.claims[string(entityKey(kind, id))]
}
