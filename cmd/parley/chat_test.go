package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/gateway"
	"github.com/parley-chat/parley/gateway/gatewaytest"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

const chatTestTimeout = 20 * time.Second

// chatOutput is a goroutine-safe io.Writer whose content can be awaited.
type chatOutput struct {
	mu      sync.Mutex
	b       bytes.Buffer
	changed chan struct{} // closed and replaced on every write
}

func newChatOutput() *chatOutput { return &chatOutput{changed: make(chan struct{})} }

func (o *chatOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	close(o.changed)
	o.changed = make(chan struct{})
	return o.b.Write(p)
}

func (o *chatOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.b.String()
}

// waitFor waits until the output contains want.
func (o *chatOutput) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(chatTestTimeout)
	for {
		o.mu.Lock()
		ok, changed := strings.Contains(o.b.String(), want), o.changed
		o.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("output never showed %q; got:\n%s", want, o)
		}
	}
}

// chatRun is runChat driven through a pipe.
type chatRun struct {
	t    *testing.T
	in   *io.PipeWriter
	out  *chatOutput
	done chan error
}

func startChat(t *testing.T, o chatOptions) *chatRun {
	r, w := io.Pipe()
	cr := &chatRun{t: t, in: w, out: newChatOutput(), done: make(chan error, 1)}
	go func() { cr.done <- runChat(context.Background(), o, r, cr.out) }()
	t.Cleanup(func() { w.Close() }) // EOF ends a run the test left early
	return cr
}

// say types one line; it fails the test if runChat has already returned.
func (cr *chatRun) say(line string) {
	cr.t.Helper()
	wrote := make(chan error, 1)
	go func() { _, err := io.WriteString(cr.in, line+"\n"); wrote <- err }()
	select {
	case err := <-wrote:
		if err != nil {
			cr.t.Fatalf("write %q: %v", line, err)
		}
	case err := <-cr.done:
		cr.t.Fatalf("runChat returned %v before reading %q; output:\n%s", err, line, cr.out)
	case <-time.After(chatTestTimeout):
		cr.t.Fatalf("runChat did not read %q; output:\n%s", line, cr.out)
	}
}

// quit types /quit and checks runChat returns nil. Not through say: once
// runChat reads /quit it returns, so say would see the write and the return
// ready at once and could pick the return, failing a run that was fine.
func (cr *chatRun) quit() {
	cr.t.Helper()
	// Not say: runChat may return as soon as it read the line, racing the
	// write's completion.
	go io.WriteString(cr.in, "/quit\n")
	select {
	case err := <-cr.done:
		if err != nil {
			cr.t.Fatalf("runChat: %v; output:\n%s", err, cr.out)
		}
	case <-time.After(chatTestTimeout):
		cr.t.Fatalf("runChat did not return after /quit; output:\n%s", cr.out)
	}
}

// waitText waits for a text message with text on c's event stream.
func waitText(t *testing.T, c *client.Client, text string) *pb.Message {
	t.Helper()
	deadline := time.After(chatTestTimeout)
	for {
		select {
		case ev, ok := <-c.Events():
			if !ok {
				t.Fatalf("event stream closed before %q", text)
			}
			if m := ev.Message; m != nil && m.Text == text {
				return m
			}
		case <-deadline:
			t.Fatalf("no message %q", text)
		}
	}
}

func TestChatConversation(t *testing.T) {
	srv := gatewaytest.Start(t, gatewaytest.Options{})
	bob, bobLogin := srv.User(t, "bob", "bob-dev")
	bobID := bobLogin.GetSession().GetUserId()
	cr := startChat(t, chatOptions{Addr: srv.Addr})
	out := cr.out

	cr.say("/whoami")
	out.waitFor(t, "error: unauthenticated: not logged in")
	cr.say("/register alice password-alice")
	out.waitFor(t, "* registered alice (")
	cr.say("/login alice password-alice")
	out.waitFor(t, "* logged in as alice (")
	cr.say("hello too early")
	out.waitFor(t, "error: no_conversation: no conversation open; use /open or /create")
	cr.say("/create team " + bobID)
	out.waitFor(t, "* now in team (")
	cr.say("hello from cli")

	m := waitText(t, bob, "hello from cli")
	aliceID := m.Sender
	if m.Kind != pb.MessageKind_MESSAGE_KIND_TEXT || aliceID == "" || aliceID == bobID {
		t.Fatalf("bob got %v", m)
	}
	out.waitFor(t, fmt.Sprintf("[team #%d] %s: hello from cli\n", m.Seq, aliceID))

	ctx, cancel := context.WithTimeout(context.Background(), chatTestTimeout)
	defer cancel()
	sent, err := bob.Send(ctx, m.ConversationId, "hi alice")
	if err != nil {
		t.Fatal(err)
	}
	out.waitFor(t, fmt.Sprintf("[team #%d] %s: hi alice\n", sent.Seq, bobID))

	cr.say("/whoami")
	out.waitFor(t, "* user "+aliceID+" on device ")
	cr.say("/frobnicate now")
	out.waitFor(t, "error: unknown_command: /frobnicate")
	cr.say("/history 2")
	out.waitFor(t, fmt.Sprintf("* history of team (%s)\n[team #%d] %s: hello from cli\n[team #%d] %s: hi alice\n",
		m.ConversationId, m.Seq, aliceID, sent.Seq, bobID))
	cr.say("/groups")
	out.waitFor(t, "  "+m.ConversationId+"  group   team\n")
	cr.say("/open")
	out.waitFor(t, "error: usage: wrong arguments to /open")
	cr.say("/open " + m.ConversationId)
	out.waitFor(t, fmt.Sprintf("* now in team (%s)\n* [team #1] %s CREATED ", m.ConversationId, aliceID))
	cr.quit()
	if n := strings.Count(out.String(), "error:"); n != 4 {
		t.Fatalf("want the 4 provoked errors, got %d:\n%s", n, out)
	}
}

