package client

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/parley-chat/parley/actors/call"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"github.com/pion/webrtc/v4"
)

// Calls. The SDK runs the same device machine as the server's model
// (actors/call.Device): every call event and every reply goes through it,
// and the machine says what to send, when to ring and when to start or
// stop the media. The media is a pion PeerConnection with the node's SFU:
// the SFU offers, the client answers; ICE candidates trickle both ways as
// signalCall commands and callSignal session events.

// CallOptions configure a call's media.
type CallOptions struct {
	// API builds the peer connection; nil means NewCallAPI(false).
	API *webrtc.API
	// SendSilence makes the call publish an Opus stream of silence frames
	// every 20 ms (tests, bots). Otherwise write to Call.Track().
	SendSilence bool
}

// ErrCallOver is returned when a call ended before it reached the room.
var ErrCallOver = errors.New("parley: call over")

// calls is the client's call manager. Everything it does runs on one
// worker goroutine, in order: machine steps, their effects, signalling.
type calls struct {
	c *Client

	mu     sync.Mutex
	queue  []func()
	wake   chan struct{}
	dev    *call.Device
	active *Call

	invites chan *pb.CallInvited
}

func newCalls(c *Client) *calls {
	m := &calls{c: c, wake: make(chan struct{}, 1), dev: &call.Device{ID: c.opts.Device.GetId()}, invites: make(chan *pb.CallInvited, 16)}
	go m.loop()
	return m
}

func (m *calls) do(f func()) {
	m.mu.Lock()
	m.queue = append(m.queue, f)
	m.mu.Unlock()
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

func (m *calls) loop() {
	for {
		m.mu.Lock()
		q := m.queue
		m.queue = nil
		m.mu.Unlock()
		for _, f := range q {
			f()
		}
		if len(q) > 0 {
			continue
		}
		select {
		case <-m.wake:
		case <-m.c.closed:
			m.mu.Lock()
			q := m.queue
			m.queue = nil
			m.mu.Unlock()
			for _, f := range q {
				f()
			}
			return
		}
	}
}

// Call is this device's part in a call: from start or accept until it is
// over. Its methods are safe for concurrent use.
type Call struct {
	m    *calls
	opts CallOptions

	// ID is the call id (empty until the create confirm for a started
	// call); Join is this device's join id.
	Join string

	mu           sync.Mutex
	id           string
	peer         *mediaPeer
	early        []*pb.CallSignal
	participants map[string]*pb.CallParticipant
	media        *pb.MediaEndpoint
	reason       string
	inRoom       chan struct{}
	done         chan struct{}
	errs         []error
}

func newCall(m *calls, join string, o CallOptions) *Call {
	return &Call{m: m, opts: o, Join: join, participants: map[string]*pb.CallParticipant{},
		inRoom: make(chan struct{}), done: make(chan struct{})}
}

// ID is the call id.
func (k *Call) ID() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.id
}

// InRoom is closed when the device entered the room (media starting).
func (k *Call) InRoom() <-chan struct{} { return k.inRoom }

// Done is closed when the call is over for this device; Reason says why.
func (k *Call) Done() <-chan struct{} { return k.done }

// Reason is why the call ended for this device ("" while it lasts).
func (k *Call) Reason() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.reason
}

// Media is the media endpoint named in the confirm.
func (k *Call) Media() *pb.MediaEndpoint {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.media
}

// Participants is the participant list as last reported.
func (k *Call) Participants() map[string]*pb.CallParticipant {
	k.mu.Lock()
	defer k.mu.Unlock()
	out := make(map[string]*pb.CallParticipant, len(k.participants))
	for u, p := range k.participants {
		out[u] = p
	}
	return out
}

// LocalSSRC is the SSRC of the track this device publishes (0 before the
// room).
func (k *Call) LocalSSRC() uint32 {
	if p := k.mediaPeer(); p != nil {
		return p.ssrc
	}
	return 0
}

// Received returns the RTP packets received so far per SSRC (one SSRC per
// other participant: the SFU keeps the publishers' SSRCs).
func (k *Call) Received() map[uint32]uint64 {
	if p := k.mediaPeer(); p != nil {
		return p.received()
	}
	return nil
}

// Sent is the number of RTP packets published.
func (k *Call) Sent() uint64 {
	if p := k.mediaPeer(); p != nil {
		return p.sent.Load()
	}
	return 0
}

