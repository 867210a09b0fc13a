// Package baseline is the yardstick of the fan-out benchmark: a bare gws
// WebSocket server with one topic, no actors, no persistence and no
// per-link queue bound. It understands just enough of Parley's JSON
// protocol for the bench workers to run unchanged against it:
//
//   - hello      -> helloOk
//   - login      -> loggedIn (no password check); the link joins the topic
//   - createGroup -> conversation "all"; a CREATED event is broadcast
//   - send       -> the message event is broadcast to every subscriber with
//     gws.NewBroadcaster (framed once), then "sent" is replied
//
// Writes are coalesced as in Parley's gateway (see coalesce.go): each
// link's socket is wrapped so that the frames gws writes to it are queued,
// and one writer goroutine per burst sends everything queued with one
// system call; frames queued while a write is in progress go in the next.
// Without it, gws's broadcaster makes one write(2) per frame per link,
// which is not the transport's limit but a cost Parley does not pay.
//
// Frames are decoded and encoded with encoding/json, as a minimal server
// would; the difference to Parley is therefore protojson, actors, the
// synced commit and the gateway's bounded queues.
package baseline

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lxzan/gws"
)

// readBufferSize is the links' read buffer.
const readBufferSize = 2048

// Server is the baseline server.
type Server struct {
	upgrader *gws.Upgrader
	mu       sync.RWMutex
	subs     map[*gws.Conn]struct{}
	seq      atomic.Int64
}

// New returns a baseline server.
func New() *Server {
	s := &Server{subs: map[*gws.Conn]struct{}{}}
	s.upgrader = gws.NewUpgrader(s, &gws.ServerOption{
		ReadMaxPayloadSize: 64 << 10,
		ReadBufferSize:     readBufferSize,
	})
	return s
}

// Serve serves /ws on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := s.upgrade(w, r)
		if err != nil {
			return
		}
		go c.ReadLoop()
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = hs.Shutdown(sctx)
	s.mu.Lock()
	for c := range s.subs {
		_ = c.WriteClose(1001, nil)
	}
	s.mu.Unlock()
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// frame is the subset of Parley's ClientFrame the baseline reads.
type frame struct {
	ID    string    `json:"id"`
	Hello *struct{} `json:"hello"`
	Login *struct {
		Username string `json:"username"`
		Device   struct {
			ID string `json:"id"`
		} `json:"device"`
	} `json:"login"`
	CreateGroup *struct {
		Title string `json:"title"`
	} `json:"createGroup"`
	Send *struct {
		ConversationID string `json:"conversationId"`
		ClientID       string `json:"clientId"`
		Text           string `json:"text"`
	} `json:"send"`
}

// message is the subset of Parley's Message event the baseline writes.
type message struct {
	ConversationID string `json:"conversationId"`
	Seq            string `json:"seq"`
	Kind           string `json:"kind"`
	Sender         string `json:"sender,omitempty"`
	SenderDevice   string `json:"senderDevice,omitempty"`
	ClientID       string `json:"clientId,omitempty"`
	TimeMs         string `json:"timeMs"`
	Text           string `json:"text"`
}

type identity struct{ user, device string }

// OnOpen implements gws.Event.
func (s *Server) OnOpen(*gws.Conn) {}

// OnClose implements gws.Event.
func (s *Server) OnClose(c *gws.Conn, _ error) {
	s.mu.Lock()
	delete(s.subs, c)
	s.mu.Unlock()
}

// OnPing implements gws.Event.
func (s *Server) OnPing(c *gws.Conn, p []byte) { _ = c.WritePong(p) }

// OnPong implements gws.Event.
func (s *Server) OnPong(*gws.Conn, []byte) {}

// OnMessage implements gws.Event.
func (s *Server) OnMessage(c *gws.Conn, m *gws.Message) {
	defer m.Close()
	var f frame
	if err := json.Unmarshal(m.Bytes(), &f); err != nil {
		s.reply(c, "", "error", map[string]string{"code": "bad_json", "message": err.Error()})
		return
	}
	switch {
	case f.Hello != nil:
		s.reply(c, f.ID, "helloOk", map[string]any{"version": 1, "server": "baseline"})
	case f.Login != nil:
		id := identity{user: "u-" + f.Login.Username, device: f.Login.Device.ID}
		c.Session().Store("id", id)
		s.mu.Lock()
		s.subs[c] = struct{}{}
		s.mu.Unlock()
		s.reply(c, f.ID, "loggedIn", map[string]any{"token": "-", "session": map[string]string{"userId": id.user, "deviceId": id.device}})
	case f.CreateGroup != nil:
		s.reply(c, f.ID, "conversation", map[string]string{"id": "all", "kind": "CONVERSATION_KIND_GROUP"})
		s.broadcast(message{ConversationID: "all", Kind: "MESSAGE_KIND_CREATED", Text: f.CreateGroup.Title})
	case f.Send != nil:
		v, _ := c.Session().Load("id")
		id, _ := v.(identity)
		seq, ms := s.broadcast(message{
			ConversationID: f.Send.ConversationID, Kind: "MESSAGE_KIND_TEXT", Sender: id.user,
			SenderDevice: id.device, ClientID: f.Send.ClientID, Text: f.Send.Text,
		})
		s.reply(c, f.ID, "sent", map[string]string{"conversationId": f.Send.ConversationID, "seq": seq, "timeMs": ms})
	default:
		s.reply(c, f.ID, "error", map[string]string{"code": "unknown_command", "message": "baseline: not supported"})
	}
}

// broadcast frames the event once and queues it on every subscriber.
func (s *Server) broadcast(msg message) (seq, timeMs string) {
	msg.Seq = strconv.FormatInt(s.seq.Add(1), 10)
	msg.TimeMs = strconv.FormatInt(time.Now().UnixMilli(), 10)
	payload, _ := json.Marshal(map[string]message{"message": msg})
	b := gws.NewBroadcaster(gws.OpcodeText, payload)
	s.mu.RLock()
	for c := range s.subs {
		_ = b.Broadcast(c)
	}
	s.mu.RUnlock()
	_ = b.Close()
	return msg.Seq, msg.TimeMs
}

// reply writes {"re":re,"<body>":v}: "re" first, as protojson orders it
// (encoding/json would sort map keys).
func (s *Server) reply(c *gws.Conn, re, body string, v any) {
	b := make([]byte, 0, 128)
	b = append(b, '{')
	if re != "" {
		b = strconv.AppendQuote(append(b, `"re":`...), re)
		b = append(b, ',')
	}
	b = append(strconv.AppendQuote(b, body), ':')
	val, _ := json.Marshal(v)
	b = append(append(b, val...), '}')
	_ = c.WriteMessage(gws.OpcodeText, b)
}
