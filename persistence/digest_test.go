package persistence

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

func TestHashReader(t *testing.T) {
	for _, n := range []int{0, 1, 1000, 4 << 20, 4<<20 + 1, 9<<20 + 12345} {
		data := make([]byte, n)
		rand.Read(data)
		d, err := HashReader(bytes.NewReader(data), 1<<20)
		if err != nil {
			t.Fatal(err)
		}
		whole := sha256.Sum256(data)
		if d.SHA256 != hex.EncodeToString(whole[:]) || d.Size != int64(n) {
			t.Fatalf("%d bytes: sha %s size %d", n, d.SHA256, d.Size)
		}
		if want := (n + 1<<20 - 1) >> 20; len(d.Pieces) != want {
			t.Fatalf("%d bytes: %d pieces, want %d", n, len(d.Pieces), want)
		}
		for i, p := range d.Pieces {
			end := min((i+1)<<20, n)
			if s := sha256.Sum256(data[i<<20 : end]); !bytes.Equal(p, s[:]) {
				t.Fatalf("%d bytes: piece %d wrong", n, i)
			}
		}
	}
}
