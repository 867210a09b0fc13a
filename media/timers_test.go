package media_test

import (
	"context"
	"testing"
	"time"

	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/actors/call"
	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/gateway/gatewaytest"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

func state(info *pb.CallInfo, user string) (pb.CallParticipantState, string) {
	for _, p := range info.Participants {
		if p.UserId == user {
			return p.State, p.Reason
		}
	}
	return pb.CallParticipantState_CALL_PARTICIPANT_STATE_UNSPECIFIED, ""
}

// TestRingTimeoutAndLinkLoss: an unanswered invitation rings out on every
// device; a participant whose link is gone is removed after the grace
// period; the busy slot is given back.
func TestRingTimeoutAndLinkLoss(t *testing.T) {
	srv := gatewaytest.Start(t, gatewaytest.Options{Actors: actors.Options{CallLimits: call.Limits{RingMs: 1500, GraceMs: 800}}})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	api, err := client.NewCallAPI(true)
	if err != nil {
		t.Fatal(err)
	}
	opts := client.CallOptions{API: api, SendSilence: true}
	alice, _ := srv.User(t, "alice", "a1")
	bob, _ := srv.User(t, "bob", "b1")
	bob2, _ := srv.User(t, "bob", "b2")
	carol, _ := srv.User(t, "carol", "c1")
	g, err := alice.CreateGroup(ctx, "g", bob.UserID(), carol.UserID())
	if err != nil {
		t.Fatal(err)
	}
	ac, err := alice.StartCall(ctx, g.Id, opts)
	if err != nil {
		t.Fatal(err)
	}
	// Both of bob's devices ring; carol accepts.
	for _, c := range []*client.Client{bob, bob2} {
		waitFor(t, "bob's devices ring", func() bool { return len(c.Ringing()) == 1 })
	}
	inv := <-carol.Invitations()
	cc, err := carol.AcceptCall(ctx, inv.CallId, opts)
	if err != nil {
		t.Fatal(err)
	}
	// Nobody answers for bob: the ring times out on both devices.
	waitFor(t, "bob missed", func() bool {
		info, err := alice.CallInfo(ctx, ac.ID())
		s, _ := state(info, bob.UserID())
		return err == nil && s == pb.CallParticipantState_CALL_PARTICIPANT_STATE_MISSED
	})
	for _, c := range []*client.Client{bob, bob2} {
		waitFor(t, "bob's devices stop ringing", func() bool { return len(c.Ringing()) == 0 })
	}
	// Carol's link dies: after the grace period she is out.
	carol.Drop()
	waitFor(t, "carol removed", func() bool {
		info, err := alice.CallInfo(ctx, ac.ID())
		s, reason := state(info, carol.UserID())
		return err == nil && s == pb.CallParticipantState_CALL_PARTICIPANT_STATE_LEFT && reason == call.ReasonLinkLost
	})
	waitFor(t, "alice sees carol leave", func() bool {
		return ac.Participants()[carol.UserID()].GetState() == pb.CallParticipantState_CALL_PARTICIPANT_STATE_LEFT
	})
	_ = cc
	// Bob, who missed the call, may still enter it late.
	bc, err := bob.AcceptCall(ctx, ac.ID(), opts)
	if err != nil {
		t.Fatalf("late join: %v", err)
	}
	waitFor(t, "alice hears bob", func() bool { return ac.Received()[bc.LocalSSRC()] > 10 })
	bc.Leave()
	ac.Leave()
	<-ac.Done()
	// Alice's busy slot is free again: a new call starts.
	g2, err := alice.CreateGroup(ctx, "g2", bob.UserID())
	if err != nil {
		t.Fatal(err)
	}
	ac2, err := alice.StartCall(ctx, g2.Id, opts)
	if err != nil {
		t.Fatalf("new call: %v", err)
	}
	ac2.Leave()
}

// TestTimersSurviveRestart: a call whose node restarted is woken at
// start-up; its media died with the process, so its participants are
// removed (media_lost), the call ends and the busy slots are given back,
// without any client asking.
func TestTimersSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	srv := gatewaytest.Start(t, gatewaytest.Options{DataDir: dir})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	api, err := client.NewCallAPI(true)
	if err != nil {
		t.Fatal(err)
	}
	alice, login := srv.User(t, "alice", "a1")
	bob, _ := srv.User(t, "bob", "b1")
	g, err := alice.CreateGroup(ctx, "g", bob.UserID())
	if err != nil {
		t.Fatal(err)
	}
	ac, err := alice.StartCall(ctx, g.Id, client.CallOptions{API: api})
	if err != nil {
		t.Fatal(err)
	}
	id := ac.ID()
	srv.Stop()

	srv2 := gatewaytest.Start(t, gatewaytest.Options{DataDir: dir})
	alice2 := srv2.Dial(t, "a1", login.Token, nil)
	// The woken call ended by itself; alice's slot is free.
	waitFor(t, "the call ended at start-up", func() bool {
		m := srv2.App.Node.Options().Metrics
		return m.CallsEnded.Load() == 1
	})
	info, err := alice2.CallInfo(ctx, id)
	if err != nil || !info.Ended {
		t.Fatalf("call after restart: %v %v", info, err)
	}
	if s, reason := state(info, alice.UserID()); s != pb.CallParticipantState_CALL_PARTICIPANT_STATE_LEFT || reason != call.ReasonMediaLost {
		t.Fatalf("alice after restart: %v %s", s, reason)
	}
	k, err := alice2.StartCall(ctx, g.Id, client.CallOptions{API: api})
	if err != nil {
		t.Fatalf("a new call after the restart: %v", err)
	}
	k.Leave()
}
