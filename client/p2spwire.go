package client

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// The piece protocol on a P2SP data channel (docs/protocol.md §16.5).
// Every data channel message is one binary message:
//
//	type (1 byte) | fields
//
// Integers are unsigned varints (Go's binary.AppendUvarint, shortest form
// only); byte strings
// are a varint length, then the bytes.
//
//	1 hello     version(=1) grant                  requester → holder, first
//	2 helloOk   bitmap                             holder → requester
//	3 request   piece                              requester → holder
//	4 data      piece offset bytes(rest)           holder → requester
//	5 reject    piece code(1 byte) reason          holder → requester
//	6 have      piece                              holder → requester
//	7 cancel    piece                              requester → holder
//
// A piece travels as data messages of at most peerChunk bytes, in offset
// order; it is complete when its length (pieceSize, or less for the last)
// has arrived.

const (
	msgHello   = 1
	msgHelloOK = 2
	msgRequest = 3
	msgData    = 4
	msgReject  = 5
	msgHave    = 6
	msgCancel  = 7
)

// Reject codes.
const (
	rejectNoGrant   = 1 // no hello, or a grant that is not the one the server vouched for
	rejectNotHeld   = 2 // the holder does not have the piece
	rejectBadPiece  = 3 // the piece index is out of range
	rejectBusy      = 4 // the holder is shutting down or overloaded
	peerWireVersion = 1
)

// Limits of the decoder.
const (
	maxGrantLen  = 1024
	maxBitmapLen = 64 << 10 // 512k pieces
	maxReasonLen = 256
	maxPieceIdx  = 1 << 31
	peerChunk    = 60 << 10 // data bytes per message (pion's default max message is 64 KiB)
	maxDataLen   = 64 << 10
)

// peerMsg is one decoded data channel message.
type peerMsg struct {
	Type    byte
	Version uint64
	Grant   string
	Bitmap  []byte
	Piece   int
	Offset  int
	Data    []byte
	Code    byte
	Reason  string
}

var errPeerMsg = errors.New("parley: bad peer message")

func appendBytes(b, v []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}

// encodePeerMsg renders m.
func encodePeerMsg(m peerMsg) []byte {
	return appendPeerMsg(make([]byte, 0, 16+len(m.Grant)+len(m.Bitmap)+len(m.Data)+len(m.Reason)), m)
}

// appendPeerMsg renders m after b.
func appendPeerMsg(b []byte, m peerMsg) []byte {
	b = append(b, m.Type)
	switch m.Type {
	case msgHello:
		b = binary.AppendUvarint(b, m.Version)
		b = appendBytes(b, []byte(m.Grant))
	case msgHelloOK:
		b = appendBytes(b, m.Bitmap)
	case msgRequest, msgHave, msgCancel:
		b = binary.AppendUvarint(b, uint64(m.Piece))
	case msgData:
		b = binary.AppendUvarint(b, uint64(m.Piece))
		b = binary.AppendUvarint(b, uint64(m.Offset))
		b = append(b, m.Data...)
	case msgReject:
		b = binary.AppendUvarint(b, uint64(m.Piece))
		b = append(b, m.Code)
		b = appendBytes(b, []byte(m.Reason))
	}
	return b
}

func varintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// peerReader consumes a message's fields.
type peerReader struct {
	b   []byte
	err error
}

func (r *peerReader) uvarint(limit uint64) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = fmt.Errorf("%w: truncated varint", errPeerMsg)
		return 0
	}
	if v >= limit {
		r.err = fmt.Errorf("%w: %d is out of range", errPeerMsg, v)
		return 0
	}
	if n != varintLen(v) {
		r.err = fmt.Errorf("%w: varint not in its shortest form", errPeerMsg)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *peerReader) bytes(limit int) []byte {
	n := r.uvarint(uint64(limit) + 1)
	if r.err != nil {
		return nil
	}
	if uint64(len(r.b)) < n {
		r.err = fmt.Errorf("%w: truncated bytes", errPeerMsg)
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *peerReader) byte1() byte {
	if r.err != nil {
		return 0
	}
	if len(r.b) == 0 {
		r.err = fmt.Errorf("%w: truncated", errPeerMsg)
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}

// decodePeerMsg parses one data channel message. It never panics and
// refuses anything malformed, oversized or with trailing bytes. Data and
// Bitmap alias b.
func decodePeerMsg(b []byte) (peerMsg, error) {
	if len(b) == 0 {
		return peerMsg{}, fmt.Errorf("%w: empty", errPeerMsg)
	}
	m := peerMsg{Type: b[0]}
	r := &peerReader{b: b[1:]}
	switch m.Type {
	case msgHello:
		m.Version = r.uvarint(256)
		m.Grant = string(r.bytes(maxGrantLen))
	case msgHelloOK:
		m.Bitmap = r.bytes(maxBitmapLen)
	case msgRequest, msgHave, msgCancel:
		m.Piece = int(r.uvarint(maxPieceIdx))
	case msgData:
		m.Piece = int(r.uvarint(maxPieceIdx))
		m.Offset = int(r.uvarint(maxPieceIdx))
		if r.err == nil {
			if len(r.b) == 0 || len(r.b) > maxDataLen {
				r.err = fmt.Errorf("%w: data of %d bytes", errPeerMsg, len(r.b))
			}
			m.Data, r.b = r.b, nil
		}
	case msgReject:
		m.Piece = int(r.uvarint(maxPieceIdx))
		m.Code = r.byte1()
		m.Reason = string(r.bytes(maxReasonLen))
	default:
		return peerMsg{}, fmt.Errorf("%w: unknown type %d", errPeerMsg, m.Type)
	}
	if r.err != nil {
		return peerMsg{}, r.err
	}
	if len(r.b) != 0 {
		return peerMsg{}, fmt.Errorf("%w: %d trailing bytes", errPeerMsg, len(r.b))
	}
	return m, nil
}

// bitmap helpers: piece i is bit i%8 (LSB first) of byte i/8.
func bitSet(bm []byte, i int) bool { return i/8 < len(bm) && bm[i/8]&(1<<(i%8)) != 0 }
func setBit(bm []byte, i int)      { bm[i/8] |= 1 << (i % 8) }
