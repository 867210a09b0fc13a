package gateway_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/lxzan/gws"
	"github.com/parley-chat/parley/client"
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

func TestMetricsEndpoint(t *testing.T) {
	srv := gatewaytest.Start(t, gatewaytest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, _ := srv.User(t, "metered", "m1")
	g, err := c.CreateGroup(ctx, "m")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Send(ctx, g.Id, "count me"); err != nil {
		t.Fatal(err)
	}
	res, err := http.Get("http://" + srv.Addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{"parley_links 1", "parley_committed_messages_total 2", `parley_mailbox_depth{kind="Conversation"}`,
		`parley_grains{kind="Conversation"} 1`, "parley_fsync_seconds_count", "parley_outbound_queue_bytes", "go_goroutines"} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if res, err := http.Get("http://" + srv.Addr + "/healthz"); err != nil || res.StatusCode != 200 {
		t.Fatalf("healthz: %v %v", res, err)
	}
}

func closeCodeOf(err error) uint16 {
	if ce, ok := err.(*gws.CloseError); ok {
		return ce.Code
	}
	return 0
}

func TestOriginAndRateLimit(t *testing.T) {
	srv := gatewaytest.Start(t, gatewaytest.Options{Gateway: gateway.Options{
		AllowedOrigins: []string{"https://chat.example"}, RatePerSecond: 1, RateBurst: 3, FloodStrikes: 5}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	t.Run("origin", func(t *testing.T) {
		for origin, want := range map[string]bool{"https://chat.example": true, "https://evil.example": false, "": true} {
			h := http.Header{}
			if origin != "" {
				h.Set("Origin", origin)
			}
			conn, res, err := gws.NewClient(rawEvents{&rawConn{frames: make(chan []byte, 1), closed: make(chan error, 1)}},
				&gws.ClientOption{Addr: srv.URL, RequestHeader: h})
			if want != (err == nil) {
				t.Fatalf("origin %q: accepted=%v, want %v (%v)", origin, err == nil, want, err)
			}
			if err == nil {
				conn.WriteClose(1000, nil)
			} else if res != nil && res.StatusCode != http.StatusForbidden {
				t.Fatalf("origin %q refused with %d", origin, res.StatusCode)
			}
		}
	})
	t.Run("rate limit then flood close", func(t *testing.T) {
		c, _ := srv.User(t, "flooder", "f1")
		limited := 0
		for i := 0; i < 10; i++ {
			_, err := c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_ListConversations{ListConversations: &pb.ListConversations{}}})
			var e *client.Error
			if errors.As(err, &e) && e.Code == pb.CodeRateLimited {
				if e.RetryAfter <= 0 {
					t.Fatal("rate_limited without retry_after")
				}
				limited++
			}
			if errors.Is(err, client.ErrClosed) || client.Code(err) == pb.CodeUnavailable {
				break
			}
		}
		if limited == 0 {
			t.Fatal("never rate limited")
		}
		<-c.Done()
		if code := closeCodeOf(c.Err()); code != pb.CloseFlood {
			t.Fatalf("closed with %v, want 4007", c.Err())
		}
	})
}

// A WebSocket ping that arrives long after the server last wrote to the
// link is answered and the link stays open: the pong's write arms the write
// deadline like any other write (a deadline left in the past by the last
// frame would fail it and close the link).
func TestPingAfterServerSilence(t *testing.T) {
	srv := gatewaytest.Start(t, gatewaytest.Options{Gateway: gateway.Options{WriteTimeout: 200 * time.Millisecond}})
	_, li := srv.User(t, "pinger", "p1")
	r := dialRaw(t, srv.URL)
	r.send(t, `{"id":"h","hello":{"versions":[1],"token":"`+li.Token+`","device":{"id":"p1"}}}`)
	if f := r.next(t); f.GetHelloOk() == nil {
		t.Fatalf("hello: %v", f)
	}
	time.Sleep(600 * time.Millisecond) // three write timeouts without a server write
	if err := r.conn.WritePing([]byte("are you there")); err != nil {
		t.Fatal(err)
	}
	r.send(t, `{"id":"p","ping":{}}`)
	if f := r.next(t); f.GetRe() != "p" || f.GetError() != nil {
		t.Fatalf("ping command after a WebSocket ping: %v", f)
	}
}
