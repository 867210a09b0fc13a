//go:build linux

package harness

import "syscall"

// childAttr makes a child (server, baseline, worker) receive SIGTERM when
// the bench dies, so none outlives an interrupted or crashed run.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
