package gateway_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/gateway/gatewaytest"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"github.com/parley-chat/parley/persistence"
)

// TestDedupeWindow: a retransmitted client id is recognised for at least
// 24 h; after two windows it is a new message, and old dedupe records are
// gone from the store.
func TestDedupeWindow(t *testing.T) {
	var offset atomic.Int64
	clock := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
	srv := gatewaytest.Start(t, gatewaytest.Options{Actors: actors.Options{Clock: clock}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, _ := srv.User(t, "dedupe", "d1")
	g, err := c.CreateGroup(ctx, "dd")
	if err != nil {
		t.Fatal(err)
	}
	send := func() *pb.Sent {
		s, err := c.SendMessage(ctx, &pb.Send{ConversationId: g.Id, Text: "x", ClientId: "same"})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	first := send()
	offset.Store(int64(23 * time.Hour))
	if s := send(); !s.Duplicate || s.Seq != first.Seq {
		t.Fatalf("after 23h: %v", s)
	}
	offset.Store(int64(72 * time.Hour))
	s := send()
	if s.Duplicate || s.Seq == first.Seq {
		t.Fatalf("after 72h the client id is still remembered: %v", s)
	}
	// Only the new record remains.
	p := persistence.EntityPrefix(persistence.KindDedupe, g.Id)
	n := 0
	srv.App.Store.Scan(p, persistence.PrefixEnd(p), 0, func(_, _ []byte) bool { n++; return true })
	if n != 1 {
		t.Fatalf("%d dedupe records stored, want 1", n)
	}
}
