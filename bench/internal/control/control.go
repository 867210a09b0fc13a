// Package control defines the messages the bench orchestrator and its
// worker processes exchange: one JSON object per line, commands on the
// worker's stdin and replies on its stdout, strictly one reply per command.
package control

import "github.com/parley-chat/parley/bench/internal/histogram"

// Operations a worker understands.
const (
	// OpConnect opens one link per account: hello, then login.
	OpConnect = "connect"
	// OpCreate creates groups from given links.
	OpCreate = "create"
	// OpPublish starts publishers on given links; the reply comes at once.
	OpPublish = "publish"
	// OpStop stops every publisher.
	OpStop = "stop"
	// OpReset zeroes the latency histograms (counters are cumulative; the
	// orchestrator takes differences).
	OpReset = "reset"
	// OpStats reports cumulative statistics.
	OpStats = "stats"
	// OpExit closes every link and ends the worker.
	OpExit = "exit"
)

// Pace values of a publisher.
const (
	// PaceAck frees a pipeline slot when the send is acknowledged ("sent").
	PaceAck = "ack"
	// PaceEcho frees a slot when the publisher's own link receives the
	// message event, i.e. after the server has fanned it out: the
	// publisher cannot run ahead of delivery.
	PaceEcho = "echo"
)

// Account is one link to open.
type Account struct {
	Username string `json:"u"`
	Password string `json:"p"`
	Device   string `json:"d"`
}

// Group is a group to create from the link Conn (an index into the
// worker's accounts), with Members (user ids) besides its creator.
type Group struct {
	Conn    int      `json:"conn"`
	Title   string   `json:"title"`
	Members []string `json:"members"`
}

// Publisher sends into Conv from link Conn.
type Publisher struct {
	Conn int    `json:"conn"`
	Conv string `json:"conv"`
	// ID is unique across all workers; it is embedded in every text so a
	// publisher recognises its own messages.
	ID int `json:"id"`
	// Depth is the number of sends in flight.
	Depth int `json:"depth"`
	// Pace is PaceAck or PaceEcho.
	Pace string `json:"pace"`
	// Rate, if positive, sends at most Rate messages per second.
	Rate float64 `json:"rate,omitempty"`
	// Size is the text length in bytes.
	Size int `json:"size"`
}

// Command is one line from the orchestrator.
type Command struct {
	Op          string      `json:"op"`
	Accounts    []Account   `json:"accounts,omitempty"`
	Concurrency int         `json:"concurrency,omitempty"`
	Groups      []Group     `json:"groups,omitempty"`
	Publishers  []Publisher `json:"publishers,omitempty"`
}

// Reply answers one Command.
type Reply struct {
	Op string `json:"op"`
	// Err is set when the command failed as a whole.
	Err string `json:"err,omitempty"`
	// Connect: links authenticated, failures by reason, user ids (in
	// account order; "" for failures) and the per-link setup time
	// (connect to loggedIn).
	Connected int                `json:"connected,omitempty"`
	Failures  map[string]int     `json:"failures,omitempty"`
	UserIDs   []string           `json:"user_ids,omitempty"`
	Setup     histogram.Snapshot `json:"setup"`
	// Create: conversation ids in group order.
	Convs []string `json:"convs,omitempty"`
	// Stats: the worker's statistics.
	Stats *Stats `json:"stats,omitempty"`
}

// Stats are a worker's cumulative counters and its latency histograms
// since the last OpReset.
type Stats struct {
	// Delivered counts bench message events received (all links).
	Delivered uint64 `json:"delivered"`
	// Created counts MESSAGE_KIND_CREATED events (group set-up checks).
	Created uint64 `json:"created"`
	// OtherEvents counts other message and session events.
	OtherEvents uint64 `json:"other_events"`
	// Sent and Acked count publishers' sends and their "sent" replies.
	Sent  uint64 `json:"sent"`
	Acked uint64 `json:"acked"`
	// Errors counts error replies and error frames by code.
	Errors map[string]uint64 `json:"errors,omitempty"`
	// Closes counts links that ended, by WebSocket close code ("net" for
	// a connection lost without a close frame).
	Closes map[string]uint64 `json:"closes,omitempty"`
	// Open is the number of links currently open.
	Open int `json:"open"`
	// Latency is send-to-receive time of message events (receiver clock
	// minus the stamp in the text); AckLatency is send-to-"sent".
	Latency    histogram.Snapshot `json:"latency"`
	AckLatency histogram.Snapshot `json:"ack_latency"`
}

// Add accumulates o into s (histograms are merged).
func (s *Stats) Add(o *Stats) {
	s.Delivered += o.Delivered
	s.Created += o.Created
	s.OtherEvents += o.OtherEvents
	s.Sent += o.Sent
	s.Acked += o.Acked
	s.Open += o.Open
	s.Errors = addCounts(s.Errors, o.Errors)
	s.Closes = addCounts(s.Closes, o.Closes)
	s.Latency.Merge(o.Latency)
	s.AckLatency.Merge(o.AckLatency)
}

func addCounts(dst, src map[string]uint64) map[string]uint64 {
	if len(src) == 0 {
		return dst
	}
	if dst == nil {
		dst = map[string]uint64{}
	}
	for k, v := range src {
		dst[k] += v
	}
	return dst
}
