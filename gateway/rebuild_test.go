package gateway_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/actors/grainpb"
	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/gateway/gatewaytest"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"github.com/parley-chat/parley/persistence"
	"google.golang.org/protobuf/proto"
)

func dialReconnecting(t *testing.T, srv *gatewaytest.Server, device string) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{URL: srv.URL, Device: &pb.Device{Id: device, Type: pb.DeviceType_DEVICE_TYPE_MOBILE}, Reconnect: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestRebuildAfterCut cuts a link while messages and session events flow:
// the session is rebuilt (same id), nothing is lost or doubled.
func TestRebuildAfterCut(t *testing.T) {
	srv := gatewaytest.Start(t, gatewaytest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bob, _ := srv.User(t, "bob", "b1")
	srv.User(t, "alice", "setup")
	alice := dialReconnecting(t, srv, "a-phone")
	if _, err := alice.Login(ctx, "alice", "password-alice"); err != nil {
		t.Fatal(err)
	}
	sid := alice.Session().SessionId
	g, err := bob.CreateGroup(ctx, "g", alice.UserID())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Send(ctx, g.Id, "m000"); err != nil {
		t.Fatal(err)
	}
	collect(t, alice, g.Id, 1, 10*time.Second)

	alice.Drop()
	g2, err := bob.CreateGroup(ctx, "while cut", alice.UserID())
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 50; i++ {
		if _, err := bob.Send(ctx, g.Id, fmt.Sprintf("m%03d", i)); err != nil {
			t.Fatal(err)
		}
	}
	got := collect(t, alice, g.Id, 50, 20*time.Second)
	for i, m := range got {
		if m.Text != fmt.Sprintf("m%03d", i+1) {
			t.Fatalf("message %d is %q", i+1, m.Text)
		}
	}
	noMore(t, alice, g.Id, 300*time.Millisecond)
	if s := alice.Session(); s.SessionId != sid || !s.Rebuilt {
		t.Fatalf("session not rebuilt: %v (was %s)", s, sid)
	}
	// The membership event of the second group reached alice (replayed or
	// live), and its messages flow.
	if _, err := bob.Send(ctx, g2.Id, "in g2"); err != nil {
		t.Fatal(err)
	}
	if m := collect(t, alice, g2.Id, 1, 10*time.Second); m[0].Text != "in g2" {
		t.Fatalf("g2: %v", m[0])
	}
}

// TestRebuildRefusals: each refusal has its code and leaves the link able
// to open a fresh session.
func TestRebuildRefusals(t *testing.T) {
	srv := gatewaytest.Start(t, gatewaytest.Options{Actors: actors.Options{SessionKeep: 400 * time.Millisecond}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice, ali := srv.User(t, "alice", "a1")
	_, bli := srv.User(t, "bob", "b1")
	sess := ali.Session
	_ = alice

	resume := func(token, device, sid, rtoken string, last int64) string {
		return fmt.Sprintf(`{"id":"r","hello":{"versions":[1],"token":%q,"device":{"id":%q},"resume":{"sessionId":%q,"rebuildToken":%q,"lastSessionSeq":"%d"}}}`,
			token, device, sid, rtoken, last)
	}
	rows := []struct {
		name, frame, code string
	}{
		{"unknown session", resume(ali.Token, "a1", "snope", sess.RebuildToken, 0), pb.CodeSessionUnknown},
		{"bad rebuild token", resume(ali.Token, "a1", sess.SessionId, "forged", 0), pb.CodeBadRebuildToken},
		{"another user's session", resume(bli.Token, "b1", sess.SessionId, sess.RebuildToken, 0), pb.CodeSessionForeign},
		{"seq in the future", resume(ali.Token, "a1", sess.SessionId, sess.RebuildToken, 99), pb.CodeSeqInFuture},
		{"negative seq", resume(ali.Token, "a1", sess.SessionId, sess.RebuildToken, -1), pb.CodeSeqInFuture},
		{"resume without token", `{"id":"r","hello":{"versions":[1],"resume":{"sessionId":"x"}}}`, pb.CodeInvalidArgument},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			r := dialRaw(t, srv.URL)
			before := checksum(t, srv)
			r.send(t, row.frame)
			if f := r.next(t); f.GetError().GetCode() != row.code {
				t.Fatalf("got %v, want %s", f, row.code)
			}
			if checksum(t, srv) != before {
				t.Fatal("a refused rebuild changed the keyspace")
			}
			// The link still takes a plain hello.
			r.send(t, `{"id":"h","hello":{"versions":[1]}}`)
			if f := r.next(t); f.GetHelloOk() == nil {
				t.Fatalf("hello after refusal: %v", f)
			}
		})
	}
	t.Run("expired", func(t *testing.T) {
		c, li := srv.User(t, "carol", "c1")
		c.Close()
		<-c.Done()
		time.Sleep(600 * time.Millisecond) // past the 400 ms keep window
		r := dialRaw(t, srv.URL)
		r.send(t, resume(li.Token, "c1", li.Session.SessionId, li.Session.RebuildToken, 0))
		if f := r.next(t); f.GetError().GetCode() != pb.CodeSessionExpired {
			t.Fatalf("got %v", f)
		}
	})
	t.Run("two links: the newest wins", func(t *testing.T) {
		c, li := srv.User(t, "dave", "d1")
		r := dialRaw(t, srv.URL)
		r.send(t, resume(li.Token, "d1", li.Session.SessionId, li.Session.RebuildToken, 0))
		if f := r.next(t); !f.GetHelloOk().GetSession().GetRebuilt() {
			t.Fatalf("got %v", f)
		}
		<-c.Done()
		if code := closeCodeOf(c.Err()); code != pb.CloseSessionMoved {
			t.Fatalf("old link closed with %v", c.Err())
		}
	})
	_ = ctx
}

// TestRebuildMembershipRace: a rebuild reads the user's conversation list
// (from the user's stored record) before the session's Resume. Here a group is created with alice as member in that window, and
// its membership event reaches her cut session before the Resume, so the
// Resume replays it: the list read before misses the group, and the
// rebuild must read it again, or the new link is not subscribed to the
// group and its messages are missed live (until the next reconnect).
func TestRebuildMembershipRace(t *testing.T) {
	var hook atomic.Pointer[func(user, session string)]
	srv := gatewaytest.Start(t, gatewaytest.Options{Actors: actors.Options{ResumeHook: func(user, session string) {
		if f := hook.Load(); f != nil {
			(*f)(user, session)
		}
	}}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bob, _ := srv.User(t, "bob", "b1")
	setup, _ := srv.User(t, "alice", "setup")
	setup.Close() // alice's only link is the one rebuilt below
	alice := dialReconnecting(t, srv, "a-phone")
	if _, err := alice.Login(ctx, "alice", "password-alice"); err != nil {
		t.Fatal(err)
	}
	sid := alice.Session().SessionId

	var group atomic.Value
	armed := func(user, session string) {
		if session != sid {
			return
		}
		hook.Store(nil) // once
		g, err := bob.CreateGroup(ctx, "raced", alice.UserID())
		if err != nil {
			t.Error(err)
			return
		}
		group.Store(g.Id)
		// Wait until the join is stored in the session (pushed while cut).
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			v, err := srv.App.Store.Get(persistence.EncodeKey(persistence.KindSession, sid, nil))
			rec := &grainpb.SessionRecord{}
			if err == nil && proto.Unmarshal(v, rec) == nil && rec.MembershipSeen > 0 && rec.CutAtMs > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Error("the membership push did not reach the session")
				return
			}
		}
	}
	hook.Store(&armed)
	alice.Drop()

	// The rebuild confirms, then bob writes to the raced group: alice
	// gets it live.
	for deadline := time.Now().Add(20 * time.Second); group.Load() == nil || !alice.Session().Rebuilt; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no rebuild")
		}
	}
	if s := alice.Session(); s.SessionId != sid {
		t.Fatalf("session not rebuilt: %v (was %s)", s, sid)
	}
	g := group.Load().(string)
	if _, err := bob.Send(ctx, g, "after the race"); err != nil {
		t.Fatal(err)
	}
	if m := collect(t, alice, g, 1, 10*time.Second); m[0].Text != "after the race" {
		t.Fatalf("raced group: %v", m[0])
	}
	if n := srv.App.Node.Options().Metrics.ResumeListRereads.Load(); n != 1 {
		t.Fatalf("conversation list re-reads: %d, want 1", n)
	}
}

