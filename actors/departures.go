package actors

import (
	"sync"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/asynkron/protoactor-go/eventstream"
)

// departures tells grain requests in flight that their target node left
// the cluster. A request already sent to a node that then died is never
// answered nor dead-lettered (it was lost with the connection); without
// this it would wait its whole timeout before going to the grain's new
// node.
type departures struct {
	// changed runs after a topology change that removed or added members
	// (the node wakes grains with durable timers: their owner moved);
	// left, after one that removed members (Fanout.Resync).
	changed, left func()

	mu      sync.Mutex
	members map[string]bool          // current member addresses
	gone    map[string]chan struct{} // closed when the address leaves
}

func newDepartures(es *eventstream.EventStream, left, changed func()) *departures {
	d := &departures{members: map[string]bool{}, gone: map[string]chan struct{}{}, changed: changed, left: left}
	es.Subscribe(func(ev any) {
		if t, ok := ev.(*cluster.ClusterTopology); ok {
			d.update(t.Members)
		}
	})
	return d
}

func (d *departures) update(members []*cluster.Member) {
	d.mu.Lock()
	old := d.members
	d.members = make(map[string]bool, len(members))
	for _, m := range members {
		d.members[m.Address()] = true
	}
	for addr, ch := range d.gone {
		if !d.members[addr] {
			close(ch)
			delete(d.gone, addr)
		}
	}
	gone := false
	for addr := range old {
		gone = gone || !d.members[addr]
	}
	moved := gone || len(old) != len(d.members)
	d.mu.Unlock()
	if moved && len(old) > 0 && d.changed != nil {
		d.changed()
	}
	if gone && d.left != nil {
		d.left()
	}
}

// watch returns a channel closed once addr is no member (already closed if
// it is none now).
func (d *departures) watch(addr string) <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.members[addr] {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	ch, ok := d.gone[addr]
	if !ok {
		ch = make(chan struct{})
		d.gone[addr] = ch
	}
	return ch
}
