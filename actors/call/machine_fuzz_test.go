package call

import (
	"fmt"
	"testing"
)

// FuzzRoomStep drives the room machine with arbitrary event sequences
// (any request from any user and device, claim and ring answers, link
// reports, ticks, restarts) and checks that it never panics and that its
// state stays coherent after every step.
func FuzzRoomStep(f *testing.F) {
	f.Add([]byte{0, 0, 0, 1, 7, 2, 3, 1, 4, 1, 9})
	f.Add([]byte{0, 0, 0, 1, 7, 2, 3, 1, 4, 1, 9, 3, 1, 1, 6, 2, 5, 5, 5, 8, 1})
	f.Fuzz(fuzzBody())
}

func fuzzBody() func(t *testing.T, data []byte) {
	users := []string{"A", "B", "C", "Z"}
	devices := []string{"d1", "d2"}
	joins := []string{"j1", "j2", "j3", ""}
	return func(t *testing.T, data []byte) {
		r := NewRoom("k1")
		lim := Limits{RingMs: 50, SetupMs: 40, GraceMs: 30}
		now := int64(1)
		next := func() int {
			if len(data) == 0 {
				return 0
			}
			b := data[0]
			data = data[1:]
			return int(b)
		}
		for steps := 0; len(data) > 0 && steps < 200; steps++ {
			now += int64(next() % 20)
			var ev Event
			switch k := next() % 8; k {
			case 0, 1, 2:
				u, d, j := users[next()%len(users)], devices[next()%len(devices)], joins[next()%len(joins)]
				ev = Request{Op: Op(1 + next()%9), Actor: u, Device: u + d, Session: "s" + u + d + fmt.Sprint(next()%2),
					Join: j, Conv: "g1", Members: []string{"A", "B", "C"}, Muted: next()%2 == 0, Now: now}
			case 3:
				ev = ClaimResult{User: users[next()%len(users)], Version: uint64(next() % 8), OK: next()%3 != 0, Now: now}
			case 4:
				ev = RingResult{User: users[next()%len(users)], Busy: next()%2 == 0, Now: now}
			case 5:
				u, d := users[next()%len(users)], devices[next()%len(devices)]
				ev = Link{Session: "s" + u + u + d + fmt.Sprint(next()%2), Linked: next()%2 == 0, Gen: uint64(next() % 6), Now: now}
			case 6:
				if d := r.NextDeadline(lim); d > now && next()%2 == 0 {
					now = d
				}
				ev = Tick{Now: now}
			case 7:
				if next()%4 == 0 {
					ev = Activated{Now: now}
				} else {
					ev = MediaFailed{User: users[next()%len(users)], Join: joins[next()%len(joins)], Now: now}
				}
			}
			before := r.Clone()
			fx := r.Step(ev, lim)
			if fx.Reply != nil && fx.Reply.Err != nil && !fx.Persist && before.String(lim) != r.String(lim) {
				t.Fatalf("refused %#v changed the state:\n%s\n%s", ev, before.String(lim), r.String(lim))
			}
			if err := coherent(r); err != nil {
				t.Fatalf("after %#v: %v\n%s", ev, err, r.String(lim))
			}
		}
	}
}

// coherent checks what must hold in every state of a room.
func coherent(r *Room) error {
	seen := map[string]bool{}
	active := 0
	for _, p := range r.Parts {
		if seen[p.User] {
			return fmt.Errorf("two participants of %s", p.User)
		}
		seen[p.User] = true
		if !r.Member(p.User) {
			return fmt.Errorf("participant %s is not a member", p.User)
		}
		if p.State.Active() {
			active++
			if p.Join == "" || p.Device == "" {
				return fmt.Errorf("%s is %s without a join", p.User, p.State)
			}
		}
		if r.Phase == PhaseEnded && (p.State.Active() || p.State == Invited) {
			return fmt.Errorf("call ended but %s is %s", p.User, p.State)
		}
		if !p.State.Active() && p.State != Invited && p.Deadline != 0 {
			return fmt.Errorf("%s is %s with a deadline", p.User, p.State)
		}
	}
	if r.Phase == PhaseActive && active == 0 {
		return fmt.Errorf("an active call without an active participant")
	}
	return nil
}
