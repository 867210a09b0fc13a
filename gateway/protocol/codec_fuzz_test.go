package protocol

import (
	"testing"
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
