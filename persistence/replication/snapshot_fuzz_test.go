package replication

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/cockroachdb/pebble/v2"
)

// FuzzSnapshotStream feeds snapshot streams (real records of shard 5 and
// mutations of them) to the follower's decoder: it must never panic, and a
// stream it accepts puts only keys of the shard's ranges in the batch, and
// re-encodes to a stream that decodes to the same batch.
func FuzzSnapshotStream(f *testing.F) {
	const shard = 5
	var good []byte
	good = appendSnapshotRecord(good, []byte{shard, 'u', 1, 'a'}, []byte("value"))
	good = appendSnapshotRecord(good, append(sysKey(shard, subFence), 'c', 1, 'x'), fence{epoch: 2, version: 3}.encode())
	f.Add(append(good, 0))
	f.Add([]byte{0})
	f.Add(append(appendSnapshotRecord(nil, []byte{shard + 1, 'u'}, nil), 0))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, stream []byte) {
		b := new(pebble.Batch)
		if err := readSnapshotStream(bufio.NewReader(bytes.NewReader(stream)), shard, b); err != nil {
			return
		}
		var again []byte
		r := b.Reader()
		for {
			kind, k, v, ok, err := r.Next()
			if err != nil {
				t.Fatal(err)
			}
			if !ok {
				break
			}
			if kind != pebble.InternalKeyKindSet {
				t.Fatalf("batch op kind %d", kind)
			}
			in := false
			for _, rg := range snapshotRanges(shard) {
				in = in || string(k) >= string(rg[0]) && string(k) < string(rg[1])
			}
			if !in {
				t.Fatalf("accepted key %x outside shard %d", k, shard)
			}
			again = appendSnapshotRecord(again, k, v)
		}
		b2 := new(pebble.Batch)
		if err := readSnapshotStream(bufio.NewReader(bytes.NewReader(append(again, 0))), shard, b2); err != nil {
			t.Fatalf("re-encoded stream does not decode: %v", err)
		}
		if !bytes.Equal(b.Repr(), b2.Repr()) {
			t.Fatalf("re-encoded stream decodes to another batch")
		}
	})
}
