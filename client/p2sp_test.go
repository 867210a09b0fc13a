package client_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/actors"
	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/gateway"
	"github.com/parley-chat/parley/gateway/gatewaytest"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// p2spUser registers and logs in username on a client whose peer links
// stay on loopback.
func p2spUser(t testing.TB, srv *gatewaytest.Server, username string, cache bool) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	o := client.Options{URL: srv.URL, Device: &pb.Device{Id: username + "-dev", Type: pb.DeviceType_DEVICE_TYPE_DESKTOP},
		Peers: client.PeerOptions{Loopback: true}}
	if cache {
		o.CacheDir = t.TempDir()
	}
	c, err := client.Dial(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Register(ctx, username, "password-"+username, ""); err != nil {
		t.Fatalf("register %s: %v", username, err)
	}
	if _, err := c.Login(ctx, username, "password-"+username); err != nil {
		t.Fatalf("login %s: %v", username, err)
	}
	return c
}

func hexSHA(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func fileSHA(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return hexSHA(b)
}

// testFileSize is the swarm file: 32 MiB as the issue asks, 8 MiB under
// the race detector (pion is slow under it).
func testFileSize() int {
	if raceEnabled {
		return 8 << 20
	}
	return 32 << 20
}

func randomData(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// setup starts a server, registers the seed (named first) and the other
// users, makes a group of all of them, uploads data from the seed and
// makes the seed a holder. It returns the file id and the group id.
func setup(t testing.TB, srv *gatewaytest.Server, data []byte, users []*client.Client) (string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	seed := users[0]
	var ids []string
	for _, u := range users[1:] {
		ids = append(ids, u.UserID())
	}
	g, err := seed.CreateGroup(ctx, "p2sp", ids...)
	if err != nil {
		t.Fatal(err)
	}
	res, err := seed.Upload(ctx, bytes.NewReader(data), int64(len(data)), client.UploadOptions{Conversation: g.Id, Name: "big.bin", ChunkSize: 16 << 20})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "seed.bin")
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := seed.Seed(ctx, res.FileID, path); err != nil {
		t.Fatal(err)
	}
	return res.FileID, g.Id
}

// waitStats polls the file's counters until cond holds.
func waitStats(t *testing.T, srv *gatewaytest.Server, fileID string, cond func(*pb.P2SpStats) bool) *pb.P2SpStats {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := srv.App.Node.FileStats(fileID)
		if err != nil {
			t.Fatal(err)
		}
		if cond(st) || time.Now().After(deadline) {
			return st
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The integration test: server egress capped at 20 MB/s; one seed
// and six downloaders (separate SDK instances, real pion peers on
// loopback) fetch the file at once. Every copy verifies, and at least half
// of the bytes came from peers, by the server's own counters.
//
// The cap is 20 MB/s for the 32 MiB file; a smaller file (8 MiB under the
// race detector, where pion is several times slower) gets a cap scaled
// down with it, so the server alone would need as long as at full size.
// The downloaders use the default options (the server's budget,
// ServerShare, is 30% of each download), with and without the race
// detector.
func TestP2SPSwarmCappedServer(t *testing.T) {
	size := testFileSize()
	capBytes := int64(20_000_000) * int64(size) / (32 << 20)
	srv := gatewaytest.Start(t, gatewaytest.Options{Gateway: gateway.Options{FilesEgressLimit: capBytes}})
	data := randomData(t, size)
	users := []*client.Client{p2spUser(t, srv, "seed", false)}
	for i := 1; i <= 6; i++ {
		users = append(users, p2spUser(t, srv, fmt.Sprintf("dl%d", i), true))
	}
	fileID, _ := setup(t, srv, data, users)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	results := make([]*client.P2SPResult, len(users))
	errs := make([]error, len(users))
	opts := client.P2SPOptions{}
	for i, u := range users[1:] {
		wg.Add(1)
		go func(i int, u *client.Client) {
			defer wg.Done()
			results[i], errs[i] = u.DownloadP2SP(ctx, fileID, filepath.Join(t.TempDir(), "out.bin"), opts)
		}(i, u)
	}
	wg.Wait()
	elapsed := time.Since(start)
	var server, peer int64
	for i, r := range results[:6] {
		if errs[i] != nil {
			t.Fatalf("downloader %d: %v", i+1, errs[i])
		}
		if got := fileSHA(t, r.Path); got != fileID {
			t.Fatalf("downloader %d: sha256 %s, want %s", i+1, got, fileID)
		}
		server += r.ServerBytes
		peer += r.PeerBytes
		var srcs []string
		for _, s := range r.Sources {
			srcs = append(srcs, fmt.Sprintf("%s=%.1fMiB(%s)", strings.SplitN(s.Name, "/", 2)[0], float64(s.Bytes)/(1<<20), s.State))
		}
		t.Logf("downloader %d: %.2fs server %.1f MiB peers %.1f MiB [%s]", i+1, r.Elapsed.Seconds(),
			float64(r.ServerBytes)/(1<<20), float64(r.PeerBytes)/(1<<20), strings.Join(srcs, " "))
	}
	total := int64(6 * size)
	st := waitStats(t, srv, fileID, func(st *pb.P2SpStats) bool { return st.Completed == 6 && st.ServerBytes+st.PeerBytes >= total })
	share := float64(st.PeerBytes) / float64(st.PeerBytes+st.ServerBytes)
	t.Logf("cap %.1f MB/s: %d MiB x 6 in %.2fs (%.1f MB/s aggregate); server sent %.1f MiB, peers %.1f MiB: peer share %.0f%% (server counters); all-HTTP under the cap would take >= %.2fs",
		float64(capBytes)/1e6, size>>20, elapsed.Seconds(), float64(total)/elapsed.Seconds()/1e6, float64(st.ServerBytes)/(1<<20), float64(st.PeerBytes)/(1<<20), share*100,
		float64(total)/float64(capBytes))
	if st.Completed != 6 {
		t.Fatalf("server counted %d completed downloads, want 6", st.Completed)
	}
	if share < 0.5 {
		t.Fatalf("peer share %.2f < 0.5 (server %d, peers %d)", share, st.ServerBytes, st.PeerBytes)
	}
	if st.PeerBytes != peer {
		t.Fatalf("server counted %d peer bytes, downloaders %d", st.PeerBytes, peer)
	}
	// A second fetch by a downloader is a cache hit.
	r, err := users[1].DownloadP2SP(ctx, fileID, filepath.Join(t.TempDir(), "again.bin"), client.P2SPOptions{})
	if err != nil || !r.FromCache || fileSHA(t, r.Path) != fileID {
		t.Fatalf("cached download: %+v, %v", r, err)
	}
}

// A peer serving corrupted pieces: every download still completes
// correctly, the peer is reported, banned, and no longer offered.
func TestP2SPCorruptPeerReportedAndDropped(t *testing.T) {
	srv := gatewaytest.Start(t, gatewaytest.Options{Actors: actors.Options{P2SP: actors.P2SPOptions{ReportLimit: 2}}})
	data := randomData(t, 4<<20)
	users := []*client.Client{p2spUser(t, srv, "seed", false), p2spUser(t, srv, "mallory", false)}
	for i := 1; i <= 3; i++ {
		users = append(users, p2spUser(t, srv, fmt.Sprintf("dl%d", i), false))
	}
	mallory := users[1]
	fileID, _ := setup(t, srv, data, users)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	path := filepath.Join(t.TempDir(), "m.bin")
	os.WriteFile(path, data, 0o644)
	if err := mallory.Seed(ctx, fileID, path); err != nil {
		t.Fatal(err)
	}
	client.SetServeHook(func(c *client.Client, piece int, b []byte) {
		if c == mallory {
			b[len(b)/2] ^= 0x5a
		}
	})
	defer client.SetServeHook(nil)

	var wg sync.WaitGroup
	results := make([]*client.P2SPResult, 3)
	errs := make([]error, 3)
	for i, u := range users[2:] {
		wg.Add(1)
		go func(i int, u *client.Client) {
			defer wg.Done()
			// Peers only: the bad peer is a sure source of pieces.
			results[i], errs[i] = u.DownloadP2SP(ctx, fileID, filepath.Join(t.TempDir(), "out.bin"), client.P2SPOptions{NoHTTP: i < 2})
		}(i, u)
	}
	wg.Wait()
	reported := 0
	for i, r := range results {
		if errs[i] != nil {
			t.Fatalf("downloader %d: %v", i+1, errs[i])
		}
		if got := fileSHA(t, r.Path); got != fileID {
			t.Fatalf("downloader %d: sha256 %s, want %s", i+1, got, fileID)
		}
		for _, s := range r.Sources {
			if strings.Contains(s.Name, mallory.Session().SessionId) && s.State == "reported" {
				reported++
				if s.Bad == 0 || s.Bytes != 0 {
					t.Fatalf("downloader %d: the bad peer delivered %d bytes, %d bad pieces", i+1, s.Bytes, s.Bad)
				}
			}
		}
	}
	if reported < 2 {
		t.Fatalf("the bad peer was reported by %d downloaders, want >= 2", reported)
	}
	st := waitStats(t, srv, fileID, func(st *pb.P2SpStats) bool { return len(st.Banned) > 0 })
	if len(st.Banned) != 1 || !strings.HasPrefix(st.Banned[0], mallory.UserID()+"/") {
		t.Fatalf("banned %v, want mallory", st.Banned)
	}
	// Mallory is no longer offered, to anyone.
	late := p2spUser(t, srv, "late", false)
	if _, err := users[0].AddMembers(ctx, mustGroup(t, srv, users[0]), late.UserID()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { _, err := late.P2SPInfo(ctx, fileID); return err == nil })
	pi, err := late.P2SPInfo(ctx, fileID)
	if err != nil {
		t.Fatal(err)
	}
	if len(pi.Holders) == 0 {
		t.Fatal("no holder offered at all")
	}
	for _, h := range pi.Holders {
		if h.UserId == mallory.UserID() {
			t.Fatalf("the banned peer is still offered: %v", h)
		}
	}
}

func mustGroup(t *testing.T, srv *gatewaytest.Server, c *client.Client) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	f, err := c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_ListConversations{ListConversations: &pb.ListConversations{}}})
	if err != nil || len(f.GetConversationList().Conversations) == 0 {
		t.Fatalf("list conversations: %v", err)
	}
	return f.GetConversationList().Conversations[0].Id
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// No peers: the plain HTTP path of the P2SP downloader completes and
// verifies; the finished client is then a holder, and a later download by
// another user takes pieces from it. A holder whose link ends is no longer
// offered.
func TestP2SPNoPeersThenHolder(t *testing.T) {
	srv := gatewaytest.Start(t, gatewaytest.Options{})
	data := randomData(t, 3<<20+12345)
	users := []*client.Client{p2spUser(t, srv, "owner", false), p2spUser(t, srv, "first", false), p2spUser(t, srv, "second", false)}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	g, err := users[0].CreateGroup(ctx, "g", users[1].UserID(), users[2].UserID())
	if err != nil {
		t.Fatal(err)
	}
	up, err := users[0].Upload(ctx, bytes.NewReader(data), int64(len(data)), client.UploadOptions{Conversation: g.Id, Name: "x.bin"})
	if err != nil {
		t.Fatal(err)
	}
	pi, err := users[1].P2SPInfo(ctx, up.FileID)
	if err != nil || len(pi.Holders) != 0 {
		t.Fatalf("info: %v, holders %v", err, pi.GetHolders())
	}
	r1, err := users[1].DownloadP2SP(ctx, up.FileID, filepath.Join(t.TempDir(), "a.bin"), client.P2SPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if fileSHA(t, r1.Path) != up.FileID || r1.PeerBytes != 0 || r1.ServerBytes != int64(len(data)) {
		t.Fatalf("HTTP-only download: %+v", r1)
	}
	// The first downloader now holds the file: a peers-only download works.
	r2, err := users[2].DownloadP2SP(ctx, up.FileID, filepath.Join(t.TempDir(), "b.bin"), client.P2SPOptions{NoHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	if fileSHA(t, r2.Path) != up.FileID || r2.PeerBytes != int64(len(data)) {
		t.Fatalf("peer download: %+v", r2)
	}
	// The holder goes offline: its holding is dropped with the session cut.
	holders := func() int {
		pi, err := users[0].P2SPInfo(ctx, up.FileID)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, h := range pi.Holders {
			if h.UserId == users[1].UserID() {
				n++
			}
		}
		return n
	}
	if holders() != 1 {
		t.Fatal("the finished downloader is not offered as a holder")
	}
	users[1].Close()
	waitFor(t, func() bool { return holders() == 0 })
}

// Grants: a non-member gets no info and no grant, and no signal reaches a
// holder without one; a holder refuses a data channel whose hello lacks
// the grant the server vouched for.
func TestP2SPGrants(t *testing.T) {
	srv := gatewaytest.Start(t, gatewaytest.Options{})
	data := randomData(t, 1<<20)
	users := []*client.Client{p2spUser(t, srv, "seed", false), p2spUser(t, srv, "member", false)}
	fileID, _ := setup(t, srv, data, users)
	eve := p2spUser(t, srv, "eve", false)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	seed, member := users[0], users[1]

	// A non-member: no info, no grant, and no download by any path.
	if _, err := eve.P2SPInfo(ctx, fileID); client.Code(err) != pb.CodeNotFound {
		t.Fatalf("non-member info: %v", err)
	}
	if _, err := eve.DownloadP2SP(ctx, fileID, filepath.Join(t.TempDir(), "e.bin"), client.P2SPOptions{}); client.Code(err) != pb.CodeNotFound {
		t.Fatalf("non-member download: %v", err)
	}
	pi, err := member.P2SPInfo(ctx, fileID)
	if err != nil || len(pi.Holders) != 1 {
		t.Fatalf("member info: %v %v", err, pi)
	}
	h := pi.Holders[0]
	signal := func(c *client.Client, grant string) error {
		_, err := c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_P2SpSignal{P2SpSignal: &pb.P2SpSignal{
			FileId: fileID, SessionId: h.SessionId, Kind: pb.P2SpSignalKind_P2SP_SIGNAL_KIND_OFFER, LinkId: "x", Sdp: "v=0", Grant: grant}}})
		return err
	}
	if err := signal(eve, ""); client.Code(err) != pb.CodeBadGrant {
		t.Fatalf("offer without a grant: %v", err)
	}
	if err := signal(eve, h.Grant); client.Code(err) != pb.CodeBadGrant {
		t.Fatalf("offer with another user's grant: %v", err)
	}
	// A grant forged for eve (the payload re-signed without the key).
	parts := strings.Split(h.Grant, ".")
	forged := actors.SignGrant([]byte("not the server key, 32 bytes...."), mustParse(t, h.Grant, eve))
	if err := signal(eve, forged); client.Code(err) != pb.CodeBadGrant {
		t.Fatalf("forged grant: %v (%d parts)", err, len(parts))
	}
	// The holder cannot send an offer with its side of the grant either.
	if _, err := seed.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_P2SpSignal{P2SpSignal: &pb.P2SpSignal{
		FileId: fileID, SessionId: member.Session().SessionId, Kind: pb.P2SpSignalKind_P2SP_SIGNAL_KIND_OFFER, LinkId: "y", Sdp: "v=0", Grant: h.Grant}}}); client.Code(err) != pb.CodeBadGrant {
		t.Fatalf("offer from the holder: %v", err)
	}

	// The holder refuses a data channel without the vouched grant: a hello
	// with another (validly signed) grant, an empty one, none at all.
	pi2, err := member.P2SPInfo(ctx, fileID)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{pi2.Holders[0].Grant, "", "-"} {
		client.SetHelloGrantHook(func(string) string { return bad })
		err := client.DialHolder(member, fileID, h)
		client.SetHelloGrantHook(nil)
		if err == nil {
			t.Fatalf("hello with %q: the holder accepted", bad)
		}
		if bad != pi2.Holders[0].Grant && client.Code(err) != "peer_refused" {
			t.Fatalf("hello with %q: %v", bad, err)
		}
	}
	// With the right grant the link opens.
	if err := client.DialHolder(member, fileID, h); err != nil {
		t.Fatalf("hello with the grant: %v", err)
	}
}

