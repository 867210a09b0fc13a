//go:build !linux

package harness

import "syscall"

// childAttr: without Pdeathsig, children are only stopped by the bench's
// own shutdown.
func childAttr() *syscall.SysProcAttr { return nil }
