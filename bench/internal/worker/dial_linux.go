//go:build linux

package worker

import "syscall"

// ipBindAddressNoPort is IP_BIND_ADDRESS_NO_PORT (linux/in.h): with a
// source address bound, the kernel picks the ephemeral port at connect
// time, per destination, so TIME_WAIT ports of an earlier run against
// another server port do not exhaust the source address.
const ipBindAddressNoPort = 24

func bindNoPort(network, address string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
