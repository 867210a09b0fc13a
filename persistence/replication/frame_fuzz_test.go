package replication

import (
	"testing"
)

// FuzzDecodeFrame feeds frame payloads built from real raft messages (and
// mutations of them) to the decoder: it must never panic, and a payload it
// accepts must re-encode to one that decodes to equal envelopes.
func FuzzDecodeFrame(f *testing.F) {
	envs := frameTestMsgs()
	f.Add(frameOf(f, envs))
	for i := range envs {
		f.Add(frameOf(f, envs[i:i+1]))
	}
	f.Add([]byte{})
	f.Add([]byte{0x03, 0x00, 0x3F, 0x00})
	f.Fuzz(func(t *testing.T, payload []byte) {
		got, err := decodeFrame(payload)
		if err != nil {
			if got != nil {
				t.Fatalf("envelopes and an error for % x", payload)
			}
			return
		}
		again, err := decodeFrame(frameOf(t, got))
		if err != nil {
			t.Fatalf("re-encoded frame of % x does not decode: %v", payload, err)
		}
		sameEnvelopes(t, again, got)
	})
}
