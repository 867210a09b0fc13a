package gateway_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/gateway"
	"github.com/parley-chat/parley/gateway/gatewaytest"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// uploadTo uploads data into a new group of owner and members.
func uploadTo(t *testing.T, ctx context.Context, owner *client.Client, data []byte, members ...*client.Client) (string, string) {
	t.Helper()
	var ids []string
	for _, m := range members {
		ids = append(ids, m.UserID())
	}
	g, err := owner.CreateGroup(ctx, "p2sp", ids...)
	if err != nil {
		t.Fatal(err)
	}
	res, err := owner.Upload(ctx, bytes.NewReader(data), int64(len(data)), client.UploadOptions{Conversation: g.Id, Name: "f.bin"})
	if err != nil {
		t.Fatal(err)
	}
	return g.Id, res.FileID
}

// The download handler's token buckets: in total and per file.
func TestP2SPEgressLimit(t *testing.T) {
	const total, perFile = 4_000_000, 2_000_000
	srv := gatewaytest.Start(t, gatewaytest.Options{Gateway: gateway.Options{FilesEgressLimit: total, FilesEgressFileLimit: perFile}})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alice, _ := srv.User(t, "alice", "alice-a")
	bob, _ := srv.User(t, "bob", "bob-a")
	a := randomBytes(t, 2<<20)
	b := randomBytes(t, 2<<20)
	_, fa := uploadTo(t, ctx, alice, a, bob)
	_, fb := uploadTo(t, ctx, alice, b, bob)

	download := func(c *client.Client, id string) time.Duration {
		t0 := time.Now()
		var buf bytes.Buffer
		if _, err := c.Download(ctx, id, &buf, nil); err != nil {
			t.Error(err)
		}
		return time.Since(t0)
	}
	// One file, two downloads at once: they share its 2 MB/s bucket, so
	// 4 MiB take at least ~1.9 s (less the bucket's burst).
	var wg sync.WaitGroup
	start := time.Now()
	for _, c := range []*client.Client{alice, bob} {
		wg.Add(1)
		go func(c *client.Client) { defer wg.Done(); download(c, fa) }(c)
	}
	wg.Wait()
	shared := time.Since(start)
	if shared < 1700*time.Millisecond {
		t.Fatalf("two downloads of one file (4 MiB at 2 MB/s per file) took %v", shared)
	}
	// Two files at once: each has its own 2 MB/s bucket and the total is 4
	// MB/s, so the pair takes about as long as one file alone (~1 s), not
	// twice as long (what one shared 2 MB/s bucket would give). Compared
	// with one file alone measured just before, so that a loaded machine
	// slows both alike.
	one := download(bob, fb)
	start = time.Now()
	for _, id := range []string{fa, fb} {
		wg.Add(1)
		go func(id string) { defer wg.Done(); download(bob, id) }(id)
	}
	wg.Wait()
	el := time.Since(start)
	if el < 800*time.Millisecond || el > one*3/2 {
		t.Fatalf("two files in parallel took %v, one file alone %v: want about the same", el, one)
	}
	t.Logf("egress: one file shared by two downloads %v; one file alone %v; two files in parallel %v", shared, one, el)
}

// The stats endpoint (members only) counts the bytes the server sent;
// announces are checked (membership, bitmap size).
func TestP2SPStatsAndAnnounce(t *testing.T) {
	srv := gatewaytest.Start(t, gatewaytest.Options{Gateway: gateway.Options{AdminToken: "op-secret"}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice, aliceLogin := srv.User(t, "alice", "alice-a")
	eve, eveLogin := srv.User(t, "eve", "eve-a")
	data := randomBytes(t, 600_000) // 3 pieces
	_, id := uploadTo(t, ctx, alice, data)
	var buf bytes.Buffer
	if _, err := alice.Download(ctx, id, &buf, nil); err != nil || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("download: %v", err)
	}
	var st map[string]any
	deadline := time.Now().Add(5 * time.Second)
	for {
		res, body := httpDo(t, srv, http.MethodGet, "/files/"+id+"/stats", aliceLogin.Token, nil, nil)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("stats: %s %s", res.Status, body)
		}
		st = map[string]any{}
		json.Unmarshal(body, &st)
		if st["serverBytes"] == "600000" || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st["serverBytes"] != "600000" {
		t.Fatalf("stats %v", st)
	}
	if res, _ := httpDo(t, srv, http.MethodGet, "/files/"+id+"/stats", eveLogin.Token, nil, nil); res.StatusCode != http.StatusNotFound {
		t.Fatalf("non-member stats: %s", res.Status)
	}
	announce := func(c *client.Client, a *pb.P2SpAnnounce) error {
		_, err := c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_P2SpAnnounce{P2SpAnnounce: a}})
		return err
	}
	if err := announce(eve, &pb.P2SpAnnounce{FileId: id, Complete: true}); client.Code(err) != pb.CodeNotFound {
		t.Fatalf("non-member announce: %v", err)
	}
	if err := announce(alice, &pb.P2SpAnnounce{FileId: id, Bitmap: []byte{1, 0}}); client.Code(err) != pb.CodeInvalidArgument {
		t.Fatalf("announce with a 2-byte bitmap for 3 pieces: %v", err)
	}
	if err := announce(alice, &pb.P2SpAnnounce{FileId: id, Bitmap: []byte{0b101}}); err != nil {
		t.Fatalf("partial announce: %v", err)
	}
	// The operator's view: counters and every holder.
	if res, _ := httpDo(t, srv, http.MethodGet, "/admin/files/"+id, aliceLogin.Token, nil, nil); res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("admin view with a user token: %s", res.Status)
	}
	var adm struct {
		Pieces  int            `json:"pieces"`
		Stats   map[string]any `json:"stats"`
		Holders []struct {
			UserID string `json:"userId"`
			Pieces int    `json:"pieces"`
		} `json:"holders"`
	}
	res, body := httpDo(t, srv, http.MethodGet, "/admin/files/"+id, "op-secret", nil, nil)
	if res.StatusCode != http.StatusOK || json.Unmarshal(body, &adm) != nil {
		t.Fatalf("admin view: %s %s", res.Status, body)
	}
	if adm.Pieces != 3 || len(adm.Holders) != 1 || adm.Holders[0].UserID != alice.UserID() || adm.Holders[0].Pieces != 2 || adm.Stats["serverBytes"] != "600000" {
		t.Fatalf("admin view: %s", body)
	}
	// A report about a session that never held the file is refused;
	// unknown report kinds too.
	report := func(r *pb.P2SpReport) error {
		_, err := alice.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_P2SpReport{P2SpReport: r}})
		return err
	}
	if err := report(&pb.P2SpReport{FileId: id, Kind: pb.P2SpReportKind_P2SP_REPORT_KIND_BAD_PIECE, PeerSessionId: "s000"}); client.Code(err) != pb.CodeNotFound {
		t.Fatalf("report of an unknown holder: %v", err)
	}
	if err := report(&pb.P2SpReport{FileId: id, Kind: 99}); client.Code(err) != pb.CodeInvalidArgument {
		t.Fatalf("unknown report kind: %v", err)
	}
	// Metrics carry the P2SP counters.
	res, body = httpDo(t, srv, http.MethodGet, "/metrics", "", nil, nil)
	if res.StatusCode != http.StatusOK || !bytes.Contains(body, []byte("parley_p2sp_peer_bytes_total")) {
		t.Fatalf("metrics: %s", res.Status)
	}
}
