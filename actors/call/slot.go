package call

// Slot is a user's busy slot: a user is in at most one call at a time. The
// user grain keeps it; call grains claim it when the user starts or enters
// a call and release it when the user's part ends. Operations of one call
// carry increasing versions, so retried or reordered ones are harmless.
type Slot struct {
	Call    string
	Version uint64
	Active  bool
}

// Claim claims the slot for call; false means busy (in another call).
func (s *Slot) Claim(call string, version uint64) bool {
	switch {
	case s.Active && s.Call != call:
		return false
	case s.Call == call && version <= s.Version:
		// Older than what was applied: answer what holds now.
		return s.Active
	}
	s.Call, s.Version, s.Active = call, version, true
	return true
}

// Release frees the slot if call holds it and version is newer.
func (s *Slot) Release(call string, version uint64) {
	if s.Call == call && version > s.Version {
		s.Version, s.Active = version, false
	}
}

// Busy reports whether an invitation to call would find the user in
// another call.
func (s *Slot) Busy(call string) bool { return s.Active && s.Call != call }
