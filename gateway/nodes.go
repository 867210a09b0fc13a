package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/parley-chat/parley/actors/grainpb"
	"github.com/parley-chat/parley/actors/membership"
	"github.com/parley-chat/parley/persistence"
	"github.com/parley-chat/parley/persistence/replication"
)

// Adding and removing cluster nodes at run time (POST and DELETE
// /admin/nodes). The order of the steps keeps a quorum at every moment:
//
//   - add: the new node must already run (started with -cluster-join) and
//     be reachable; it is written to the roster, so every node dials it,
//     then made a learner of every raft group (it catches up from
//     snapshots; the quorum ignores it meanwhile), becomes a member once
//     its replicas are fresh (its join gate), and is then promoted to
//     voter;
//   - remove: the node leaves every raft group first, while the others
//     still talk to it; if it is up, it is told, closes its links (its
//     clients reconnect to a member) and exits; only then is it marked
//     removed in the roster, so every node forgets it. Its id is never
//     used again.

// errNodeRequest reports an add or remove request that is refused as
// given (the admin API answers 400); replication.ErrMembership is a
// refusal by the cluster's state (409).
var errNodeRequest = errors.New("gateway: bad node request")

// reachWait bounds the wait for a new node to answer before it is added.
const reachWait = 5 * time.Second

// AddNode makes node id, which listens for its peers at addr, a member of
// this cluster, and returns the new roster. It is idempotent: an add that
// failed half-way is finished by calling it again.
func (a *App) AddNode(ctx context.Context, id uint64, addr string) (membership.Roster, error) {
	cp := a.cluster
	if id == 0 || id >= 1<<16 {
		return nil, fmt.Errorf("%w: node id %d (want 0 < id < 65536)", errNodeRequest, id)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("%w: address %q: %v", errNodeRequest, addr, err)
	}
	roster, removed, err := membership.ReadRoster(a.Store, cp.seedRoster)
	if err != nil {
		return nil, err
	}
	if removed[id] {
		return nil, fmt.Errorf("%w: node %d was removed; a node that joins again needs a new id", replication.ErrMembership, id)
	}
	if old, ok := roster[id]; ok && old != addr {
		return nil, fmt.Errorf("%w: node %d is already in the cluster, at %s", replication.ErrMembership, id, old)
	}
	if _, ok := roster[id]; !ok && len(roster) >= replication.MaxVoters {
		return nil, fmt.Errorf("%w: the cluster has %d nodes already (at most %d)", replication.ErrMembership, len(roster), replication.MaxVoters)
	}
	if err := cp.reach(ctx, id, addr); err != nil {
		return nil, err
	}
	if err := writeRoster(ctx, a.Store, id, addr, false); err != nil {
		return nil, err
	}
	if err := cp.eng.ChangeMember(ctx, id, replication.Learner); err != nil {
		return nil, err
	}
	if err := a.waitMember(ctx, id); err != nil {
		return nil, err
	}
	if err := cp.eng.ChangeMember(ctx, id, replication.Voter); err != nil {
		return nil, err
	}
	a.log.Info("node added", "node", id, "addr", addr)
	roster[id] = addr
	return roster, nil
}

// waitMember waits until node id is a member: a joining node registers
// only once its join gate passed, i.e. once it caught up with every group
// (holdJoin). Until then it stays a learner, which the quorum ignores.
func (a *App) waitMember(ctx context.Context, id uint64) error {
	err := pollUntil(ctx, 100*time.Millisecond, func() bool {
		return slices.ContainsFunc(a.Node.Members(), func(m *grainpb.NodeRecord) bool { return m.NodeId == id })
	})
	if err != nil {
		return fmt.Errorf("node %d is a learner and has not caught up yet: %w", id, err)
	}
	return nil
}

// pollUntil calls done every period until it reports true (nil) or ctx
// ends (ctx's error).
func pollUntil(ctx context.Context, period time.Duration, done func() bool) error {
	for !done() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(period):
		}
	}
	return nil
}

// reach checks that node id answers at addr (it pings every peer it
// knows, this node included); if not, this node forgets it again.
func (p *clusterParts) reach(ctx context.Context, id uint64, addr string) error {
	p.rosterMu.Lock()
	_, known := p.roster[id]
	p.rosterMu.Unlock()
	p.tr.SetPeer(id, addr)
	ctx, cancel := context.WithTimeout(ctx, reachWait)
	defer cancel()
	if pollUntil(ctx, replication.PingEvery, func() bool { return p.tr.Alive(id, replication.PingEvery*5) }) != nil {
		if !known {
			p.tr.RemovePeer(id)
		}
		return fmt.Errorf("%w: node %d does not answer at %s: start it first (parley serve -cluster-join, with every current node in -cluster-peers)",
			replication.ErrMembership, id, addr)
	}
	return nil
}

// RemoveNode takes node id out of the cluster for good and returns the new
// roster. The node may be down (its disk lost) or drained; this node
// cannot remove itself.
func (a *App) RemoveNode(ctx context.Context, id uint64) (membership.Roster, error) {
	cp := a.cluster
	roster, _, err := membership.ReadRoster(a.Store, cp.seedRoster)
	if err != nil {
		return nil, err
	}
	addr, ok := roster[id]
	if !ok {
		return nil, fmt.Errorf("%w: node %d is not in the cluster", errNodeRequest, id)
	}
	if id == cp.self {
		return nil, fmt.Errorf("%w: a node does not remove itself; ask another node", errNodeRequest)
	}
	if err := cp.eng.ChangeMember(ctx, id, replication.Removed); err != nil {
		return nil, err
	}
	cp.tellRemoved(ctx, id)
	cp.waitLeaders(ctx, id)
	if err := writeRoster(ctx, a.Store, id, addr, true); err != nil {
		return nil, err
	}
	a.log.Info("node removed", "node", id)
	delete(roster, id)
	return roster, nil
}

