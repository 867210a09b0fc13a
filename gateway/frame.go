package gateway

import "encoding/binary"

// wsTextFrame wraps payload in an unmasked, final WebSocket text frame
// (RFC 6455 §5.2), as a server sends it. Conversation messages are framed
// once and the same bytes are written to every subscriber.
func wsTextFrame(payload []byte) []byte {
	n := len(payload)
	var hdr []byte
	switch {
	case n < 126:
		hdr = []byte{0x81, byte(n)}
	case n <= 0xFFFF:
		hdr = []byte{0x81, 126, 0, 0}
		binary.BigEndian.PutUint16(hdr[2:], uint16(n))
	default:
		hdr = make([]byte, 10)
		hdr[0], hdr[1] = 0x81, 127
		binary.BigEndian.PutUint64(hdr[2:], uint64(n))
	}
	out := make([]byte, 0, len(hdr)+n)
	return append(append(out, hdr...), payload...)
}
