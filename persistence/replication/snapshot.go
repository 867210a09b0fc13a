package replication

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"
)

// Snapshots. A replica whose log ends below its group's first index (a
// node that joins with an empty disk, or one that was behind when a node
// was added, members.go) catches up from a snapshot of the group's state:
//
//   - raft asks the leader's log store for one (logStore.Snapshot): the
//     leader pins a Pebble snapshot of the shard at its applied index and
//     sends, in raft's MsgSnap, only a reference to it (node, token);
//   - the follower's engine holds the MsgSnap back, fetches the pinned
//     state over the nodes' internal HTTP (GET /raft/snapshot/{token}:
//     the shard's keys and its fences), then steps the message into raft;
//   - when raft's Ready carries the snapshot, the follower replaces the
//     shard's state, fences and log with it in the synced log batch.
//
// A pinned snapshot lives snapshotTTL. A follower that never fetches
// leaves the leader waiting in raft's snapshot state; after
// snapshotGiveUpTicks the leader reports the snapshot failed and raft
// tries again with a new one.

const (
	snapshotTTL         = 5 * time.Minute
	snapshotGiveUpTicks = 600 // 30 s at the default tick
)

// pinned is one snapshot a leader offered: the Pebble snapshot of its
// store at the group's applied index.
type pinned struct {
	shard uint8
	snap  *pebble.Snapshot
	until time.Time
}

// snapshots holds the pinned snapshots of an engine; any goroutine.
type snapshots struct {
	mu sync.Mutex
	m  map[string]*pinned
}

func (s *snapshots) add(p *pinned) string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	token := hex.EncodeToString(b[:])
	s.mu.Lock()
	if s.m == nil {
		s.m = map[string]*pinned{}
	}
	s.m[token] = p
	s.mu.Unlock()
	return token
}

func (s *snapshots) get(token string) *pinned {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[token]
}

// expire releases the snapshots past their time (all of them if all).
func (s *snapshots) expire(now time.Time, all bool) {
	s.mu.Lock()
	var gone []*pinned
	for t, p := range s.m {
		if all || now.After(p.until) {
			gone = append(gone, p)
			delete(s.m, t)
		}
	}
	s.mu.Unlock()
	for _, p := range gone {
		_ = p.snap.Close()
	}
}

// snapshotRef is what a MsgSnap carries: where to fetch the state.
type snapshotRef struct {
	node  uint64
	token string
}

func (r snapshotRef) encode() []byte {
	return append(binary.BigEndian.AppendUint64(nil, r.node), r.token...)
}

func decodeSnapshotRef(b []byte) (snapshotRef, error) {
	if len(b) < 9 {
		return snapshotRef{}, fmt.Errorf("replication: snapshot reference of %d bytes", len(b))
	}
	return snapshotRef{node: binary.BigEndian.Uint64(b), token: string(b[8:])}, nil
}

// snapshot is the log store's Snapshot for a truncated log: the group's
// state at its applied index, pinned (loop goroutine).
func (e *Engine) snapshot(g *group) (*pb.Snapshot, error) {
	idx := g.applied
	term, err := g.st.Term(idx)
	if err != nil {
		return nil, err
	}
	token := e.snaps.add(&pinned{shard: g.shard, snap: e.opts.DB.NewSnapshot(), until: time.Now().Add(snapshotTTL)})
	e.log.Info("snapshot offered", "shard", g.shard, "index", idx)
	e.snapshotsOffered.Add(1)
	return &pb.Snapshot{
		Data:     snapshotRef{node: e.opts.ID, token: token}.encode(),
		Metadata: &pb.SnapshotMetadata{ConfState: proto.CloneOf(g.st.conf), Index: proto.Uint64(idx), Term: proto.Uint64(term)},
	}, nil
}

// snapshotRanges are the key ranges a shard's snapshot carries: its state
// and its fences.
func snapshotRanges(shard uint8) [][2][]byte {
	return [][2][]byte{
		{[]byte{shard}, []byte{shard + 1}},
		{sysKey(shard, subFence), sysKey(shard, subFence+1)},
	}
}

