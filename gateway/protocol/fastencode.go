package protocol

import "strconv"

// encodeHelloOKFast renders a helloOk frame without protojson, in the form
// protojson gives it (field order, int64 as quoted decimals, enums by
// name, zero values left out). It returns false, and the caller uses
// protojson, when a string needs escaping (anything but printable ASCII
// without '"' and '\'), an enum value has no name, or a conversation
// carries members (only ConversationInfo replies do).
// TestEncodeHelloOKFast checks it against protojson field by field and
// fails when one of these messages gains a field.
func encodeHelloOKFast(f *ServerFrame) ([]byte, bool) {
	body, ok := f.Body.(*ServerFrame_HelloOk)
	if !ok || body.HelloOk == nil {
		return nil, false
	}
	h := body.HelloOk
	e := beginFrame(f.Re, "helloOk", 256)
	e.i32("version", h.Version)
	e.str("server", h.Server)
	if s := h.Session; s != nil {
		e.open("session")
		e.str("sessionId", s.SessionId)
		e.str("userId", s.UserId)
		e.str("deviceId", s.DeviceId)
		e.boolean("rebuild", s.Rebuild)
		e.str("rebuildToken", s.RebuildToken)
		e.i64("keepMs", s.KeepMs)
		e.i64("sessionSeq", s.SessionSeq)
		if len(s.Conversations) > 0 {
			e.key("conversations")
			e.b = append(e.b, '[')
			for i, c := range s.Conversations {
				if i > 0 {
					e.b = append(e.b, ',')
				}
				if !e.conversation(c) {
					return nil, false
				}
			}
			e.b = append(e.b, ']')
		}
		e.boolean("rebuilt", s.Rebuilt)
		e.close()
	}
	return e.frame()
}

// beginFrame starts a server frame's JSON up to its body's first field:
// {"re":…,"<body>":{ (re left out when empty, as protojson does).
func beginFrame(re, body string, capacity int) jsonEnc {
	e := jsonEnc{b: make([]byte, 0, capacity), first: true}
	e.b = append(e.b, '{')
	e.str("re", re)
	e.open(body)
	return e
}

// encodeSessionEventFast writes a pushed or replayed session event of a
// conversation join or leave (the events of a rebuild storm) without
// protojson, like encodeHelloOKFast; it declines every other event.
// TestEncodeSessionEventFast checks it against protojson.
func encodeSessionEventFast(f *ServerFrame) ([]byte, bool) {
	body, ok := f.Body.(*ServerFrame_SessionEvent)
	if !ok || body.SessionEvent == nil {
		return nil, false
	}
	ev := body.SessionEvent
	e := beginFrame(f.Re, "sessionEvent", 160)
	e.i64("seq", ev.Seq)
	e.i64("timeMs", ev.TimeMs)
	switch x := ev.Event.(type) {
	case nil:
	case *SessionEvent_ConversationJoined:
		e.open("conversationJoined")
		if c := x.ConversationJoined.GetConversation(); c != nil {
			e.key("conversation")
			if !e.conversation(c) {
				return nil, false
			}
		}
		e.close()
	case *SessionEvent_ConversationLeft:
		e.open("conversationLeft")
		if x.ConversationLeft != nil {
			e.str("conversationId", x.ConversationLeft.ConversationId)
		}
		e.close()
	default:
		return nil, false
	}
	return e.frame()
}

// encodeReplyFast writes the bodyless replies every online client gets
// (ok, to an ack; pong, to a ping) without protojson, like
// encodeHelloOKFast; it declines every other frame.
// TestEncodeReplyFast checks it against protojson.
func encodeReplyFast(f *ServerFrame) ([]byte, bool) {
	switch b := f.Body.(type) {
	case *ServerFrame_Ok:
		if b.Ok == nil {
			return nil, false
		}
		e := beginFrame(f.Re, "ok", 32+len(f.Re))
		return e.frame()
	case *ServerFrame_Pong:
		if b.Pong == nil {
			return nil, false
		}
		e := beginFrame(f.Re, "pong", 48+len(f.Re))
		e.i64("serverTimeMs", b.Pong.ServerTimeMs)
		return e.frame()
	}
	return nil, false
}

// conversation writes c as an object; false (decline) if c is nil, has
// members or an enum value without a name.
func (e *jsonEnc) conversation(c *Conversation) bool {
	if c == nil || len(c.Members) > 0 {
		return false
	}
	e.b = append(e.b, '{')
	e.first = true
	e.str("id", c.Id)
	if c.Kind != 0 {
		name, known := ConversationKind_name[int32(c.Kind)]
		if !known {
			return false
		}
		e.str("kind", name)
	}
	e.str("title", c.Title)
	e.i64("lastSeq", c.LastSeq)
	e.i64("readSeq", c.ReadSeq)
	if len(c.Subgroups) > 0 {
		e.key("subgroups")
		e.b = append(e.b, '[')
		for j, g := range c.Subgroups {
			if j > 0 {
				e.b = append(e.b, ',')
			}
			e.quoted(g)
		}
		e.b = append(e.b, ']')
	}
	e.close()
	return true
}

type jsonEnc struct {
	b     []byte
	first bool // no field written yet in the current object
	bad   bool // a string needs escaping
}

func (e *jsonEnc) key(k string) {
	if !e.first {
		e.b = append(e.b, ',')
	}
	e.first = false
	e.b = append(e.b, '"')
	e.b = append(e.b, k...)
	e.b = append(e.b, '"', ':')
}

// open starts the object value of key k.
func (e *jsonEnc) open(k string) {
	e.key(k)
	e.b = append(e.b, '{')
	e.first = true
}

// close ends the current object.
func (e *jsonEnc) close() {
	e.b = append(e.b, '}')
	e.first = false
}

// frame closes the body and the frame objects beginFrame opened; false if
// a string needed escaping.
func (e *jsonEnc) frame() ([]byte, bool) {
	e.b = append(e.b, '}', '}')
	if e.bad {
		return nil, false
	}
	return e.b, true
}

func (e *jsonEnc) quoted(s string) {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			e.bad = true
			return
		}
	}
	e.b = append(e.b, '"')
	e.b = append(e.b, s...)
	e.b = append(e.b, '"')
}

func (e *jsonEnc) str(k, v string) {
	if v != "" {
		e.key(k)
		e.quoted(v)
	}
}

func (e *jsonEnc) i32(k string, v int32) {
	if v != 0 {
		e.key(k)
		e.b = strconv.AppendInt(e.b, int64(v), 10)
	}
}

func (e *jsonEnc) i64(k string, v int64) {
	if v != 0 {
		e.key(k)
		e.b = append(e.b, '"')
		e.b = strconv.AppendInt(e.b, v, 10)
		e.b = append(e.b, '"')
	}
}

func (e *jsonEnc) boolean(k string, v bool) {
	if v {
		e.key(k)
		e.b = append(e.b, "true"...)
	}
}
