package actors

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/parley-chat/parley/actors/grainpb"
	pb "github.com/parley-chat/parley/gateway/protocol"
	"github.com/parley-chat/parley/persistence"
	"google.golang.org/protobuf/proto"
)

// P2SP: downloads that take pieces from the server and from peers at once
// (docs/protocol.md §16). The server's part is small: it vouches for
// requesters with grants, relays WebRTC signalling between two sessions'
// links, tracks which online sessions hold which files (the file grain),
// takes reports and counts bytes.

// P2SPOptions configure the server side of P2SP.
type P2SPOptions struct {
	// GrantTTL is how long a grant lets its requester open a peer link to
	// its holder. Default 5m.
	GrantTTL time.Duration
	// ReportLimit: a holder (user and device) reported for bad pieces by
	// this many distinct users is no longer offered for the file. Default 3.
	ReportLimit int
	// MaxHolders caps the holders offered per request. Default 16.
	MaxHolders int
}

func (o *P2SPOptions) ensureDefaults() {
	if o.GrantTTL == 0 {
		o.GrantTTL = 5 * time.Minute
	}
	if o.ReportLimit == 0 {
		o.ReportLimit = 3
	}
	if o.MaxHolders == 0 {
		o.MaxHolders = 16
	}
}

// grantKeyID names the durable HMAC key of grants (a KindMeta key).
const grantKeyID = "p2sp_grant_key"

// loadGrantKey reads the grant key, creating it (32 random bytes, synced)
// on first start: grants stay valid across a restart. In a cluster every
// node must use the same key: the claim makes one creator win (the others'
// writes are fenced, and they read the winner's key on the next try), and
// the first start waits for a majority of the nodes (grantKeyWait).
func loadGrantKey(s *persistence.Store, log *slog.Logger) ([]byte, error) {
	deadline := time.Now().Add(grantKeyWait)
	for {
		key, err := tryGrantKey(s)
		if err == nil || time.Now().After(deadline) || !s.Replicated() {
			return key, err
		}
		log.Info("grant key: waiting for the cluster", "err", err)
		time.Sleep(time.Second)
	}
}

// grantKeyWait bounds how long a cluster node's start waits for the
// grant key (a majority of nodes up).
const grantKeyWait = 2 * time.Minute

func tryGrantKey(s *persistence.Store) ([]byte, error) {
	if err := s.Claim(persistence.KindMeta, grantKeyID); err != nil {
		return nil, err
	}
	defer s.Release(persistence.KindMeta, grantKeyID)
	k := persistence.EncodeKey(persistence.KindMeta, grantKeyID, nil)
	v, err := s.Get(k)
	if err == nil && len(v) == 32 {
		return v, nil
	}
	if err != nil && !errors.Is(err, persistence.ErrNotFound) {
		return nil, fmt.Errorf("read grant key: %w", err)
	}
	key := make([]byte, 32)
	rand.Read(key)
	b := s.NewBatch(persistence.KindMeta, grantKeyID)
	b.Set(k, key)
	if err := b.Commit(); err != nil {
		return nil, fmt.Errorf("store grant key: %w", err)
	}
	return key, nil
}

// Grant is what a grant token says: Requester (in session
// RequesterSession) may fetch pieces of File from Holder's session
// HolderSession until ExpiresMs.
type Grant struct {
	File             string
	Requester        string
	RequesterSession string
	Holder           string
	HolderSession    string
	ExpiresMs        int64
	// Nonce makes every grant unique (hex; IssueGrant draws one).
	Nonce string
}

const grantPrefix = "g1."

func (g Grant) payload() string {
	return strings.Join([]string{g.File, g.Requester, g.RequesterSession, g.Holder, g.HolderSession, strconv.FormatInt(g.ExpiresMs, 10), g.Nonce}, "|")
}

func grantMAC(key []byte, payload string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("parley-p2sp-grant\x00"))
	m.Write([]byte(payload))
	return m.Sum(nil)
}

