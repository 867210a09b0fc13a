// Package sfu is the per-packet path of Parley's SFU: a Forwarder fans one
// published RTP stream out to its subscribers' DownTracks. Nothing here
// knows about signalling, rooms or participants (package media does); this
// code only parses an RTP header once per packet and writes it, with the
// payload, to every subscriber. RTP is forwarded as is (same SSRC, sequence
// numbers and timestamps): not mixed, not transcoded.
package sfu

import (
	"sync"
	"sync/atomic"

	"github.com/pion/rtp"
)

// Writer is one subscriber's end of a forwarded stream.
type Writer interface {
	// WriteRTP sends one packet. The writer may change h (it is a copy).
	WriteRTP(h *rtp.Header, payload []byte) error
}

// Forwarder fans one published stream out. Forward runs on the
// publisher's read goroutine (one call at a time); Add and Remove may run
// anywhere.
type Forwarder struct {
	mu   sync.Mutex
	subs atomic.Pointer[[]sub]
	// hdr is Forward's header, hc the copy each writer gets: fields, so
	// that handing them to the Writer interface does not allocate.
	hdr, hc rtp.Header

	// Packets and Bytes count packets read from the publisher; Sent counts
	// packets written to subscribers; Malformed counts packets dropped
	// because their header does not parse.
	Packets   atomic.Uint64
	Bytes     atomic.Uint64
	Sent      atomic.Uint64
	Malformed atomic.Uint64
}

type sub struct {
	id string
	w  Writer
}

// NewForwarder returns a forwarder without subscribers.
func NewForwarder() *Forwarder {
	f := &Forwarder{}
	f.subs.Store(&[]sub{})
	return f
}

// Add subscribes w under id (replacing an earlier writer of id).
func (f *Forwarder) Add(id string, w Writer) {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := *f.subs.Load()
	next := make([]sub, 0, len(old)+1)
	for _, s := range old {
		if s.id != id {
			next = append(next, s)
		}
	}
	next = append(next, sub{id: id, w: w})
	f.subs.Store(&next)
}

// Remove unsubscribes id.
func (f *Forwarder) Remove(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	old := *f.subs.Load()
	next := make([]sub, 0, len(old))
	for _, s := range old {
		if s.id != id {
			next = append(next, s)
		}
	}
	f.subs.Store(&next)
}

// Len is the number of subscribers.
func (f *Forwarder) Len() int { return len(*f.subs.Load()) }

// Forward writes one RTP packet (as read from the publisher) to every
// subscriber. Header extensions are dropped: their ids were negotiated
// with the publisher, not with the subscribers. Padding is dropped too.
func (f *Forwarder) Forward(pkt []byte) {
	f.Packets.Add(1)
	f.Bytes.Add(uint64(len(pkt)))
	h := &f.hdr
	n, err := h.Unmarshal(pkt)
	if err != nil || n > len(pkt) {
		f.Malformed.Add(1)
		return
	}
	payload := pkt[n:]
	if h.Padding {
		pad := int(pkt[len(pkt)-1])
		if pad == 0 || pad > len(payload) {
			f.Malformed.Add(1)
			return
		}
		payload = payload[:len(payload)-pad]
		h.Padding, h.PaddingSize = false, 0
	}
	h.Extension, h.Extensions, h.ExtensionProfile = false, nil, 0
	subs := *f.subs.Load()
	for _, s := range subs {
		f.hc = *h
		if s.w.WriteRTP(&f.hc, payload) == nil {
			f.Sent.Add(1)
		}
	}
}
