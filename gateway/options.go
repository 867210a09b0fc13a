// Package gateway is Parley's edge: HTTP and WebSocket on one port (gws),
// the protocol codec, per-link limits, and the node-local hub that writes
// encoded frames to links. It holds no business state: every command goes
// to a grain of package actors.
package gateway

import (
	"errors"
	"fmt"
	"time"
)

// Options configure the gateway. Zero values take the documented defaults.
type Options struct {
	// AuthTimeout: a link must complete hello+login within it. Default 10s.
	AuthTimeout time.Duration
	// IdleTimeout: a link silent this long is closed (4003). Default 60s.
	IdleTimeout time.Duration
	// WriteTimeout bounds one write to a link: a write that makes no
	// progress fails (and the link closes) after between half of it and
	// all of it. Default 10s.
	WriteTimeout time.Duration
	// MaxFrameBytes is the largest frame a client may send. Default 64 KiB.
	MaxFrameBytes int
	// MaxQueueBytes bounds a link's outbound queue; a link over it is a slow
	// consumer and is closed (4002). Default 4 MiB.
	MaxQueueBytes int
	// MaxInFlight bounds the commands of one link awaiting replies.
	// Default 256.
	MaxInFlight int
	// RatePerSecond and RateBurst are the per-user command rate limit
	// (token bucket shared by the user's links). Defaults 200 and 1000.
	RatePerSecond float64
	RateBurst     float64
	// FloodStrikes: a link refused this many times in a row by the rate
	// limiter is closed (4007). Default 100.
	FloodStrikes int
	// AllowedOrigins lists the Origin header values accepted for /ws.
	// Empty: requests without Origin (native clients) and same-host
	// origins are accepted. "*" accepts every origin.
	AllowedOrigins []string
	// ShutdownGrace bounds how long Shutdown waits for links to close.
	// Default 5s.
	ShutdownGrace time.Duration
	// FilesEgressLimit caps the bytes/s of all file downloads together
	// (token bucket); FilesEgressFileLimit caps each file's downloads
	// together. 0: no cap.
	FilesEgressLimit     int64
	FilesEgressFileLimit int64
	// AdminToken enables the operator's endpoints under /admin/ (bearer
	// token). Empty: disabled.
	AdminToken string
	// NodeID, in a cluster, goes in the high bits of every link id
	// (actors.LinkNodeShift) so that other nodes can route to the link.
	NodeID uint64
}

// EnsureDefaults fills zero fields.
func (o *Options) EnsureDefaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	set(&o.AuthTimeout, 10*time.Second)
	set(&o.IdleTimeout, 60*time.Second)
	set(&o.WriteTimeout, 10*time.Second)
	set(&o.ShutdownGrace, 5*time.Second)
	if o.MaxFrameBytes == 0 {
		o.MaxFrameBytes = 64 << 10
	}
	if o.MaxQueueBytes == 0 {
		o.MaxQueueBytes = 4 << 20
	}
	if o.MaxInFlight == 0 {
		o.MaxInFlight = 256
	}
	if o.RatePerSecond == 0 {
		o.RatePerSecond = 200
	}
	if o.RateBurst == 0 {
		o.RateBurst = 1000
	}
	if o.FloodStrikes == 0 {
		o.FloodStrikes = 100
	}
}

// Validate reports every problem at once.
func (o *Options) Validate() error {
	var errs []error
	if o.MaxFrameBytes < 1024 {
		errs = append(errs, fmt.Errorf("gateway: MaxFrameBytes %d is below 1024", o.MaxFrameBytes))
	}
	if o.MaxQueueBytes < o.MaxFrameBytes {
		errs = append(errs, fmt.Errorf("gateway: MaxQueueBytes %d is below MaxFrameBytes", o.MaxQueueBytes))
	}
	if o.RatePerSecond < 0 || o.RateBurst < 1 {
		errs = append(errs, errors.New("gateway: rate limit must be positive"))
	}
	if o.FilesEgressLimit < 0 || o.FilesEgressFileLimit < 0 {
		errs = append(errs, errors.New("gateway: egress limits must not be negative"))
	}
	for _, d := range []time.Duration{o.AuthTimeout, o.IdleTimeout, o.WriteTimeout} {
		if d < 0 {
			errs = append(errs, errors.New("gateway: timeouts must not be negative"))
			break
		}
	}
	return errors.Join(errs...)
}