// Track is the published track (write RTP to it when not SendSilence).
func (k *Call) Track() *webrtc.TrackLocalStaticRTP {
	if p := k.mediaPeer(); p != nil {
		return p.track
	}
	return nil
}

// Connected is closed when the media connection is up (nil before the
// room).
func (k *Call) Connected() <-chan struct{} {
	if p := k.mediaPeer(); p != nil {
		return p.connected
	}
	return nil
}

// Errors lists signalling errors seen so far (refused answers, candidates).
func (k *Call) Errors() []error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return append([]error(nil), k.errs...)
}

func (k *Call) mediaPeer() *mediaPeer {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.peer
}

func (k *Call) fail(err error) {
	k.mu.Lock()
	k.errs = append(k.errs, err)
	k.mu.Unlock()
}

// Invitations delivers invitations as they start ringing on this device
// (buffered; if nobody reads, the oldest are not waited for).
func (c *Client) Invitations() <-chan *pb.CallInvited { return c.calls.invites }

// StartCall starts a call in a conversation and waits until this device is
// in the room (create, create confirm, create room, room created).
func (c *Client) StartCall(ctx context.Context, conv string, o CallOptions) (*Call, error) {
	join := NewClientID()
	return c.calls.begin(ctx, join, o, call.Start{Conv: conv, Join: join})
}

// AcceptCall accepts a ringing invitation, or enters an ongoing call of one
// of the user's conversations, and waits until this device is in the room
// (enter, enter confirm, join room, entered).
func (c *Client) AcceptCall(ctx context.Context, callID string, o CallOptions) (*Call, error) {
	join := NewClientID()
	return c.calls.begin(ctx, join, o, call.Accept{Call: callID, Join: join})
}

// DeclineCall declines a ringing invitation (every device of the user
// stops ringing).
func (c *Client) DeclineCall(callID string) error {
	errc := make(chan error, 1)
	c.calls.do(func() { errc <- c.calls.step(call.Decline{Call: callID}) })
	return <-errc
}

// CallInfo asks for a call's state.
func (c *Client) CallInfo(ctx context.Context, callID string) (*pb.CallInfo, error) {
	f, err := c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_CallInfo{CallInfo: &pb.GetCallInfo{CallId: callID}}})
	if err != nil {
		return nil, err
	}
	return f.GetCall(), nil
}

func (m *calls) begin(ctx context.Context, join string, o CallOptions, ev call.DeviceEvent) (*Call, error) {
	k := newCall(m, join, o)
	if a, ok := ev.(call.Accept); ok {
		k.id = a.Call
	}
	errc := make(chan error, 1)
	m.do(func() {
		if m.dev.Active() {
			errc <- &Error{Code: pb.CodeBusy, Message: "this device is in call " + m.dev.Call}
			return
		}
		m.active = k
		errc <- m.step(ev)
	})
	if err := <-errc; err != nil {
		return nil, err
	}
	select {
	case <-k.inRoom:
		return k, nil
	case <-k.done:
		return nil, &Error{Code: k.Reason(), Message: "the call attempt ended: " + k.Reason()}
	case <-ctx.Done():
		k.Leave()
		return nil, ctx.Err()
	case <-m.c.closed:
		return nil, ErrClosed
	}
}

// Leave hangs up (cancel before anyone answered, else leave).
func (k *Call) Leave() error {
	errc := make(chan error, 1)
	k.m.do(func() {
		if k.m.active != k {
			errc <- nil
			return
		}
		errc <- k.m.step(call.Hangup{})
	})
	return <-errc
}

// Mute tells the others (and stops publishing audio while muted).
func (k *Call) Mute(muted bool) error {
	errc := make(chan error, 1)
	k.m.do(func() {
		if k.m.active != k {
			errc <- &Error{Code: pb.CodeNotInCall, Message: "call over"}
			return
		}
		if p := k.mediaPeer(); p != nil {
			p.muted.Store(muted)
		}
		errc <- k.m.step(call.SetMute{Muted: muted})
	})
	return <-errc
}