// mustParse returns h's grant re-addressed to eve.
func mustParse(t *testing.T, grant string, eve *client.Client) actors.Grant {
	t.Helper()
	g, err := actors.ParseGrant(grant)
	if err != nil {
		t.Fatal(err)
	}
	g.Requester, g.RequesterSession = eve.UserID(), eve.Session().SessionId
	return g
}

// A failed whole-file check is reported: the server tells every session
// of the user that the download failed, and counts it.
func TestP2SPWholeFileMismatchReported(t *testing.T) {
	srv := gatewaytest.Start(t, gatewaytest.Options{})
	data := randomData(t, 1<<20)
	users := []*client.Client{p2spUser(t, srv, "seed", false), p2spUser(t, srv, "bob", true)}
	fileID, _ := setup(t, srv, data, users)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	// Bob's second device watches its session events.
	other, err := client.Dial(ctx, client.Options{URL: srv.URL, Device: &pb.Device{Id: "bob-phone", Type: pb.DeviceType_DEVICE_TYPE_MOBILE}})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Login(ctx, "bob", "password-bob"); err != nil {
		t.Fatal(err)
	}
	bob := users[1]
	client.SetBeforeVerifyHook(func(c *client.Client, f *os.File) {
		if c == bob {
			f.WriteAt([]byte{0}, 12345)
		}
	})
	_, err = bob.DownloadP2SP(ctx, fileID, filepath.Join(t.TempDir(), "b.bin"), client.P2SPOptions{})
	client.SetBeforeVerifyHook(nil)
	if !errors.Is(err, client.ErrHashMismatch) {
		t.Fatalf("download: %v, want a hash mismatch", err)
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case ev := <-other.Events():
			if df := ev.Session.GetDownloadFailed(); df != nil {
				if df.FileId != fileID || df.DeviceId != "bob-dev" {
					t.Fatalf("downloadFailed %v", df)
				}
				st := waitStats(t, srv, fileID, func(st *pb.P2SpStats) bool { return st.Failed == 1 })
				if st.Failed != 1 {
					t.Fatalf("failed count %d", st.Failed)
				}
				// The bad bytes were dropped: a retry downloads afresh.
				r, err := bob.DownloadP2SP(ctx, fileID, filepath.Join(t.TempDir(), "c.bin"), client.P2SPOptions{})
				if err != nil || fileSHA(t, r.Path) != fileID {
					t.Fatalf("retry: %v", err)
				}
				return
			}
		case <-timeout:
			t.Fatal("no downloadFailed session event")
		}
	}
}

