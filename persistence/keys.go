package persistence

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
)

// LayoutVersion is the version of the key layout written by this code. It is
// stored in the data directory at creation and checked at every open.
const LayoutVersion = 1

// NumShards is the number of shards of a data directory created by this code.
const NumShards = 64

// Kind names a family of keys. The byte is part of every key.
type Kind byte

// Kinds of keys. The values are part of the on-disk layout: never reuse one.
const (
	KindMeta       Kind = 0x01 // data-directory metadata (layout header)
	KindUser       Kind = 'u'  // user record, id = user id
	KindUsername   Kind = 'n'  // username index, id = username
	KindSession    Kind = 's'  // session record, id = session id
	KindConv       Kind = 'c'  // conversation header, id = conversation id
	KindMember     Kind = 'b'  // conversation member, id = conversation id, suffix = user id
	KindMessage    Kind = 'm'  // conversation log entry, id = conversation id, suffix = seq (8 bytes BE)
	KindDedupe     Kind = 'd'  // send dedupe, id = conversation id, suffix = user/device/client id
	KindConvOutbox Kind = 'o'  // conversation outbox, id = conversation id, suffix = op id
	KindConvFile   Kind = 'F'  // live file message of a conversation, id = conversation id, suffix = seq (8 bytes BE)
	KindFile       Kind = 'f'  // file record (content facts, references), id = file id (hex SHA-256)
	KindUpload     Kind = 'p'  // tus upload in progress or recently finished, id = upload id

	// Channels and channel import.
	KindChannel       Kind = 'k' // channel header, id = channel id
	KindChannelMember Kind = 'K' // channel member, id = channel id, suffix = user id
	KindChannelOutbox Kind = 'O' // channel outbox (notices to users' channel lists), id = channel id, suffix = op id
	KindInvitation    Kind = 'i' // group invitation, id = group id, suffix = invitation local id
	KindImport        Kind = 'I' // done import of a group, id = group id, suffix = actor "/" op id

	// Calls.
	KindCall Kind = 'v' // voice call record (its participants' states and deadlines), id = call id
)

// ErrBadKey reports a key that does not decode.
var ErrBadKey = errors.New("persistence: malformed key")

// Shard is one of the NumShards partitions of the keyspace.
type Shard uint8

// ShardOf returns the shard of the entity (kind, id). All keys of one entity
// live in one shard, so an entity's batch touches one shard only.
func ShardOf(kind Kind, id string) Shard {
	h := fnv.New32a()
	h.Write([]byte{byte(kindFamily(kind))})
	h.Write([]byte(id))
	return Shard(h.Sum32() % NumShards)
}

// kindFamily maps a kind to the entity family whose shard it shares: a
// conversation's members, messages, dedupe entries and outbox live with it.
func kindFamily(k Kind) Kind {
	switch k {
	case KindMember, KindMessage, KindDedupe, KindConvOutbox, KindConvFile:
		return KindConv
	case KindInvitation, KindImport:
		return KindConv
	case KindChannelMember, KindChannelOutbox:
		return KindChannel
	}
	return k
}

// Key is a decoded key.
type Key struct {
	Shard  Shard
	Kind   Kind
	ID     string
	Suffix []byte
}

// EncodeKey builds the key for (kind, id, suffix):
//
//	shard(1) kind(1) uvarint(len(id)) id suffix
//
// The length prefix keeps ids of different lengths from sharing a prefix, so
// a prefix scan of one entity never runs into another.
func EncodeKey(kind Kind, id string, suffix []byte) []byte {
	b := make([]byte, 0, 2+binary.MaxVarintLen32+len(id)+len(suffix))
	return AppendKey(b, kind, id, suffix)
}

// AppendKey appends the key for (kind, id, suffix) to b.
func AppendKey(b []byte, kind Kind, id string, suffix []byte) []byte {
	b = append(b, byte(ShardOf(kind, id)), byte(kind))
	b = binary.AppendUvarint(b, uint64(len(id)))
	b = append(b, id...)
	return append(b, suffix...)
}

// EntityPrefix is the prefix of every key of (kind, id).
func EntityPrefix(kind Kind, id string) []byte {
	return EncodeKey(kind, id, nil)
}

// DecodeKey parses a key built by EncodeKey.
func DecodeKey(k []byte) (Key, error) {
	if len(k) < 3 {
		return Key{}, fmt.Errorf("%w: %d bytes", ErrBadKey, len(k))
	}
	if k[0] >= NumShards {
		return Key{}, fmt.Errorf("%w: shard %d", ErrBadKey, k[0])
	}
	n, w := binary.Uvarint(k[2:])
	if w <= 0 || n > uint64(len(k)-2-w) {
		return Key{}, fmt.Errorf("%w: bad id length", ErrBadKey)
	}
	if w != len(binary.AppendUvarint(nil, n)) {
		// Only the shortest encoding is a key: another one would name the
		// same entity with different bytes.
		return Key{}, fmt.Errorf("%w: non-canonical id length", ErrBadKey)
	}
	start := 2 + w
	key := Key{Shard: Shard(k[0]), Kind: Kind(k[1]), ID: string(k[start : start+int(n)])}
	if rest := k[start+int(n):]; len(rest) > 0 {
		key.Suffix = append([]byte(nil), rest...)
	}
	if ShardOf(key.Kind, key.ID) != key.Shard {
		return Key{}, fmt.Errorf("%w: shard %d does not match (%c, %q)", ErrBadKey, key.Shard, key.Kind, key.ID)
	}
	return key, nil
}

// SeqSuffix encodes a sequence number so that keys sort by seq.
func SeqSuffix(seq int64) []byte {
	return binary.BigEndian.AppendUint64(nil, uint64(seq))
}

// DecodeSeqSuffix is the inverse of SeqSuffix.
func DecodeSeqSuffix(b []byte) (int64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: seq suffix of %d bytes", ErrBadKey, len(b))
	}
	return int64(binary.BigEndian.Uint64(b)), nil
}

// PrefixEnd returns the smallest key greater than every key with prefix p.
func PrefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		end[i]++
		if end[i] != 0 {
			return end[:i+1]
		}
	}
	return nil
}
