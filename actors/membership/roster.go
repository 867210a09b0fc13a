package membership

import (
	"encoding/binary"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/parley-chat/parley/actors/grainpb"
	"github.com/parley-chat/parley/persistence"
	"google.golang.org/protobuf/proto"
)

// The roster says which nodes make up the cluster and at which inter-node
// address (raft and internal HTTP) each listens. A cluster starts with its
// seed list (-cluster-peers); operators then add and remove nodes at run
// time (gateway: POST and DELETE /admin/nodes), and each change is a
// RosterEntry in the replicated store, so every node reads the same
// roster from its own replica. A removed node stays in the roster as a
// tombstone: its id is never used again (raft would take a returning old
// replica for a current one).

// rosterID is the store entity of the roster entries (one shard).
const rosterID = "roster"

// Roster maps the cluster's node ids to their inter-node addresses.
type Roster map[uint64]string

// IDs returns the roster's node ids in order.
func (r Roster) IDs() []uint64 { return slices.Sorted(maps.Keys(r)) }

// String is "id=addr,..." in id order (the -cluster-peers format).
func (r Roster) String() string {
	var b strings.Builder
	for i, id := range r.IDs() {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.FormatUint(id, 10) + "=" + r[id])
	}
	return b.String()
}

func rosterKey(id uint64) []byte {
	return persistence.EncodeKey(persistence.KindMeta, rosterID, binary.BigEndian.AppendUint64(nil, id))
}

// ReadRoster returns the roster from st: the seeds, plus the nodes added,
// less the nodes removed (also returned, as removed).
func ReadRoster(st *persistence.Store, seeds Roster) (r Roster, removed map[uint64]bool, err error) {
	r, removed = maps.Clone(seeds), map[uint64]bool{}
	if r == nil {
		r = Roster{}
	}
	p := persistence.EntityPrefix(persistence.KindMeta, rosterID)
	var bad error
	err = st.Scan(p, persistence.PrefixEnd(p), 0, func(_, v []byte) bool {
		e := &grainpb.RosterEntry{}
		if bad = proto.Unmarshal(v, e); bad != nil {
			return false
		}
		if e.Removed {
			delete(r, e.NodeId)
			removed[e.NodeId] = true
		} else {
			r[e.NodeId] = e.RaftAddr
		}
		return true
	})
	if bad != nil {
		err = fmt.Errorf("membership: roster entry: %w", bad)
	}
	return r, removed, err
}

// WriteRosterEntry records that node id was added at raftAddr, or removed
// (through the replicated store: a majority has it when this returns).
func WriteRosterEntry(st *persistence.Store, id uint64, raftAddr string, removed bool) error {
	v, err := proto.Marshal(&grainpb.RosterEntry{NodeId: id, RaftAddr: raftAddr, Removed: removed, ChangedMs: time.Now().UnixMilli()})
	if err != nil {
		return err
	}
	b := st.NewBatch(persistence.KindMeta, rosterID)
	b.Set(rosterKey(id), v)
	if err := b.Commit(); err != nil {
		return fmt.Errorf("membership: roster entry of node %d: %w", id, err)
	}
	return nil
}
