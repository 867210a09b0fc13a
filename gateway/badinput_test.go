package gateway_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/lxzan/gws"
	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/gateway/gatewaytest"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// rawConn is a bare WebSocket client: no hello, frames as given.
type rawConn struct {
	conn   *gws.Conn
	frames chan []byte
	closed chan error
}

type rawEvents struct{ r *rawConn }

func (e rawEvents) OnOpen(*gws.Conn)               {}
func (e rawEvents) OnPing(*gws.Conn, []byte)       {}
func (e rawEvents) OnPong(*gws.Conn, []byte)       {}
func (e rawEvents) OnClose(_ *gws.Conn, err error) { e.r.closed <- err }
func (e rawEvents) OnMessage(_ *gws.Conn, m *gws.Message) {
	e.r.frames <- append([]byte(nil), m.Bytes()...)
	m.Close()
}

func dialRaw(t *testing.T, url string) *rawConn {
	t.Helper()
	r := &rawConn{frames: make(chan []byte, 64), closed: make(chan error, 1)}
	conn, _, err := gws.NewClient(rawEvents{r}, &gws.ClientOption{Addr: url})
	if err != nil {
		t.Fatal(err)
	}
	r.conn = conn
	go conn.ReadLoop()
	t.Cleanup(func() { conn.WriteClose(1000, nil) })
	return r
}

func (r *rawConn) send(t *testing.T, s string) {
	t.Helper()
	if err := r.conn.WriteMessage(gws.OpcodeText, []byte(s)); err != nil {
		t.Fatal(err)
	}
}

func (r *rawConn) next(t *testing.T) *pb.ServerFrame {
	t.Helper()
	select {
	case b := <-r.frames:
		f, err := pb.DecodeServerFrame(b)
		if err != nil {
			t.Fatalf("server sent an undecodable frame %q: %v", b, err)
		}
		return f
	case err := <-r.closed:
		t.Fatalf("link closed: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no reply")
	}
	return nil
}

