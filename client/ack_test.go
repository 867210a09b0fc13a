package client_test

import (
	"context"
	"testing"
	"time"

	"github.com/parley-chat/parley/actors/grainpb"
	"github.com/parley-chat/parley/gateway/gatewaytest"
	"github.com/parley-chat/parley/persistence"
	"google.golang.org/protobuf/proto"
)

// The SDK acknowledges the session events it received (late and
// cumulatively): the server's session record ends with every event
// acknowledged and none held for a replay.
func TestSDKAcknowledgesSessionEvents(t *testing.T) {
	srv := gatewaytest.Start(t, gatewaytest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice, bob := p2spUser(t, srv, "alice", false), p2spUser(t, srv, "bob", false)
	for range 3 {
		if _, err := alice.CreateGroup(ctx, "g", bob.UserID()); err != nil {
			t.Fatal(err)
		}
	}
	key := persistence.EncodeKey(persistence.KindSession, bob.Session().SessionId, nil)
	var rec grainpb.SessionRecord
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		v, err := srv.App.Store.Get(key)
		if err != nil {
			t.Fatal(err)
		}
		if err := proto.Unmarshal(v, &rec); err != nil {
			t.Fatal(err)
		}
		if rec.Seq == 3 && rec.Acked == 3 && len(rec.Unacked) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob's session: seq %d, acked %d, %d events held", rec.Seq, rec.Acked, len(rec.Unacked))
		}
	}
}
