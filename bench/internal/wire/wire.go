// Package wire speaks the parts of Parley's JSON protocol the load
// generators need, cheaply: it builds client frames by appending bytes and
// classifies server frames by scanning, without a full protojson decode.
// Setup replies (helloOk, loggedIn, conversation) are decoded properly by
// the caller; the hot path (message events, sent replies) only scans.
package wire

import (
	"bytes"
	"strconv"

	pb "github.com/parley-chat/parley/gateway/protocol"
)

// Kind is what a server frame is.
type Kind int

// Server frame kinds.
const (
	KindOther          Kind = iota // unparsable or unknown
	KindReply                      // has "re": a reply to a command
	KindMessage                    // a conversation message event
	KindSession                    // a session event
	KindError                      // an error without "re" (undecodable frame)
	KindChannelMessage             // a channel message (not stored, no seq)
	KindChannelEvent               // a channel presence event
)

// Frame is what Scan learned about a server frame. Slices alias the input.
type Frame struct {
	Kind Kind
	// Re is the command id of a reply.
	Re []byte
	// Body is the key of the reply body or event ("sent", "error",
	// "message", ...).
	Body []byte
}

// Scan reads the first keys of a server frame. protojson writes fields in
// field-number order, so "re" (field 1) comes first when present, then the
// one body key.
func Scan(b []byte) Frame {
	var f Frame
	key, rest, ok := nextKey(b, true)
	if !ok {
		return f
	}
	if string(key) == "re" {
		val, r2, ok := stringValue(rest)
		if !ok {
			return f
		}
		f.Re = val
		key, _, ok = nextKey(r2, false)
		if !ok {
			return f
		}
		f.Kind, f.Body = KindReply, key
		return f
	}
	f.Body = key
	switch string(key) {
	case "message":
		f.Kind = KindMessage
	case "sessionEvent":
		f.Kind = KindSession
	case "error":
		f.Kind = KindError
	case "channelMessage":
		f.Kind = KindChannelMessage
	case "channelEvent":
		f.Kind = KindChannelEvent
	}
	return f
}

func skipSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\n' || b[0] == '\t' || b[0] == '\r') {
		b = b[1:]
	}
	return b
}

// nextKey reads `{ "key" :` (first) or `, "key" :` and returns the key and
// what follows the colon.
func nextKey(b []byte, first bool) (key, rest []byte, ok bool) {
	b = skipSpace(b)
	sep := byte(',')
	if first {
		sep = '{'
	}
	if len(b) == 0 || b[0] != sep {
		return nil, nil, false
	}
	b = skipSpace(b[1:])
	key, b, ok = stringValue(b)
	if !ok {
		return nil, nil, false
	}
	b = skipSpace(b)
	if len(b) == 0 || b[0] != ':' {
		return nil, nil, false
	}
	return key, b[1:], true
}

// stringValue reads a JSON string without escapes (ids, codes and the
// bench's own texts never contain any).
func stringValue(b []byte) (val, rest []byte, ok bool) {
	b = skipSpace(b)
	if len(b) == 0 || b[0] != '"' {
		return nil, nil, false
	}
	end := bytes.IndexByte(b[1:], '"')
	if end < 0 {
		return nil, nil, false
	}
	return b[1 : 1+end], b[2+end:], true
}

// Field returns the string value of the first `"name":` in b (nil if
// absent or not a plain string). Inside JSON strings a quote is escaped, so
// the pattern cannot match inside a value.
func Field(b []byte, name string) []byte {
	var pat [64]byte
	p := append(append(append(pat[:0], '"'), name...), '"', ':')
	i := bytes.Index(b, p)
	if i < 0 {
		return nil
	}
	v, _, ok := stringValue(b[i+len(p):])
	if !ok {
		return nil
	}
	return v
}

// Stamp is the bench's message text: "<send unix nanos>:<publisher id> "
// followed by padding. Receivers compute latency from it.
type Stamp struct {
	SentNanos int64
	Publisher int
}

// AppendText appends a stamped text of at least size bytes.
func AppendText(dst []byte, s Stamp, size int) []byte {
	start := len(dst)
	dst = strconv.AppendInt(dst, s.SentNanos, 10)
	dst = append(dst, ':')
	dst = strconv.AppendInt(dst, int64(s.Publisher), 10)
	dst = append(dst, ' ')
	for len(dst)-start < size {
		dst = append(dst, 'x')
	}
	return dst
}

// ParseText reads a stamp from a message text; ok is false for texts the
// bench did not write (e.g. the CREATED entry, whose text is the title).
func ParseText(t []byte) (s Stamp, ok bool) {
	i := bytes.IndexByte(t, ':')
	if i <= 0 {
		return s, false
	}
	j := bytes.IndexByte(t[i+1:], ' ')
	if j <= 0 {
		return s, false
	}
	ns, err := strconv.ParseInt(string(t[:i]), 10, 64)
	if err != nil {
		return s, false
	}
	p, err := strconv.Atoi(string(t[i+1 : i+1+j]))
	if err != nil {
		return s, false
	}
	return Stamp{SentNanos: ns, Publisher: p}, true
}