// A slow source loses its pieces: a holder that stalls on every request
// keeps none of them; the download completes from the other holder.
func TestP2SPStalledPeerLosesPieces(t *testing.T) {
	srv := gatewaytest.Start(t, gatewaytest.Options{})
	data := randomData(t, 2<<20) // 8 pieces
	users := []*client.Client{p2spUser(t, srv, "seed", false), p2spUser(t, srv, "staller", false), p2spUser(t, srv, "dl1", false)}
	fileID, _ := setup(t, srv, data, users)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	staller := users[1]
	path := filepath.Join(t.TempDir(), "s.bin")
	os.WriteFile(path, data, 0o644)
	if err := staller.Seed(ctx, fileID, path); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	client.SetServeHook(func(c *client.Client, piece int, b []byte) {
		if c == staller {
			<-release
		}
	})
	defer func() { close(release); client.SetServeHook(nil) }()
	start := time.Now()
	r, err := users[2].DownloadP2SP(ctx, fileID, filepath.Join(t.TempDir(), "o.bin"), client.P2SPOptions{NoHTTP: true})
	if err != nil {
		t.Fatal(err)
	}
	if fileSHA(t, r.Path) != fileID {
		t.Fatal("sha256 mismatch")
	}
	for _, s := range r.Sources {
		if strings.Contains(s.Name, staller.Session().SessionId) && s.Pieces != 0 {
			t.Fatalf("the stalled peer delivered %d pieces", s.Pieces)
		}
	}
	t.Logf("done in %v: %+v", time.Since(start), r.Sources)
}

// An interrupted download resumes: the verified pieces of the .part file
// are kept (here: the first half, as a cut sequential download leaves it).
func TestP2SPResumesPartFile(t *testing.T) {
	srv := gatewaytest.Start(t, gatewaytest.Options{})
	data := randomData(t, 2<<20+100)
	users := []*client.Client{p2spUser(t, srv, "owner", false), p2spUser(t, srv, "bob", false)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	g, err := users[0].CreateGroup(ctx, "g", users[1].UserID())
	if err != nil {
		t.Fatal(err)
	}
	up, err := users[0].Upload(ctx, bytes.NewReader(data), int64(len(data)), client.UploadOptions{Conversation: g.Id})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "f.bin")
	if err := os.WriteFile(path+".part", data[:1<<20+5], 0o644); err != nil {
		t.Fatal(err)
	}
	r, err := users[1].DownloadP2SP(ctx, up.FileID, path, client.P2SPOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if fileSHA(t, r.Path) != up.FileID || r.ServerBytes != int64(len(data))-1<<20 {
		t.Fatalf("resumed download: %d bytes from the server, want %d", r.ServerBytes, len(data)-1<<20)
	}
}
