package actors

import (
	"math/rand/v2"
	"slices"
	"sort"

	"github.com/asynkron/protoactor-go/cluster"
	"github.com/parley-chat/parley/actors/grainpb"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"google.golang.org/protobuf/proto"
)

// p2spState is a file grain's P2SP state. It is in memory only: holders
// are online sessions (a restart ends every link anyway), and the
// counters describe transfers since the grain was activated.
type p2spState struct {
	holders map[string]*holder // by session id
	// who maps every session ever announced to its holder key, so a
	// report about a session that just dropped still counts.
	who map[string]whoami
	// reports: holder key → reporting users.
	reports map[string]map[string]bool
	banned  map[string]bool
	stats   pb.P2SpStats
}

// whoami is the user and holder key of a session.
type whoami struct{ user, key string }

// holder is one session holding the file.
type holder struct {
	user, device, session string
	complete              bool
	bitmap                []byte
	// offered counts how often the holder was handed out: the least
	// offered go first, which spreads requesters over holders.
	offered int
}

// holderKey identifies a holder across its sessions: a user's device. A
// ban outlives the session that earned it.
func holderKey(user, device string) string { return user + "/" + device }

func (g *fileGrain) p2sp() *p2spState {
	if g.ps == nil {
		g.ps = &p2spState{holders: map[string]*holder{}, who: map[string]whoami{}, reports: map[string]map[string]bool{}, banned: map[string]bool{}}
	}
	return g.ps
}

// Announce records (or withdraws) a session's holding.
func (g *fileGrain) Announce(req *grainpb.FileAnnounceReq, ctx cluster.GrainContext) (*grainpb.Ok, error) {
	ps := g.p2sp()
	if req.Withdraw {
		delete(ps.holders, req.SessionId)
		return &grainpb.Ok{}, nil
	}
	if len(ps.who) > 4096 {
		clear(ps.who)
	}
	ps.who[req.SessionId] = whoami{user: req.UserId, key: holderKey(req.UserId, req.DeviceId)}
	h := ps.holders[req.SessionId]
	if h == nil {
		h = &holder{user: req.UserId, device: req.DeviceId, session: req.SessionId}
		ps.holders[req.SessionId] = h
	}
	h.complete, h.bitmap = req.Complete, req.Bitmap
	if h.complete {
		h.bitmap = nil
	}
	return &grainpb.Ok{}, nil
}

// Drop forgets a session's holding: its link is gone.
func (g *fileGrain) Drop(req *grainpb.FileDropReq, ctx cluster.GrainContext) (*grainpb.Ok, error) {
	if g.ps != nil {
		delete(g.ps.holders, req.SessionId)
	}
	return &grainpb.Ok{}, nil
}

// Holders chooses holders to offer a requester: online, not the asking
// session, not banned, holding at least one piece; the least offered
// first (complete ones first among equals), ties broken at random.
func (g *fileGrain) Holders(req *grainpb.FileHoldersReq, ctx cluster.GrainContext) (*grainpb.FileHolders, error) {
	ps := g.p2sp()
	if req.All {
		out := &grainpb.FileHolders{Stats: g.stats()}
		for _, h := range ps.holders {
			out.Holders = append(out.Holders, &grainpb.FileHolder{UserId: h.user, DeviceId: h.device, SessionId: h.session,
				Complete: h.complete, Bitmap: h.bitmap, Banned: ps.banned[holderKey(h.user, h.device)]})
		}
		sort.Slice(out.Holders, func(i, j int) bool { return out.Holders[i].SessionId < out.Holders[j].SessionId })
		return out, nil
	}
	var cands []*holder
	for _, h := range ps.holders {
		if h.session == req.SessionId || ps.banned[holderKey(h.user, h.device)] {
			continue
		}
		if !h.complete && !slices.ContainsFunc(h.bitmap, func(b byte) bool { return b != 0 }) {
			continue
		}
		cands = append(cands, h)
	}
	rand.Shuffle(len(cands), func(i, j int) { cands[i], cands[j] = cands[j], cands[i] })
	sort.SliceStable(cands, func(i, j int) bool {
		if cands[i].offered != cands[j].offered {
			return cands[i].offered < cands[j].offered
		}
		return cands[i].complete && !cands[j].complete
	})
	if max := int(req.Max); max > 0 && len(cands) > max {
		cands = cands[:max]
	}
	out := &grainpb.FileHolders{Stats: g.stats()}
	for _, h := range cands {
		h.offered++
		out.Holders = append(out.Holders, &grainpb.FileHolder{UserId: h.user, DeviceId: h.device, SessionId: h.session, Complete: h.complete, Bitmap: h.bitmap})
	}
	return out, nil
}

func (g *fileGrain) stats() *pb.P2SpStats {
	ps := g.p2sp()
	st := proto.Clone(&ps.stats).(*pb.P2SpStats)
	st.Holders = int32(len(ps.holders))
	for k := range ps.banned {
		st.Banned = append(st.Banned, k)
	}
	slices.Sort(st.Banned)
	return st
}

// Report takes a downloader's report. A holder reported for bad pieces by
// ReportLimit distinct users is banned: no longer offered for this file.
func (g *fileGrain) Report(req *grainpb.FileReportReq, ctx cluster.GrainContext) (*grainpb.Ok, error) {
	ps := g.p2sp()
	r := req.Report
	m := g.n.opts.Metrics
	switch r.GetKind() {
	case pb.P2SpReportKind_P2SP_REPORT_KIND_COMPLETE:
		ps.stats.Completed++
		ps.stats.PeerBytes += r.PeerBytes
		m.P2SPPeerBytes.Add(r.PeerBytes)
		m.P2SPDownloads.Add(1)
	case pb.P2SpReportKind_P2SP_REPORT_KIND_FILE_MISMATCH:
		ps.stats.Failed++
		ps.stats.PeerBytes += r.PeerBytes
		m.P2SPPeerBytes.Add(r.PeerBytes)
		m.P2SPFailures.Add(1)
	case pb.P2SpReportKind_P2SP_REPORT_KIND_BAD_PIECE:
		m.P2SPReports.Add(1)
		w, ok := ps.who[r.PeerSessionId]
		if !ok {
			return nil, grainError(pb.CodeNotFound, "no holder session %s", r.PeerSessionId)
		}
		if w.user == req.UserId {
			// A user's reports about its own devices do not count.
			return &grainpb.Ok{}, nil
		}
		key := w.key
		set := ps.reports[key]
		if set == nil {
			set = map[string]bool{}
			ps.reports[key] = set
		}
		set[req.UserId] = true
		if len(set) >= g.n.opts.P2SP.ReportLimit && !ps.banned[key] {
			ps.banned[key] = true
			m.P2SPBans.Add(1)
			g.log.Warn("p2sp holder banned after reports", "holder", key, "reports", len(set))
		}
	}
	return &grainpb.Ok{}, nil
}

// Served counts bytes the server sent.
func (g *fileGrain) Served(req *grainpb.FileServedReq, ctx cluster.GrainContext) (*grainpb.Ok, error) {
	g.p2sp().stats.ServerBytes += req.Bytes
	return &grainpb.Ok{}, nil
}

// Stats returns the transfer counters.
func (g *fileGrain) Stats(req *grainpb.FileStatsReq, ctx cluster.GrainContext) (*pb.P2SpStats, error) {
	return g.stats(), nil
}
