package call

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

var testLimits = Limits{RingMs: 100, SetupMs: 50, GraceMs: 20}

// TestRoomTranscripts runs the scripts in testdata/room: each command steps
// the room machine and prints the effects; `state` prints the state.
// Refresh the expected output with -rewrite after checking it by eye.
//
//	create actor=A device=a1 session=sa join=j1 conv=g1 members=A,B,C
//	create-room|enter|join|cancel|leave|signal actor=B device=b1 [session=sb] join=k1
//	decline actor=B device=b1
//	mute actor=B device=b1 join=k1 [off]
//	claim user=A version=1 [busy]
//	ring user=B busy
//	link session=sa down|up gen=1
//	media-failed user=B join=k1
//	tick at=MS | activate
//	state
//
// Every command takes at=MS (the clock; it only moves forward).
func TestRoomTranscripts(t *testing.T) {
	datadriven.Walk(t, "testdata/room", func(t *testing.T, path string) {
		r := NewRoom("k1")
		now := int64(0)
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			a := args{d}
			if at := a.num("at", -1); at >= 0 {
				now = at
			}
			var ev Event
			req := func(op Op) Request {
				return Request{Op: op, Actor: a.str("actor", ""), Device: a.str("device", ""), Session: a.str("session", ""),
					Join: a.str("join", ""), Conv: a.str("conv", ""), Members: a.list("members"), Muted: !a.has("off"), Now: now}
			}
			switch d.Cmd {
			case "create":
				ev = req(OpCreate)
			case "create-room":
				ev = req(OpCreateRoom)
			case "enter":
				ev = req(OpEnter)
			case "join":
				ev = req(OpJoin)
			case "decline":
				ev = req(OpDecline)
			case "cancel":
				ev = req(OpCancel)
			case "leave":
				ev = req(OpLeave)
			case "mute":
				ev = req(OpMute)
			case "signal":
				ev = req(OpSignal)
			case "claim":
				ev = ClaimResult{User: a.str("user", ""), Version: uint64(a.num("version", 0)), OK: !a.has("busy"), Now: now}
			case "ring":
				ev = RingResult{User: a.str("user", ""), Busy: a.has("busy"), Now: now}
			case "link":
				ev = Link{Session: a.str("session", ""), Linked: a.has("up"), Gen: uint64(a.num("gen", 0)), Now: now}
			case "media-failed":
				ev = MediaFailed{User: a.str("user", ""), Join: a.str("join", ""), Now: now}
			case "tick":
				ev = Tick{Now: now}
			case "activate":
				ev = Activated{Now: now}
			case "state":
				return r.String(testLimits)
			default:
				d.Fatalf(t, "unknown command %s", d.Cmd)
			}
			return r.Step(ev, testLimits).String()
		})
	})
}

// TestDeviceTranscripts runs the scripts in testdata/device against a
// device machine (user U, device d1).
//
//	start conv=g1 join=j1 | accept call=k1 join=j2 | decline call=k1 | hangup | mute [off]
//	reply op=create call=k1 join=j1 [err=busy] [dup]
//	invited call=k1 conv=g1 caller=A expires=MS now=MS
//	ring-stopped call=k1 reason=R [device=D]
//	ended call=k1 join=j1 reason=R
//	state
func TestDeviceTranscripts(t *testing.T) {
	datadriven.Walk(t, "testdata/device", func(t *testing.T, path string) {
		dev := &Device{User: "U", ID: "d1"}
		datadriven.RunTest(t, path, func(t *testing.T, d *datadriven.TestData) string {
			a := args{d}
			var ev DeviceEvent
			switch d.Cmd {
			case "start":
				ev = Start{Conv: a.str("conv", ""), Join: a.str("join", "")}
			case "accept":
				ev = Accept{Call: a.str("call", ""), Join: a.str("join", "")}
			case "decline":
				ev = Decline{Call: a.str("call", "")}
			case "hangup":
				ev = Hangup{}
			case "mute":
				ev = SetMute{Muted: !a.has("off")}
			case "reply":
				r := Reply{Op: opByName(t, a.str("op", "")), Call: a.str("call", ""), Join: a.str("join", ""), Duplicate: a.has("dup")}
				if c := a.str("err", ""); c != "" {
					r.Err = &Error{Code: c, Message: c}
				}
				ev = Answer{Reply: r}
			case "invited":
				ev = Incoming{Invitation: Invitation{Call: a.str("call", ""), Conv: a.str("conv", ""), Caller: a.str("caller", ""),
					Expires: a.num("expires", 0)}, Now: a.num("now", 0)}
			case "ring-stopped":
				ev = RingStopped{Call: a.str("call", ""), Reason: a.str("reason", ""), Device: a.str("device", "")}
			case "ended":
				ev = Ended{Call: a.str("call", ""), Join: a.str("join", ""), Reason: a.str("reason", "")}
			case "state":
				return dev.String()
			default:
				d.Fatalf(t, "unknown command %s", d.Cmd)
			}
			return dev.Step(ev).String()
		})
	})
}

