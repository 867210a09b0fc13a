package replication

import (
	"bytes"
	"errors"
	"testing"
)

func TestCommandRoundTrip(t *testing.T) {
	for _, c := range []command{
		{op: opWrite, proposer: 3, number: 1 << 40, boot: 7, repr: []byte("batch")},
		{op: opWrite, proposer: 1, number: 2, boot: 9, entity: []byte("c\x03g12"), epoch: 4, version: 99, repr: []byte{1, 2, 3}},
		{op: opClaim, proposer: 2, number: 5, boot: 1, entity: []byte("s\x02ab")},
		{op: opTruncate, proposer: 2, boot: 1, epoch: 4096},
	} {
		got, err := decodeCommand(c.encode())
		if err != nil {
			t.Fatalf("%+v: %v", c, err)
		}
		if got.op != c.op || got.proposer != c.proposer || got.number != c.number || got.boot != c.boot ||
			!bytes.Equal(got.entity, c.entity) || got.epoch != c.epoch || got.version != c.version || !bytes.Equal(got.repr, c.repr) {
			t.Fatalf("round trip: got %+v, want %+v", got, c)
		}
	}
}

func TestDecodeCommandRejects(t *testing.T) {
	valid := (&command{op: opWrite, proposer: 1, number: 1, boot: 1, entity: []byte("abc"), repr: []byte("x")}).encode()
	for name, b := range map[string][]byte{
		"empty":              nil,
		"one byte":           {cmdVersion},
		"bad version":        {9, opWrite},
		"bad op":             {cmdVersion, 7},
		"truncated":          valid[:5],
		"entity overruns":    {cmdVersion, opWrite, 1, 1, 1, 200, 'a'},
		"claim w/o ent":      (&command{op: opClaim, proposer: 1, number: 1, boot: 1}).encode(),
		"claim w/ batch":     (&command{op: opClaim, proposer: 1, number: 1, boot: 1, entity: []byte("e"), repr: []byte("x")}).encode(),
		"truncate w/o index": (&command{op: opTruncate, proposer: 1, boot: 1}).encode(),
		"truncate w/ entity": (&command{op: opTruncate, proposer: 1, boot: 1, entity: []byte("e"), epoch: 9}).encode(),
		"truncate w/ batch":  (&command{op: opTruncate, proposer: 1, boot: 1, epoch: 9, repr: []byte("x")}).encode(),
		"varint overflow":    {cmdVersion, opWrite, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
	} {
		if _, err := decodeCommand(b); !errors.Is(err, errBadCommand) {
			t.Errorf("%s: err %v, want errBadCommand", name, err)
		}
	}
}

func FuzzDecodeCommand(f *testing.F) {
	f.Add((&command{op: opWrite, proposer: 1, number: 2, boot: 3, entity: []byte("c\x01g"), epoch: 1, version: 2, repr: []byte("r")}).encode())
	f.Add((&command{op: opClaim, proposer: 1, number: 2, boot: 3, entity: []byte("s\x01x")}).encode())
	f.Add((&command{op: opTruncate, proposer: 1, boot: 3, epoch: 77}).encode())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeCommand(b)
		if err != nil {
			if !errors.Is(err, errBadCommand) {
				t.Fatalf("error without errBadCommand: %v", err)
			}
			return
		}
		// A decoded command re-encodes to a command that decodes equal.
		again, err := decodeCommand(c.encode())
		if err != nil || again.op != c.op || again.number != c.number || !bytes.Equal(again.entity, c.entity) || !bytes.Equal(again.repr, c.repr) {
			t.Fatalf("re-encode: %+v vs %+v (%v)", again, c, err)
		}
	})
}
