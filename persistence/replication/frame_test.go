package replication

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// frameTestMsgs are realistic raft messages: a heartbeat, an append with
// entries, a vote, a snapshot and an empty message.
func frameTestMsgs() []Envelope {
	return []Envelope{
		{Shard: 3, Msg: &pb.Message{Type: pb.MessageType_MsgHeartbeat.Enum(), To: proto.Uint64(2), From: proto.Uint64(1)}},
		{Shard: 0, Msg: &pb.Message{
			Type: pb.MessageType_MsgApp.Enum(), To: proto.Uint64(2), From: proto.Uint64(1),
			Term: proto.Uint64(7), LogTerm: proto.Uint64(6), Index: proto.Uint64(41), Commit: proto.Uint64(40),
			Entries: []*pb.Entry{
				{Term: proto.Uint64(7), Index: proto.Uint64(42), Data: []byte("batch one")},
				{Term: proto.Uint64(7), Index: proto.Uint64(43), Type: pb.EntryType_EntryConfChange.Enum(), Data: bytes.Repeat([]byte{0xAB}, 300)},
			},
		}},
		{Shard: 63, Msg: &pb.Message{Type: pb.MessageType_MsgVote.Enum(), To: proto.Uint64(3), From: proto.Uint64(2), Term: proto.Uint64(9), Context: []byte("campaign")}},
		{Shard: 17, Msg: &pb.Message{
			Type: pb.MessageType_MsgSnap.Enum(), To: proto.Uint64(1), From: proto.Uint64(3),
			Snapshot: &pb.Snapshot{Data: []byte("state"), Metadata: &pb.SnapshotMetadata{Index: proto.Uint64(100), Term: proto.Uint64(8)}},
		}},
		{Shard: 5, Msg: &pb.Message{}},
	}
}

// frameOf encodes envs as one frame payload.
func frameOf(t testing.TB, envs []Envelope) []byte {
	t.Helper()
	var buf []byte
	for _, e := range envs {
		var err error
		if buf, err = appendEnvelope(buf, e); err != nil {
			t.Fatal(err)
		}
	}
	return buf
}

// sameEnvelopes fails unless got and want hold equal shards and messages.
func sameEnvelopes(t testing.TB, got, want []Envelope) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d envelopes, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Shard != want[i].Shard || !proto.Equal(got[i].Msg, want[i].Msg) {
			t.Fatalf("envelope %d: shard %d %v, want shard %d %v", i, got[i].Shard, got[i].Msg, want[i].Shard, want[i].Msg)
		}
	}
}

func TestFrameGolden(t *testing.T) {
	payload := frameOf(t, frameTestMsgs()[:1])
	frame := binary.BigEndian.AppendUint32(nil, uint32(len(payload)))
	frame = append(frame, payload...)
	want := []byte{0, 0, 0, 8, 3, 6, 0x08, 0x08, 0x10, 0x02, 0x18, 0x01}
	if !bytes.Equal(frame, want) {
		t.Fatalf("frame % x, want % x (update the example in frame.go too)", frame, want)
	}
}

func TestFrameRoundTrip(t *testing.T) {
	want := frameTestMsgs()
	payload := frameOf(t, want)
	got, err := decodeFrame(payload)
	if err != nil {
		t.Fatal(err)
	}
	sameEnvelopes(t, got, want)
	// Decoded messages must not alias the payload, which the reader reuses.
	for i := range payload {
		payload[i] = 0xFF
	}
	sameEnvelopes(t, got, want)

	if got, err := decodeFrame(nil); err != nil || len(got) != 0 {
		t.Fatalf("empty payload: %v, %v", got, err)
	}
}

func TestFrameDecodeErrors(t *testing.T) {
	valid := frameOf(t, frameTestMsgs()[:1]) // 03 06 <6 bytes>
	for _, tc := range []struct {
		name    string
		payload []byte
		want    error
	}{
		{"shard varint cut", []byte{0x80}, errFrameTruncated},
		{"length varint missing", []byte{0x03}, errFrameTruncated},
		{"length varint cut", []byte{0x03, 0x81}, errFrameTruncated},
		{"second envelope cut", append(append([]byte{}, valid...), 0x01), errFrameTruncated},
		{"shard varint overflow", bytes.Repeat([]byte{0xFF}, 11), errFrameVarint},
		{"length varint overflow", append([]byte{0x01}, bytes.Repeat([]byte{0xFF}, 11)...), errFrameVarint},
		{"shard 64", []byte{64, 0}, errFrameShard},
		{"shard 300", []byte{0xAC, 0x02, 0}, errFrameShard},
		{"length overrun", []byte{0x03, 0x07, 0x08, 0x08, 0x10, 0x02, 0x18, 0x01}, errFrameOverrun},
		{"huge length", []byte{0x03, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F}, errFrameOverrun},
		{"bad proto", []byte{0x03, 0x02, 0x08, 0x80}, errFrameProto},
		{"bad proto wire type", []byte{0x03, 0x01, 0x0F}, errFrameProto},
	} {
		got, err := decodeFrame(tc.payload)
		if !errors.Is(err, tc.want) || got != nil {
			t.Errorf("%s: decodeFrame(% x) = %v, %v; want %v", tc.name, tc.payload, got, err, tc.want)
		}
	}
}

func TestFrameAppendEnvelopeErrors(t *testing.T) {
	buf := []byte("keep")
	for _, e := range []Envelope{
		{Shard: 64, Msg: &pb.Message{}},
		{Shard: 1, Msg: nil},
	} {
		out, err := appendEnvelope(buf, e)
		if err == nil || !bytes.Equal(out, buf) {
			t.Errorf("appendEnvelope(%+v) = % x, %v; want an error and the buffer unchanged", e, out, err)
		}
	}
}
