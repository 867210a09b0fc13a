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

	// OpSend sends Count stamped messages per Send from its link, Depth
	// in flight, and replies when all are acknowledged (with the highest
	// seq acknowledged per conversation).
	OpSend = "send"
	// OpExpect waits until every link that tracks a conversation named in
	// Expect holds it up to the expected seq (or Timeout).
	OpExpect = "expect"
	// OpCut closes the TCP connection of the links named in Links (all if
	// empty) without a WebSocket close frame, and waits for them to end.
	OpCut = "cut"
	// OpRebuild reconnects every cut link, each after a random delay in
	// [0, Jitter), with a hello that resumes its session (protocol §10.3)
	// and names its cursors; it replies when all are caught up to Expect
	// (or Timeout).
	OpRebuild = "rebuild"
	// OpChannel creates a channel from link Conn and adds Members in
	// batches; the reply's Convs[0] is its id.
	OpChannel = "channel"
	// OpJoin makes every link join channel Channel (present), Concurrency
	// joins in flight.
	OpJoin = "join"
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
	// Channel: Conv is a channel, and the sends are channelSend.
	Channel bool `json:"channel,omitempty"`
}

// Send is a burst of stamped messages into Conv from link Conn.
type Send struct {
	Conn  int    `json:"conn"`
	Conv  string `json:"conv"`
	Count int    `json:"count"`
}

// Command is one line from the orchestrator.
type Command struct {
	Op          string      `json:"op"`
	Accounts    []Account   `json:"accounts,omitempty"`
	Concurrency int         `json:"concurrency,omitempty"`
	Groups      []Group     `json:"groups,omitempty"`
	Publishers  []Publisher `json:"publishers,omitempty"`
	// Rebuild (OpConnect): log in with rebuild: true, keep the session's
	// id and rebuild token, and track the seqs of every conversation whose
	// CREATED entry the link receives (exactly-once, in-order checks).
	Rebuild bool `json:"rebuild,omitempty"`
	// OpSend.
	Sends []Send `json:"sends,omitempty"`
	Depth int    `json:"depth,omitempty"`
	// OpExpect, OpRebuild: conversation -> the seq every tracking link
	// must reach.
	Expect map[string]int64 `json:"expect,omitempty"`
	// OpExpect, OpRebuild: how long to wait, in nanoseconds.
	Timeout int64 `json:"timeout,omitempty"`
	// OpRebuild: reconnects are spread uniformly over Jitter ns.
	Jitter int64 `json:"jitter,omitempty"`
	// OpRebuild: Plain reconnects with a hello that resumes nothing and
	// counts its helloOk as the confirm (reconnect-baseline: the bare gws
	// server has no sessions to rebuild).
	Plain bool `json:"plain,omitempty"`
	// OpCut: local link indexes (all if empty).
	Links []int `json:"links,omitempty"`
	// OpChannel: creator link, title and members (user ids).
	Conn    int      `json:"conn,omitempty"`
	Title   string   `json:"title,omitempty"`
	Members []string `json:"members,omitempty"`
	// OpJoin: the channel.
	Channel string `json:"channel,omitempty"`
}

// Rebuild is what an OpRebuild (or OpExpect) saw.
type Rebuild struct {
	// Rebuilt counts links whose resume was confirmed (rebuilt: true).
	Rebuilt int `json:"rebuilt"`
	// Refused counts resumes refused, by error code (the link then opens
	// a fresh session with its cursors).
	Refused map[string]int `json:"refused,omitempty"`
	// Failed counts links that could not reconnect at all, by reason.
	Failed map[string]int `json:"failed,omitempty"`
	// Behind counts links not caught up to Expect in time.
	Behind int `json:"behind"`
	// Confirm is dial start to the helloOk of the resume; CaughtUp is dial
	// start to the last expected message.
	Confirm  histogram.Snapshot `json:"confirm"`
	CaughtUp histogram.Snapshot `json:"caught_up"`
	// SessionReplayed counts session events received before the helloOk
	// (the replay of events pushed while cut).
	SessionReplayed int `json:"session_replayed"`
	// FirstDial and LastDone are unix nanos of the first dial and of the
	// last link caught up.
	FirstDial int64 `json:"first_dial"`
	LastDone  int64 `json:"last_done"`
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
	// Rebuild: OpRebuild, OpExpect.
	Rebuild *Rebuild `json:"rebuild,omitempty"`
	// Send: the highest seq acknowledged per conversation.
	LastSeqs map[string]int64 `json:"last_seqs,omitempty"`
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
	// Tracked conversations (rebuild): message events whose seq was not
	// above the link's last (Dups) and seqs skipped (Gaps); session events
	// likewise (SessionDups, SessionGaps).
	Dups        uint64 `json:"dups,omitempty"`
	Gaps        uint64 `json:"gaps,omitempty"`
	SessionDups uint64 `json:"session_dups,omitempty"`
	SessionGaps uint64 `json:"session_gaps,omitempty"`
	// ChannelEvents counts channel presence events.
	ChannelEvents uint64 `json:"channel_events,omitempty"`
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
	s.Dups += o.Dups
	s.Gaps += o.Gaps
	s.SessionDups += o.SessionDups
	s.SessionGaps += o.SessionGaps
	s.ChannelEvents += o.ChannelEvents
	s.Errors = addCounts(s.Errors, o.Errors)
	s.Closes = addCounts(s.Closes, o.Closes)
	s.Latency.Merge(o.Latency)
	s.AckLatency.Merge(o.AckLatency)
}

// Add accumulates o into r.
func (r *Rebuild) Add(o *Rebuild) {
	if o == nil {
		return
	}
	r.Rebuilt += o.Rebuilt
	r.Behind += o.Behind
	r.SessionReplayed += o.SessionReplayed
	r.Refused = addInts(r.Refused, o.Refused)
	r.Failed = addInts(r.Failed, o.Failed)
	r.Confirm.Merge(o.Confirm)
	r.CaughtUp.Merge(o.CaughtUp)
	if o.FirstDial != 0 && (r.FirstDial == 0 || o.FirstDial < r.FirstDial) {
		r.FirstDial = o.FirstDial
	}
	r.LastDone = max(r.LastDone, o.LastDone)
}

func addInts(dst, src map[string]int) map[string]int {
	if len(src) == 0 {
		return dst
	}
	if dst == nil {
		dst = map[string]int{}
	}
	for k, v := range src {
		dst[k] += v
	}
	return dst
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
