package gateway

import (
	"bytes"
	"sync"

	pb "github.com/parley-chat/parley/gateway/protocol"
	"google.golang.org/protobuf/proto"
)

// replayFrames shares the encoded frames of replayed messages between
// links. Members of a conversation who reconnect together (a rebuild
// storm after a network blip or a restart) replay the same messages, and
// each would otherwise pay a protojson encoding per message per link.
//
// An entry is keyed by (conversation, seq) and holds the message's
// deterministic binary encoding next to its frame; a lookup re-encodes
// the message in binary (about 20 times cheaper than protojson) and uses
// the frame only if the bytes are identical. So a message that changed
// since (deleted into a tombstone) or that reads differently for this
// user (a sub-group's hidden placeholder) never gets another's frame.
//
// The binary check is skipped for the very message the entry was last
// checked against: a conversation grain answers the members who replay
// from the same cursor with the same page of its kept tail, whose
// messages are never modified (a tombstone is a new message, and the
// tail is dropped by every commit), and the entry keeps its message
// alive, so its address is never another message's. The check cost half
// of a replayed message in the rebuild storm.
var replayFrames = newFrameCache(4096)

type frameKey struct {
	conv string
	seq  int64
}

type cachedFrame struct {
	msg   *pb.Message // the message bin was last compared with
	bin   []byte      // deterministic binary encoding of the message
	frame []byte      // WebSocket text frame of {"message": ...}
}

// frameCache is a bounded map; when full, an arbitrary entry makes room.
type frameCache struct {
	mu  sync.Mutex
	max int
	m   map[frameKey]cachedFrame
}

func newFrameCache(max int) *frameCache {
	return &frameCache{max: max, m: make(map[frameKey]cachedFrame)}
}

var binOpts = proto.MarshalOptions{Deterministic: true}

// frame returns the WebSocket frame of a message event for m, encoded
// once for every link that replays the same message.
func (c *frameCache) frame(m *pb.Message) []byte {
	k := frameKey{m.ConversationId, m.Seq}
	c.mu.Lock()
	e, ok := c.m[k]
	c.mu.Unlock()
	if ok && e.msg == m {
		return e.frame
	}
	bin, err := binOpts.Marshal(m)
	if err != nil {
		return wsTextFrame(pb.Encode(&pb.ServerFrame{Body: &pb.ServerFrame_Message{Message: m}}))
	}
	f := e.frame
	if !ok || !bytes.Equal(e.bin, bin) {
		f = wsTextFrame(pb.Encode(&pb.ServerFrame{Body: &pb.ServerFrame_Message{Message: m}}))
	}
	c.mu.Lock()
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		for old := range c.m {
			delete(c.m, old)
			break
		}
	}
	c.m[k] = cachedFrame{msg: m, bin: bin, frame: f}
	c.mu.Unlock()
	return f
}
