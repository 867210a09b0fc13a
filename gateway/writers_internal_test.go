package gateway

import (
	"bytes"
	"testing"
)

// TestConsume: dropping the bytes a short write took leaves exactly the
// rest, in order, whatever the cut.
func TestConsume(t *testing.T) {
	parts := []string{"ab", "cde", "", "f", "ghij"}
	all := "abcdefghij"
	for n := 0; n <= len(all); n++ {
		bufs := make([][]byte, len(parts))
		for i, p := range parts {
			bufs[i] = []byte(p)
		}
		if got := bytes.Join(consume(bufs, n), nil); string(got) != all[n:] {
			t.Fatalf("consume %d: %q, want %q", n, got, all[n:])
		}
	}
}