// SignGrant encodes and signs g: "g1." base64url(payload) "." base64url(HMAC-SHA256).
func SignGrant(key []byte, g Grant) string {
	p := g.payload()
	return grantPrefix + base64.RawURLEncoding.EncodeToString([]byte(p)) + "." + base64.RawURLEncoding.EncodeToString(grantMAC(key, p))
}

// ParseGrant decodes a grant's payload without checking its signature
// (holders read what a grant names; only the server can verify it).
func ParseGrant(token string) (Grant, error) {
	g, _, _, err := splitGrant(token)
	return g, err
}

func splitGrant(token string) (Grant, string, []byte, error) {
	bad := func(why string) (Grant, string, []byte, error) {
		return Grant{}, "", nil, codeError(pb.CodeBadGrant, "malformed grant: %s", why)
	}
	if len(token) > 1024 {
		return bad("too long")
	}
	rest, ok := strings.CutPrefix(token, grantPrefix)
	if !ok {
		return bad("unknown version")
	}
	p64, m64, ok := strings.Cut(rest, ".")
	if !ok {
		return bad("no signature")
	}
	p, err := base64.RawURLEncoding.DecodeString(p64)
	if err != nil {
		return bad("payload encoding")
	}
	mac, err := base64.RawURLEncoding.DecodeString(m64)
	if err != nil || len(mac) != sha256.Size {
		return bad("signature encoding")
	}
	f := strings.Split(string(p), "|")
	if len(f) != 7 {
		return bad("fields")
	}
	exp, err := strconv.ParseInt(f[5], 10, 64)
	if err != nil {
		return bad("expiry")
	}
	for _, s := range f {
		if s == "" {
			return bad("empty field")
		}
	}
	return Grant{File: f[0], Requester: f[1], RequesterSession: f[2], Holder: f[3], HolderSession: f[4], ExpiresMs: exp, Nonce: f[6]}, string(p), mac, nil
}

// VerifyGrant checks a grant's signature and expiry.
func (n *Node) VerifyGrant(token string) (Grant, error) {
	g, p, mac, err := splitGrant(token)
	if err != nil {
		return Grant{}, err
	}
	if !hmac.Equal(mac, grantMAC(n.grantKey, p)) {
		return Grant{}, codeError(pb.CodeBadGrant, "grant signature does not verify")
	}
	if n.now() > g.ExpiresMs {
		return Grant{}, codeError(pb.CodeBadGrant, "grant expired")
	}
	return g, nil
}

// IssueGrant signs a grant for requester to fetch file from holder. Callers
// check membership first (P2spInfo does).
func (n *Node) IssueGrant(g Grant) string {
	if g.ExpiresMs == 0 {
		g.ExpiresMs = n.now() + n.opts.P2SP.GrantTTL.Milliseconds()
	}
	if g.Nonce == "" {
		var b [8]byte
		rand.Read(b[:])
		g.Nonce = hex.EncodeToString(b[:])
	}
	return SignGrant(n.grantKey, g)
}

// fileClient is the file grain of fileID.
func (n *Node) fileClient(fileID string) *grainpb.FileGrainClient {
	return grainpb.GetFileGrainClient(n.Cluster, fileID)
}

