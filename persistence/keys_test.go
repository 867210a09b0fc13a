package persistence

import (
	"bytes"
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

func TestKeyRoundTripAndOrder(t *testing.T) {
	k := EncodeKey(KindMessage, "g1", SeqSuffix(7))
	d, err := DecodeKey(k)
	if err != nil || d.Kind != KindMessage || d.ID != "g1" || d.Shard != ShardOf(KindConv, "g1") {
		t.Fatalf("decode %x: %+v %v", k, d, err)
	}
	if seq, err := DecodeSeqSuffix(d.Suffix); err != nil || seq != 7 {
		t.Fatalf("seq %d %v", seq, err)
	}
	// Messages sort by seq; one entity's prefix never covers another's.
	a, b := EncodeKey(KindMessage, "g1", SeqSuffix(2)), EncodeKey(KindMessage, "g1", SeqSuffix(10))
	if bytes.Compare(a, b) >= 0 {
		t.Fatal("seq order broken")
	}
	if bytes.HasPrefix(EncodeKey(KindMessage, "g10", nil), EntityPrefix(KindMessage, "g1")) {
		t.Fatal("prefix of g1 covers g10")
	}
	if _, err := DecodeKey([]byte{200, 'm', 1, 'x'}); err == nil {
		t.Fatal("bad shard accepted")
	}
}

// FuzzDecodeKey: arbitrary bytes never panic; a key that decodes re-encodes
// to the same bytes; a key built from arbitrary parts decodes to them.
func FuzzDecodeKey(f *testing.F) {
	f.Add(EncodeKey(KindMessage, "g1", SeqSuffix(3)), "u1", []byte("s"))
	f.Add(EncodeKey(KindUser, "uabc", nil), "", []byte{})
	f.Add([]byte{0, 0, 0xff, 0xff, 0xff, 0xff, 0xff}, "x", []byte{0})
	f.Fuzz(func(t *testing.T, raw []byte, id string, suffix []byte) {
		if k, err := DecodeKey(raw); err == nil {
			if again := EncodeKey(k.Kind, k.ID, k.Suffix); !bytes.Equal(again, raw) {
				t.Fatalf("decode/encode changed %x to %x", raw, again)
			}
		}
		for _, kind := range []Kind{KindUser, KindMessage, KindDedupe} {
			k := EncodeKey(kind, id, suffix)
			d, err := DecodeKey(k)
			if err != nil || d.Kind != kind || d.ID != id || !bytes.Equal(d.Suffix, suffix) && len(suffix) > 0 {
				t.Fatalf("round trip of (%c,%q,%x): %+v %v", kind, id, suffix, d, err)
			}
		}
		if len(suffix) >= 8 {
			if _, err := DecodeSeqSuffix(suffix[:8]); err != nil {
				t.Fatal(err)
			}
		}
	})
}

func TestStoreLayoutAndShards(t *testing.T) {
	fs := vfs.NewMem()
	s, err := Open(Options{Dir: "/d", FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	b := s.NewBatch(KindConv, "g1")
	b.Set(EncodeKey(KindMessage, "g1", SeqSuffix(1)), []byte("m"))
	b.Set(EncodeKey(KindUser, "someone-else", nil), []byte("x"))
	if err := b.Commit(); !errors.Is(err, ErrCrossShard) && ShardOf(KindUser, "someone-else") != ShardOf(KindConv, "g1") {
		t.Fatalf("cross-shard batch: %v", err)
	}
	if _, err := s.Get(EncodeKey(KindMessage, "g1", SeqSuffix(1))); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a rejected batch wrote: %v", err)
	}
	s.Close()
	// Reopening checks the header; a directory of foreign data is refused.
	s, err = Open(Options{Dir: "/d", FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	db, err := pebble.Open("/other", &pebble.Options{FS: fs})
	if err != nil {
		t.Fatal(err)
	}
	db.Set([]byte("foreign"), []byte("v"), pebble.Sync)
	db.Close()
	if _, err := Open(Options{Dir: "/other", FS: fs}); !errors.Is(err, ErrLayout) {
		t.Fatalf("foreign data adopted: %v", err)
	}
}
