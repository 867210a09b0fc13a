package actors

import (
	"github.com/asynkron/protoactor-go/actor"
	cmap "github.com/orcaman/concurrent-map"
)

// compactRegistry folds the actor system's process registry into one
// 32-shard map.
//
// protoactor spreads local processes over 1,024 concurrent maps of 32
// shards each: 32,768 Go maps. Every actor and every request future lands
// in one of them, and a Go map never gives back the table it allocated for
// its first entry, so after a few tens of thousands of short-lived futures
// nearly every one of the 32,768 maps holds a table of its own: ~10 MiB
// that no workload needs (measured: 11.5 MiB live for 10,000 links, ~1.1
// KiB per link). 32 shards are plenty for the cores a node has; the hash
// that picks a bucket still runs, over a one-element slice.
//
// It must run right after the system is created, before other goroutines
// use the registry; the processes registered so far are carried over.
func compactRegistry(sys *actor.ActorSystem) {
	reg := sys.ProcessRegistry.LocalPIDs
	one := cmap.New()
	for _, m := range reg.LocalPIDs {
		if m.Count() == 0 {
			// IterBuffered starts a goroutine per map: 1,024 of them
			// would leave ~5 MiB of stacks and descriptors behind.
			continue
		}
		for t := range m.IterBuffered() {
			one.Set(t.Key, t.Val)
		}
	}
	reg.LocalPIDs = []cmap.ConcurrentMap{one}
}
