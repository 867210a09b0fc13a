package replication

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// sysPrefix starts every key this package writes. Shards are 0..63, so no
// state key starts with it.
const sysPrefix = 0xF0

// Key suffixes under sysPrefix|shard.
const (
	subEntry   = 'e' // + index (8 bytes BE): pb.Entry
	subHard    = 'h' // pb.HardState
	subConf    = 'c' // pb.ConfState as applied
	subApplied = 'a' // applied index (8 bytes BE)
	subFence   = 'f' // + entity: fence record (epoch, version)
	subTrunc   = 't' // truncation: last dropped index and its term (16 bytes)
)

func sysKey(shard uint8, sub byte) []byte { return []byte{sysPrefix, shard, sub} }

func entryKey(shard uint8, index uint64) []byte {
	k := make([]byte, 3, 11)
	k[0], k[1], k[2] = sysPrefix, shard, subEntry
	return binary.BigEndian.AppendUint64(k, index)
}

// logStore is one group's raft log and hard state in Pebble; it implements
// raft.Storage. The log starts at index 1 and is cut from the front by
// truncate commands (truncate.go) and added nodes (members.go); a replica
// below the cut gets a snapshot (snapshot.go). Only the engine's loop
// goroutine uses it (raft calls it from RawNode methods), so it takes no
// lock.
type logStore struct {
	db    *pebble.DB
	shard uint8

	// hard is the hard state found at open: raft reads it once, through
	// InitialState, when the RawNode is made.
	hard      *pb.HardState
	conf      *pb.ConfState
	lastIndex uint64
	lastTerm  uint64
	// first is the first index in the log; truncTerm is the term of the
	// entry before it (dropped by a truncation; 0 if first is 1).
	first     uint64
	truncTerm uint64
	// cut is a truncation staged in the current apply batch.
	cut *truncation
	// offer makes a snapshot of the group's state (snapshot.go).
	offer func() (*pb.Snapshot, error)
	// tail holds the last persisted entries (at most tailMax, contiguous,
	// ending at lastIndex): raft reads them back to apply and to send to
	// followers, and Pebble may have flushed them to disk by then.
	tail []*pb.Entry
}

// tailMax bounds the entries a group keeps in memory.
const tailMax = 512

// openLogStore loads the group's log bounds and hard state; a group with no
// stored membership starts with voters as its members.
func openLogStore(db *pebble.DB, shard uint8, voters []uint64) (*logStore, error) {
	s := &logStore{db: db, shard: shard, hard: &pb.HardState{}, conf: &pb.ConfState{Voters: voters}, first: 1}
	if v, err := get(db, sysKey(shard, subTrunc)); err != nil {
		return nil, err
	} else if v != nil {
		t, err := decodeTruncation(v)
		if err != nil {
			return nil, fmt.Errorf("replication: shard %d: %w", shard, err)
		}
		s.first, s.truncTerm = t.index+1, t.term
		s.lastIndex, s.lastTerm = t.index, t.term // unless entries follow
	}
	if v, err := get(db, sysKey(shard, subHard)); err != nil {
		return nil, err
	} else if v != nil {
		if err := proto.Unmarshal(v, s.hard); err != nil {
			return nil, fmt.Errorf("replication: shard %d hard state: %w", shard, err)
		}
	}
	if v, err := get(db, sysKey(shard, subConf)); err != nil {
		return nil, err
	} else if v != nil {
		s.conf = &pb.ConfState{}
		if err := proto.Unmarshal(v, s.conf); err != nil {
			return nil, fmt.Errorf("replication: shard %d conf state: %w", shard, err)
		}
	}
	last, err := s.loadLast()
	if err != nil {
		return nil, err
	}
	if last != nil {
		s.lastIndex, s.lastTerm = last.GetIndex(), last.GetTerm()
	}
	return s, nil
}

func (s *logStore) loadLast() (*pb.Entry, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: entryKey(s.shard, 0), UpperBound: entryKey(s.shard, ^uint64(0))})
	if err != nil {
		return nil, fmt.Errorf("replication: shard %d log: %w", s.shard, err)
	}
	defer it.Close()
	if !it.Last() {
		return nil, it.Error()
	}
	e := &pb.Entry{}
	if err := proto.Unmarshal(it.Value(), e); err != nil {
		return nil, fmt.Errorf("replication: shard %d last entry: %w", s.shard, err)
	}
	return e, nil
}

// InitialState implements raft.Storage.
func (s *logStore) InitialState() (*pb.HardState, *pb.ConfState, error) {
	return proto.CloneOf(s.hard), proto.CloneOf(s.conf), nil
}

// Entries implements raft.Storage.
func (s *logStore) Entries(lo, hi, maxSize uint64) ([]*pb.Entry, error) {
	last := s.lastIndex
	if lo < s.first {
		return nil, raft.ErrCompacted
	}
	if hi > last+1 {
		return nil, fmt.Errorf("replication: shard %d entries [%d,%d) past last index %d: %w", s.shard, lo, hi, last, raft.ErrUnavailable)
	}
	if out, ok := s.fromTail(lo, hi, maxSize); ok {
		return out, nil
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: entryKey(s.shard, lo), UpperBound: entryKey(s.shard, hi)})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []*pb.Entry
	var size uint64
	want := lo
	for ok := it.First(); ok; ok = it.Next() {
		e := &pb.Entry{}
		if err := proto.Unmarshal(it.Value(), e); err != nil {
			return nil, fmt.Errorf("replication: shard %d entry: %w", s.shard, err)
		}
		if e.GetIndex() != want {
			return nil, fmt.Errorf("replication: shard %d log hole at %d: %w", s.shard, want, raft.ErrUnavailable)
		}
		size += uint64(proto.Size(e))
		if len(out) > 0 && size > maxSize {
			break
		}
		out = append(out, e)
		want++
	}
	if len(out) == 0 {
		return nil, raft.ErrUnavailable
	}
	return out, it.Error()
}

