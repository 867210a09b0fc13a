package protocol

import (
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
)

// seedFrames are real client frames, as the SDK and the docs write them.
var seedFrames = []string{
	`{"id":"1","hello":{"versions":[1],"token":"uabc.secret","device":{"id":"d1","type":"DEVICE_TYPE_DESKTOP"},"rebuild":true}}`,
	`{"id":"2","login":{"username":"alice","password":"password-alice","device":{"id":"d1"}}}`,
	`{"id":"3","send":{"conversationId":"g1","clientId":"c1","text":"hi","replyTo":"2","mentions":["u1"]}}`,
	`{"id":"4","history":{"conversationId":"g1","afterSeq":"10","limit":50}}`,
	`{"id":"5","ack":{"sessionSeq":"3"}}`,
	`{"id":"6","createGroup":{"title":"team","members":["u1","u2"]}}`,
	`{"id":"7","setRole":{"conversationId":"g1","userId":"u1","role":"ROLE_ADMIN"}}`,
	`{"id":"8","ping":{}}`,
	`{"id":"10","hello":{"versions":[1],"token":"uv3k.AHr7","device":{"id":"mbp-4f2a9c","type":"DEVICE_TYPE_BOT"},"resume":{"sessionId":"sf6e","rebuildToken":"9P7k-cqHVh3FUmgJU69bgWtXC0k","lastSessionSeq":"2"},"cursors":[{"conversationId":"gfbc","seq":"41"},{"conversationId":"d.u1.u2","seq":7}]}}`,
	` { "id" : "11", "hello" : { "versions" : [ 1, 2 ] , "rebuild" : false, "resume" : { "lastSessionSeq" : -3 }, "cursors" : [ { } ] } } `,
	`{"hello":{"versions":[]},"id":"12"}`,
	`{"id":"9"}`, `[]`, `null`, `{"id":5}`, `{"id":"1","a":{},"b":{}}`,
}

// FuzzDecodeClientFrame feeds real frames, split at arbitrary points and
// recombined, to the decoder: it must never panic, must either decode or
// return a coded error, and a decoded frame must re-encode to a frame that
// decodes to the same command.
func FuzzDecodeClientFrame(f *testing.F) {
	for _, s := range seedFrames {
		f.Add([]byte(s), uint16(len(s)/2))
	}
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		// A frame cut in two (as a reader might see it) and each half alone.
		cut := int(split) % (len(data) + 1)
		for _, in := range [][]byte{data, data[:cut], data[cut:]} {
			frame, derr := DecodeClientFrame(in)
			// The fast path must agree with the general decoder on every
			// input it accepts.
			if utf8.Valid(in) {
				if fast, ok := decodeFast(in); ok {
					slow, serr := decodeClientFrameSlow(in)
					if serr != nil {
						t.Fatalf("fast path accepted %q, general decoder: %v", in, serr)
					}
					if !proto.Equal(fast, slow) {
						t.Fatalf("fast path decoded %q as %v, general decoder as %v", in, fast, slow)
					}
				}
			}
			if derr != nil {
				if derr.Code == "" {
					t.Fatalf("error without code for %q", in)
				}
				if frame != nil {
					t.Fatalf("both frame and error for %q", in)
				}
				continue
			}
			if frame.Id == "" || len(frame.Id) > MaxIDLen || frame.Command == nil {
				t.Fatalf("accepted invalid frame %q", in)
			}
			again, derr := DecodeClientFrame(EncodeClientFrame(frame))
			if derr != nil {
				t.Fatalf("re-encoded frame of %q does not decode: %v", in, derr)
			}
			if CommandName(again) != CommandName(frame) || again.Id != frame.Id {
				t.Fatalf("round trip changed %q", in)
			}
		}
	})
}

