package persistence

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// ErrNotFound is returned by Get for a missing key.
var ErrNotFound = errors.New("persistence: not found")

// ErrLayout reports a data directory written with another key layout.
var ErrLayout = errors.New("persistence: incompatible data directory")

// ErrCrossShard reports a batch write outside the batch's shard.
var ErrCrossShard = errors.New("persistence: write outside the batch's shard")

// Options configure a Store.
type Options struct {
	// Dir is the data directory. Required.
	Dir string
	// FS is the filesystem; nil means the OS filesystem. Tests pass
	// vfs.NewCrashableMem() to simulate crashes.
	FS vfs.FS
	// Logger receives Pebble's log; nil means slog.Default().
	Logger *slog.Logger
	// NoSync turns synced commits into unsynced ones. Only the benchmarks use
	// it, to measure what durability costs. Never set it in production.
	NoSync bool
	// CacheSize is Pebble's block cache in bytes; 0 means 64 MiB.
	CacheSize int64
}

// Replicator commits batches through the replica group of their shard; it
// is set in cluster mode (persistence/replication implements it).
type Replicator interface {
	// Claim makes this node's new activation of entity the only one that
	// may write it (see Batch.Fence) and returns the epoch and version its
	// writes must carry. It goes through the shard's log, so once it
	// returns this node has applied every earlier write of the shard.
	Claim(ctx context.Context, shard uint8, entity []byte) (epoch, version uint64, err error)
	// ReadBarrier returns once this node has applied every write of shard
	// committed before the call (raft ReadIndex).
	ReadBarrier(ctx context.Context, shard uint8) error
	// Epoch returns entity's claim epoch as of a read barrier on shard:
	// every claim committed before the call counts.
	Epoch(ctx context.Context, shard uint8, entity []byte) (uint64, error)
	// Write commits repr, a Pebble batch of shard's keys, on a majority of
	// the shard's replicas and applies it to this node's store before it
	// returns. A non-empty entity fences the write (see Batch.Fence).
	Write(ctx context.Context, shard uint8, entity []byte, epoch, version uint64, repr []byte) error
}

// Store is the durable key-value store behind every actor.
type Store struct {
	db     *pebble.DB
	noSync bool
	// repl, when set, replaces local commits by replicated ones.
	repl        Replicator
	replTimeout time.Duration
	// claims are this node's activations of entities (cluster mode only),
	// by entityKey; their fence goes on every batch of the entity.
	claimsMu sync.Mutex
	claims   map[string]*claim
	// SyncLatency observes the duration of every synced commit, in seconds.
	syncObserver atomic.Pointer[func(time.Duration)]
}

// bloomFilters gives every table a bloom filter (see Open); the Get
// benchmark turns it off to compare.
var bloomFilters = true

// Open opens (creating if needed) the store in opts.Dir.
func Open(opts Options) (*Store, error) {
	if opts.Dir == "" {
		return nil, errors.New("persistence: Options.Dir is empty")
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	cacheSize := opts.CacheSize
	if cacheSize == 0 {
		cacheSize = 64 << 20
	}
	cache := pebble.NewCache(cacheSize)
	defer cache.Unref()
	po := &pebble.Options{
		FS:                 opts.FS,
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{logger.With("component", "pebble")},
		Cache:              cache,
	}
	if bloomFilters {
		// Point reads (a user's record at every login and rebuild, a
		// session's or a grain's state at activation) then skip the
		// tables that do not hold the key after a filter probe, instead
		// of a seek in each one's index and data blocks. Scans do not use
		// them. 10 bits per key: ~1 % false positives (as CockroachDB).
		for i := range po.Levels {
			po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		}
	}
	db, err := pebble.Open(opts.Dir, po)
	if err != nil {
		return nil, fmt.Errorf("persistence: open %s: %w", opts.Dir, err)
	}
	s := &Store{db: db, noSync: opts.NoSync}
	if err := s.checkLayout(); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

var metaKey = EncodeKey(KindMeta, "layout", nil)

// checkLayout writes the layout header of a new directory or verifies it.
func (s *Store) checkLayout() error {
	v, err := s.Get(metaKey)
	if errors.Is(err, ErrNotFound) {
		// No header: only an empty directory may be adopted.
		empty := true
		if err := s.Scan(nil, nil, 1, func(_, _ []byte) bool { empty = false; return false }); err != nil {
			return err
		}
		if !empty {
			return fmt.Errorf("%w: data without a layout header", ErrLayout)
		}
		b := s.NewBatch(KindMeta, "layout")
		var hdr [8]byte
		binary.BigEndian.PutUint32(hdr[:4], LayoutVersion)
		binary.BigEndian.PutUint32(hdr[4:], NumShards)
		b.Set(metaKey, hdr[:])
		return b.Commit()
	}
	if err != nil {
		return err
	}
	if len(v) != 8 || binary.BigEndian.Uint32(v[:4]) != LayoutVersion || binary.BigEndian.Uint32(v[4:]) != NumShards {
		return fmt.Errorf("%w: header %x, this build writes layout %d with %d shards", ErrLayout, v, LayoutVersion, NumShards)
	}
	return nil
}

// Pebble returns the underlying database. Only the replication layer
// (persistence/replication) uses it: it keeps raft logs in a key range no
// shard uses and applies committed batches. Actors go through the Store.
func (s *Store) Pebble() *pebble.DB { return s.db }

// SetReplicator makes every later commit go through r, each bounded by
// timeout. Set it before the store is used.
func (s *Store) SetReplicator(r Replicator, timeout time.Duration) {
	s.repl, s.replTimeout = r, timeout
}

// OnSync installs a function called with the duration of every synced
// commit (in cluster mode: of every replicated commit, from proposal to
// applied here).
func (s *Store) OnSync(f func(time.Duration)) { s.syncObserver.Store(&f) }

// Close closes the store.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("persistence: close: %w", err)
	}
	return nil
}