// fromTail serves [lo, hi) from the in-memory tail if it holds lo.
func (s *logStore) fromTail(lo, hi, maxSize uint64) ([]*pb.Entry, bool) {
	if len(s.tail) == 0 || lo < s.tail[0].GetIndex() || hi > s.lastIndex+1 {
		return nil, false
	}
	first := s.tail[0].GetIndex()
	var out []*pb.Entry
	var size uint64
	for _, e := range s.tail[lo-first : hi-first] {
		size += uint64(proto.Size(e))
		if len(out) > 0 && size > maxSize {
			break
		}
		out = append(out, e)
	}
	return out, len(out) > 0
}

// Term implements raft.Storage.
func (s *logStore) Term(i uint64) (uint64, error) {
	last, lastTerm := s.lastIndex, s.lastTerm
	switch {
	case i == 0:
		return 0, nil
	case i == last:
		return lastTerm, nil
	case i > last:
		return 0, raft.ErrUnavailable
	case i == s.first-1:
		return s.truncTerm, nil
	case i < s.first:
		return 0, raft.ErrCompacted
	}
	if len(s.tail) > 0 && i >= s.tail[0].GetIndex() {
		return s.tail[i-s.tail[0].GetIndex()].GetTerm(), nil
	}
	v, err := get(s.db, entryKey(s.shard, i))
	if err != nil {
		return 0, err
	}
	if v == nil {
		return 0, raft.ErrUnavailable
	}
	e := &pb.Entry{}
	if err := proto.Unmarshal(v, e); err != nil {
		return 0, fmt.Errorf("replication: shard %d entry %d: %w", s.shard, i, err)
	}
	return e.GetTerm(), nil
}

// LastIndex implements raft.Storage.
func (s *logStore) LastIndex() (uint64, error) { return s.lastIndex, nil }

// FirstIndex implements raft.Storage.
func (s *logStore) FirstIndex() (uint64, error) { return s.first, nil }

// Snapshot implements raft.Storage. An untruncated log has the empty
// bootstrap snapshot carrying the initial membership; a truncated one
// offers the group's state at its applied index (snapshot.go), for a
// replica that lags below the cut (one whose disk was lost).
func (s *logStore) Snapshot() (*pb.Snapshot, error) {
	if s.first > 1 {
		if s.offer == nil {
			return nil, raft.ErrSnapshotTemporarilyUnavailable
		}
		return s.offer()
	}
	return &pb.Snapshot{Metadata: &pb.SnapshotMetadata{ConfState: proto.CloneOf(s.conf), Index: proto.Uint64(0), Term: proto.Uint64(0)}}, nil
}

// stage adds a Ready's entries and hard state to wb. Entries overwrite any
// conflicting suffix of the log, which is deleted.
func (s *logStore) stage(wb *pebble.Batch, rd *raft.Ready) error {
	if len(rd.Entries) > 0 {
		first, last := rd.Entries[0].GetIndex(), s.lastIndex
		for _, e := range rd.Entries {
			v, err := proto.Marshal(e)
			if err != nil {
				return err
			}
			if err := wb.Set(entryKey(s.shard, e.GetIndex()), v, nil); err != nil {
				return err
			}
		}
		newLast := rd.Entries[len(rd.Entries)-1].GetIndex()
		if newLast < last && first <= last {
			if err := wb.DeleteRange(entryKey(s.shard, newLast+1), entryKey(s.shard, last+1), nil); err != nil {
				return err
			}
		}
	}
	if rd.HardState != nil && !raft.IsEmptyHardState(rd.HardState) {
		v, err := proto.Marshal(rd.HardState)
		if err != nil {
			return err
		}
		if err := wb.Set(sysKey(s.shard, subHard), v, nil); err != nil {
			return err
		}
	}
	return nil
}

// staged records what stage wrote, once the batch is committed.
func (s *logStore) staged(rd *raft.Ready) {
	if n := len(rd.Entries); n > 0 {
		s.lastIndex, s.lastTerm = rd.Entries[n-1].GetIndex(), rd.Entries[n-1].GetTerm()
		s.appendTail(rd.Entries)
	}
}

// appendTail adds newly persisted entries to the tail; entries that
// overwrite a conflicting suffix replace it.
func (s *logStore) appendTail(ents []*pb.Entry) {
	first := ents[0].GetIndex()
	if len(s.tail) > 0 {
		t0 := s.tail[0].GetIndex()
		switch {
		case first <= t0:
			s.tail = s.tail[:0]
		case first <= t0+uint64(len(s.tail)):
			s.tail = s.tail[:first-t0]
		default:
			s.tail = s.tail[:0] // a gap: cannot happen, but never serve one
		}
	}
	s.tail = append(s.tail, ents...)
	if n := len(s.tail); n > tailMax {
		s.tail = append([]*pb.Entry(nil), s.tail[n-tailMax/2:]...)
	}
}

// setConf records an applied membership change in wb.
func (s *logStore) setConf(wb *pebble.Batch, cs *pb.ConfState) error {
	v, err := proto.Marshal(cs)
	if err != nil {
		return err
	}
	s.conf = proto.CloneOf(cs)
	return wb.Set(sysKey(s.shard, subConf), v, nil)
}

// get returns a copy of key's value, or nil if it is missing.
func get(db *pebble.DB, key []byte) ([]byte, error) {
	v, closer, err := db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("replication: get %x: %w", key, err)
	}
	out := append([]byte(nil), v...)
	closer.Close()
	return out, nil
}
