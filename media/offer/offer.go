// Package offer writes the SFU's SDP offers and reads the clients'
// answers, for the ICE-lite endpoint (media/transport). It is the
// signalling half: nothing here runs per packet.
//
// An offer is JSEP-shaped for a BUNDLE of audio m-lines over one ICE-lite
// transport: a=ice-lite, one host candidate (the node's one UDP address),
// DTLS setup actpass, rtcp-mux, Opus only (payload type 111). m-line 0 is
// recvonly (the participant's microphone); each other m-line is sendonly
// with msid and a=ssrc lines naming the publisher's SSRC (the subscriber's
// inbound SSRC is the publisher's outbound one), or inactive once its
// track is gone. m-lines are never removed or reused (JSEP keeps their
// order); a new track gets a new m-line.
package offer

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/pion/sdp/v3"
)

// Opus is the one codec: payload type, rtpmap and fmtp.
const (
	OpusPT     = 111
	OpusRtpmap = "opus/48000/2"
	OpusFmtp   = "minptime=10;useinbandfec=1"
)

// Directions of an m-line.
const (
	RecvOnly = "recvonly"
	SendOnly = "sendonly"
	Inactive = "inactive"
)

// Line is one m-line of an offer.
type Line struct {
	Direction string
	// For a sendonly line: the publisher's SSRC and the ids the
	// subscriber sees (its MediaStream id and track id).
	SSRC          uint32
	Stream, Track string
}

// Session is everything an offer says.
type Session struct {
	// ID and Version go into the o= line (Version goes up with every
	// offer of the session).
	ID, Version uint64
	// Ufrag and Pwd are the SFU's ICE credentials for this peer;
	// Fingerprint is its DTLS certificate's ("sha-256 AB:CD:…").
	Ufrag, Pwd, Fingerprint string
	// Candidate is the one host candidate (the announced UDP address).
	Candidate netip.AddrPort
	Lines     []Line
}

// Build writes the offer.
func (s *Session) Build() string {
	var b strings.Builder
	w := func(format string, args ...any) {
		fmt.Fprintf(&b, format, args...)
		b.WriteString("\r\n")
	}
	ip := s.Candidate.Addr().Unmap()
	fam := "IP4"
	if ip.Is6() {
		fam = "IP6"
	}
	w("v=0")
	w("o=- %d %d IN IP4 0.0.0.0", s.ID, s.Version)
	w("s=-")
	w("t=0 0")
	w("a=ice-lite")
	mids := make([]string, len(s.Lines))
	for i := range s.Lines {
		mids[i] = strconv.Itoa(i)
	}
	w("a=group:BUNDLE %s", strings.Join(mids, " "))
	w("a=msid-semantic: WMS *")
	for i, l := range s.Lines {
		w("m=audio %d UDP/TLS/RTP/SAVPF %d", s.Candidate.Port(), OpusPT)
		w("c=IN %s %s", fam, ip)
		w("a=rtcp:%d IN %s %s", s.Candidate.Port(), fam, ip)
		w("a=ice-ufrag:%s", s.Ufrag)
		w("a=ice-pwd:%s", s.Pwd)
		w("a=fingerprint:%s", s.Fingerprint)
		w("a=setup:actpass")
		w("a=mid:%d", i)
		w("a=%s", l.Direction)
		w("a=rtcp-mux")
		w("a=rtpmap:%d %s", OpusPT, OpusRtpmap)
		w("a=fmtp:%d %s", OpusPT, OpusFmtp)
		if l.Direction == SendOnly {
			w("a=msid:%s %s", l.Stream, l.Track)
			w("a=ssrc:%d cname:%s", l.SSRC, l.Stream)
			w("a=ssrc:%d msid:%s %s", l.SSRC, l.Stream, l.Track)
		}
		w("a=candidate:1 1 udp 2130706431 %s %d typ host", ip, s.Candidate.Port())
		w("a=end-of-candidates")
	}
	return b.String()
}

// ErrBadAnswer: the answer does not parse or does not fit the offer.
var ErrBadAnswer = errors.New("offer: bad answer")

// Answer is what the SFU needs from a client's answer.
type Answer struct {
	Ufrag, Pwd  string
	Fingerprint string // "sha-256 AB:CD:…"
	// Setup is the client's DTLS role: "active" (the SFU is the DTLS
	// server) or "passive" (the SFU is the client).
	Setup string
	// Directions of the m-lines, in order.
	Directions []string
	// SSRC is the first a=ssrc of m-line 0 (the client's microphone), 0
	// if the answer names none.
	SSRC uint32
}

// ParseAnswer reads an answer to an offer of lines m-lines.
func ParseAnswer(text string, lines int) (*Answer, error) {
	var d sdp.SessionDescription
	if err := d.UnmarshalString(text); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadAnswer, err)
	}
	if len(d.MediaDescriptions) != lines {
		return nil, fmt.Errorf("%w: %d m-lines, the offer has %d", ErrBadAnswer, len(d.MediaDescriptions), lines)
	}
	a := &Answer{}
	session := func(key string) string {
		v, _ := d.Attribute(key)
		return v
	}
	a.Ufrag, a.Pwd, a.Fingerprint = session("ice-ufrag"), session("ice-pwd"), session("fingerprint")
	for i, m := range d.MediaDescriptions {
		dir := ""
		for _, attr := range m.Attributes {
			switch attr.Key {
			case RecvOnly, SendOnly, Inactive, "sendrecv":
				dir = attr.Key
			}
		}
		if m.MediaName.Port.Value == 0 {
			dir = Inactive // rejected
		}
		a.Directions = append(a.Directions, dir)
		if i != 0 {
			continue
		}
		if m.MediaName.Media != "audio" {
			return nil, fmt.Errorf("%w: m-line 0 is %q, not audio", ErrBadAnswer, m.MediaName.Media)
		}
		if dir != Inactive && !slices.Contains(m.MediaName.Formats, strconv.Itoa(OpusPT)) {
			return nil, fmt.Errorf("%w: m-line 0 does not accept Opus (payload type %d)", ErrBadAnswer, OpusPT)
		}
		if v, ok := m.Attribute("ice-ufrag"); ok {
			a.Ufrag = v
		}
		if v, ok := m.Attribute("ice-pwd"); ok {
			a.Pwd = v
		}
		if v, ok := m.Attribute("fingerprint"); ok {
			a.Fingerprint = v
		}
		if v, ok := m.Attribute("setup"); ok {
			a.Setup = v
		}
		if v, ok := m.Attribute("ssrc"); ok {
			id, _, _ := strings.Cut(v, " ")
			if n, err := strconv.ParseUint(id, 10, 32); err == nil {
				a.SSRC = uint32(n)
			}
		}
	}
	if a.Setup == "" {
		a.Setup = session("setup")
	}
	switch a.Setup {
	case "active", "passive":
	case "", "actpass":
		a.Setup = "active" // RFC 5763: an answerer that does not choose is active
	default:
		return nil, fmt.Errorf("%w: setup %q", ErrBadAnswer, a.Setup)
	}
	if a.Ufrag == "" || a.Pwd == "" {
		return nil, fmt.Errorf("%w: no ice-ufrag/ice-pwd", ErrBadAnswer)
	}
	if a.Fingerprint == "" {
		return nil, fmt.Errorf("%w: no fingerprint", ErrBadAnswer)
	}
	return a, nil
}
