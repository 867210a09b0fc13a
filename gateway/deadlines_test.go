package gateway_test

import (
	"context"
	"testing"
	"time"

	"github.com/lxzan/gws"
	"github.com/parley-chat/parley/gateway"
	"github.com/parley-chat/parley/gateway/gatewaytest"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

func TestLinkDeadlinesAndLogout(t *testing.T) {
	srv := gatewaytest.Start(t, gatewaytest.Options{Gateway: gateway.Options{AuthTimeout: 300 * time.Millisecond, IdleTimeout: 2 * time.Second}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("auth timeout", func(t *testing.T) {
		r := dialRaw(t, srv.URL)
		if code := r.closeCode(t); code != pb.CloseAuthTimeout {
			t.Fatalf("close %d", code)
		}
	})
	t.Run("idle timeout", func(t *testing.T) {
		c, _ := srv.User(t, "idler", "i1")
		select {
		case <-c.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("idle link not closed")
		}
		ce, ok := c.Err().(*gws.CloseError)
		if !ok || ce.Code != pb.CloseIdleTimeout {
			t.Fatalf("closed with %v", c.Err())
		}
	})
	t.Run("logout replies then closes", func(t *testing.T) {
		c, li := srv.User(t, "leaver", "l1")
		if _, err := c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_Logout{Logout: &pb.Logout{}}}); err != nil {
			t.Fatalf("logout reply: %v", err)
		}
		<-c.Done()
		if ce, ok := c.Err().(*gws.CloseError); !ok || ce.Code != pb.CloseLoggedOut {
			t.Fatalf("closed with %v", c.Err())
		}
		// The revoked token no longer opens a session.
		r := dialRaw(t, srv.URL)
		r.send(t, `{"id":"h","hello":{"versions":[1],"token":"`+li.Token+`","device":{"id":"l1"}}}`)
		if f := r.next(t); f.GetError().GetCode() != pb.CodeBadToken {
			t.Fatalf("revoked token: %v", f)
		}
	})
}