// TestRebuildOlderDeviceAttaches: a rebuild on a device that is not the
// user's most recently active one goes through the user grain's Attach
// (its last-active time moves, so the device becomes the most recent);
// on the most recent device it writes nothing to the user record.
func TestRebuildOlderDeviceAttaches(t *testing.T) {
	srv := gatewaytest.Start(t, gatewaytest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	srv.User(t, "alice", "setup")
	phone := dialReconnecting(t, srv, "a-phone")
	if _, err := phone.Login(ctx, "alice", "password-alice"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * time.Millisecond)
	srv.User(t, "alice", "a-laptop") // now the most recent device
	devices := func() map[string]int64 {
		v, err := srv.App.Store.Get(persistence.EncodeKey(persistence.KindUser, phone.UserID(), nil))
		rec := &grainpb.UserRecord{}
		if err != nil || proto.Unmarshal(v, rec) != nil {
			t.Fatalf("read user: %v", err)
		}
		out := map[string]int64{}
		for _, d := range rec.Devices {
			out[d.DeviceId] = d.LastActiveMs
		}
		return out
	}
	rebuild := func() {
		t.Helper()
		prev := phone.Session()
		phone.Drop()
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if s := phone.Session(); s != prev && s.Rebuilt {
				if s.SessionId != prev.SessionId {
					t.Fatalf("new session %s, want %s rebuilt", s.SessionId, prev.SessionId)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("no rebuild")
			}
		}
	}
	before := devices()
	if before["a-phone"] >= before["a-laptop"] {
		t.Fatalf("devices %v: the laptop should be the most recent", before)
	}
	rebuild()
	after := devices()
	if after["a-phone"] <= after["a-laptop"] {
		t.Fatalf("devices %v after the phone's rebuild: the phone should be the most recent", after)
	}
	time.Sleep(5 * time.Millisecond)
	rebuild()
	if again := devices(); again["a-phone"] != after["a-phone"] {
		t.Fatalf("a rebuild on the most recent device wrote its time: %v -> %v", after, again)
	}
}
