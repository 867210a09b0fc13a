package gateway

import "encoding/binary"

// wsTextFrame wraps payload in an unmasked, final WebSocket text frame
// (RFC 6455 §5.2), as a server sends it. Conversation messages are framed
// once and the same bytes are written to every subscriber.
func wsTextFrame(payload []byte) []byte { return wsFrame(0x81, payload) }

// wsFrame frames payload as one unmasked server frame whose first byte
// (FIN, opcode) is b0.
func wsFrame(b0 byte, payload []byte) []byte {
	n := len(payload)
	var hdr []byte
	switch {
	case n < 126:
		hdr = []byte{b0, byte(n)}
	case n <= 0xFFFF:
		hdr = []byte{b0, 126, 0, 0}
		binary.BigEndian.PutUint16(hdr[2:], uint16(n))
	default:
		hdr = make([]byte, 10)
		hdr[0], hdr[1] = b0, 127
		binary.BigEndian.PutUint64(hdr[2:], uint64(n))
	}
	out := make([]byte, 0, len(hdr)+n)
	return append(append(out, hdr...), payload...)
}
