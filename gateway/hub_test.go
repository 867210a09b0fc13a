package gateway

import (
	"slices"
	"testing"
)

// A join pushed to a session whose link is open but not yet attached (its
// login read the user's conversations before the join committed) is kept
// and subscribed at attach; a join for no link, or for a link that closed,
// keeps nothing.
func TestHubJoinBeforeAttach(t *testing.T) {
	h := NewHub()
	l := &link{id: 7}
	h.addLink(l)
	h.Join("c-new", "u1", 7)   // before attach: kept for link 7
	h.Join("c-other", "u1", 0) // no link named: nothing to keep
	h.Join("c-gone", "u1", 8)  // link 8 is not open
	h.attach(l, "u1", []string{"c-old"}, 1, 1)
	for conv, want := range map[string]bool{"c-old": true, "c-new": true, "c-other": false, "c-gone": false} {
		_, in := h.convs[conv][h.users["u1"]]
		if in != want {
			t.Errorf("subscribed to %s: %v, want %v", conv, in, want)
		}
	}
	if len(h.early) != 0 {
		t.Fatalf("early joins left after attach: %v", h.early)
	}

	// A link that closes before attaching leaves nothing behind.
	l2 := &link{id: 9}
	h.addLink(l2)
	h.Join("c-x", "u2", 9)
	h.removeLink(l2)
	if len(h.early) != 0 {
		t.Fatalf("early joins of a closed link kept: %v", h.early)
	}
}

// A leave pushed to the session of a link that is open but not yet
// attached (its resume read the conversation list before the leave
// committed) is applied at attach after the list: the link is not left
// subscribed to a conversation its user was removed from. Joins and
// leaves kept for the link apply in the order they came.
func TestHubLeaveBeforeAttach(t *testing.T) {
	h := NewHub()
	other := &link{id: 3}
	h.addLink(other)
	h.attach(other, "u1", []string{"c-old", "c-back"}, 1, 1)
	l := &link{id: 7}
	h.addLink(l)
	h.Leave("c-old", "u1", 7)  // removed after link 7 read its list
	h.Leave("c-back", "u1", 7) // removed, then added again
	h.Join("c-back", "u1", 7)
	h.Join("c-gone", "u1", 7) // added, then removed again
	h.Leave("c-gone", "u1", 7)
	if _, in := h.convs["c-old"][h.users["u1"]]; in {
		t.Fatal("the leave was not applied to the user's attached link at once")
	}
	// The list link 7 read still names c-old and c-gone.
	h.attach(l, "u1", []string{"c-old", "c-back", "c-gone"}, 1, 1)
	u := h.users["u1"]
	for conv, want := range map[string]bool{"c-old": false, "c-back": true, "c-gone": false} {
		_, in := h.convs[conv][u]
		if in != want {
			t.Errorf("subscribed to %s: %v, want %v", conv, in, want)
		}
		if has := slices.Contains(u.convs, conv); has != want {
			t.Errorf("user's conversations name %s: %v, want %v", conv, has, want)
		}
	}
	if len(h.early) != 0 {
		t.Fatalf("early ops left after attach: %v", h.early)
	}
	// Once attached, nothing is kept for the link.
	h.Leave("c-back", "u1", 7)
	if len(h.early) != 0 || slices.Contains(u.convs, "c-back") {
		t.Fatalf("leave after attach: early %v, convs %v", h.early, u.convs)
	}
}