// step runs the machine and its effects (on the worker).
func (m *calls) step(ev call.DeviceEvent) error {
	fx := m.dev.Step(ev)
	if fx.Err != nil {
		return &Error{Code: fx.Err.Code, Message: fx.Err.Message}
	}
	k := m.active
	for _, o := range fx.Send {
		m.send(o)
	}
	if fx.StartMedia && k != nil {
		m.startMedia(k)
	}
	if fx.StopMedia && k != nil {
		if p := k.mediaPeer(); p != nil {
			p.close()
		}
	}
	for _, id := range fx.Ring {
		for _, r := range m.dev.Ringing {
			if r.Call == id {
				select {
				case m.invites <- &pb.CallInvited{CallId: r.Call, ConversationId: r.Conv, Caller: r.Caller, ExpiresAtMs: r.Expires}:
				default:
				}
			}
		}
	}
	if fx.Over != "" && k != nil {
		m.active = nil
		k.mu.Lock()
		k.reason = fx.Over
		k.mu.Unlock()
		close(k.done)
	}
	return nil
}

// send issues one request; its reply is stepped through the machine. A
// request that fails with unavailable (link lost, timeout) is sent again
// while the attempt lasts: every call request is idempotent.
func (m *calls) send(o call.Outgoing) {
	f := &pb.ClientFrame{}
	switch o.Op {
	case call.OpCreate:
		f.Command = &pb.ClientFrame_CreateCall{CreateCall: &pb.CreateCall{ConversationId: o.Conv, JoinId: o.Join}}
	case call.OpCreateRoom:
		f.Command = &pb.ClientFrame_CreateRoom{CreateRoom: &pb.CreateRoom{CallId: o.Call, JoinId: o.Join}}
	case call.OpEnter:
		f.Command = &pb.ClientFrame_EnterCall{EnterCall: &pb.EnterCall{CallId: o.Call, JoinId: o.Join}}
	case call.OpJoin:
		f.Command = &pb.ClientFrame_JoinRoom{JoinRoom: &pb.JoinRoom{CallId: o.Call, JoinId: o.Join}}
	case call.OpDecline:
		f.Command = &pb.ClientFrame_DeclineCall{DeclineCall: &pb.DeclineCall{CallId: o.Call}}
	case call.OpCancel:
		f.Command = &pb.ClientFrame_CancelCall{CancelCall: &pb.CancelCall{CallId: o.Call, JoinId: o.Join}}
	case call.OpLeave:
		f.Command = &pb.ClientFrame_LeaveCall{LeaveCall: &pb.LeaveCall{CallId: o.Call, JoinId: o.Join}}
	case call.OpMute:
		f.Command = &pb.ClientFrame_MuteCall{MuteCall: &pb.MuteCall{CallId: o.Call, JoinId: o.Join, Muted: o.Muted}}
	default:
		return
	}
	go func() {
		var r *pb.ServerFrame
		var err error
		for attempt := 0; ; attempt++ {
			ctx, cancel := context.WithTimeout(context.Background(), m.c.opts.Timeout)
			f.Id = ""
			r, err = m.c.Call(ctx, f)
			cancel()
			if Code(err) != pb.CodeUnavailable || attempt >= 20 || errors.Is(err, ErrClosed) {
				break
			}
			select {
			case <-time.After(time.Duration(min(50*(attempt+1), 1000)) * time.Millisecond):
			case <-m.c.closed:
				return
			}
		}
		rep := call.Reply{Op: o.Op, Call: o.Call, Join: o.Join}
		switch {
		case err != nil:
			var e *Error
			if !errors.As(err, &e) {
				return // no answer (timeout, closed): nothing to step
			}
			rep.Err = &call.Error{Code: e.Code, Message: e.Message}
		case r.GetCallConfirm() != nil:
			cf := r.GetCallConfirm()
			rep.Call, rep.Duplicate = cf.CallId, cf.Duplicate
			m.do(func() {
				if k := m.active; k != nil && k.Join == o.Join {
					k.mu.Lock()
					k.id, k.media = cf.CallId, cf.Media
					k.mu.Unlock()
				}
			})
		case r.GetCallRoom() != nil:
			cr := r.GetCallRoom()
			rep.Duplicate = cr.Duplicate
			m.do(func() {
				if k := m.active; k != nil && k.Join == o.Join {
					k.mu.Lock()
					for _, p := range cr.Participants {
						k.participants[p.UserId] = p
					}
					k.mu.Unlock()
				}
			})
		}
		m.do(func() { m.step(call.Answer{Reply: rep}) })
	}()
}

