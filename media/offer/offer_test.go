package offer

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

var testSession = Session{ID: 7, Version: 2, Ufrag: "abcd", Pwd: "0123456789abcdefghijklmn", Fingerprint: "sha-256 AA:BB",
	Candidate: netip.MustParseAddrPort("127.0.0.1:7882"),
	Lines:     []Line{{Direction: RecvOnly}, {Direction: SendOnly, SSRC: 42, Stream: "u1/j1", Track: "audio-u1/j1"}, {Direction: Inactive}}}

// chromeAnswer is Chromium's answer to such an offer (trimmed).
const chromeAnswer = "v=0\r\no=- 4611 2 IN IP4 127.0.0.1\r\ns=-\r\nt=0 0\r\na=group:BUNDLE 0 1 2\r\na=msid-semantic: WMS x\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9 IN IP4 0.0.0.0\r\na=ice-ufrag:hT3s\r\na=ice-pwd:qwertyuiopasdfghjklzxcvb\r\n" +
	"a=ice-options:trickle\r\na=fingerprint:sha-256 01:02:03:04:05:06:07:08:09:0A:0B:0C:0D:0E:0F:10:11:12:13:14:15:16:17:18:19:1A:1B:1C:1D:1E:1F:20\r\n" +
	"a=setup:active\r\na=mid:0\r\na=sendonly\r\na=msid:x y\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\na=fmtp:111 minptime=10;useinbandfec=1\r\na=ssrc:3735928559 cname:z\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:1\r\na=recvonly\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n" +
	"m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:2\r\na=inactive\r\na=rtcp-mux\r\na=rtpmap:111 opus/48000/2\r\n"

func TestBuildAndParse(t *testing.T) {
	o := testSession.Build()
	for _, want := range []string{"a=ice-lite\r\n", "a=group:BUNDLE 0 1 2\r\n", "a=setup:actpass\r\n", "a=ssrc:42 cname:u1/j1\r\n",
		"a=msid:u1/j1 audio-u1/j1\r\n", "a=candidate:1 1 udp 2130706431 127.0.0.1 7882 typ host\r\n", "a=recvonly\r\n", "a=inactive\r\n"} {
		if !strings.Contains(o, want) {
			t.Errorf("offer lacks %q", want)
		}
	}
	if _, err := ParseAnswer(o, 3); err != nil {
		// An offer parses as SDP too (it has actpass: taken as active).
		t.Fatalf("offer as answer: %v", err)
	}
	a, err := ParseAnswer(chromeAnswer, 3)
	if err != nil {
		t.Fatal(err)
	}
	if a.Ufrag != "hT3s" || a.Setup != "active" || a.SSRC != 3735928559 || !strings.HasPrefix(a.Fingerprint, "sha-256 01:02") ||
		strings.Join(a.Directions, ",") != "sendonly,recvonly,inactive" {
		t.Fatalf("%+v", a)
	}
	for name, bad := range map[string]string{
		"garbage":     "v=garbage\r\nthis is not SDP",
		"lines":       strings.Split(chromeAnswer, "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=mid:2")[0],
		"no ufrag":    strings.ReplaceAll(chromeAnswer, "a=ice-ufrag:hT3s\r\n", ""),
		"no opus":     strings.Replace(chromeAnswer, "SAVPF 111\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9", "SAVPF 0\r\nc=IN IP4 0.0.0.0\r\na=rtcp:9", 1),
		"bad setup":   strings.ReplaceAll(chromeAnswer, "a=setup:active", "a=setup:sideways"),
		"fingerprint": strings.ReplaceAll(chromeAnswer, "a=fingerprint:", "a=x-fingerprint:"),
	} {
		if _, err := ParseAnswer(bad, 3); !errors.Is(err, ErrBadAnswer) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// FuzzParseAnswer: real answers split and spliced at arbitrary points.
func FuzzParseAnswer(f *testing.F) {
	f.Add(chromeAnswer, 3, 0)
	f.Add(testSession.Build(), 3, 100)
	f.Add("v=0\r\n", 1, 2)
	f.Fuzz(func(t *testing.T, s string, lines, split int) {
		if split < 0 || split > len(s) {
			split = len(s)
		}
		for _, in := range []string{s, s[:split], s[split:] + s[:split]} {
			a, err := ParseAnswer(in, lines)
			if err == nil && (len(a.Directions) != lines || a.Ufrag == "" || a.Fingerprint == "") {
				t.Fatalf("accepted %q as %+v", in, a)
			}
		}
	})
}
