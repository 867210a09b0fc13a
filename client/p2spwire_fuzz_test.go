package client

import (
	"bytes"
	"testing"
)

// FuzzDecodePeerMsg: the piece protocol decoder never panics, refuses what
// it cannot read, and what it accepts re-encodes to the same bytes.
func FuzzDecodePeerMsg(f *testing.F) {
	for _, m := range []peerMsg{
		{Type: msgHello, Version: 1, Grant: "g1.cGF5bG9hZA.c2ln"},
		{Type: msgHelloOK, Bitmap: []byte{0xff, 0x01}},
		{Type: msgRequest, Piece: 7},
		{Type: msgData, Piece: 3, Offset: 61440, Data: []byte("piece bytes")},
		{Type: msgReject, Piece: 2, Code: rejectNotHeld, Reason: "piece not held"},
		{Type: msgHave, Piece: 127},
		{Type: msgCancel, Piece: 1},
	} {
		f.Add(encodePeerMsg(m))
	}
	f.Add([]byte{})
	f.Add([]byte{msgData, 0x80})
	f.Add([]byte{msgHello, 1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodePeerMsg(b)
		if err != nil {
			return
		}
		again := encodePeerMsg(m)
		if !bytes.Equal(again, b) {
			t.Fatalf("decode(%x) = %+v re-encodes to %x", b, m, again)
		}
	})
}

func TestP2SPPeerMsgLimits(t *testing.T) {
	for name, b := range map[string][]byte{
		"empty":          {},
		"unknown type":   {99},
		"trailing":       append(encodePeerMsg(peerMsg{Type: msgRequest, Piece: 1}), 0),
		"data too long":  encodePeerMsg(peerMsg{Type: msgData, Data: make([]byte, maxDataLen+1)}),
		"empty data":     {msgData, 0, 0},
		"grant too long": encodePeerMsg(peerMsg{Type: msgHello, Version: 1, Grant: string(make([]byte, maxGrantLen+1))}),
		"piece too big":  encodePeerMsg(peerMsg{Type: msgHave, Piece: maxPieceIdx}),
		"truncated":      {msgReject, 1},
	} {
		if _, err := decodePeerMsg(b); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
