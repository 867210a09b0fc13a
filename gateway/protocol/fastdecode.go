package protocol

import (
	"strconv"
)

// decodeFast decodes the common shapes of the frequent commands (hello,
// and ack and ping, which every online client sends) without
// encoding/json or protojson: {"id":"…","<command>":{…}} with camelCase
// field names, strings without escapes, no nulls, no duplicate keys, enums
// by name and integers in their plain decimal form. Anything else (and
// every malformed input) returns ok=false and the caller takes the general
// path, so the result is always the one protojson gives
// (FuzzDecodeClientFrame checks that they agree). data must already be
// valid UTF-8.
func decodeFast(data []byte) (f *ClientFrame, ok bool) {
	p := fastParser{b: data}
	if !p.lit('{') {
		return nil, false
	}
	var id string
	var cmd isClientFrame_Command
	var seenID bool
	for first := true; ; first = false {
		if p.lit('}') {
			if first {
				return nil, false
			}
			break
		}
		if !first && !p.lit(',') {
			return nil, false
		}
		k, ok := p.str()
		if !ok || !p.lit(':') {
			return nil, false
		}
		if k == "id" {
			if seenID {
				return nil, false
			}
			seenID = true
			if id, ok = p.str(); !ok {
				return nil, false
			}
			continue
		}
		if cmd != nil {
			return nil, false // a second command: the general path says which error
		}
		switch k {
		case "hello":
			var h *Hello
			h, ok = p.hello()
			cmd = &ClientFrame_Hello{Hello: h}
		case "ack":
			var a *Ack
			a, ok = p.ack()
			cmd = &ClientFrame_Ack{Ack: a}
		case "ping":
			ok = p.object(func(string) bool { return false })
			cmd = &ClientFrame_Ping{Ping: &Ping{}}
		default:
			return nil, false
		}
		if !ok {
			return nil, false
		}
	}
	p.ws()
	if p.i != len(p.b) || cmd == nil || id == "" || len(id) > MaxIDLen {
		return nil, false
	}
	return &ClientFrame{Id: id, Command: cmd}, true
}

type fastParser struct {
	b []byte
	i int
}

func (p *fastParser) ws() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

// lit consumes c after optional whitespace.
func (p *fastParser) lit(c byte) bool {
	p.ws()
	if p.i < len(p.b) && p.b[p.i] == c {
		p.i++
		return true
	}
	return false
}

// str reads a string without escapes or control characters.
func (p *fastParser) str() (string, bool) {
	s, ok := p.rawStr()
	if !ok {
		return "", false
	}
	return string(s), true
}

func (p *fastParser) rawStr() ([]byte, bool) {
	if !p.lit('"') {
		return nil, false
	}
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			s := p.b[start:p.i]
			p.i++
			return s, true
		case c == '\\' || c < 0x20:
			return nil, false
		}
		p.i++
	}
	return nil, false
}

// plainInt reports whether s is -?(0|[1-9][0-9]*) (no "-0").
func plainInt(s []byte) bool {
	if len(s) > 0 && s[0] == '-' {
		s = s[1:]
		if len(s) > 0 && s[0] == '0' {
			return false
		}
	}
	if len(s) == 0 || (s[0] == '0' && len(s) > 1) {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// number reads a bare JSON integer token.
func (p *fastParser) number() ([]byte, bool) {
	p.ws()
	start := p.i
	for p.i < len(p.b) {
		c := p.b[p.i]
		if (c < '0' || c > '9') && c != '-' {
			break
		}
		p.i++
	}
	s := p.b[start:p.i]
	if !plainInt(s) {
		return nil, false
	}
	// A number must end at a delimiter (protojson rejects "1x" and "1.5"
	// is not plain): the next byte must be whitespace, ',', '}' or ']'.
	if p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r', ',', '}', ']':
		default:
			return nil, false
		}
	}
	return s, true
}