func TestChatFlagLogin(t *testing.T) {
	srv := gatewaytest.Start(t, gatewaytest.Options{})
	bob, bobLogin := srv.User(t, "bob", "bob-dev")
	bobID := bobLogin.GetSession().GetUserId()
	ctx, cancel := context.WithTimeout(context.Background(), chatTestTimeout)
	defer cancel()
	news, err := bob.CreateGroup(ctx, "news")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := bob.Send(ctx, news.Id, "old news"); err != nil {
		t.Fatal(err)
	}

	// bob exists: -user/-password must ignore username_taken and log in.
	cr := startChat(t, chatOptions{Addr: srv.Addr, User: "bob", Password: "password-bob"})
	cr.out.waitFor(t, "* logged in as bob (")
	cr.say("/whoami")
	host, _ := os.Hostname()
	cr.out.waitFor(t, fmt.Sprintf("* user %s on device %s\n", bobID, chatDeviceID(host+"-bob")))
	// The stream shows history and new messages; /open shows the tail.
	sent, err := bob.Send(ctx, news.Id, "fresh news")
	if err != nil {
		t.Fatal(err)
	}
	cr.out.waitFor(t, fmt.Sprintf("[news #%d] %s: fresh news\n", sent.Seq, bobID))
	cr.say("/open " + news.Id)
	cr.out.waitFor(t, fmt.Sprintf("* now in news (%s)\n* [news #1] %s CREATED %s news\n[news #2] %s: old news\n[news #3] %s: fresh news\n",
		news.Id, bobID, bobID, bobID, bobID))
	cr.in.Close() // end of input quits like /quit
	select {
	case err := <-cr.done:
		if err != nil || strings.Contains(cr.out.String(), "error:") {
			t.Fatalf("runChat: %v\n%s", err, cr.out)
		}
	case <-time.After(chatTestTimeout):
		t.Fatal("runChat did not return at end of input")
	}

	err = runChat(ctx, chatOptions{Addr: srv.Addr, User: "bob", Password: "wrong-password"}, strings.NewReader(""), io.Discard)
	if client.Code(err) != pb.CodeBadCredentials {
		t.Fatalf("wrong password: got %v, want %s", err, pb.CodeBadCredentials)
	}
}

// TestChatTimeouts checks the client outlives the server's link deadlines:
// a link that idles before login is redialed, and a logged-in one pings.
func TestChatTimeouts(t *testing.T) {
	const auth, idle = 300 * time.Millisecond, time.Second
	srv := gatewaytest.Start(t, gatewaytest.Options{Gateway: gateway.Options{AuthTimeout: auth, IdleTimeout: idle}})
	cr := startChat(t, chatOptions{Addr: srv.Addr, KeepAlive: idle / 5})
	cr.out.waitFor(t, "* connected to ")
	time.Sleep(2 * auth) // let the server drop the unauthenticated link
	cr.say("/register carol password-carol")
	cr.say("/login carol password-carol")
	cr.out.waitFor(t, "* logged in as carol (")
	time.Sleep(3 * idle) // quiet for longer than the idle timeout
	cr.say("/groups")
	cr.out.waitFor(t, "* your conversations:")
	cr.quit()
	if strings.Contains(cr.out.String(), "error:") {
		t.Fatalf("unexpected error:\n%s", cr.out)
	}
}

func TestChatDeviceID(t *testing.T) {
	for in, want := range map[string]string{
		"host.example-bob":      "host-example-bob",
		"ok_ID-9":               "ok_ID-9",
		"":                      "parley-cli",
		strings.Repeat("x", 70): strings.Repeat("x", 64),
		"naïve\x1b[2J":          "na-ve--2J",
	} {
		if got := chatDeviceID(in); got != want {
			t.Errorf("chatDeviceID(%q) = %q, want %q", in, got, want)
		}
	}
	if got := chatClean("a\nb\x1b[31mc\td"); got != "a b[31mc d" {
		t.Errorf("chatClean = %q", got)
	}
}
