package client

import (
	"context"
	"os"

	pb "github.com/parley-chat/parley/gateway/protocol"
)

// Test hooks for package client_test.

// SetServeHook makes holders pass every piece they send through fn.
func SetServeHook(fn func(c *Client, piece int, data []byte)) { testHookServe = fn }

// SetHelloGrantHook replaces the grant requesters present ("-": a request
// without hello).
func SetHelloGrantHook(fn func(grant string) string) { testHookHelloGrant = fn }

// SetBeforeVerifyHook runs fn on a finished download before its whole-file
// check.
func SetBeforeVerifyHook(fn func(c *Client, f *os.File)) { testHookBeforeVerify = fn }

// DialHolder opens a peer link to holder (as DownloadP2SP does), closes it
// and returns the handshake's error.
func DialHolder(c *Client, fileID string, holder *pb.P2SpHolder) error {
	l, _, err := c.p2spHub().dial(context.Background(), fileID, holder)
	if l != nil {
		l.close(nil)
	}
	return err
}
