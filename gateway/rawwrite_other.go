//go:build !linux

package gateway

import "syscall"

// nonBlockingWrites: off Linux every write is made by the link's own
// blocking drain (links get no raw connection).
const nonBlockingWrites = false

type scratch struct{}

func tryWrite(syscall.RawConn, [][]byte, *scratch) (int, error) { return 0, nil }
