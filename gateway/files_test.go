package gateway_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parley-chat/parley/client"
	"github.com/parley-chat/parley/gateway/gatewaytest"
	pb "github.com/parley-chat/parley/gateway/protocol"
)

// httpDo sends one request to the test server with a bearer token ("" for
// none) and returns the response with its body read.
func httpDo(t *testing.T, srv *gatewaytest.Server, method, path, token string, hdr map[string]string, body []byte) (*http.Response, []byte) {
	t.Helper()
	if !strings.HasPrefix(path, "http") {
		path = "http://" + srv.Addr + path
	}
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return res, b
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// countBlobs counts the blobs in the server's store.
func countBlobs(t *testing.T, srv *gatewaytest.Server) int {
	t.Helper()
	n := 0
	if err := srv.App.Node.Blobs().List(func(string) { n++ }); err != nil {
		t.Fatal(err)
	}
	return n
}

// fileMessage pages c's history of conv and returns the FILE message with
// fileID (or fails).
func fileMessage(t *testing.T, ctx context.Context, c *client.Client, conv, fileID string) *pb.Message {
	t.Helper()
	after := int64(0)
	for {
		p, err := c.History(ctx, conv, after, 100)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range p.Messages {
			if m.Kind == pb.MessageKind_MESSAGE_KIND_FILE && m.File.GetFileId() == fileID {
				return m
			}
			after = m.Seq
		}
		if len(p.Messages) == 0 || after >= p.LastSeq {
			t.Fatalf("no FILE message for %s in %s", fileID, conv)
		}
	}
}

// The scenario: a 20 MiB file sent from device A into a group,
// the upload cut at about half and resumed; a brand-new device B of the
// same user pulls history, finds the message and downloads the file with
// two Range requests; a non-member and a removed member are refused.
func TestFileSendResumeDownloadOnNewDevice(t *testing.T) {
	srv := gatewaytest.Start(t, gatewaytest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alice, _ := srv.User(t, "alice", "alice-a")
	bob, _ := srv.User(t, "bob", "bob-a")
	carol, carolLogin := srv.User(t, "carol", "carol-a")
	dave, daveLogin := srv.User(t, "dave", "dave-a")
	g, err := alice.CreateGroup(ctx, "files", bob.UserID(), dave.UserID())
	if err != nil {
		t.Fatal(err)
	}

	const size = 20 << 20
	data := randomBytes(t, size)
	var url string
	cutCtx, cut := context.WithCancel(ctx)
	opts := client.UploadOptions{
		Conversation: g.Id, Name: "report.bin", MIME: "application/x-test", ChunkSize: 4 << 20,
		OnCreate: func(u string) { url = u },
		Progress: func(done, total int64) {
			if done >= total/2 {
				cut() // the connection dies at about half
			}
		},
	}
	if _, err := alice.Upload(cutCtx, bytes.NewReader(data), size, opts); !errors.Is(err, context.Canceled) {
		t.Fatalf("cut upload: %v", err)
	}
	res, _ := httpDo(t, srv, http.MethodHead, url, alice.Token(), map[string]string{"Tus-Resumable": "1.0.0"}, nil)
	var offset int64
	fmt.Sscan(res.Header.Get("Upload-Offset"), &offset)
	if res.StatusCode != http.StatusOK || offset <= 0 || offset >= size {
		t.Fatalf("after the cut: %s, offset %d of %d", res.Status, offset, size)
	}
	t.Logf("cut at offset %d of %d; resuming", offset, size)

	opts.URL, opts.Progress, opts.OnCreate = url, nil, nil
	var first int64 = -1
	opts.Progress = func(done, total int64) {
		if first < 0 {
			first = done
		}
	}
	up, err := alice.Upload(ctx, bytes.NewReader(data), size, opts)
	if err != nil {
		t.Fatalf("resumed upload: %v", err)
	}
	// The cut chunk may still land after our HEAD (its bytes were all
	// sent when the cut came), so the resume starts at or after offset.
	if first < offset || first >= size {
		t.Fatalf("the resumed upload started at %d, not at the server's offset %d", first, offset)
	}
	if up.FileID != sha(data) || up.Seq == 0 {
		t.Fatalf("upload result %+v, want file id %s", up, sha(data))
	}

	// A brand-new device of the sender logs in and pulls history.
	aliceB, _ := srv.User(t, "alice", "alice-b")
	m := fileMessage(t, ctx, aliceB, g.Id, up.FileID)
	f := m.File
	if m.Seq != up.Seq || m.Sender != alice.UserID() || f.Name != "report.bin" || f.Size != size || f.Mime != "application/x-test" || f.Uploader != alice.UserID() || m.Text != "" {
		t.Fatalf("file message %v", m)
	}
	info, err := aliceB.FileInfo(ctx, f.FileId)
	if err != nil {
		t.Fatal(err)
	}
	if info.Sha256 != up.FileID || info.Size != size || info.PieceSize != 256<<10 || len(info.PieceHashes) != size/(256<<10) || info.ConversationId != g.Id {
		t.Fatalf("file info: size %d sha %s piece %d pieces %d", info.Size, info.Sha256, info.PieceSize, len(info.PieceHashes))
	}
	piece := sha256.Sum256(data[256<<10 : 512<<10])
	if !bytes.Equal(info.PieceHashes[1], piece[:]) {
		t.Fatal("piece hash 1 is wrong")
	}
	// Two Range requests.
	half := size / 2
	r1, b1 := httpDo(t, srv, http.MethodGet, "/files/"+f.FileId, aliceB.Token(), map[string]string{"Range": fmt.Sprintf("bytes=0-%d", half-1)}, nil)
	r2, b2 := httpDo(t, srv, http.MethodGet, "/files/"+f.FileId, aliceB.Token(), map[string]string{"Range": fmt.Sprintf("bytes=%d-", half)}, nil)
	for _, r := range []*http.Response{r1, r2} {
		if r.StatusCode != http.StatusPartialContent || r.Header.Get("ETag") != `"`+up.FileID+`"` || r.Header.Get("Content-Type") != "application/x-test" ||
			r.Header.Get("Content-Disposition") != `attachment; filename=report.bin` {
			t.Fatalf("range answer %s %v", r.Status, r.Header)
		}
	}
	if r2.Header.Get("Content-Range") != fmt.Sprintf("bytes %d-%d/%d", half, size-1, size) {
		t.Fatalf("Content-Range %q", r2.Header.Get("Content-Range"))
	}
	if got := sha(append(b1, b2...)); got != up.FileID {
		t.Fatalf("downloaded sha256 %s, want %s", got, up.FileID)
	}
	// A range past the end.
	if r, _ := httpDo(t, srv, http.MethodGet, "/files/"+f.FileId, aliceB.Token(), map[string]string{"Range": fmt.Sprintf("bytes=%d-", size)}, nil); r.StatusCode != http.StatusRequestedRangeNotSatisfiable {
		t.Fatalf("range past the end: %s", r.Status)
	}
	// Another member downloads with the SDK (hash checked inside).
	var buf bytes.Buffer
	if _, err := bob.Download(ctx, f.FileId, &buf, nil); err != nil || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("bob's download: %v", err)
	}

	// A non-member is refused exactly like a missing file.
	missing := strings.Repeat("0", 64)
	for _, id := range []string{f.FileId, missing} {
		if r, _ := httpDo(t, srv, http.MethodGet, "/files/"+id, carolLogin.Token, nil, nil); r.StatusCode != http.StatusNotFound {
			t.Fatalf("non-member download of %s: %s", id, r.Status)
		}
		if r, _ := httpDo(t, srv, http.MethodGet, "/files/"+id+"/info", carolLogin.Token, nil, nil); r.StatusCode != http.StatusNotFound {
			t.Fatalf("non-member info of %s: %s", id, r.Status)
		}
		if _, err := carol.FileInfo(ctx, id); client.Code(err) != pb.CodeNotFound {
			t.Fatalf("non-member fileInfo of %s: %v", id, err)
		}
	}
	if r, _ := httpDo(t, srv, http.MethodGet, "/files/"+f.FileId, "", nil, nil); r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("download without a token: %s", r.Status)
	}
	// A member is served until removed, then refused.
	if r, _ := httpDo(t, srv, http.MethodHead, "/files/"+f.FileId, daveLogin.Token, nil, nil); r.StatusCode != http.StatusOK {
		t.Fatalf("member dave: %s", r.Status)
	}
	if _, err := alice.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_RemoveMember{RemoveMember: &pb.RemoveMember{ConversationId: g.Id, UserId: dave.UserID()}}}); err != nil {
		t.Fatal(err)
	}
	if r, _ := httpDo(t, srv, http.MethodGet, "/files/"+f.FileId+"?token="+daveLogin.Token, "", nil, nil); r.StatusCode != http.StatusNotFound {
		t.Fatalf("removed member download: %s", r.Status)
	}
	if _, err := dave.FileInfo(ctx, f.FileId); client.Code(err) != pb.CodeNotFound {
		t.Fatalf("removed member fileInfo: %v", err)
	}
}