// P2spInfo answers p2spInfo: the file's info for a member, and the online
// holders the file grain chooses, each with a grant for the asker.
func (n *Node) P2spInfo(user, session, fileID string, max int32) (*pb.P2SpInfo, error) {
	info, err := n.FileInfo(user, fileID, true)
	if err != nil {
		return nil, err
	}
	if max <= 0 || int(max) > n.opts.P2SP.MaxHolders {
		max = int32(n.opts.P2SP.MaxHolders)
	}
	hs, err := n.fileClient(fileID).Holders(&grainpb.FileHoldersReq{UserId: user, SessionId: session, Max: max}, n.callOpts()...)
	if err != nil {
		return nil, err
	}
	out := &pb.P2SpInfo{Info: info, Stats: hs.Stats}
	exp := n.now() + n.opts.P2SP.GrantTTL.Milliseconds()
	for _, h := range hs.Holders {
		out.Holders = append(out.Holders, &pb.P2SpHolder{
			UserId: h.UserId, SessionId: h.SessionId, Complete: h.Complete, Bitmap: h.Bitmap, GrantExpiresMs: exp,
			Grant: n.IssueGrant(Grant{File: fileID, Requester: user, RequesterSession: session, Holder: h.UserId, HolderSession: h.SessionId, ExpiresMs: exp}),
		})
	}
	return out, nil
}

// bitmapLen is the bitmap length of a file with the given piece count.
func bitmapLen(pieces int) int { return (pieces + 7) / 8 }

// P2spAnnounce makes the session on link a holder of the file (or
// withdraws it). Only a member who may read the file may hold it.
func (n *Node) P2spAnnounce(user, session string, link uint64, a *pb.P2SpAnnounce) error {
	info, err := n.FileInfo(user, a.FileId, false)
	if err != nil {
		return err
	}
	pieces := 0
	if info.PieceSize > 0 {
		pieces = int((info.Size + info.PieceSize - 1) / info.PieceSize)
	}
	if !a.Complete && !a.Withdraw && len(a.Bitmap) != bitmapLen(pieces) {
		return codeError(pb.CodeInvalidArgument, "bitmap must be %d bytes for %d pieces", bitmapLen(pieces), pieces)
	}
	_, err = grainpb.GetSessionGrainClient(n.Cluster, session).Hold(&grainpb.HoldReq{
		LinkId: link, FileId: a.FileId, Complete: a.Complete, Bitmap: a.Bitmap, Withdraw: a.Withdraw,
	}, n.callOpts()...)
	return err
}

// maxSignalBytes bounds a signal's SDP and candidate.
const maxSignalBytes = 16 << 10

// P2spSignal relays a signal from (user, session) to the session it names.
// Every signal carries the requester-to-holder grant: the server verifies
// it and that sender and target are its two parties (only the requester
// sends an offer), so signalling reaches a holder only from a requester
// the server vouched for.
func (n *Node) P2spSignal(user, session string, s *pb.P2SpSignal) error {
	switch {
	case s.Kind < pb.P2SpSignalKind_P2SP_SIGNAL_KIND_OFFER || s.Kind > pb.P2SpSignalKind_P2SP_SIGNAL_KIND_BYE:
		return codeError(pb.CodeInvalidArgument, "unknown signal kind")
	case s.LinkId == "" || len(s.LinkId) > 64:
		return codeError(pb.CodeInvalidArgument, "link_id must be 1..64 bytes")
	case len(s.Sdp) > maxSignalBytes || len(s.Candidate) > maxSignalBytes:
		return codeError(pb.CodeInvalidArgument, "sdp and candidate are limited to %d bytes", maxSignalBytes)
	case s.SessionId == "" || len(s.SessionId) > 64:
		return codeError(pb.CodeInvalidArgument, "session_id (the target) is required")
	}
	g, err := n.VerifyGrant(s.Grant)
	if err != nil {
		return err
	}
	fromRequester := user == g.Requester && session == g.RequesterSession && s.SessionId == g.HolderSession
	fromHolder := user == g.Holder && session == g.HolderSession && s.SessionId == g.RequesterSession
	switch {
	case g.File != s.FileId:
		return codeError(pb.CodeBadGrant, "the grant is for another file")
	case !fromRequester && !fromHolder:
		return codeError(pb.CodeBadGrant, "the grant does not name this sender and target")
	case s.Kind == pb.P2SpSignalKind_P2SP_SIGNAL_KIND_OFFER && !fromRequester:
		return codeError(pb.CodeBadGrant, "only the grant's requester sends an offer")
	}
	out := proto.Clone(s).(*pb.P2SpSignal)
	out.SessionId, out.UserId = session, user
	_, err = grainpb.GetSessionGrainClient(n.Cluster, s.SessionId).Signal(&grainpb.SignalReq{Signal: out}, n.callOpts()...)
	return err
}