// Get returns a copy of the value at key, or ErrNotFound.
func (s *Store) Get(key []byte) ([]byte, error) {
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("persistence: get: %w", err)
	}
	out := append([]byte(nil), v...)
	closer.Close()
	return out, nil
}

// Scan calls fn for each key in [lower, upper) in order, at most limit keys
// (limit <= 0: no limit). fn's arguments are only valid during the call.
// Returning false from fn stops the scan.
func (s *Store) Scan(lower, upper []byte, limit int, fn func(k, v []byte) bool) error {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("persistence: scan: %w", err)
	}
	n := 0
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return fmt.Errorf("persistence: scan value: %w", err)
		}
		if !fn(it.Key(), v) {
			break
		}
		n++
		if limit > 0 && n >= limit {
			break
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("persistence: scan: %w", err)
	}
	return nil
}

// Last returns the greatest key and its value in [lower, upper), or
// ErrNotFound.
func (s *Store) Last(lower, upper []byte) (k, v []byte, err error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, nil, fmt.Errorf("persistence: last: %w", err)
	}
	defer it.Close()
	if !it.Last() {
		if err := it.Error(); err != nil {
			return nil, nil, fmt.Errorf("persistence: last: %w", err)
		}
		return nil, nil, ErrNotFound
	}
	val, err := it.ValueAndErr()
	if err != nil {
		return nil, nil, fmt.Errorf("persistence: last: %w", err)
	}
	return append([]byte(nil), it.Key()...), append([]byte(nil), val...), nil
}

// Checksum returns a SHA-256 over every key and value of the shards, in
// order (not the replication layer's raft logs, which sort after them).
// Tests use it to prove that rejected input changed nothing, and that
// replicas agree.
func (s *Store) Checksum() ([32]byte, error) {
	h := sha256.New()
	var lenBuf [8]byte
	err := s.Scan(nil, []byte{NumShards}, 0, func(k, v []byte) bool {
		binary.BigEndian.PutUint32(lenBuf[:4], uint32(len(k)))
		binary.BigEndian.PutUint32(lenBuf[4:], uint32(len(v)))
		h.Write(lenBuf[:])
		h.Write(k)
		h.Write(v)
		return true
	})
	var sum [32]byte
	copy(sum[:], h.Sum(nil))
	return sum, err
}

// Checkpoint writes a consistent copy of the store to dir (which must not
// exist), for backups.
func (s *Store) Checkpoint(dir string) error {
	if err := s.db.Checkpoint(dir, pebble.WithFlushedWAL()); err != nil {
		return fmt.Errorf("persistence: checkpoint to %s: %w", dir, err)
	}
	return nil
}

// Batch is an atomic set of writes to one shard.
type Batch struct {
	s     *Store
	shard Shard
	b     *pebble.Batch
	err   error
	// kind, id name the entity the batch was made for: the fence's subject.
	kind           Kind
	id             string
	fenced         bool
	epoch, version uint64
}

// NewBatch starts a batch for the shard of entity (kind, id).
func (s *Store) NewBatch(kind Kind, id string) *Batch {
	return &Batch{s: s, shard: ShardOf(kind, id), b: s.db.NewBatch(), kind: kind, id: id}
}

// Fence makes a replicated commit conditional: it applies only if the
// batch's entity (its kind's family and id, as for Claim) was last claimed
// with epoch and has had version fenced writes since
// (replication.Engine.Claim). A single-node store ignores it.
func (b *Batch) Fence(epoch, version uint64) {
	b.fenced, b.epoch, b.version = true, epoch, version
}