// uploadBytes uploads data into conv and returns the result.
func uploadBytes(t *testing.T, ctx context.Context, c *client.Client, conv, name string, data []byte) *client.UploadResult {
	t.Helper()
	res, err := c.Upload(ctx, bytes.NewReader(data), int64(len(data)), client.UploadOptions{Conversation: conv, Name: name, MIME: "application/octet-stream"})
	if err != nil {
		t.Fatalf("upload %s: %v", name, err)
	}
	return res
}

func deleteMessage(t *testing.T, ctx context.Context, c *client.Client, conv string, seq int64) {
	t.Helper()
	if _, err := c.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_DeleteMessage{DeleteMessage: &pb.DeleteMessage{ConversationId: conv, Seq: seq}}}); err != nil {
		t.Fatalf("delete %d: %v", seq, err)
	}
}

// waitBlobs waits until the store holds want blobs (releases travel
// through the conversation's outbox, after the delete's commit).
func waitBlobs(t *testing.T, srv *gatewaytest.Server, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for countBlobs(t, srv) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%d blobs, want %d", countBlobs(t, srv), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Identical content is stored once, whatever conversation it goes to, and
// deleted when the last message holding it is.
func TestFileDedupeAndRetention(t *testing.T) {
	srv := gatewaytest.Start(t, gatewaytest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	alice, _ := srv.User(t, "alice", "a1")
	bob, bobLogin := srv.User(t, "bob", "b1")
	g1, _ := alice.CreateGroup(ctx, "one", bob.UserID())
	g2, _ := alice.CreateGroup(ctx, "two")
	data := randomBytes(t, 1<<20+17)
	a := uploadBytes(t, ctx, alice, g1.Id, "a.bin", data)
	b := uploadBytes(t, ctx, alice, g2.Id, "b.bin", data)
	c := uploadBytes(t, ctx, bob, g1.Id, "c.bin", data)
	if a.FileID != b.FileID || b.FileID != c.FileID {
		t.Fatalf("file ids differ: %s %s %s", a.FileID, b.FileID, c.FileID)
	}
	if n := countBlobs(t, srv); n != 1 {
		t.Fatalf("%d blobs for one content", n)
	}
	other := uploadBytes(t, ctx, alice, g1.Id, "other.bin", []byte("something else"))
	waitBlobs(t, srv, 2)

	// Deleting messages releases their references; the content goes with
	// the last one.
	deleteMessage(t, ctx, alice, g1.Id, a.Seq)
	deleteMessage(t, ctx, bob, g1.Id, c.Seq)
	waitBlobs(t, srv, 2)
	// Bob sees the file only through g1, where it is gone now (once the
	// releases, which follow the deletes' commit, have landed).
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		r, _ := httpDo(t, srv, http.MethodGet, "/files/"+a.FileID, bobLogin.Token, nil, nil)
		if r.StatusCode == http.StatusNotFound {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bob after both deletes: %s", r.Status)
		}
	}
	var buf bytes.Buffer
	if _, err := alice.Download(ctx, a.FileID, &buf, nil); err != nil || !bytes.Equal(buf.Bytes(), data) {
		t.Fatalf("alice through g2: %v", err)
	}
	deleteMessage(t, ctx, alice, g2.Id, b.Seq)
	waitBlobs(t, srv, 1)
	if _, err := alice.FileInfo(ctx, a.FileID); client.Code(err) != pb.CodeNotFound {
		t.Fatalf("info of a deleted file: %v", err)
	}
	// The last member leaving a group deletes it, files included.
	if _, err := alice.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_RemoveMember{RemoveMember: &pb.RemoveMember{ConversationId: g1.Id, UserId: bob.UserID()}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Call(ctx, &pb.ClientFrame{Command: &pb.ClientFrame_LeaveGroup{LeaveGroup: &pb.LeaveGroup{ConversationId: g1.Id}}}); err != nil {
		t.Fatal(err)
	}
	waitBlobs(t, srv, 0)
	_ = other
}

// Releasing the last reference races with an upload of the same content:
// the File grain serializes them, so the new message's file stays
// downloadable, and the content goes when that message goes too.
func TestFileReleaseRacesSameContentUpload(t *testing.T) {
	srv := gatewaytest.Start(t, gatewaytest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	alice, _ := srv.User(t, "alice", "a1")
	bob, _ := srv.User(t, "bob", "b1")
	g, _ := alice.CreateGroup(ctx, "race", bob.UserID())
	for round := 0; round < 8; round++ {
		data := randomBytes(t, 300<<10)
		first := uploadBytes(t, ctx, alice, g.Id, "x.bin", data)
		var second *client.UploadResult
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); deleteMessage(t, ctx, alice, g.Id, first.Seq) }()
		go func() { defer wg.Done(); second = uploadBytes(t, ctx, bob, g.Id, "y.bin", data) }()
		wg.Wait()
		if second.FileID != first.FileID {
			t.Fatalf("round %d: file ids differ", round)
		}
		// Let the release through the outbox land, whatever its order.
		time.Sleep(20 * time.Millisecond)
		var buf bytes.Buffer
		if _, err := alice.Download(ctx, second.FileID, &buf, nil); err != nil || !bytes.Equal(buf.Bytes(), data) {
			t.Fatalf("round %d: the surviving message's file: %v", round, err)
		}
		waitBlobs(t, srv, 1)
		deleteMessage(t, ctx, bob, g.Id, second.Seq)
		waitBlobs(t, srv, 0)
	}
}
