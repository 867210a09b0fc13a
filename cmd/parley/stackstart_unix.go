//go:build unix

package main

import (
	"os"
	"strings"
	"syscall"
)

// fixedStackStart re-executes the server with GODEBUG=adaptivestackstart=0
// unless GODEBUG already says how to start stacks (an operator who wants
// the runtime's default sets adaptivestackstart=1).
//
// Why: every link has a gws read goroutine parked in a read for the life
// of the link, ~1.1 KiB deep; it fits in a 2 KiB stack as long as frames
// are handled off it (gateway/handler.go offStack). Since Go 1.19 the
// runtime starts new goroutines at the average stack in use at the last
// GC plus a guard, rounded up to a power of two; with 10,000 read loops at
// ~1.1 KiB that average sits right at the 2 KiB/4 KiB boundary, and once
// it tips over, read loops start at 4 KiB and keep it (a parked stack is
// shrunk only when under a quarter of it is in use, counting an 800-byte
// reserve). Stacks count twice in RSS: their own pages and, since Go
// 1.18, the GC goal. adaptivestackstart is read only at start-up and is
// not accepted by //go:debug, hence the exec. Goroutines that need more
// than 2 KiB grow on demand as before Go 1.19. If the exec fails the
// server runs on with the default.
func fixedStackStart() {
	gd, ok := os.LookupEnv("GODEBUG")
	if strings.Contains(gd, "adaptivestackstart=") {
		return
	}
	// /proc/self/exe is the running image even if the file was replaced
	// since (an upgrade in place); elsewhere, the path it was started from.
	exe := "/proc/self/exe"
	if _, err := os.Stat(exe); err != nil {
		if exe, err = os.Executable(); err != nil {
			return
		}
	}
	if ok && gd != "" {
		gd += ","
	}
	env := make([]string, 0, len(os.Environ())+1)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GODEBUG=") {
			env = append(env, kv)
		}
	}
	env = append(env, "GODEBUG="+gd+"adaptivestackstart=0")
	_ = syscall.Exec(exe, os.Args, env)
}
