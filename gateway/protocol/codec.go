package protocol

import (
	"encoding/json"
	"fmt"
	"sync"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// Version is the protocol version this code speaks.
const Version = 1

// MaxIDLen is the longest command id accepted.
const MaxIDLen = 64

// DecodeError is a frame that could not be decoded: the reply carries Code.
// ID is the command id when it could be read, so the reply can name it.
type DecodeError struct {
	ID      string
	Code    string
	Message string
}

func (e *DecodeError) Error() string { return e.Code + ": " + e.Message }

// commands maps the JSON name of each command to its oneof field.
// It is built on first use: package variables initialise before the
// generated init registers the descriptors.
var commands = sync.OnceValue(func() map[string]protoreflect.FieldDescriptor {
	m := map[string]protoreflect.FieldDescriptor{}
	od := (&ClientFrame{}).ProtoReflect().Descriptor().Oneofs().ByName("command")
	fields := od.Fields()
	for i := 0; i < fields.Len(); i++ {
		f := fields.Get(i)
		m[f.JSONName()] = f
		m[string(f.Name())] = f
	}
	return m
})

var unmarshal = protojson.UnmarshalOptions{DiscardUnknown: false}

// DecodeClientFrame parses one client frame. A frame is a JSON object with a
// string "id" and exactly one command key. Errors are precise so that a
// client can be fixed from the reply alone.
func DecodeClientFrame(data []byte) (*ClientFrame, *DecodeError) {
	if !utf8.Valid(data) {
		return nil, &DecodeError{Code: CodeBadJSON, Message: "frame is not valid UTF-8"}
	}
	if f, ok := decodeFast(data); ok {
		return f, nil
	}
	return decodeClientFrameSlow(data)
}

// decodeClientFrameSlow is the general decoder: encoding/json for the frame,
// protojson for the command.
func decodeClientFrameSlow(data []byte) (*ClientFrame, *DecodeError) {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		if _, ok := err.(*json.UnmarshalTypeError); ok {
			return nil, &DecodeError{Code: CodeBadFrame, Message: "frame must be a JSON object"}
		}
		return nil, &DecodeError{Code: CodeBadJSON, Message: err.Error()}
	}
	if raw == nil {
		return nil, &DecodeError{Code: CodeBadFrame, Message: "frame must be a JSON object"}
	}
	idRaw, ok := raw["id"]
	if !ok {
		return nil, &DecodeError{Code: CodeMissingID, Message: `"id" is required`}
	}
	var id string
	if err := json.Unmarshal(idRaw, &id); err != nil {
		return nil, &DecodeError{Code: CodeBadID, Message: `"id" must be a string`}
	}
	if id == "" {
		return nil, &DecodeError{Code: CodeMissingID, Message: `"id" is empty`}
	}
	if len(id) > MaxIDLen {
		return nil, &DecodeError{Code: CodeBadID, Message: fmt.Sprintf(`"id" is longer than %d bytes`, MaxIDLen)}
	}
	var name string
	var body json.RawMessage
	for k, v := range raw {
		if k == "id" {
			continue
		}
		if _, known := commands()[k]; !known {
			return nil, &DecodeError{ID: id, Code: CodeUnknownCommand, Message: fmt.Sprintf("unknown command %q", k)}
		}
		if name != "" {
			return nil, &DecodeError{ID: id, Code: CodeMultipleCommands, Message: fmt.Sprintf("frame has both %q and %q", name, k)}
		}
		name, body = k, v
	}
	if name == "" {
		return nil, &DecodeError{ID: id, Code: CodeBadFrame, Message: "frame has no command"}
	}
	fd := commands()[name]
	frame := &ClientFrame{Id: id}
	msg := frame.ProtoReflect().NewField(fd).Message()
	if err := unmarshal.Unmarshal(body, msg.Interface()); err != nil {
		return nil, &DecodeError{ID: id, Code: CodeBadField, Message: fmt.Sprintf("%s: %v", name, err)}
	}
	frame.ProtoReflect().Set(fd, protoreflect.ValueOfMessage(msg))
	return frame, nil
}

var marshal = protojson.MarshalOptions{UseProtoNames: false, EmitUnpopulated: false}

// Encode renders a frame as protojson.
func Encode(m proto.Message) []byte {
	if f, ok := m.(*ServerFrame); ok {
		if b, ok := encodeHelloOKFast(f); ok {
			return b
		}
		if b, ok := encodeSessionEventFast(f); ok {
			return b
		}
		if b, ok := encodeReplyFast(f); ok {
			return b
		}
	}
	b, err := marshal.Marshal(m)
	if err != nil {
		// Marshal of a well-formed message cannot fail; a failure is a bug.
		panic(fmt.Sprintf("protocol: encode %T: %v", m, err))
	}
	return b
}

// EncodeClientFrame renders a client frame (used by the Go SDK).
func EncodeClientFrame(f *ClientFrame) []byte { return Encode(f) }

// DecodeServerFrame parses a server frame (used by the Go SDK).
func DecodeServerFrame(data []byte) (*ServerFrame, error) {
	f := &ServerFrame{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, f); err != nil {
		return nil, fmt.Errorf("protocol: decode server frame: %w", err)
	}
	return f, nil
}

// ErrorFrame builds the reply for a failed command.
func ErrorFrame(re, code, message string) *ServerFrame {
	return &ServerFrame{Re: re, Body: &ServerFrame_Error{Error: &Error{Code: code, Message: message}}}
}

// CommandName returns the JSON name of the frame's command ("" if none).
func CommandName(f *ClientFrame) string {
	od := f.ProtoReflect().Descriptor().Oneofs().ByName("command")
	fd := f.ProtoReflect().WhichOneof(od)
	if fd == nil {
		return ""
	}
	return fd.JSONName()
}