func (r *rawConn) closeCode(t *testing.T) uint16 {
	t.Helper()
	for {
		select {
		case <-r.frames:
		case err := <-r.closed:
			if ce, ok := err.(*gws.CloseError); ok {
				return ce.Code
			}
			t.Fatalf("closed without a close frame: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatal("link not closed")
		}
	}
}

func TestBadInputTable(t *testing.T) {
	srv := gatewaytest.Start(t, gatewaytest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alice, _ := srv.User(t, "alice", "a1")
	bob, _ := srv.User(t, "bob", "b1")
	carol, _ := srv.User(t, "carol", "c1")
	g, err := alice.CreateGroup(ctx, "g", bob.UserID())
	if err != nil {
		t.Fatal(err)
	}
	other, err := carol.CreateGroup(ctx, "carol's")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.SendMessage(ctx, &pb.Send{ConversationId: g.Id, Text: "hello", ClientId: "c-1"}); err != nil {
		t.Fatal(err)
	}
	waitQuiet(t, srv)

	long := strings.Repeat("x", 16<<10+1)
	rows := []struct {
		name  string
		frame string
		code  string
		c     *client.Client // nil: an authenticated link of bob's
	}{
		{"bad json", `{"id":"1",`, pb.CodeBadJSON, nil},
		{"array", `[1,2]`, pb.CodeBadFrame, nil},
		{"string", `"hi"`, pb.CodeBadFrame, nil},
		{"null", `null`, pb.CodeBadFrame, nil},
		{"missing id", `{"ping":{}}`, pb.CodeMissingID, nil},
		{"empty id", `{"id":"","ping":{}}`, pb.CodeMissingID, nil},
		{"numeric id", `{"id":5,"ping":{}}`, pb.CodeBadID, nil},
		{"long id", `{"id":"` + strings.Repeat("i", 65) + `","ping":{}}`, pb.CodeBadID, nil},
		{"unknown command", `{"id":"1","fly":{}}`, pb.CodeUnknownCommand, nil},
		{"two commands", `{"id":"1","ping":{},"ack":{}}`, pb.CodeMultipleCommands, nil},
		{"no command", `{"id":"1"}`, pb.CodeBadFrame, nil},
		{"wrong field type", `{"id":"1","send":{"text":5}}`, pb.CodeBadField, nil},
		{"unknown field", `{"id":"1","send":{"bogus":1}}`, pb.CodeBadField, nil},
		{"hello twice", `{"id":"1","hello":{"versions":[1]}}`, pb.CodeAlreadyHello, nil},
		{"login while logged in", `{"id":"1","login":{"username":"bob","password":"password-bob","device":{"id":"b1"}}}`, pb.CodeAlreadyAuthed, nil},
		{"unknown conversation", `{"id":"1","send":{"conversationId":"gnope","clientId":"x","text":"t"}}`, pb.CodeNotFound, nil},
		{"non-member send", `{"id":"1","send":{"conversationId":"` + other.Id + `","clientId":"x","text":"t"}}`, pb.CodeNotMember, nil},
		{"non-member history", `{"id":"1","history":{"conversationId":"` + other.Id + `"}}`, pb.CodeNotMember, nil},
		{"text too long", `{"id":"1","send":{"conversationId":"` + g.Id + `","clientId":"x","text":"` + long + `"}}`, pb.CodeTextTooLong, nil},
		{"empty text", `{"id":"1","send":{"conversationId":"` + g.Id + `","clientId":"x","text":""}}`, pb.CodeInvalidArgument, nil},
		{"missing client id", `{"id":"1","send":{"conversationId":"` + g.Id + `","text":"t"}}`, pb.CodeInvalidArgument, nil},
		{"missing conversation", `{"id":"1","send":{"clientId":"x","text":"t"}}`, pb.CodeInvalidArgument, nil},
		{"reply to future", `{"id":"1","send":{"conversationId":"` + g.Id + `","clientId":"x","text":"t","replyTo":"99"}}`, pb.CodeBadSeq, nil},
		{"mention non-member", `{"id":"1","send":{"conversationId":"` + g.Id + `","clientId":"x","text":"t","mentions":["unobody"]}}`, pb.CodeInvalidArgument, nil},
		{"ack beyond seq", `{"id":"1","ack":{"sessionSeq":"999"}}`, pb.CodeBadSeq, nil},
		{"read beyond last", `{"id":"1","markRead":{"conversationId":"` + g.Id + `","seq":"999"}}`, pb.CodeBadSeq, nil},
		{"negative history", `{"id":"1","history":{"conversationId":"` + g.Id + `","afterSeq":"-1"}}`, pb.CodeInvalidArgument, nil},
		{"member adds member", `{"id":"1","addMembers":{"conversationId":"` + g.Id + `","userIds":["` + carol.UserID() + `"]}}`, pb.CodeForbidden, nil},
		{"member renames", `{"id":"1","renameGroup":{"conversationId":"` + g.Id + `","title":"x"}}`, pb.CodeForbidden, nil},
		{"member sets role", `{"id":"1","setRole":{"conversationId":"` + g.Id + `","userId":"` + bob.UserID() + `","role":"ROLE_ADMIN"}}`, pb.CodeForbidden, nil},
		{"delete other's message", `{"id":"1","deleteMessage":{"conversationId":"` + g.Id + `","seq":"2"}}`, pb.CodeForbidden, nil},
		{"delete missing message", `{"id":"1","deleteMessage":{"conversationId":"` + g.Id + `","seq":"77"}}`, pb.CodeNotFound, nil},
		{"add unknown user", `{"id":"1","addMembers":{"conversationId":"` + g.Id + `","userIds":["unobody"]}}`, pb.CodeNotFound, alice},
		{"direct with self", `{"id":"1","openDirect":{"userId":"` + bob.UserID() + `"}}`, pb.CodeInvalidArgument, nil},
		{"unknown enum", `{"id":"1","setRole":{"conversationId":"` + g.Id + `","userId":"x","role":"ROLE_KING"}}`, pb.CodeBadField, nil},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			c := row.c
			if c == nil {
				c = bob
			}
			before := checksum(t, srv)
			id := "1"
			if row.code == pb.CodeMissingID || row.code == pb.CodeBadID || row.code == pb.CodeBadJSON || row.code == pb.CodeBadFrame && !strings.HasPrefix(row.frame, `{"id":"1"`) {
				id = "" // no readable id: the error frame has no "re"
			}
			f, err := c.RawCall(ctx, id, []byte(row.frame))
			if client.Code(err) != row.code {
				t.Fatalf("frame %.80q: got %v (frame %v), want code %s", row.frame, err, f, row.code)
			}
			if after := checksum(t, srv); after != before {
				t.Fatalf("frame %.80q changed the keyspace", row.frame)
			}
			// The link stays usable after a command error.
			if _, err := c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_Ping{Ping: &pb.Ping{}}}); err != nil {
				t.Fatalf("link unusable after %s: %v", row.name, err)
			}
		})
	}

	t.Run("replayed client id", func(t *testing.T) {
		before := checksum(t, srv)
		s, err := alice.SendMessage(ctx, &pb.Send{ConversationId: g.Id, Text: "hello", ClientId: "c-1"})
		if err != nil || !s.Duplicate || s.Seq != 2 {
			t.Fatalf("replay: %v %v", s, err)
		}
		if checksum(t, srv) != before {
			t.Fatal("a replayed send changed the keyspace")
		}
	})

	preAuth := []struct {
		name, frame, code string
	}{
		{"unauthenticated send", `{"id":"1","send":{"conversationId":"` + g.Id + `","clientId":"x","text":"t"}}`, pb.CodeUnauthenticated},
		{"wrong password", `{"id":"1","login":{"username":"bob","password":"wrong-password","device":{"id":"b9"}}}`, pb.CodeBadCredentials},
		{"unknown user", `{"id":"1","login":{"username":"nobody","password":"whatever1","device":{"id":"b9"}}}`, pb.CodeBadCredentials},
		{"username taken", `{"id":"1","register":{"username":"bob","password":"password-x"}}`, pb.CodeUsernameTaken},
		{"bad username", `{"id":"1","register":{"username":"B!","password":"password-x"}}`, pb.CodeInvalidArgument},
		{"short password", `{"id":"1","register":{"username":"dave","password":"short"}}`, pb.CodeInvalidArgument},
		{"bad device id", `{"id":"1","login":{"username":"bob","password":"password-bob","device":{"id":"a b"}}}`, pb.CodeInvalidArgument},
	}
	for _, row := range preAuth {
		t.Run(row.name, func(t *testing.T) {
			r := dialRaw(t, srv.URL)
			r.send(t, `{"id":"h","hello":{"versions":[1]}}`)
			if f := r.next(t); f.GetHelloOk() == nil {
				t.Fatalf("hello: %v", f)
			}
			before := checksum(t, srv)
			r.send(t, row.frame)
			f := r.next(t)
			if f.GetError().GetCode() != row.code || f.Re != "1" {
				t.Fatalf("got %v, want %s", f, row.code)
			}
			if checksum(t, srv) != before {
				t.Fatal("keyspace changed")
			}
		})
	}

	t.Run("bad token", func(t *testing.T) {
		r := dialRaw(t, srv.URL)
		r.send(t, `{"id":"h","hello":{"versions":[1],"token":"`+bob.UserID()+`.forged","device":{"id":"b1"}}}`)
		if f := r.next(t); f.GetError().GetCode() != pb.CodeBadToken {
			t.Fatalf("got %v", f)
		}
	})
	t.Run("hello required", func(t *testing.T) {
		r := dialRaw(t, srv.URL)
		r.send(t, `{"id":"1","ping":{}}`)
		if f := r.next(t); f.GetError().GetCode() != pb.CodeHelloRequired {
			t.Fatalf("got %v", f)
		}
	})
	t.Run("wrong version", func(t *testing.T) {
		r := dialRaw(t, srv.URL)
		r.send(t, `{"id":"1","hello":{"versions":[2]}}`)
		if f := r.next(t); f.GetError().GetCode() != pb.CodeUnsupportedVersion {
			t.Fatalf("got %v", f)
		}
		if code := r.closeCode(t); code != pb.CloseUnsupported {
			t.Fatalf("close code %d", code)
		}
	})
	t.Run("oversize frame", func(t *testing.T) {
		r := dialRaw(t, srv.URL)
		r.send(t, `{"id":"1","hello":{"versions":[1]}}`)
		r.next(t)
		r.send(t, `{"id":"2","ping":{},"pad":"`+strings.Repeat("p", 70<<10)+`"}`)
		if code := r.closeCode(t); code != pb.CloseTooLarge {
			t.Fatalf("close code %d", code)
		}
	})
}

func checksum(t *testing.T, srv *gatewaytest.Server) [32]byte {
	t.Helper()
	sum, err := srv.App.Store.Checksum()
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

// waitQuiet waits until the keyspace stops changing (outbox cleanups and
// session bookkeeping of the setup have landed).
func waitQuiet(t *testing.T, srv *gatewaytest.Server) {
	t.Helper()
	prev := checksum(t, srv)
	for i := 0; i < 50; i++ {
		time.Sleep(100 * time.Millisecond)
		cur := checksum(t, srv)
		if cur == prev {
			return
		}
		prev = cur
	}
	t.Fatal("keyspace did not settle")
}