func TestDecodeClientFrameCodes(t *testing.T) {
	cases := map[string]string{
		`{`:                             CodeBadJSON,
		`[]`:                            CodeBadFrame,
		`{"ping":{}}`:                   CodeMissingID,
		`{"id":1,"ping":{}}`:            CodeBadID,
		`{"id":"1","zap":{}}`:           CodeUnknownCommand,
		`{"id":"1","ping":{},"ack":{}}`: CodeMultipleCommands,
		`{"id":"1","send":{"text":1}}`:  CodeBadField,
		"\xff":                          CodeBadJSON,
	}
	for in, code := range cases {
		if _, err := DecodeClientFrame([]byte(in)); err == nil || err.Code != code {
			t.Errorf("%q: got %v, want %s", in, err, code)
		}
	}
	f, err := DecodeClientFrame([]byte(seedFrames[2]))
	if err != nil || f.GetSend().GetReplyTo() != 2 || f.GetSend().GetText() != "hi" {
		t.Fatalf("decode send: %v %v", f, err)
	}
}

// TestDecodeFast checks that the fast path takes the frames clients send
// (hello, ack, ping: so the bench measures it) and agrees with the general
// decoder.
func TestDecodeFast(t *testing.T) {
	for _, s := range []string{seedFrames[0], seedFrames[4], seedFrames[7], seedFrames[8], seedFrames[9], seedFrames[10],
		`{"id":"k7","ack":{"sessionSeq":7}}`, `{"ack":{},"id":"k"}`, ` { "id" : "p" , "ping" : { } } `} {
		fast, ok := decodeFast([]byte(s))
		if !ok {
			t.Fatalf("fast path refused %s", s)
		}
		slow, err := decodeClientFrameSlow([]byte(s))
		if err != nil || !proto.Equal(fast, slow) {
			t.Fatalf("%s: fast %v, slow %v %v", s, fast, slow, err)
		}
	}
	h := &ClientFrame{Id: "1", Command: &ClientFrame_Hello{Hello: &Hello{Versions: []int32{1}, Token: "t", Device: &Device{Id: "d", Type: DeviceType_DEVICE_TYPE_BOT},
		Resume: &Resume{SessionId: "s", RebuildToken: "r", LastSessionSeq: 9}, Cursors: []*Cursor{{ConversationId: "g", Seq: 3}, {}}}}}
	for i := 0; i < 20; i++ { // protojson spacing varies
		b := EncodeClientFrame(h)
		fast, ok := decodeFast(b)
		if !ok || !proto.Equal(fast, h) {
			t.Fatalf("fast path on %s: %v %v", b, fast, ok)
		}
	}
	for _, s := range []string{
		`{"id":"1","hello":{"versions":[01]}}`, `{"id":"1","hello":{"token":"a\"b"}}`, `{"id":"1","hello":{"token":null}}`,
		`{"id":"1","hello":{},"hello":{}}`, `{"id":"1","hello":{"rebuild":true,"rebuild":true}}`, `{"id":"1","hello":{"resume":{"session_id":"s"}}}`,
		`{"id":"1","hello":{"versions":[1e0]}}`, `{"id":"1","hello":{"device":{"type":1}}}`, `{"id":"1","hello":{}} x`, `{"id":"","hello":{}}`,
		`{"id":"1","ack":{"sessionSeq":"3","sessionSeq":"4"}}`, `{"id":"1","ack":{"session_seq":"3"}}`, `{"id":"1","ack":{"sessionSeq":"x"}}`,
		`{"id":"1","ack":{"sessionSeq":"99999999999999999999"}}`, `{"id":"1","ack":{"sessionSeq":null}}`, `{"id":"1","ack":null}`,
		`{"id":"1","ping":{"x":1}}`, `{"id":"1","ping":{},"ack":{}}`, `{"id":"1","ack":{},"hello":{}}`, `{"id":"1","ping":[]}`,
	} {
		if _, ok := decodeFast([]byte(s)); ok {
			t.Errorf("fast path took %s", s)
		}
	}
}
