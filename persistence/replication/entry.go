package replication

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// A command is the payload of one normal raft entry. Layout:
//
//	byte     version (1)
//	byte     op: 1 write, 2 claim, 3 truncate
//	uvarint  proposer node id
//	uvarint  proposal number (unique per proposer process, with its boot id)
//	uvarint  proposer boot id
//	uvarint  len(entity), entity (empty: an unfenced write)
//	uvarint  epoch
//	uvarint  version
//	rest     write: the Pebble batch representation; claim: empty
//
// A truncate names no entity and carries no batch; its epoch field is the
// last log index the replicas may drop (see truncate.go).
//
// entity is the key prefix of the writing grain (kind, uvarint length, id:
// persistence.EntityPrefix without the shard byte).
type command struct {
	op       byte
	proposer uint64
	number   uint64
	boot     uint64
	entity   []byte
	epoch    uint64
	version  uint64
	repr     []byte
}

const (
	cmdVersion = 1
	opWrite    = 1
	opClaim    = 2
	opTruncate = 3
)

// errBadCommand reports an entry payload that does not decode.
var errBadCommand = errors.New("replication: malformed command")

func (c *command) encode() []byte {
	b := make([]byte, 0, 40+len(c.entity)+len(c.repr))
	b = append(b, cmdVersion, c.op)
	b = binary.AppendUvarint(b, c.proposer)
	b = binary.AppendUvarint(b, c.number)
	b = binary.AppendUvarint(b, c.boot)
	b = binary.AppendUvarint(b, uint64(len(c.entity)))
	b = append(b, c.entity...)
	b = binary.AppendUvarint(b, c.epoch)
	b = binary.AppendUvarint(b, c.version)
	return append(b, c.repr...)
}

func decodeCommand(b []byte) (command, error) {
	var c command
	if len(b) < 2 {
		return c, fmt.Errorf("%w: %d bytes", errBadCommand, len(b))
	}
	if b[0] != cmdVersion {
		return c, fmt.Errorf("%w: version %d", errBadCommand, b[0])
	}
	c.op = b[1]
	if c.op != opWrite && c.op != opClaim && c.op != opTruncate {
		return c, fmt.Errorf("%w: op %d", errBadCommand, c.op)
	}
	r := reader{b: b[2:]}
	c.proposer = r.uvarint("proposer")
	c.number = r.uvarint("number")
	c.boot = r.uvarint("boot")
	n := r.uvarint("entity length")
	c.entity = r.bytes(n, "entity")
	c.epoch = r.uvarint("epoch")
	c.version = r.uvarint("version")
	if r.err != nil {
		return command{}, r.err
	}
	c.repr = r.b
	if c.op == opClaim && (len(c.entity) == 0 || len(c.repr) != 0) {
		return command{}, fmt.Errorf("%w: claim needs an entity and no batch", errBadCommand)
	}
	if c.op == opTruncate && (len(c.entity) != 0 || len(c.repr) != 0 || c.epoch == 0) {
		return command{}, fmt.Errorf("%w: truncate needs an index and no entity or batch", errBadCommand)
	}
	return c, nil
}

// reader decodes uvarints and byte strings, keeping the first error.
type reader struct {
	b   []byte
	err error
}

func (r *reader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.err = fmt.Errorf("%w: bad %s varint", errBadCommand, what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes(n uint64, what string) []byte {
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = fmt.Errorf("%w: %s of %d bytes overruns %d", errBadCommand, what, n, len(r.b))
		return nil
	}
	out := r.b[:n:n]
	r.b = r.b[n:]
	return out
}

// fence is the replicated write guard of one entity: the epoch of its last
// claim, the number of fenced writes since, and the claim's proposal (so
// that a second copy of that claim, proposed again after a leader change,
// does not raise the epoch twice).
type fence struct {
	epoch   uint64
	version uint64
	claimer claimID
}

// claimID names one proposal: proposer node, its boot id, its number.
type claimID struct{ proposer, boot, number uint64 }

func (f fence) encode() []byte {
	b := make([]byte, 0, 40)
	for _, v := range []uint64{f.epoch, f.version, f.claimer.proposer, f.claimer.boot, f.claimer.number} {
		b = binary.BigEndian.AppendUint64(b, v)
	}
	return b
}

func decodeFence(b []byte) (fence, error) {
	if len(b) != 40 {
		return fence{}, fmt.Errorf("replication: fence record of %d bytes", len(b))
	}
	u := func(i int) uint64 { return binary.BigEndian.Uint64(b[8*i:]) }
	return fence{epoch: u(0), version: u(1), claimer: claimID{u(2), u(3), u(4)}}, nil
}

func fenceKey(shard uint8, entity []byte) []byte {
	return append(sysKey(shard, subFence), entity...)
}
