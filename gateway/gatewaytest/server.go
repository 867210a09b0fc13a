// Package gatewaytest starts real Parley servers for tests: a real Pebble
// store, a real actor node and a real WebSocket listener on loopback.
package gatewaytest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/gateway"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// Server is a running test server.
type Server struct {
	App  *gateway.App
	URL  string
	Addr string
	stop context.CancelFunc
	done chan error
}

// Options tweak a test server; zero values are fine.
type Options struct {
	// DataDir: "" means a fresh t.TempDir().
	DataDir string
	Gateway gateway.Options
	Actors  actors.Options
	AppFS   func(*gateway.AppOptions)
}

// Start starts a server and stops it at test cleanup.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	if o.DataDir == "" {
		o.DataDir = t.TempDir()
	}
	// Cheap password hashing keeps tests fast; production uses the defaults.
	if o.Actors.ArgonMemoryKiB == 0 {
		o.Actors.ArgonMemoryKiB, o.Actors.ArgonTime = 64, 1
	}
	level := slog.LevelWarn
	if os.Getenv("PARLEY_TEST_LOG") != "" {
		level = slog.LevelDebug
	}
	var w io.Writer = os.Stderr
	ao := gateway.AppOptions{DataDir: o.DataDir, Gateway: o.Gateway, Actors: o.Actors,
		Logger: slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: level}))}
	if o.AppFS != nil {
		o.AppFS(&ao)
	}
	app, err := gateway.NewApp(ao)
	if err != nil {
		t.Fatalf("start server: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{App: app, Addr: ln.Addr().String(), URL: "ws://" + ln.Addr().String() + "/ws", stop: cancel, done: make(chan error, 1)}
	go func() { s.done <- app.Serve(ctx, ln) }()
	t.Cleanup(s.Stop)
	return s
}

// Stop shuts the server down (idempotent).
func (s *Server) Stop() {
	if s.stop == nil {
		return
	}
	s.stop()
	s.stop = nil
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		panic("gatewaytest: server did not stop")
	}
}

// Dial connects a client with a device.
func (s *Server) Dial(t testing.TB, device string, token string, cursors map[string]int64) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Options{URL: s.URL, Device: &pb.Device{Id: device, Type: pb.DeviceType_DEVICE_TYPE_DESKTOP}, Token: token, Cursors: cursors})
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// User registers username (password "password-<username>") and logs it in
// on a new link from device.
func (s *Server) User(t testing.TB, username, device string) (*client.Client, *pb.LoggedIn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := s.Dial(t, device, "", nil)
	if _, err := c.Register(ctx, username, "password-"+username, ""); err != nil && client.Code(err) != pb.CodeUsernameTaken {
		t.Fatalf("register %s: %v", username, err)
	}
	li, err := c.Login(ctx, username, "password-"+username)
	if err != nil {
		t.Fatalf("login %s: %v", username, err)
	}
	return c, li
}
