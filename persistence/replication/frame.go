package replication

// Wire format of the raft transport.
//
// A connection carries frames in one direction only (the dialer writes, the
// acceptor reads), after the TLS handshake and nothing else. A frame is
//
//	offset  size  field
//	0       4     payload length N, unsigned big-endian, N <= 64 MiB
//	4       N     payload: zero or more envelopes, back to back
//
// and each envelope in the payload is
//
//	uvarint   shard   the raft group, 0 <= shard < NumGroups (64)
//	uvarint   L       length of the message bytes
//	L bytes   msg     raftpb.Message, protobuf binary encoding
//
// where uvarint is encoding/binary's unsigned varint (7 bits per byte, low
// groups first, high bit set on every byte but the last; at most 10 bytes).
// The envelopes of one frame are in the order they were sent. An envelope
// never spans two frames. A reader refuses a length above 64 MiB by closing
// the connection (it cannot resynchronise); a payload that does not decode
// completely is dropped as a whole. A frame with an empty payload (length
// 0) is a ping: a writer with nothing queued sends one every PingEvery, so
// that the reader can tell a live peer from a dead one (Transport.Alive).
//
// Example (TestFrameGolden checks it): shard 3 carrying a heartbeat from
// node 1 to node 2, Message{Type: MsgHeartbeat, To: 2, From: 1}, whose proto
// bytes are 08 08 10 02 18 01, travels alone as the 12-byte frame
//
//	00 00 00 08  03  06  08 08 10 02 18 01
//	length 8     shard L  msg

import (
	"encoding/binary"
	"errors"
	"fmt"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// frameHeaderLen is the size of a frame's length prefix.
const frameHeaderLen = 4

// frameMaxLen bounds a frame's payload. It protects the reader's memory
// from a corrupt or hostile length, and it is well above what raft sends
// per message with sane MaxSizePerMsg settings; a message that does not fit
// cannot be sent at all.
const frameMaxLen = 64 << 20

// Errors of decodeFrame, wrapped with where in the payload they occurred.
var (
	errFrameTruncated = errors.New("replication: frame: truncated varint")
	errFrameVarint    = errors.New("replication: frame: varint overflows 64 bits")
	errFrameShard     = errors.New("replication: frame: shard out of range")
	errFrameOverrun   = errors.New("replication: frame: message length overruns the payload")
	errFrameProto     = errors.New("replication: frame: bad raft message")
)

// appendEnvelope appends e, encoded as one envelope of a frame payload, to
// buf. On error buf is returned unchanged (same length), so a caller can
// keep appending to it.
func appendEnvelope(buf []byte, e Envelope) ([]byte, error) {
	if e.Shard >= NumGroups {
		return buf, fmt.Errorf("replication: encode envelope: shard %d >= %d", e.Shard, NumGroups)
	}
	if e.Msg == nil {
		return buf, fmt.Errorf("replication: encode envelope of shard %d: nil message", e.Shard)
	}
	// Size first, so the length prefix goes in front of the message without
	// a copy; UseCachedSize then makes Marshal reuse that computation.
	n := proto.Size(e.Msg)
	start := len(buf)
	buf = binary.AppendUvarint(buf, uint64(e.Shard))
	buf = binary.AppendUvarint(buf, uint64(n))
	mark := len(buf)
	out, err := proto.MarshalOptions{UseCachedSize: true}.MarshalAppend(buf, e.Msg)
	if err != nil {
		return buf[:start], fmt.Errorf("replication: encode message of shard %d: %w", e.Shard, err)
	}
	if len(out)-mark != n {
		// Only a message modified while being encoded gets here.
		return out[:start], fmt.Errorf("replication: encode message of shard %d: size changed from %d to %d", e.Shard, n, len(out)-mark)
	}
	return out, nil
}

// decodeFrame decodes a frame payload into its envelopes. The messages own
// their memory: payload may be reused once it returns.
func decodeFrame(payload []byte) ([]Envelope, error) {
	var batch []Envelope
	for off := 0; off < len(payload); {
		i := len(batch)
		shard, n := binary.Uvarint(payload[off:])
		if err := varintErr(n); err != nil {
			return nil, fmt.Errorf("%w: shard of envelope %d at offset %d", err, i, off)
		}
		if shard >= NumGroups {
			return nil, fmt.Errorf("%w: envelope %d at offset %d has shard %d, want < %d", errFrameShard, i, off, shard, NumGroups)
		}
		off += n
		size, n := binary.Uvarint(payload[off:])
		if err := varintErr(n); err != nil {
			return nil, fmt.Errorf("%w: message length of envelope %d at offset %d", err, i, off)
		}
		off += n
		if size > uint64(len(payload)-off) {
			return nil, fmt.Errorf("%w: envelope %d at offset %d has %d bytes, %d remain", errFrameOverrun, i, off, size, len(payload)-off)
		}
		msg := new(pb.Message)
		if err := proto.Unmarshal(payload[off:off+int(size)], msg); err != nil {
			return nil, fmt.Errorf("%w: envelope %d at offset %d: %w", errFrameProto, i, off, err)
		}
		off += int(size)
		batch = append(batch, Envelope{Shard: uint8(shard), Msg: msg})
	}
	return batch, nil
}

// varintErr turns the count returned by binary.Uvarint into an error.
func varintErr(n int) error {
	switch {
	case n == 0:
		return errFrameTruncated
	case n < 0:
		return errFrameVarint
	}
	return nil
}
