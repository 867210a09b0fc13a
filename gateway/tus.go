package gateway

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// The tus 1.0 headers Parley reads, parsed by pure functions (fuzzed in
// tus_fuzz_test.go). See https://tus.io/protocols/resumable-upload.

const (
	tusVersion    = "1.0.0"
	tusExtensions = "creation,termination,checksum,expiration"
	// tusChecksumAlgorithms lists the Upload-Checksum algorithms accepted.
	tusChecksumAlgorithms = "sha256"
	// offsetStream is the Content-Type of every PATCH body.
	offsetStream = "application/offset+octet-stream"
	// statusChecksumMismatch is tus's 460 Checksum Mismatch.
	statusChecksumMismatch = 460
	// maxMetadataBytes bounds the Upload-Metadata header.
	maxMetadataBytes = 4096
)

var (
	errBadMetadata = errors.New("malformed Upload-Metadata")
	errBadChecksum = errors.New("malformed Upload-Checksum")
	// errChecksumAlgorithm is a well-formed checksum of an algorithm
	// Parley does not support (400 by the checksum extension).
	errChecksumAlgorithm = errors.New("unsupported checksum algorithm (only sha256)")
	errBadNumber         = errors.New("not a non-negative decimal integer")
)

// parseMetadata parses Upload-Metadata: comma-separated pairs of a key and
// an optional base64 value separated by one space. Keys are non-empty
// printable ASCII without spaces or commas, each at most once; values are
// standard base64 (padded), decoded.
func parseMetadata(h string) (map[string]string, error) {
	out := map[string]string{}
	if strings.TrimSpace(h) == "" {
		return out, nil
	}
	if len(h) > maxMetadataBytes {
		return nil, fmt.Errorf("%w: longer than %d bytes", errBadMetadata, maxMetadataBytes)
	}
	for _, pair := range strings.Split(h, ",") {
		pair = strings.TrimSpace(pair)
		key, val, hasVal := strings.Cut(pair, " ")
		if key == "" {
			return nil, fmt.Errorf("%w: empty key", errBadMetadata)
		}
		for i := 0; i < len(key); i++ {
			if c := key[i]; c <= ' ' || c > '~' {
				return nil, fmt.Errorf("%w: bad key %q", errBadMetadata, key)
			}
		}
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("%w: duplicate key %q", errBadMetadata, key)
		}
		if !hasVal {
			out[key] = ""
			continue
		}
		if strings.ContainsAny(val, " \t") {
			return nil, fmt.Errorf("%w: space in the value of %q", errBadMetadata, key)
		}
		dec, err := base64.StdEncoding.Strict().DecodeString(val)
		if err != nil {
			return nil, fmt.Errorf("%w: value of %q is not base64", errBadMetadata, key)
		}
		out[key] = string(dec)
	}
	return out, nil
}

// encodeMetadata is the inverse of parseMetadata (keys in the given order).
func encodeMetadata(keys []string, m map[string]string) string {
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		if v, ok := m[k]; ok {
			parts = append(parts, k+" "+base64.StdEncoding.EncodeToString([]byte(v)))
		}
	}
	return strings.Join(parts, ",")
}

// parseChecksum parses Upload-Checksum: "<algorithm> <base64 digest>".
// Only sha256 is supported; its digest must be 32 bytes.
func parseChecksum(h string) (alg string, sum []byte, err error) {
	alg, enc, ok := strings.Cut(h, " ")
	if !ok || alg == "" || enc == "" || strings.ContainsAny(enc, " \t") {
		return "", nil, errBadChecksum
	}
	if alg != "sha256" {
		return "", nil, fmt.Errorf("%w: %q", errChecksumAlgorithm, alg)
	}
	sum, err = base64.StdEncoding.Strict().DecodeString(enc)
	if err != nil || len(sum) != 32 {
		return "", nil, fmt.Errorf("%w: the digest is not 32 bytes of base64", errBadChecksum)
	}
	return alg, sum, nil
}

// parseSize parses Upload-Offset and Upload-Length: decimal digits only
// (no sign, no spaces), fitting an int64.
func parseSize(h string) (int64, error) {
	if h == "" || len(h) > 19 {
		return 0, errBadNumber
	}
	for i := 0; i < len(h); i++ {
		if h[i] < '0' || h[i] > '9' {
			return 0, errBadNumber
		}
	}
	n, err := strconv.ParseInt(h, 10, 64)
	if err != nil {
		return 0, errBadNumber
	}
	return n, nil
}

// uploadMeta is what an upload's creation names, from Upload-Metadata.
type uploadMeta struct {
	Conversation, Name, MIME string
}

// metaFrom picks Parley's keys out of parsed metadata: "conversation"
// (required), "filename" (or "name"; default "file") and "filetype" (or
// "type"; default application/octet-stream). The names are tus-js-client's
// conventions.
func metaFrom(m map[string]string) (uploadMeta, error) {
	first := func(keys ...string) string {
		for _, k := range keys {
			if v := m[k]; v != "" {
				return v
			}
		}
		return ""
	}
	u := uploadMeta{
		Conversation: first("conversation", "conversationId", "conversation_id"),
		Name:         first("filename", "name"),
		MIME:         first("filetype", "type", "contentType"),
	}
	if u.Conversation == "" {
		return u, fmt.Errorf("%w: the conversation key is required", errBadMetadata)
	}
	if u.Name == "" {
		u.Name = "file"
	}
	if u.MIME == "" {
		u.MIME = "application/octet-stream"
	}
	return u, nil
}