// waitLeaders waits (while ctx lasts) until this node knows a leader
// other than gone for every group: the groups gone led elect new leaders
// once it is removed, and a write meanwhile would go to the old one.
func (p *clusterParts) waitLeaders(ctx context.Context, gone uint64) {
	_ = pollUntil(ctx, 50*time.Millisecond, func() bool {
		return !slices.ContainsFunc(p.eng.Status(), func(g replication.GroupStatus) bool { return g.Leader == 0 || g.Leader == gone })
	})
}

// writeRoster writes a roster entry, again while it fails and ctx lasts:
// right after a membership change a group may be electing a leader (the
// removed node led it), and an unfenced write forwarded to the old one is
// lost. Writing the same entry twice is harmless.
func writeRoster(ctx context.Context, st *persistence.Store, id uint64, addr string, removed bool) error {
	var err error
	_ = pollUntil(ctx, 200*time.Millisecond, func() bool {
		err = membership.WriteRosterEntry(st, id, addr, removed)
		return err == nil
	})
	return err
}

// tellRemoved tells node id, if it is up, that it was removed: a removed
// replica rarely learns it from raft (the leader stops sending to it once
// the change applies, often before the replica heard it committed), and a
// node that keeps serving could only fail its clients' writes. It closes
// its links, so they reconnect to a member, and exits. Best effort: a
// dead node is not waited for.
func (p *clusterParts) tellRemoved(ctx context.Context, id uint64) {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("https://node-%d/cluster/removed", id), nil)
	if err != nil {
		return
	}
	if res, err := p.client.Do(req); err == nil {
		res.Body.Close()
	}
}

// holdJoin keeps a joining node out of service until every one of its
// replicas is fresh (a read barrier on every shard passes), then lets
// clients in and the node join the members.
func (p *clusterParts) holdJoin(a *App) {
	defer close(p.joinDone)
	for {
		if err := a.Store.FreshAll(); err == nil {
			break
		}
		select {
		case <-p.stopJoin:
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
	p.joining.Store(false)
	a.Gateway.joining.Store(false)
	a.log.Info("joined the cluster: replicas caught up")
}

// nodeAdmin changes the cluster's nodes (the App of a cluster node).
type nodeAdmin interface {
	AddNode(ctx context.Context, id uint64, addr string) (membership.Roster, error)
	RemoveNode(ctx context.Context, id uint64) (membership.Roster, error)
}

// nodeChangeTimeout bounds one add or remove (64 conf changes, each
// committed by a quorum).
const nodeChangeTimeout = 60 * time.Second

// serveNodes serves POST /admin/nodes ({"node": id, "addr": "host:port"})
// and DELETE /admin/nodes/{id}; both answer the new roster. It reports
// whether the request was one of them.
func (a *admin) serveNodes(w http.ResponseWriter, r *http.Request) bool {
	rest, ok := strings.CutPrefix(r.URL.Path, "/admin/nodes")
	if !ok {
		return false
	}
	if a.s.nodes == nil {
		http.Error(w, "not a cluster node", http.StatusNotFound)
		return true
	}
	ctx, cancel := context.WithTimeout(r.Context(), nodeChangeTimeout)
	defer cancel()
	var roster membership.Roster
	var err error
	switch {
	case rest == "" && r.Method == http.MethodPost:
		var req struct {
			Node uint64 `json:"node"`
			Addr string `json:"addr"`
		}
		if derr := json.NewDecoder(io.LimitReader(r.Body, 4<<10)).Decode(&req); derr != nil {
			http.Error(w, "body: want {\"node\": id, \"addr\": \"host:port\"}: "+derr.Error(), http.StatusBadRequest)
			return true
		}
		roster, err = a.s.nodes.AddNode(ctx, req.Node, req.Addr)
	case strings.HasPrefix(rest, "/") && r.Method == http.MethodDelete:
		id, perr := strconv.ParseUint(rest[1:], 10, 64)
		if perr != nil {
			http.Error(w, "node id: "+perr.Error(), http.StatusBadRequest)
			return true
		}
		roster, err = a.s.nodes.RemoveNode(ctx, id)
	default:
		http.Error(w, "want POST /admin/nodes or DELETE /admin/nodes/{id}", http.StatusMethodNotAllowed)
		return true
	}
	switch {
	case errors.Is(err, errNodeRequest):
		http.Error(w, err.Error(), http.StatusBadRequest)
	case errors.Is(err, replication.ErrMembership):
		http.Error(w, err.Error(), http.StatusConflict)
	case errors.Is(err, context.DeadlineExceeded):
		http.Error(w, err.Error()+" (call again to finish)", http.StatusGatewayTimeout)
	case err != nil:
		http.Error(w, err.Error(), http.StatusInternalServerError)
	default:
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(rosterView(roster))
	}
	return true
}

// RosterView is the admin API's view of the cluster's roster.
type RosterView struct {
	// Peers is the roster in -cluster-peers form ("id=host:port,...").
	Peers string       `json:"peers"`
	Nodes []RosterNode `json:"nodes"`
}

// RosterNode is one node of a RosterView.
type RosterNode struct {
	Node uint64 `json:"node"`
	Addr string `json:"addr"`
}

func rosterView(r membership.Roster) RosterView {
	v := RosterView{Peers: r.String(), Nodes: []RosterNode{}}
	for _, id := range r.IDs() {
		v.Nodes = append(v.Nodes, RosterNode{id, r[id]})
	}
	return v
}
