package media_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/gateway"
	"github.com/parley-chat/parley/gateway/gatewaytest"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"github.com/parley-chat/parley/media"
)

// TestThreeClientsExchangeAudio: three Go SDK clients with pion peers
// join one group call through a real server (gateway, grains, Pebble,
// SFU on loopback). Each publishes an Opus-like RTP stream (a silence
// frame every 20 ms) and must receive both other streams: the inbound
// SSRCs of each client are exactly the outbound SSRCs of the other two
// (the SFU forwards, it does not mix), with packets flowing.
// It runs on both engines.
func TestThreeClientsExchangeAudio(t *testing.T) {
	for _, e := range engines {
		t.Run(e, func(t *testing.T) { threeClientsExchangeAudio(t, e) })
	}
}

var engines = []string{media.EngineLite, media.EnginePion}

// onEngine starts a test server whose SFU runs engine e.
func onEngine(t *testing.T, e string) *gatewaytest.Server {
	srv := gatewaytest.Start(t, gatewaytest.Options{AppFS: func(o *gateway.AppOptions) { o.Media.Engine = e }})
	if got := srv.App.Media.Engine(); got != e {
		t.Fatalf("SFU engine %q, want %q", got, e)
	}
	return srv
}

func threeClientsExchangeAudio(t *testing.T, e string) {
	srv := onEngine(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	api, err := client.NewCallAPI(true)
	if err != nil {
		t.Fatal(err)
	}
	opts := client.CallOptions{API: api, SendSilence: true}

	alice, _ := srv.User(t, "alice", "alice-laptop")
	bob, _ := srv.User(t, "bob", "bob-laptop")
	carol, _ := srv.User(t, "carol", "carol-laptop")
	g, err := alice.CreateGroup(ctx, "standup", bob.UserID(), carol.UserID())
	if err != nil {
		t.Fatal(err)
	}
	// Let the invitees' sessions learn of the group (not required for
	// ringing, which goes through the user grain, but realistic).
	time.Sleep(200 * time.Millisecond)

	ac, err := alice.StartCall(ctx, g.Id, opts)
	if err != nil {
		t.Fatalf("alice starts: %v", err)
	}
	if ac.Media().GetUdpAddr() != srv.App.Media.Endpoint().UdpAddr || ac.Media().GetNode() == "" {
		t.Fatalf("confirm names media endpoint %v, the node's SFU is %v", ac.Media(), srv.App.Media.Endpoint())
	}
	accept := func(c *client.Client, name string) *client.Call {
		select {
		case inv := <-c.Invitations():
			if inv.CallId != ac.ID() || inv.Caller != alice.UserID() || inv.ConversationId != g.Id {
				t.Fatalf("%s: invitation %v", name, inv)
			}
			k, err := c.AcceptCall(ctx, inv.CallId, opts)
			if err != nil {
				t.Fatalf("%s accepts: %v", name, err)
			}
			return k
		case <-ctx.Done():
			t.Fatalf("%s: no invitation", name)
		}
		return nil
	}
	bc := accept(bob, "bob")
	cc := accept(carol, "carol")
	calls := map[string]*client.Call{"alice": ac, "bob": bc, "carol": cc}

	// Each receives the other two streams, by SSRC.
	const want = 50 // one second of audio
	deadline := time.Now().Add(60 * time.Second)
	for {
		done := true
		for name, k := range calls {
			got := k.Received()
			for other, o := range calls {
				if other != name && got[o.LocalSSRC()] < want {
					done = false
				}
			}
		}
		if done {
			break
		}
		if time.Now().After(deadline) {
			for name, k := range calls {
				t.Logf("%s: local %d sent %d received %v errors %v", name, k.LocalSSRC(), k.Sent(), k.Received(), k.Errors())
			}
			t.Fatal("streams did not arrive")
		}
		time.Sleep(100 * time.Millisecond)
	}
	for name, k := range calls {
		var in, out []uint32
		for ssrc := range k.Received() {
			in = append(in, ssrc)
		}
		for other, o := range calls {
			if other != name {
				out = append(out, o.LocalSSRC())
			}
		}
		slices.Sort(in)
		slices.Sort(out)
		if !slices.Equal(in, out) {
			t.Fatalf("%s receives SSRCs %v, the others send %v", name, in, out)
		}
		t.Logf("%s: sent %d, received %v", name, k.Sent(), k.Received())
	}
	st := srv.App.Media.Stats()
	if st.PacketsOut < 6*want || st.Peers != 3 || st.Rooms != 1 {
		t.Fatalf("SFU stats %+v", st)
	}

	// Everyone sees everyone in the room.
	info, err := alice.CallInfo(ctx, ac.ID())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range info.Participants {
		if p.State != pb.CallParticipantState_CALL_PARTICIPANT_STATE_IN_ROOM {
			t.Fatalf("participant %v", p)
		}
	}

	// Mute is announced to the others.
	if err := bc.Mute(true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "alice sees bob muted", func() bool { return ac.Participants()[bob.UserID()].GetMuted() })

	// Leaving: the call ends with its last participant.
	for _, k := range []*client.Call{cc, bc, ac} {
		if err := k.Leave(); err != nil {
			t.Fatal(err)
		}
		<-k.Done()
	}
	waitFor(t, "the call ends", func() bool {
		info, err := alice.CallInfo(ctx, ac.ID())
		return err == nil && info.Ended && info.EndReason == "empty"
	})
	waitFor(t, "the SFU room closes", func() bool { st := srv.App.Media.Stats(); return st.Rooms == 0 && st.Peers == 0 })
}

// TestCallBadInput: wrong signalling gets precise errors (on both
// engines).
func TestCallBadInput(t *testing.T) {
	for _, e := range engines {
		t.Run(e, func(t *testing.T) { callBadInput(t, e) })
	}
}

func callBadInput(t *testing.T, e string) {
	srv := onEngine(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	api, err := client.NewCallAPI(true)
	if err != nil {
		t.Fatal(err)
	}
	opts := client.CallOptions{API: api, SendSilence: true}
	alice, _ := srv.User(t, "alice", "a1")
	bob, _ := srv.User(t, "bob", "b1")
	carol, _ := srv.User(t, "carol", "c1")
	dave, _ := srv.User(t, "dave", "d1")
	g, err := alice.CreateGroup(ctx, "g", bob.UserID(), carol.UserID())
	if err != nil {
		t.Fatal(err)
	}
	ac, err := alice.StartCall(ctx, g.Id, opts)
	if err != nil {
		t.Fatal(err)
	}
	var bc *client.Call
	select {
	case inv := <-bob.Invitations():
		if bc, err = bob.AcceptCall(ctx, inv.CallId, opts); err != nil {
			t.Fatal(err)
		}
	case <-ctx.Done():
		t.Fatal("no invitation")
	}
	id := ac.ID()
	goodCand := &pb.IceCandidate{Candidate: "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host", SdpMid: "0"}
	cases := []struct {
		name string
		c    *client.Client
		f    *pb.ClientFrame
		code string
	}{
		{"signalling by a non-member", dave, signal(id, "x1", nil, goodCand), pb.CodeNotMember},
		{"signalling for a call you are not in", carol, signal(id, "x2", nil, goodCand), pb.CodeNotInCall},
		{"signalling with another join of yours", alice, signal(id, "not-my-join", nil, goodCand), pb.CodeNotInCall},
		{"signalling for an unknown call", alice, signal("k000000000000000000000000", "x3", nil, goodCand), pb.CodeNotFound},
		{"SDP garbage", alice, signal(id, ac.Join, &pb.SessionDescription{Type: "answer", Sdp: "v=garbage\r\nthis is not SDP", Revision: 1}, nil), pb.CodeBadSDP},
		{"an offer instead of an answer", alice, signal(id, ac.Join, &pb.SessionDescription{Type: "offer", Sdp: "v=0", Revision: 1}, nil), pb.CodeBadSDP},
		{"candidate garbage", alice, signal(id, ac.Join, nil, &pb.IceCandidate{Candidate: "candidate:this is garbage", SdpMid: "0"}), pb.CodeBadSDP},
		{"signal with neither answer nor candidate", alice, signal(id, ac.Join, nil, nil), pb.CodeInvalidArgument},
		{"a second join from the same device", bob, &pb.ClientFrame{Command: &pb.ClientFrame_EnterCall{EnterCall: &pb.EnterCall{CallId: id, JoinId: "second"}}}, pb.CodeAlreadyJoined},
		{"create-room by an invitee", bob, &pb.ClientFrame{Command: &pb.ClientFrame_CreateRoom{CreateRoom: &pb.CreateRoom{CallId: id, JoinId: bc.Join}}}, pb.CodeCallState},
		{"cancel by a non-caller", bob, &pb.ClientFrame{Command: &pb.ClientFrame_CancelCall{CancelCall: &pb.CancelCall{CallId: id, JoinId: bc.Join}}}, pb.CodeForbidden},
		{"bad join id", bob, &pb.ClientFrame{Command: &pb.ClientFrame_JoinRoom{JoinRoom: &pb.JoinRoom{CallId: id, JoinId: "no spaces allowed"}}}, pb.CodeInvalidArgument},
		{"a call in a conversation you are not in", dave, &pb.ClientFrame{Command: &pb.ClientFrame_CreateCall{CreateCall: &pb.CreateCall{ConversationId: g.Id, JoinId: "d-1"}}}, pb.CodeNotMember},
		{"call info for a non-member", dave, &pb.ClientFrame{Command: &pb.ClientFrame_CallInfo{CallInfo: &pb.GetCallInfo{CallId: id}}}, pb.CodeNotMember},
	}
	for _, tc := range cases {
		_, err := tc.c.Call(ctx, tc.f)
		if client.Code(err) != tc.code {
			t.Errorf("%s: got %v, want %s", tc.name, err, tc.code)
		}
	}
	// Busy: alice is in this call; starting another one answers busy.
	g2, err := alice.CreateGroup(ctx, "g2", carol.UserID())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_CreateCall{CreateCall: &pb.CreateCall{ConversationId: g2.Id, JoinId: "other-call"}}}); client.Code(err) != pb.CodeBusy {
		t.Errorf("second call while in one: got %v, want busy", err)
	}

	// After the end: offers and every other request but leave get call_ended.
	join := bc.Join
	bc.Leave()
	ac.Leave()
	waitFor(t, "the call ends", func() bool {
		info, err := alice.CallInfo(ctx, id)
		return err == nil && info.Ended
	})
	for _, f := range []*pb.ClientFrame{
		signal(id, join, &pb.SessionDescription{Type: "answer", Sdp: "v=0", Revision: 2}, nil),
		signal(id, join, nil, goodCand),
		{Command: &pb.ClientFrame_JoinRoom{JoinRoom: &pb.JoinRoom{CallId: id, JoinId: join}}},
		{Command: &pb.ClientFrame_EnterCall{EnterCall: &pb.EnterCall{CallId: id, JoinId: "late"}}},
	} {
		if _, err := bob.Call(ctx, f); client.Code(err) != pb.CodeCallEnded {
			t.Errorf("%s after the end: got %v, want call_ended", pb.CommandName(f), err)
		}
	}
	if _, err := bob.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_LeaveCall{LeaveCall: &pb.LeaveCall{CallId: id, JoinId: join}}}); err != nil {
		t.Errorf("leave after the end: %v", err)
	}
	// Now that alice's slot is free, the other call can start.
	if _, err := alice.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_CreateCall{CreateCall: &pb.CreateCall{ConversationId: g2.Id, JoinId: "other-call-2"}}}); err != nil {
		t.Errorf("a call after the first ended: %v", err)
	}
}

func signal(call, join string, answer *pb.SessionDescription, cand *pb.IceCandidate) *pb.ClientFrame {
	return &pb.ClientFrame{Command: &pb.ClientFrame_SignalCall{SignalCall: &pb.SignalCall{CallId: call, JoinId: join, Answer: answer, Candidate: cand}}}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

var _ = fmt.Sprint
