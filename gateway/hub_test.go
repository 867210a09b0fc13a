package gateway

import "testing"

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
