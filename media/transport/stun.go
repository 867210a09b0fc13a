package transport

import (
	"bytes"
	"net/netip"

	"github.com/pion/stun/v4"
)

// handleSTUN answers a client's connectivity check as an ICE-lite agent
// (RFC 8445 §2.5): a Binding request whose USERNAME starts with one of our
// ufrags and whose MESSAGE-INTEGRITY checks with that peer's password gets
// a success response (XOR-MAPPED-ADDRESS, MESSAGE-INTEGRITY, FINGERPRINT).
// The first valid request binds its source address to the peer; a later
// one with USE-CANDIDATE (a nomination) moves it, so a client whose
// network changed is followed. Anything else is dropped.
func (m *Mux) handleSTUN(b []byte, from netip.AddrPort) {
	c, req, ok := m.checkBinding(b)
	if !ok {
		m.Dropped.Add(1)
		return
	}
	m.STUN.Add(1)
	c.consent(from, req.Contains(stun.AttrUseCandidate))
	res := stun.New()
	err := res.Build(stun.NewTransactionIDSetter(req.TransactionID), stun.BindingSuccess,
		&stun.XORMappedAddress{IP: from.Addr().AsSlice(), Port: int(from.Port())},
		c.integrity, stun.Fingerprint)
	if err != nil {
		return
	}
	_ = m.writeTo(res.Raw, from)
}

// checkBinding decodes b and finds its peer; ok only for an authenticated
// Binding request of a live peer.
func (m *Mux) checkBinding(b []byte) (*Conn, *stun.Message, bool) {
	if !stun.IsMessage(b) {
		return nil, nil, false
	}
	req := &stun.Message{Raw: append([]byte(nil), b...)}
	if err := req.Decode(); err != nil || req.Type != stun.BindingRequest {
		return nil, nil, false
	}
	user, err := req.Get(stun.AttrUsername)
	if err != nil {
		return nil, nil, false
	}
	local, _, found := bytes.Cut(user, []byte{':'})
	if !found {
		return nil, nil, false
	}
	m.mu.RLock()
	c := m.byUfrag[string(local)]
	m.mu.RUnlock()
	if c == nil {
		return nil, nil, false
	}
	if stun.Fingerprint.Check(req) != nil || c.integrity.Check(req) != nil {
		return nil, nil, false
	}
	return c, req, true
}

// ParseBinding reports whether b is an authenticated STUN Binding request
// for a Conn of m (exported for the fuzz test; the reader uses the same
// code).
func (m *Mux) ParseBinding(b []byte) bool {
	_, _, ok := m.checkBinding(b)
	return ok
}
