package sfu

import (
	"errors"
	"strings"
	"sync/atomic"

	"github.com/pion/rtp"
	"github.com/pion/webrtc/v4"
)

// DownTrack is a webrtc.TrackLocal carrying one forwarded stream to one
// subscriber. It keeps the publisher's SSRC (the sender is created with
// that SSRC, so the subscriber's SDP names it) and rewrites only the
// payload type to the one negotiated with the subscriber.
type DownTrack struct {
	id, stream string
	codec      webrtc.RTPCodecCapability
	bound      atomic.Pointer[binding]
}

type binding struct {
	ssrc uint32
	pt   uint8
	w    webrtc.TrackLocalWriter
}

// NewDownTrack returns a track of codec with the given track and stream
// ids (the subscriber sees them as its MediaStreamTrack id and stream id).
func NewDownTrack(codec webrtc.RTPCodecCapability, id, stream string) *DownTrack {
	return &DownTrack{id: id, stream: stream, codec: codec}
}

// ErrUnsupportedCodec: the subscriber did not accept the track's codec.
var ErrUnsupportedCodec = errors.New("sfu: codec not negotiated")

// Bind implements webrtc.TrackLocal.
func (d *DownTrack) Bind(ctx webrtc.TrackLocalContext) (webrtc.RTPCodecParameters, error) {
	for _, c := range ctx.CodecParameters() {
		if strings.EqualFold(c.MimeType, d.codec.MimeType) && c.ClockRate == d.codec.ClockRate {
			d.bound.Store(&binding{ssrc: uint32(ctx.SSRC()), pt: uint8(c.PayloadType), w: ctx.WriteStream()})
			return c, nil
		}
	}
	return webrtc.RTPCodecParameters{}, ErrUnsupportedCodec
}

// Unbind implements webrtc.TrackLocal.
func (d *DownTrack) Unbind(webrtc.TrackLocalContext) error {
	d.bound.Store(nil)
	return nil
}

// ID implements webrtc.TrackLocal.
func (d *DownTrack) ID() string { return d.id }

// RID implements webrtc.TrackLocal.
func (d *DownTrack) RID() string { return "" }

// StreamID implements webrtc.TrackLocal.
func (d *DownTrack) StreamID() string { return d.stream }

// Kind implements webrtc.TrackLocal.
func (d *DownTrack) Kind() webrtc.RTPCodecType {
	if strings.HasPrefix(strings.ToLower(d.codec.MimeType), "video/") {
		return webrtc.RTPCodecTypeVideo
	}
	return webrtc.RTPCodecTypeAudio
}

// errNotBound: the track is not (or no longer) negotiated; the packet is
// dropped.
var errNotBound = errors.New("sfu: track not bound")

// WriteRTP implements Writer.
func (d *DownTrack) WriteRTP(h *rtp.Header, payload []byte) error {
	b := d.bound.Load()
	if b == nil {
		return errNotBound
	}
	h.SSRC, h.PayloadType = b.ssrc, b.pt
	_, err := b.w.WriteRTP(h, payload)
	return err
}
