package gateway_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/lxzan/gws"
	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/gateway"
	"github.com/parley-chat/parley/gateway/gatewaytest"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// stallEvents is a gws client whose reading can be stopped: while stalled,
// OnMessage blocks, so gws's read loop stops reading the socket and the
// server's writes back up into its send buffer.
type stallEvents struct {
	gws.BuiltinEventHandler
	mu      sync.Mutex
	stalled chan struct{} // non-nil: block until closed
	frames  chan []byte
	pongs   chan string
	closed  chan error
}

func (e *stallEvents) OnMessage(_ *gws.Conn, m *gws.Message) {
	e.mu.Lock()
	gate := e.stalled
	e.mu.Unlock()
	if gate != nil {
		<-gate
	}
	e.frames <- append([]byte(nil), m.Bytes()...)
	m.Close()
}

func (e *stallEvents) OnPong(_ *gws.Conn, p []byte)   { e.pongs <- string(p) }
func (e *stallEvents) OnClose(_ *gws.Conn, err error) { e.closed <- err }

// TestStalledReaderGetsEveryFrameWhole: a link whose reader stops while
// 6 MB of messages (more than the kernel's largest send buffer) and a run of pongs are queued to it takes the
// blocking path (a write the socket cannot take whole finishes on the
// link's own goroutine; parley_blocked_writes_total counts it), and once
// it reads again it gets every message once, in order, and every pong:
// no frame cut or interleaved by another writer.
func TestStalledReaderGetsEveryFrameWhole(t *testing.T) {
	// The queue bound is raised so that the test's volume (above the
	// kernel's largest send buffer, tcp_wmem's 4 MiB) never makes the
	// stalled link a slow consumer.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st := stalledGroup(t, gateway.Options{MaxQueueBytes: 16 << 20})
	srv, alice, g, ws, ev := st.srv, st.alice, st.g, st.ws, st.ev
	const n, size, pings = 512, 12 << 10, 40
	text := strings.Repeat("x", size-8)
	for i := range n {
		if _, err := alice.Send(ctx, g.Id, fmt.Sprintf("%08d", i)+text); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if i%3 == 0 && i/3 < pings {
			if err := ws.WritePing([]byte(strconv.Itoa(i / 3))); err != nil {
				t.Fatalf("ping: %v", err)
			}
		}
	}
	if blocked := metric(t, srv.Addr, "parley_blocked_writes_total"); blocked < 1 {
		t.Fatalf("parley_blocked_writes_total = %v after %d KiB to a stalled reader: the blocking path was not taken", blocked, n*size>>10)
	}
	st.release()

	next := 0
	for next < n {
		f := nextFrame(t, ev)
		m := f.GetMessage()
		if m == nil || m.Kind != pb.MessageKind_MESSAGE_KIND_TEXT {
			continue
		}
		if got := m.Text[:8]; got != fmt.Sprintf("%08d", next) || len(m.Text) != size {
			t.Fatalf("message %d: got %q… (%d bytes)", next, got, len(m.Text))
		}
		next++
	}
	// Every message went through a counted write, and the frames queued
	// while the reader stalled left together (fewer writes than frames).
	frames, writes := metric(t, srv.Addr, "parley_link_frames_written_total"), metric(t, srv.Addr, "parley_link_writes_total")
	if frames < n || writes < 1 || writes >= frames {
		t.Fatalf("parley_link_frames_written_total %v, parley_link_writes_total %v after %d messages", frames, writes, n)
	}
	for i := range pings {
		select {
		case p := <-ev.pongs:
			if p != strconv.Itoa(i) {
				t.Fatalf("pong %d carries %q", i, p)
			}
		case err := <-ev.closed:
			t.Fatalf("link closed: %v", err)
		case <-time.After(10 * time.Second):
			t.Fatalf("pong %d missing", i)
		}
	}
}