func opByName(t *testing.T, name string) Op {
	for i, n := range opNames {
		if n == name {
			return Op(i)
		}
	}
	t.Fatalf("unknown op %q", name)
	return 0
}

type args struct{ d *datadriven.TestData }

func (a args) has(k string) bool {
	for _, x := range a.d.CmdArgs {
		if x.Key == k {
			return true
		}
	}
	return false
}

func (a args) str(k, def string) string {
	for _, x := range a.d.CmdArgs {
		if x.Key == k && len(x.Vals) > 0 {
			return strings.Join(x.Vals, ",")
		}
	}
	return def
}

func (a args) list(k string) []string {
	if v := a.str(k, ""); v != "" {
		return strings.Split(v, ",")
	}
	return nil
}

func (a args) num(k string, def int64) int64 {
	v := a.str(k, "")
	if v == "" {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		panic(fmt.Sprintf("bad %s=%q", k, v))
	}
	return n
}

// String renders the room for transcripts.
func (r *Room) String(lim Limits) string {
	var b strings.Builder
	phase := [...]string{"none", "active", "ended"}[r.Phase]
	fmt.Fprintf(&b, "call %s phase=%s conv=%s caller=%s members=%s", r.ID, phase, r.Conv, r.Caller, strings.Join(r.Members, ","))
	if r.Phase == PhaseEnded {
		fmt.Fprintf(&b, " ended=%d reason=%s", r.Ended, r.EndReason)
	}
	fmt.Fprintf(&b, " version=%d next=%d\n", r.Version, r.NextDeadline(lim))
	for _, p := range r.Parts {
		fmt.Fprintf(&b, "  %s %s", p.User, p.State)
		if p.Join != "" {
			fmt.Fprintf(&b, " device=%s session=%s join=%s", p.Device, p.Session, p.Join)
		}
		for _, kv := range []struct {
			k string
			v int64
		}{{"deadline", p.Deadline}, {"cut", p.CutAt}, {"gen", int64(p.LinkGen)}} {
			if kv.v != 0 {
				fmt.Fprintf(&b, " %s=%d", kv.k, kv.v)
			}
		}
		if p.Muted {
			b.WriteString(" muted")
		}
		if p.Entered {
			b.WriteString(" entered")
		}
		if p.Reason != "" {
			fmt.Fprintf(&b, " reason=%s", p.Reason)
		}
		if p.Refused != "" {
			fmt.Fprintf(&b, " refused=%s", p.Refused)
		}
		if len(p.OldJoins) > 0 {
			fmt.Fprintf(&b, " old=%s", strings.Join(p.OldJoins, ","))
		}
		b.WriteString("\n")
	}
	return b.String()
}

func (r Reply) String() string {
	if r.Err != nil {
		return fmt.Sprintf("%s join=%s error %s", r.Op, r.Join, r.Err.Code)
	}
	s := fmt.Sprintf("%s call=%s join=%s ok", r.Op, r.Call, r.Join)
	if r.Duplicate {
		s += " dup"
	}
	if r.Participants != nil {
		var ps []string
		for _, p := range r.Participants {
			ps = append(ps, p.User+":"+shortPart(p.State))
		}
		s += " [" + strings.Join(ps, " ") + "]"
	}
	return s
}

func shortPart(s pb.CallParticipantState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "CALL_PARTICIPANT_STATE_"))
}