// SnapshotHandler serves GET /raft/snapshot/{token} on the internal HTTP:
// the pinned state as records (appendSnapshotRecord), then a zero byte.
func (e *Engine) SnapshotHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := e.snaps.get(r.PathValue("token"))
		if p == nil {
			http.Error(w, "no such snapshot (expired?)", http.StatusNotFound)
			return
		}
		bw := bufio.NewWriterSize(w, 64<<10)
		var hdr []byte
		for _, rg := range snapshotRanges(p.shard) {
			it, err := p.snap.NewIter(&pebble.IterOptions{LowerBound: rg[0], UpperBound: rg[1]})
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
			for ok := it.First(); ok; ok = it.Next() {
				v, err := it.ValueAndErr()
				if err != nil {
					it.Close()
					return // the cut stream fails the fetch
				}
				hdr = appendSnapshotRecord(hdr[:0], it.Key(), v)
				bw.Write(hdr)
			}
			if err := it.Close(); err != nil {
				return
			}
		}
		bw.Write([]byte{0}) // a zero-length key ends the stream
		bw.Flush()
	})
}

// appendSnapshotRecord appends one key and value in the stream format:
// uvarint length, key, uvarint length, value.
func appendSnapshotRecord(buf, k, v []byte) []byte {
	buf = binary.AppendUvarint(buf, uint64(len(k)))
	buf = append(buf, k...)
	buf = binary.AppendUvarint(buf, uint64(len(v)))
	return append(buf, v...)
}

// fetched is a follower's copy of a snapshot's state, ready to install.
type fetched struct {
	shard uint8
	msg   *pb.Message
	data  *pebble.Batch // nil: the fetch failed
}

// fetchSnapshot starts fetching the state a MsgSnap refers to (once per
// group at a time); the message is stepped when the state is here.
func (e *Engine) fetchSnapshot(g *group, m *pb.Message) {
	if g.fetching {
		return // the leader sends it again if this fetch fails
	}
	if m.GetSnapshot().GetMetadata().GetIndex() <= g.applied {
		// Stale: raft restores no snapshot at or below its commit index,
		// it only answers with its own, so the leader moves on at once.
		_ = g.rn.Step(m)
		return
	}
	ref, err := decodeSnapshotRef(m.GetSnapshot().GetData())
	if err != nil || e.opts.Internal == nil {
		e.log.Warn("snapshot cannot be fetched", "shard", g.shard, "err", err)
		return
	}
	g.fetching = true
	go func() {
		data, err := e.download(ref, g.shard)
		if err != nil {
			e.log.Warn("snapshot fetch failed", "shard", g.shard, "from", ref.node, "err", err)
		}
		e.mu.Lock()
		e.installs = append(e.installs, fetched{shard: g.shard, msg: m, data: data})
		e.mu.Unlock()
		e.signal()
	}()
}

// download reads a snapshot stream into a batch of Sets of shard's keys.
func (e *Engine) download(ref snapshotRef, shard uint8) (*pebble.Batch, error) {
	ctx, cancel := context.WithTimeout(context.Background(), snapshotTTL)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("https://node-%d/raft/snapshot/%s", ref.node, ref.token), nil)
	if err != nil {
		return nil, err
	}
	res, err := e.opts.Internal.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("node %d: %s", ref.node, res.Status)
	}
	b := e.opts.DB.NewBatch()
	if err := readSnapshotStream(bufio.NewReaderSize(res.Body, 64<<10), shard, b); err != nil {
		b.Close()
		return nil, err
	}
	return b, nil
}

// maxSnapshotRecord bounds one key or value of a snapshot stream (Pebble
// values of a shard are far smaller).
const maxSnapshotRecord = 64 << 20