func nextFrame(t *testing.T, ev *stallEvents) *pb.ServerFrame {
	t.Helper()
	select {
	case b := <-ev.frames:
		f, err := pb.DecodeServerFrame(b)
		if err != nil {
			t.Fatalf("undecodable frame %q: %v", b, err)
		}
		return f
	case err := <-ev.closed:
		t.Fatalf("link closed: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("no frame")
	}
	return nil
}

// metric reads one unlabelled sample from /metrics.
func metric(t *testing.T, addr, name string) float64 {
	t.Helper()
	res, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	body, _ := io.ReadAll(res.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("/metrics has no %s", name)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestSlowConsumerIsClosed: a reader that stops while more than its queue
// bound is sent to it is closed with 4002 (the socket too, within the
// write timeout, although its receive window is shut), counted in
// parley_slow_consumers_total, its queued bytes are released, and the
// sender and the user's other device lose nothing.
func TestSlowConsumerIsClosed(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st := stalledGroup(t, gateway.Options{MaxQueueBytes: 256 << 10, WriteTimeout: time.Second})
	defer st.release()
	srv, alice, bob, g := st.srv, st.alice, st.bob, st.g

	const n, size = 600, 12 << 10 // 7 MiB: send buffers plus the 256 KiB bound
	text := strings.Repeat("y", size-8)
	// Bob's other device reads as the messages come (it must not become a
	// slow consumer itself) and checks that it gets each, in order.
	b1 := make(chan error, 1)
	go func() {
		for i := 0; i < n; {
			select {
			case ev := <-bob.Events():
				m := ev.Message
				if m == nil || m.Kind != pb.MessageKind_MESSAGE_KIND_TEXT {
					continue
				}
				if m.Text[:8] != fmt.Sprintf("%08d", i) {
					b1 <- fmt.Errorf("b1 message %d: %q", i, m.Text[:8])
					return
				}
				i++
			case <-time.After(30 * time.Second):
				b1 <- fmt.Errorf("b1 got %d of %d messages", i, n)
				return
			}
		}
		b1 <- nil
	}()
	for i := range n {
		if _, err := alice.Send(ctx, g.Id, fmt.Sprintf("%08d", i)+text); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	if v := metric(t, srv.Addr, "parley_slow_consumers_total"); v != 1 {
		t.Fatalf("parley_slow_consumers_total = %v, want 1", v)
	}
	// The stalled socket is closed by the server although its reader
	// takes nothing: a read on it ends (EOF or reset) once the kernel's
	// buffered bytes are consumed.
	deadline := time.Now().Add(20 * time.Second)
	for metric(t, srv.Addr, "parley_outbound_queue_bytes") != 0 || metric(t, srv.Addr, "parley_links") != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("after the slow consumer: queued %v bytes, %v links (want 0, 2)",
				metric(t, srv.Addr, "parley_outbound_queue_bytes"), metric(t, srv.Addr, "parley_links"))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := <-b1; err != nil {
		t.Fatal(err)
	}
}

// stalled is a group of alice and bob, with bob on a second device whose
// reading is stalled (bob's first device reads normally).
type stalled struct {
	srv        *gatewaytest.Server
	alice, bob *client.Client
	g          *pb.Conversation
	ws         *gws.Conn
	ev         *stallEvents
	once       sync.Once
	gate       chan struct{}
}

func stalledGroup(t *testing.T, o gateway.Options) *stalled {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st := &stalled{srv: gatewaytest.Start(t, gatewaytest.Options{Gateway: o}), gate: make(chan struct{})}
	st.alice, _ = st.srv.User(t, "alice", "a1")
	st.bob, _ = st.srv.User(t, "bob", "b1")
	var err error
	if st.g, err = st.alice.CreateGroup(ctx, "g", st.bob.UserID()); err != nil {
		t.Fatal(err)
	}
	// A small receive buffer, so a stalled read stops the server's writes
	// within a few KiB.
	st.ws, st.ev = stalledDevice(t, st.srv, "bob", "b2")
	st.ev.mu.Lock()
	st.ev.stalled = st.gate
	st.ev.mu.Unlock()
	return st
}

// release lets the stalled device read again.
func (st *stalled) release() { st.once.Do(func() { close(st.gate) }) }

// stalledDevice logs user in from a new device over a socket with a small
// receive buffer, read by a stallEvents client.
func stalledDevice(t *testing.T, srv *gatewaytest.Server, user, device string) (*gws.Conn, *stallEvents) {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		if err != nil {
			return err
		}
		return serr
	}}
	nc, err := d.Dial("tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	ev := &stallEvents{frames: make(chan []byte, 4096), pongs: make(chan string, 256), closed: make(chan error, 1)}
	ws, _, err := gws.NewClientFromConn(ev, &gws.ClientOption{Addr: srv.URL}, nc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ws.NetConn().Close() })
	go ws.ReadLoop()
	for _, cmd := range []string{fmt.Sprintf(`{"id":"h","hello":{"versions":[1],"device":{"id":%q}}}`, device),
		fmt.Sprintf(`{"id":"l","login":{"username":%q,"password":"password-%s","device":{"id":%q}}}`, user, user, device)} {
		if err := ws.WriteMessage(gws.OpcodeText, []byte(cmd)); err != nil {
			t.Fatal(err)
		}
		f := nextFrame(t, ev)
		for f.GetRe() == "" { // events before the reply
			f = nextFrame(t, ev)
		}
		if f.GetError() != nil {
			t.Fatalf("%s: %v", cmd, f)
		}
	}
	return ws, ev
}
