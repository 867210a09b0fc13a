package gateway

import (
	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/media"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

type metrics struct {
	connections   prometheus.Gauge
	errors        *prometheus.CounterVec
	slowConsumers prometheus.Counter
	blockedWrites prometheus.Counter
	linkWrites    prometheus.Counter
	framesWritten prometheus.Counter
	commands      prometheus.Counter
	fsync         prometheus.Histogram
	uploadBytes   prometheus.Counter
	downloadBytes prometheus.Counter
	reg           *prometheus.Registry
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		connections:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "parley_links", Help: "Open WebSocket links."}),
		errors:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "parley_errors_total", Help: "Error replies and refusals by code."}, []string{"code"}),
		slowConsumers: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_slow_consumers_total", Help: "Links closed because their outbound queue overflowed."}),
		blockedWrites: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_blocked_writes_total", Help: "Link writes the socket could not take whole at once, finished on the link's own goroutine under the write deadline (slow or stalled readers)."}),
		linkWrites:    prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_link_writes_total", Help: "Socket writes to links (one writev carries every frame queued at the time)."}),
		framesWritten: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_link_frames_written_total", Help: "WebSocket frames handed to link socket writes; divided by parley_link_writes_total, the frames per write."}),
		commands:      prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_commands_total", Help: "Client commands decoded."}),
		fsync: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "parley_fsync_seconds", Help: "Duration of synced commits (cluster: replicated commits, from proposal to applied on this node).",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		uploadBytes:   prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_file_upload_bytes_total", Help: "File bytes received by tus PATCH requests and kept."}),
		downloadBytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "parley_file_download_bytes_total", Help: "File bytes sent by downloads."}),
		reg:           s.reg,
	}
	s.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.connections, m.errors, m.slowConsumers, m.blockedWrites, m.linkWrites, m.framesWritten, m.commands, m.fsync, m.uploadBytes, m.downloadBytes,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "parley_outbound_queue_bytes", Help: "Bytes queued to links, all links."},
			func() float64 { return float64(s.queuedBytes.Load()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_deliveries_total", Help: "Frames queued to links by the hub."},
			func() float64 { return float64(s.hub.Published.Load()) }),
	)
	return m
}

// ObserveSync records one synced commit's duration (seconds).
func (s *Server) ObserveSync(seconds float64) { s.metrics.fsync.Observe(seconds) }

func (m *metrics) registerNode(n *actors.Node) {
	am := n.Options().Metrics
	counter := func(name, help string, f func() int64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
	}
	m.reg.MustRegister(
		counter("parley_commits_total", "Synced conversation commits.", am.Commits.Load),
		counter("parley_committed_messages_total", "Conversation log entries made durable.", am.CommittedMessages.Load),
		counter("parley_storage_errors_total", "Failed commits.", am.StorageErrors.Load),
		counter("parley_outbox_retries_total", "Retried membership notifications.", am.OutboxRetries.Load),
		counter("parley_resume_list_rereads_total", "Rebuilds whose conversation list was read again (a membership change reached the session between the read and its Resume).", am.ResumeListRereads.Load),
		counter("parley_p2sp_peer_bytes_total", "File bytes downloaders reported receiving from peers (P2SP).", am.P2SPPeerBytes.Load),
		counter("parley_p2sp_downloads_total", "P2SP downloads reported complete and verified.", am.P2SPDownloads.Load),
		counter("parley_p2sp_failures_total", "P2SP downloads that failed their whole-file check.", am.P2SPFailures.Load),
		counter("parley_p2sp_bad_piece_reports_total", "Reports of peers that sent a bad piece.", am.P2SPReports.Load),
		counter("parley_p2sp_banned_holders_total", "Holders no longer offered after reports.", am.P2SPBans.Load),
		counter("parley_calls_started_total", "Calls created.", am.CallsStarted.Load),
		counter("parley_calls_ended_total", "Calls ended.", am.CallsEnded.Load),
		counter("parley_call_requests_dropped_total", "Call requests that did not fit the call's state (early or stale): answered call_state, otherwise ignored.", am.CallRequestsDropped.Load),
	)
	for kind, depth := range am.MailboxDepth {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "parley_mailbox_depth", Help: "Messages waiting in the mailboxes of all grains of a kind.",
			ConstLabels: prometheus.Labels{"kind": kind},
		}, func() float64 { return float64(depth.Load()) }))
	}
	for kind, started := range am.Activations {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "parley_grain_activations_total", Help: "Grains of a kind started on this node (a passivated grain's next request starts it again).",
			ConstLabels: prometheus.Labels{"kind": kind},
		}, func() float64 { return float64(started.Load()) }))
	}
	for kind := range am.MailboxDepth {
		// The placement's own count of the kind's activations.
		k := n.Cluster.GetClusterKind(kind)
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "parley_grains", Help: "Grains of a kind activated on this node.",
			ConstLabels: prometheus.Labels{"kind": kind},
		}, func() float64 { return float64(k.Count()) }))
	}
}

// AttachMedia exports the SFU's counters.
func (s *Server) AttachMedia(sfu *media.SFU) {
	stat := func(f func(media.Stats) float64) func() float64 { return func() float64 { return f(sfu.Stats()) } }
	s.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_media_packets_in_total", Help: "RTP packets read from publishers."},
			stat(func(st media.Stats) float64 { return float64(st.PacketsIn) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_media_packets_out_total", Help: "RTP packets forwarded to subscribers."},
			stat(func(st media.Stats) float64 { return float64(st.PacketsOut) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "parley_media_bytes_in_total", Help: "RTP bytes read from publishers."},
			stat(func(st media.Stats) float64 { return float64(st.BytesIn) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "parley_media_peers", Help: "Open SFU peer connections."},
			stat(func(st media.Stats) float64 { return float64(st.Peers) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "parley_media_rooms", Help: "Open SFU rooms."},
			stat(func(st media.Stats) float64 { return float64(st.Rooms) })),
	)
}