// readSnapshotStream reads a snapshot stream of shard (SnapshotHandler's
// format) into b as Sets. A key outside the shard's ranges, a record over
// maxSnapshotRecord or a stream cut before its end is an error.
func readSnapshotStream(br *bufio.Reader, shard uint8, b *pebble.Batch) error {
	read := func() ([]byte, error) {
		n, err := binary.ReadUvarint(br)
		if err != nil {
			return nil, err
		}
		if n > maxSnapshotRecord {
			return nil, fmt.Errorf("record of %d bytes", n)
		}
		// Grown as bytes arrive: a bad length cannot allocate them at once.
		var buf bytes.Buffer
		if _, err := io.CopyN(&buf, br, int64(n)); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	}
	ranges := snapshotRanges(shard)
	for {
		k, err := read()
		if err != nil {
			return fmt.Errorf("snapshot stream: %w", err)
		}
		if len(k) == 0 {
			return nil
		}
		in := false
		for _, rg := range ranges {
			in = in || string(k) >= string(rg[0]) && string(k) < string(rg[1])
		}
		if !in {
			return fmt.Errorf("snapshot stream: key %x outside shard %d", k, shard)
		}
		v, err := read()
		if err != nil {
			return fmt.Errorf("snapshot stream: value of %x: %w", k, err)
		}
		if err := b.Set(k, v, nil); err != nil {
			return err
		}
	}
}

// install steps a fetched snapshot's MsgSnap into raft; its state goes to
// disk when raft's Ready carries the snapshot (loop goroutine).
func (e *Engine) install(f fetched) {
	g := e.groups[f.shard]
	g.fetching = false
	if f.data == nil {
		return
	}
	if g.snapData != nil {
		g.snapData.Close()
	}
	g.snapData = f.data
	_ = g.rn.Step(f.msg)
}

// stageSnapshot replaces the shard's state, fences and log in wb by the
// snapshot's (from data, the fetched state). Loop goroutine.
func (g *group) stageSnapshot(wb *pebble.Batch, snap *pb.Snapshot) error {
	if g.snapData == nil {
		return fmt.Errorf("replication: shard %d: raft restored a snapshot whose state was not fetched", g.shard)
	}
	idx, term := snap.GetMetadata().GetIndex(), snap.GetMetadata().GetTerm()
	for _, rg := range snapshotRanges(g.shard) {
		if err := wb.DeleteRange(rg[0], rg[1], nil); err != nil {
			return err
		}
	}
	if err := wb.DeleteRange(entryKey(g.shard, 0), entryKey(g.shard, ^uint64(0)), nil); err != nil {
		return err
	}
	if err := wb.Apply(g.snapData, nil); err != nil {
		return err
	}
	if err := wb.Set(sysKey(g.shard, subApplied), binary.BigEndian.AppendUint64(nil, idx), nil); err != nil {
		return err
	}
	t := truncation{idx, term}
	if err := wb.Set(sysKey(g.shard, subTrunc), t.encode(), nil); err != nil {
		return err
	}
	if err := g.st.setConf(wb, snap.GetMetadata().GetConfState()); err != nil {
		return err
	}
	st := g.st
	st.first, st.truncTerm, st.lastIndex, st.lastTerm, st.tail = idx+1, term, idx, term, nil
	g.applied = idx
	return nil
}

// giveUpSnapshots makes raft retry a snapshot that a follower has not
// installed after snapshotGiveUpTicks (leader, each tick).
func (e *Engine) giveUpSnapshots(g *group) {
	if g.lead != e.opts.ID {
		clear(g.snapSince)
		return
	}
	var stale []uint64
	g.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
		if pr.State != tracker.StateSnapshot {
			delete(g.snapSince, id)
			return
		}
		since, ok := g.snapSince[id]
		if !ok {
			g.snapSince[id] = e.ticks
		} else if e.ticks-since > snapshotGiveUpTicks {
			stale = append(stale, id)
		}
	})
	for _, id := range stale {
		delete(g.snapSince, id)
		g.rn.ReportSnapshot(id, raft.SnapshotFailure)
	}
}