// replicate commits the batch through the store's Replicator, fenced by
// the batch's own Fence or else by this node's claim on its entity.
func (b *Batch) replicate() error {
	var entity []byte
	epoch, version := b.epoch, b.version
	c := (*claim)(nil)
	if b.fenced {
		entity = entityKey(b.kind, b.id)
	} else if c = b.s.fenceFor(b.kind, b.id); c != nil {
		c.write.Lock()
		defer c.write.Unlock()
		if c.lost {
			return fmt.Errorf("%w: %c/%s", ErrClaimLost, b.kind, b.id)
		}
		epoch, version = c.epoch, c.version
		entity = entityKey(b.kind, b.id)
	}
	ctx, cancel := context.WithTimeout(context.Background(), b.s.replTimeout)
	defer cancel()
	start := time.Now()
	err := b.s.repl.Write(ctx, uint8(b.shard), entity, epoch, version, b.b.Repr())
	if f := b.s.syncObserver.Load(); f != nil && err == nil {
		// The durability wait of a replicated commit: a majority's log.
		(*f)(time.Since(start))
	}
	if c != nil {
		// A failed fenced write leaves the version unknown (fenced, or
		// an outcome lost with a leader): this activation is done.
		if err == nil {
			c.version++
		} else {
			c.lost = true
		}
	}
	if err != nil {
		if c != nil {
			err = fmt.Errorf("%w: %w", ErrClaimLost, err)
		}
		return fmt.Errorf("persistence: commit shard %d: %w", b.shard, err)
	}
	return nil
}

// Shard is the shard this batch writes to.
func (b *Batch) Shard() Shard { return b.shard }

// Len is the number of writes in the batch.
func (b *Batch) Len() int { return int(b.b.Count()) }

// Set writes key=value. A key of another shard poisons the batch: Commit
// then fails with ErrCrossShard.
func (b *Batch) Set(key, value []byte) {
	if !b.check(key) {
		return
	}
	if err := b.b.Set(key, value, nil); err != nil && b.err == nil {
		b.err = err
	}
}

// Delete removes key.
func (b *Batch) Delete(key []byte) {
	if !b.check(key) {
		return
	}
	if err := b.b.Delete(key, nil); err != nil && b.err == nil {
		b.err = err
	}
}

func (b *Batch) check(key []byte) bool {
	if len(key) == 0 || Shard(key[0]) != b.shard {
		if b.err == nil {
			b.err = fmt.Errorf("%w: key %x in batch of shard %d", ErrCrossShard, key, b.shard)
		}
		return false
	}
	return true
}

// Commit applies the batch atomically and syncs the WAL before returning.
// When it returns nil the writes survive a crash.
func (b *Batch) Commit() error {
	defer b.b.Close()
	if b.err != nil {
		return b.err
	}
	if b.s.repl != nil {
		return b.replicate()
	}
	opts := pebble.Sync
	if b.s.noSync {
		opts = pebble.NoSync
	}
	start := time.Now()
	if err := b.b.Commit(opts); err != nil {
		return fmt.Errorf("persistence: commit shard %d: %w", b.shard, err)
	}
	if f := b.s.syncObserver.Load(); f != nil {
		(*f)(time.Since(start))
	}
	return nil
}

// CommitUnsynced applies the batch atomically without syncing the WAL: the
// writes are visible at once but survive a crash only once a later synced
// commit (of any shard: they share the WAL) has returned. For data whose
// loss in a crash is harmless, so that writing it costs no fsync.
func (b *Batch) CommitUnsynced() error {
	defer b.b.Close()
	if b.err != nil {
		return b.err
	}
	if b.s.repl != nil {
		// The raft log is synced anyway; nothing to save.
		return b.replicate()
	}
	if err := b.b.Commit(pebble.NoSync); err != nil {
		return fmt.Errorf("persistence: commit shard %d: %w", b.shard, err)
	}
	return nil
}

// DeleteRange removes every key in [start, end); both must be in the
// batch's shard.
func (b *Batch) DeleteRange(start, end []byte) {
	if !b.check(start) || !b.check(end) {
		return
	}
	if err := b.b.DeleteRange(start, end, nil); err != nil && b.err == nil {
		b.err = err
	}
}

// Abort discards the batch.
func (b *Batch) Abort() { b.b.Close() }

// HasPrefix reports whether any key starts with p.
func (s *Store) HasPrefix(p []byte) (bool, error) {
	found := false
	err := s.Scan(p, PrefixEnd(p), 1, func(k, _ []byte) bool {
		found = bytes.HasPrefix(k, p)
		return false
	})
	return found, err
}

// pebbleLogger routes Pebble's logger to slog.
type pebbleLogger struct{ l *slog.Logger }

func (p pebbleLogger) Infof(format string, args ...any) {
	p.l.Debug(fmt.Sprintf(format, args...))
}
func (p pebbleLogger) Errorf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...))
}
func (p pebbleLogger) Fatalf(format string, args ...any) {
	p.l.Error(fmt.Sprintf(format, args...))
	panic(fmt.Sprintf(format, args...))
}