// P2spReport takes a downloader's report. A failed whole-file check is
// also told to every session of the user (a downloadFailed event).
func (n *Node) P2spReport(user, session, device string, r *pb.P2SpReport) error {
	if r.Kind < pb.P2SpReportKind_P2SP_REPORT_KIND_BAD_PIECE || r.Kind > pb.P2SpReportKind_P2SP_REPORT_KIND_COMPLETE {
		return codeError(pb.CodeInvalidArgument, "unknown report kind")
	}
	if r.ServerBytes < 0 || r.PeerBytes < 0 || len(r.Message) > 1024 || len(r.PeerSessionId) > 64 {
		return codeError(pb.CodeInvalidArgument, "bad report fields")
	}
	if _, err := n.FileInfo(user, r.FileId, false); err != nil {
		return err
	}
	if _, err := n.fileClient(r.FileId).Report(&grainpb.FileReportReq{UserId: user, SessionId: session, Report: r}, n.callOpts()...); err != nil {
		return err
	}
	if r.Kind == pb.P2SpReportKind_P2SP_REPORT_KIND_FILE_MISMATCH {
		reason := r.Message
		if reason == "" {
			reason = "the downloaded file does not match its sha256"
		}
		ev := &pb.SessionEvent{TimeMs: n.now(), Event: &pb.SessionEvent_DownloadFailed{DownloadFailed: &pb.DownloadFailed{
			FileId: r.FileId, DeviceId: device, Reason: reason,
		}}}
		if _, err := grainpb.GetUserGrainClient(n.Cluster, user).Notify(&grainpb.PushReq{Event: ev, OpId: NewID("df")}, n.callOpts()...); err != nil {
			return err
		}
	}
	return nil
}

// FileServed counts bytes the server sent of a file (fire and forget).
func (n *Node) FileServed(fileID string, bytes int64) {
	if bytes <= 0 || !persistence.ValidHash(fileID) {
		return
	}
	if _, err := n.Request(KindFile, fileID, "Served", &grainpb.FileServedReq{Bytes: bytes}); err != nil {
		n.log.Debug("count served bytes", "file_id", fileID, "err", err)
	}
}

// FileStats returns a file's transfer counters (for a member: the caller
// checks access).
func (n *Node) FileStats(fileID string) (*pb.P2SpStats, error) {
	return n.fileClient(fileID).Stats(&grainpb.FileStatsReq{}, n.callOpts()...)
}

// FileAdmin is the operator's view of a file: its record (content facts,
// references), its P2SP counters and every online holder.
type FileAdmin struct {
	Record  *grainpb.FileRecord
	Stats   *pb.P2SpStats
	Holders []*grainpb.FileHolder
}

// FileAdminInfo returns the operator's view of a file (not_found if it is
// not stored). No membership check: the caller is the operator.
func (n *Node) FileAdminInfo(fileID string) (*FileAdmin, error) {
	if !persistence.ValidHash(fileID) {
		return nil, codeError(pb.CodeNotFound, "no file %s", fileID)
	}
	rec, err := loadFile(n.opts.Store, fileID)
	if err != nil {
		return nil, codeError(pb.CodeStorage, "read file %s: %v", fileID, err)
	}
	if !rec.Stored {
		return nil, codeError(pb.CodeNotFound, "no file %s", fileID)
	}
	rec.PieceHashes = nil
	hs, err := n.fileClient(fileID).Holders(&grainpb.FileHoldersReq{All: true}, n.callOpts()...)
	if err != nil {
		return nil, err
	}
	return &FileAdmin{Record: rec, Stats: hs.Stats, Holders: hs.Holders}, nil
}