// AppendSend appends a send command frame.
func AppendSend(dst []byte, id uint64, conv, clientID string, text []byte) []byte {
	dst = append(dst, `{"id":"s`...)
	dst = strconv.AppendUint(dst, id, 10)
	dst = append(dst, `","send":{"conversationId":"`...)
	dst = append(dst, conv...)
	dst = append(dst, `","clientId":"`...)
	dst = append(dst, clientID...)
	dst = append(dst, `","text":"`...)
	dst = append(dst, text...)
	return append(dst, `"}}`...)
}

// AppendChannelSend appends a channelSend command frame; its id is
// "s<id>" like a send's, so replies are matched the same way.
func AppendChannelSend(dst []byte, id uint64, channel, clientID string, text []byte) []byte {
	dst = append(dst, `{"id":"s`...)
	dst = strconv.AppendUint(dst, id, 10)
	dst = append(dst, `","channelSend":{"channelId":"`...)
	dst = append(dst, channel...)
	dst = append(dst, `","clientId":"`...)
	dst = append(dst, clientID...)
	dst = append(dst, `","text":"`...)
	dst = append(dst, text...)
	return append(dst, `"}}`...)
}

// Int returns the value of the first `"name":` in b as an integer; int64
// fields are JSON strings in protojson ("42"), plain numbers are accepted
// too. ok is false if absent or not a number.
func Int(b []byte, name string) (int64, bool) {
	var pat [64]byte
	p := append(append(append(pat[:0], '"'), name...), '"', ':')
	i := bytes.Index(b, p)
	if i < 0 {
		return 0, false
	}
	v := skipSpace(b[i+len(p):])
	if len(v) > 0 && v[0] == '"' {
		v = v[1:]
	}
	var n int64
	j := 0
	for ; j < len(v) && v[j] >= '0' && v[j] <= '9'; j++ {
		n = n*10 + int64(v[j]-'0')
	}
	return n, j > 0
}

// SendID parses the numeric part of a send command id ("s<n>").
func SendID(re []byte) (uint64, bool) {
	if len(re) < 2 || re[0] != 's' {
		return 0, false
	}
	n, err := strconv.ParseUint(string(re[1:]), 10, 64)
	return n, err == nil
}

// AppendHello appends a hello command frame for h, as protojson would
// write it (int64 as strings, enums by name). The rebuild storm's clients
// send thousands of these at once; protojson's encoding was 7 % of the
// workers' CPU profile over a storm run.
func AppendHello(dst []byte, id string, h *pb.Hello) []byte {
	dst = append(dst, `{"id":`...)
	dst = appendString(dst, id)
	dst = append(dst, `,"hello":{"versions":[`...)
	for i, v := range h.Versions {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = strconv.AppendInt(dst, int64(v), 10)
	}
	dst = append(dst, ']')
	if h.Token != "" {
		dst = append(dst, `,"token":`...)
		dst = appendString(dst, h.Token)
	}
	if d := h.Device; d != nil {
		dst = append(dst, `,"device":{"id":`...)
		dst = appendString(dst, d.Id)
		dst = append(dst, `,"type":`...)
		dst = appendString(dst, d.Type.String())
		dst = append(dst, '}')
	}
	if h.Rebuild {
		dst = append(dst, `,"rebuild":true`...)
	}
	if r := h.Resume; r != nil {
		dst = append(dst, `,"resume":{"sessionId":`...)
		dst = appendString(dst, r.SessionId)
		dst = append(dst, `,"rebuildToken":`...)
		dst = appendString(dst, r.RebuildToken)
		dst = append(dst, `,"lastSessionSeq":"`...)
		dst = strconv.AppendInt(dst, r.LastSessionSeq, 10)
		dst = append(dst, `"}`...)
	}
	if len(h.Cursors) > 0 {
		dst = append(dst, `,"cursors":[`...)
		for i, c := range h.Cursors {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, `{"conversationId":`...)
			dst = appendString(dst, c.ConversationId)
			dst = append(dst, `,"seq":"`...)
			dst = strconv.AppendInt(dst, c.Seq, 10)
			dst = append(dst, `"}`...)
		}
		dst = append(dst, ']')
	}
	return append(dst, `}}`...)
}

// appendString appends s as a JSON string.
func appendString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"' || c == '\\':
			dst = append(dst, '\\', c)
		case c < 0x20:
			dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			dst = append(dst, c)
		}
	}
	return append(dst, '"')
}