// startMedia creates the peer and applies the signalling that arrived
// before the room.
func (m *calls) startMedia(k *Call) {
	api := k.opts.API
	if api == nil {
		var err error
		if api, err = NewCallAPI(false); err != nil {
			k.fail(err)
			return
		}
	}
	id, join := m.dev.Call, m.dev.Join
	p, err := newMediaPeer(api, "parley-"+join, func(c *pb.IceCandidate) {
		m.do(func() { m.signal(id, join, nil, c) })
	})
	if err != nil {
		k.fail(err)
		return
	}
	k.mu.Lock()
	k.id, k.peer = id, p
	early := k.early
	k.early = nil
	k.mu.Unlock()
	if k.opts.SendSilence {
		go p.sendSilence()
	}
	close(k.inRoom)
	for _, s := range early {
		m.applySignal(k, s)
	}
}

// signal sends this device's answer or candidate to the SFU.
func (m *calls) signal(id, join string, answer *pb.SessionDescription, cand *pb.IceCandidate) {
	k := m.active
	if k == nil || m.dev.Call != id || m.dev.Join != join {
		return
	}
	f := &pb.ClientFrame{Command: &pb.ClientFrame_SignalCall{SignalCall: &pb.SignalCall{CallId: id, JoinId: join, Answer: answer, Candidate: cand}}}
	ch, err := m.c.Start(f)
	if err != nil {
		k.fail(err)
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), m.c.opts.Timeout)
		defer cancel()
		if _, err := m.c.Wait(ctx, f.Id, ch); err != nil {
			k.fail(err)
		}
	}()
}

func (m *calls) applySignal(k *Call, s *pb.CallSignal) {
	p := k.mediaPeer()
	switch {
	case s.Offer != nil:
		ans, err := p.offer(s.Offer)
		if err != nil {
			k.fail(err)
			return
		}
		m.signal(s.CallId, s.JoinId, ans, nil)
	case s.Candidate != nil:
		if err := p.candidate(s.Candidate); err != nil {
			k.fail(err)
		}
	}
}

// event handles a call session event (from the stream, in seq order).
func (m *calls) event(ev *pb.SessionEvent) {
	m.do(func() {
		switch e := ev.Event.(type) {
		case *pb.SessionEvent_CallInvited:
			i := e.CallInvited
			m.step(call.Incoming{Invitation: call.Invitation{Call: i.CallId, Conv: i.ConversationId, Caller: i.Caller, Expires: i.ExpiresAtMs},
				Now: time.Now().UnixMilli()})
		case *pb.SessionEvent_CallRingStopped:
			s := e.CallRingStopped
			m.step(call.RingStopped{Call: s.CallId, Reason: s.Reason, Device: s.DeviceId})
		case *pb.SessionEvent_CallEnded:
			s := e.CallEnded
			m.step(call.Ended{Call: s.CallId, Join: s.JoinId, Reason: s.Reason})
		case *pb.SessionEvent_CallParticipant:
			s := e.CallParticipant
			if k := m.active; k != nil && k.ID() == s.CallId && s.Participant != nil {
				k.mu.Lock()
				k.participants[s.Participant.UserId] = s.Participant
				k.mu.Unlock()
			}
		case *pb.SessionEvent_CallSignal:
			s := e.CallSignal
			k := m.active
			if k == nil || k.Join != s.JoinId {
				return // about a join that is over
			}
			if k.mediaPeer() == nil {
				k.mu.Lock()
				k.early = append(k.early, s)
				k.mu.Unlock()
				return
			}
			m.applySignal(k, s)
		}
	})
}

// closeMedia stops the media of the active call (the client is closing).
func (m *calls) closeMedia() {
	if k := m.active; k != nil {
		if p := k.mediaPeer(); p != nil {
			p.close()
		}
	}
}

// Ringing lists the calls ringing on this device.
func (c *Client) Ringing() []string {
	out := make(chan []string, 1)
	c.calls.do(func() {
		var ids []string
		for _, r := range c.calls.dev.Ringing {
			ids = append(ids, r.Call)
		}
		out <- ids
	})
	select {
	case ids := <-out:
		return ids
	case <-c.closed:
		return nil
	}
}
