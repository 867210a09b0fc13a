package gateway

import (
	"encoding/base64"
	"maps"
	"slices"
	"strings"
	"testing"
)

func TestParseMetadata(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[string]string
		ok   bool
	}{
		{"", map[string]string{}, true},
		{"filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential", map[string]string{"filename": "world_domination_plan.pdf", "is_confidential": ""}, true},
		{"a YQ==, b Yg==", map[string]string{"a": "a", "b": "b"}, true},
		{"a YQ==,a Yg==", nil, false},
		{"a !!", nil, false},
		{"a YQ", nil, false},
		{",", nil, false},
		{"a YQ== extra", nil, false},
		{"k\x01 YQ==", nil, false},
		{strings.Repeat("a", maxMetadataBytes+1), nil, false},
	} {
		got, err := parseMetadata(tc.in)
		if (err == nil) != tc.ok || tc.ok && !maps.Equal(got, tc.want) {
			t.Errorf("parseMetadata(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func TestParseChecksum(t *testing.T) {
	sum := base64.StdEncoding.EncodeToString(make([]byte, 32))
	for _, tc := range []struct {
		in      string
		ok      bool
		badAlgo bool
	}{
		{"sha256 " + sum, true, false},
		{"sha1 Kq5sNclPz7QV2+lfQIuc6R7oRu0=", false, true},
		{"sha256 " + sum[:10], false, false},
		{"sha256", false, false},
		{"sha256  " + sum, false, false},
		{"", false, false},
	} {
		_, got, err := parseChecksum(tc.in)
		if (err == nil) != tc.ok || tc.ok && len(got) != 32 || tc.badAlgo != (err != nil && strings.Contains(err.Error(), "unsupported")) {
			t.Errorf("parseChecksum(%q) = %v, %v", tc.in, got, err)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, ok := range map[string]bool{"0": true, "123": true, "9223372036854775807": true, "9223372036854775808": false,
		"-1": false, "+1": false, " 1": false, "1e3": false, "": false, "0x10": false} {
		if _, err := parseSize(in); (err == nil) != ok {
			t.Errorf("parseSize(%q): %v", in, err)
		}
	}
}

// FuzzTusHeaders checks that the tus header parsers never panic, that
// metadata they accept round-trips through encodeMetadata, and that
// accepted checksums and sizes are well-formed.
func FuzzTusHeaders(f *testing.F) {
	f.Add("filename d29ybGQ=,is_confidential", "sha256 "+base64.StdEncoding.EncodeToString(make([]byte, 32)), "42")
	f.Add("conversation Zw==,filetype dGV4dC9wbGFpbg==", "sha1 abc=", "-1")
	f.Add(",,", "sha256", "99999999999999999999")
	f.Fuzz(func(t *testing.T, meta, sum, size string) {
		if m, err := parseMetadata(meta); err == nil {
			keys := slices.Sorted(maps.Keys(m))
			again, err := parseMetadata(encodeMetadata(keys, m))
			if err != nil || !maps.Equal(again, m) {
				t.Fatalf("metadata %q -> %v does not round-trip: %v %v", meta, m, again, err)
			}
			if _, err := metaFrom(m); err == nil && m["conversation"] == "" && m["conversationId"] == "" && m["conversation_id"] == "" {
				t.Fatalf("metadata without a conversation accepted: %v", m)
			}
		}
		if alg, s, err := parseChecksum(sum); err == nil && (alg != "sha256" || len(s) != 32) {
			t.Fatalf("checksum %q accepted as %s/%d bytes", sum, alg, len(s))
		}
		if n, err := parseSize(size); err == nil && n < 0 {
			t.Fatalf("size %q accepted as %d", size, n)
		}
	})
}
