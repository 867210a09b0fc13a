package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// chaosProxy forwards TCP connections to a backend and cuts them on demand,
// possibly in the middle of a frame. It parses both directions as
// WebSocket frames and logs, per connection, the cursors the client sent in
// its hello and every conversation message and session event the server
// wrote, so a test can check the server never wrote one twice on a link.
type chaosProxy struct {
	ln      net.Listener
	backend string
	mu      sync.Mutex
	conns   []*proxied
	rng     *rand.Rand
	cuts    atomic.Int64
}

// proxied is one client connection through the proxy.
type proxied struct {
	client, server net.Conn
	cut            atomic.Bool
	mu             sync.Mutex
	cursors        map[string]int64 // from the client's hello/login
	resumed        bool
	rebuilt        bool
	messages       map[string][]int64 // conv -> seqs written by the server
	sessionSeqs    []int64
}

func newChaosProxy(t *testing.T, backend string, seed uint64) *chaosProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &chaosProxy{ln: ln, backend: backend, rng: rand.New(rand.NewPCG(seed, 99))}
	go p.accept()
	t.Cleanup(func() { ln.Close() })
	return p
}

func (p *chaosProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.backend)
		if err != nil {
			c.Close()
			continue
		}
		pc := &proxied{client: c, server: s, cursors: map[string]int64{}, messages: map[string][]int64{}}
		p.mu.Lock()
		p.conns = append(p.conns, pc)
		p.mu.Unlock()
		go p.pump(pc, c, s, false)
		go p.pump(pc, s, c, true)
	}
}

// pump copies src to dst; when the connection is marked for a cut it
// forwards a random prefix of the chunk in hand (cutting mid-frame) and
// closes both sides.
func (p *chaosProxy) pump(pc *proxied, src, dst net.Conn, fromServer bool) {
	defer src.Close()
	defer dst.Close()
	parser := &wsParser{masked: !fromServer, onFrame: func(payload []byte) { pc.log(payload, fromServer) }}
	buf := make([]byte, 4096)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			if pc.cut.Load() {
				p.mu.Lock()
				k := p.rng.IntN(n + 1)
				p.mu.Unlock()
				dst.Write(buf[:k])
				return
			}
			parser.feed(buf[:n])
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// cutRandom cuts one live connection.
func (p *chaosProxy) cutRandom() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.conns) == 0 {
		return
	}
	pc := p.conns[p.rng.IntN(len(p.conns))]
	if !pc.cut.Swap(true) {
		p.cuts.Add(1)
		// Wake both pumps even if no data flows.
		go func() {
			pc.client.(*net.TCPConn).CloseRead()
			pc.server.(*net.TCPConn).CloseRead()
		}()
	}
}

// log records one frame's payload.
func (pc *proxied) log(payload []byte, fromServer bool) {
	var f map[string]json.RawMessage
	if json.Unmarshal(payload, &f) != nil {
		return
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if !fromServer {
		var cmd struct {
			Hello *struct {
				Resume  *struct{} `json:"resume"`
				Cursors []struct {
					ConversationID string `json:"conversationId"`
					Seq            string `json:"seq"`
				} `json:"cursors"`
			} `json:"hello"`
		}
		if json.Unmarshal(payload, &cmd) == nil && cmd.Hello != nil {
			pc.resumed = cmd.Hello.Resume != nil
			for _, c := range cmd.Hello.Cursors {
				var n int64
				json.Unmarshal([]byte(c.Seq), &n)
				pc.cursors[c.ConversationID] = n
			}
		}
		return
	}
	var ev struct {
		Message *struct {
			ConversationID string `json:"conversationId"`
			Seq            int64  `json:"seq,string"`
		} `json:"message"`
		SessionEvent *struct {
			Seq int64 `json:"seq,string"`
		} `json:"sessionEvent"`
		HelloOk *struct {
			Session *struct {
				Rebuilt bool `json:"rebuilt"`
			} `json:"session"`
		} `json:"helloOk"`
	}
	if json.Unmarshal(payload, &ev) != nil {
		return
	}
	switch {
	case ev.Message != nil:
		pc.messages[ev.Message.ConversationID] = append(pc.messages[ev.Message.ConversationID], ev.Message.Seq)
	case ev.SessionEvent != nil:
		pc.sessionSeqs = append(pc.sessionSeqs, ev.SessionEvent.Seq)
	case ev.HelloOk != nil && ev.HelloOk.Session != nil:
		pc.rebuilt = ev.HelloOk.Session.Rebuilt
	}
}

// wsParser splits a byte stream into WebSocket frame payloads (unmasking
// client frames). Control frames and fragments are passed through as-is;
// Parley sends each message as one text frame.
type wsParser struct {
	masked   bool
	buf      []byte
	upgraded bool // the HTTP upgrade exchange is behind us
	onFrame  func([]byte)
}

func (w *wsParser) feed(b []byte) {
	w.buf = append(w.buf, b...)
	if !w.upgraded {
		i := bytes.Index(w.buf, []byte("\r\n\r\n"))
		if i < 0 {
			return
		}
		w.buf, w.upgraded = w.buf[i+4:], true
	}
	for {
		if len(w.buf) < 2 {
			return
		}
		n := int(w.buf[1] & 0x7f)
		hdr := 2
		switch n {
		case 126:
			if len(w.buf) < 4 {
				return
			}
			n, hdr = int(binary.BigEndian.Uint16(w.buf[2:])), 4
		case 127:
			if len(w.buf) < 10 {
				return
			}
			n, hdr = int(binary.BigEndian.Uint64(w.buf[2:])), 10
		}
		var mask []byte
		if w.buf[1]&0x80 != 0 {
			if len(w.buf) < hdr+4 {
				return
			}
			mask = w.buf[hdr : hdr+4]
			hdr += 4
		}
		if len(w.buf) < hdr+n {
			return
		}
		payload := append([]byte(nil), w.buf[hdr:hdr+n]...)
		for i := range payload {
			if mask != nil {
				payload[i] ^= mask[i%4]
			}
		}
		if w.buf[0]&0x0f == 1 {
			w.onFrame(payload)
		}
		w.buf = w.buf[hdr+n:]
	}
}