// String renders room effects for transcripts.
func (fx Effects) String() string {
	var b strings.Builder
	if fx.Persist {
		b.WriteString("persist\n")
	}
	if fx.Dropped != "" {
		fmt.Fprintf(&b, "dropped %s\n", fx.Dropped)
	}
	if fx.Reply != nil {
		fmt.Fprintf(&b, "reply %s\n", fx.Reply)
	}
	if fx.Park {
		b.WriteString("park\n")
	}
	for _, r := range fx.Resolve {
		fmt.Fprintf(&b, "resolve %s %s\n", r.User, r.Reply)
	}
	for _, c := range fx.Claims {
		verb := "claim"
		if c.Release {
			verb = "release"
		}
		fmt.Fprintf(&b, "%s %s v%d\n", verb, c.User, c.Version)
	}
	for _, r := range fx.Rings {
		if r.Invite {
			fmt.Fprintf(&b, "ring %s until=%d\n", r.User, r.Expires)
		} else {
			fmt.Fprintf(&b, "stop-ring %s reason=%s", r.User, r.Reason)
			if r.Device != "" {
				fmt.Fprintf(&b, " device=%s", r.Device)
			}
			b.WriteString("\n")
		}
	}
	for _, n := range fx.Notices {
		if n.Ended != "" {
			fmt.Fprintf(&b, "notify %s/%s ended %s\n", n.Session, n.Join, n.Ended)
		} else {
			fmt.Fprintf(&b, "notify %s/%s participant %s %s", n.Session, n.Join, n.Part.User, shortPart(n.Part.State))
			if n.Part.Muted {
				b.WriteString(" muted")
			}
			if n.Part.Reason != "" {
				fmt.Fprintf(&b, " reason=%s", n.Part.Reason)
			}
			b.WriteString("\n")
		}
	}
	for _, bd := range fx.Binds {
		verb := "bind"
		if !bd.Bind {
			verb = "unbind"
		}
		fmt.Fprintf(&b, "%s %s\n", verb, bd.Session)
	}
	if fx.Media {
		b.WriteString("media\n")
	}
	if fx.Signal {
		b.WriteString("signal\n")
	}
	if fx.Ended {
		b.WriteString("ended\n")
	}
	if b.Len() == 0 {
		return "no effects\n"
	}
	return b.String()
}

// String renders the device for transcripts.
func (d *Device) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s", d.State)
	if d.Active() {
		fmt.Fprintf(&b, " call=%s join=%s caller=%v", d.Call, d.Join, d.Caller)
		if d.Muted {
			b.WriteString(" muted")
		}
	}
	var rings []string
	for _, r := range d.Ringing {
		rings = append(rings, r.Call)
	}
	fmt.Fprintf(&b, " ringing=[%s] gone-calls=[%s] gone-joins=[%s]\n", strings.Join(rings, " "),
		strings.Join(d.GoneCalls, " "), strings.Join(d.GoneJoins, " "))
	return b.String()
}

// String renders device effects for transcripts.
func (fx DeviceEffects) String() string {
	var b strings.Builder
	if fx.Err != nil {
		fmt.Fprintf(&b, "refused %s\n", fx.Err.Code)
	}
	for _, s := range fx.Send {
		fmt.Fprintf(&b, "send %s call=%s join=%s", s.Op, s.Call, s.Join)
		if s.Conv != "" {
			fmt.Fprintf(&b, " conv=%s", s.Conv)
		}
		if s.Op == OpMute {
			fmt.Fprintf(&b, " muted=%v", s.Muted)
		}
		b.WriteString("\n")
	}
	if fx.StartMedia {
		b.WriteString("start media\n")
	}
	if fx.StopMedia {
		b.WriteString("stop media\n")
	}
	for _, c := range fx.Ring {
		fmt.Fprintf(&b, "ring %s\n", c)
	}
	for _, c := range fx.StopRing {
		fmt.Fprintf(&b, "stop ringing %s\n", c)
	}
	if fx.Over != "" {
		fmt.Fprintf(&b, "over %s\n", fx.Over)
	}
	if b.Len() == 0 {
		return "no effects\n"
	}
	return b.String()
}