// int64 reads an int64 as a plain number or a quoted plain number.
func (p *fastParser) int64() (int64, bool) {
	p.ws()
	var s []byte
	var ok bool
	if p.i < len(p.b) && p.b[p.i] == '"' {
		s, ok = p.rawStr()
		ok = ok && plainInt(s)
	} else {
		s, ok = p.number()
	}
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(string(s), 10, 64)
	return v, err == nil
}

func (p *fastParser) int32() (int32, bool) {
	s, ok := p.number()
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(string(s), 10, 32)
	return int32(v), err == nil
}

func (p *fastParser) boolean() (bool, bool) {
	p.ws()
	rest := p.b[p.i:]
	var v bool
	switch {
	case len(rest) >= 4 && string(rest[:4]) == "true":
		p.i, v = p.i+4, true
	case len(rest) >= 5 && string(rest[:5]) == "false":
		p.i += 5
	default:
		return false, false
	}
	if p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r', ',', '}', ']':
		default:
			return false, false
		}
	}
	return v, true
}

// object calls field for each key of an object; keys must be distinct.
func (p *fastParser) object(field func(k string) bool) bool {
	if !p.lit('{') {
		return false
	}
	var seen [8]string
	n := 0
	for first := true; ; first = false {
		if p.lit('}') {
			return true
		}
		if !first && !p.lit(',') {
			return false
		}
		kb, ok := p.rawStr()
		if !ok || !p.lit(':') {
			return false
		}
		k := string(kb)
		for _, s := range seen[:n] {
			if s == k {
				return false
			}
		}
		if n == len(seen) {
			return false
		}
		seen[n] = k
		n++
		if !field(k) {
			return false
		}
	}
}

// array calls elem for each element of an array.
func (p *fastParser) array(elem func() bool) bool {
	if !p.lit('[') {
		return false
	}
	for first := true; ; first = false {
		if p.lit(']') {
			return true
		}
		if !first && !p.lit(',') {
			return false
		}
		if !elem() {
			return false
		}
	}
}

func (p *fastParser) hello() (*Hello, bool) {
	h := &Hello{}
	ok := p.object(func(k string) bool {
		var ok bool
		switch k {
		case "versions":
			return p.array(func() bool {
				v, ok := p.int32()
				h.Versions = append(h.Versions, v)
				return ok
			})
		case "token":
			h.Token, ok = p.str()
		case "device":
			h.Device, ok = p.device()
		case "rebuild":
			h.Rebuild, ok = p.boolean()
		case "resume":
			h.Resume, ok = p.resume()
		case "cursors":
			return p.array(func() bool {
				c, ok := p.cursor()
				h.Cursors = append(h.Cursors, c)
				return ok
			})
		}
		return ok
	})
	return h, ok
}

func (p *fastParser) ack() (*Ack, bool) {
	a := &Ack{}
	ok := p.object(func(k string) bool {
		if k != "sessionSeq" {
			return false
		}
		var ok bool
		a.SessionSeq, ok = p.int64()
		return ok
	})
	return a, ok
}

func (p *fastParser) device() (*Device, bool) {
	d := &Device{}
	ok := p.object(func(k string) bool {
		switch k {
		case "id":
			var ok bool
			d.Id, ok = p.str()
			return ok
		case "type":
			s, ok := p.rawStr()
			if !ok {
				return false
			}
			v, known := DeviceType_value[string(s)]
			d.Type = DeviceType(v)
			return known
		}
		return false
	})
	return d, ok
}

func (p *fastParser) resume() (*Resume, bool) {
	r := &Resume{}
	ok := p.object(func(k string) bool {
		var ok bool
		switch k {
		case "sessionId":
			r.SessionId, ok = p.str()
		case "rebuildToken":
			r.RebuildToken, ok = p.str()
		case "lastSessionSeq":
			r.LastSessionSeq, ok = p.int64()
		}
		return ok
	})
	return r, ok
}

func (p *fastParser) cursor() (*Cursor, bool) {
	c := &Cursor{}
	ok := p.object(func(k string) bool {
		var ok bool
		switch k {
		case "conversationId":
			c.ConversationId, ok = p.str()
		case "seq":
			c.Seq, ok = p.int64()
		}
		return ok
	})
	return c, ok
}
