package gateway

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"math/bits"
	"net/http"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
)

// admin serves the operator's endpoints under /admin/, authenticated by
// the AdminToken option (no token configured: 404). Today:
//
//	GET /admin/files/{fileId}   a file's record, P2SP counters and holders (JSON)
//	GET /admin/cluster          a cluster node's view: members, raft groups
//	                            (leader, term, commit, applied), grains (JSON)
//	POST /admin/drain           drain this cluster node, then exit (202)
//	POST /admin/nodes           add a node: {"node": id, "addr": "host:port"}
//	DELETE /admin/nodes/{id}    remove a node for good
type admin struct{ s *Server }

func (a *admin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tok := a.s.opts.AdminToken
	if tok == "" || a.s.node == nil {
		http.NotFound(w, r)
		return
	}
	got, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if subtle.ConstantTimeCompare([]byte(got), []byte(tok)) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="parley-admin"`)
		http.Error(w, "unauthenticated", http.StatusUnauthorized)
		return
	}
	if a.serveNodes(w, r) {
		return
	}
	if r.URL.Path == "/admin/drain" && r.Method == http.MethodPost {
		if a.s.drain == nil {
			http.Error(w, "not a cluster node", http.StatusNotFound)
			return
		}
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := a.s.drain(ctx); err != nil {
				a.s.log.Error("drain", "err", err)
			}
		}()
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if r.URL.Path == "/admin/cluster" && r.Method == http.MethodGet {
		st := a.s.clusterStatus()
		if st == nil {
			http.Error(w, "not a cluster node", http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(st)
		return
	}
	id, ok := strings.CutPrefix(r.URL.Path, "/admin/files/")
	if !ok || r.Method != http.MethodGet || strings.Contains(id, "/") {
		http.NotFound(w, r)
		return
	}
	fa, err := a.s.node.FileAdminInfo(id)
	if err != nil {
		status, code, msg := errorStatus(err)
		w.Header().Set("Parley-Error", code)
		http.Error(w, code+": "+msg, status)
		return
	}
	type ref struct {
		Conversation string `json:"conversationId"`
		Name         string `json:"name"`
		Mime         string `json:"mime"`
		Uploader     string `json:"uploader"`
		CreatedMs    int64  `json:"createdMs"`
	}
	type holder struct {
		User     string `json:"userId"`
		Device   string `json:"deviceId"`
		Session  string `json:"sessionId"`
		Complete bool   `json:"complete"`
		Pieces   int    `json:"pieces"`
		Banned   bool   `json:"banned,omitempty"`
	}
	rec := fa.Record
	pieces := 0
	if rec.PieceSize > 0 {
		pieces = int((rec.Size + rec.PieceSize - 1) / rec.PieceSize)
	}
	out := struct {
		FileID    string          `json:"fileId"`
		Size      int64           `json:"size"`
		PieceSize int64           `json:"pieceSize"`
		Pieces    int             `json:"pieces"`
		Refs      []ref           `json:"refs"`
		Stats     json.RawMessage `json:"stats"`
		Holders   []holder        `json:"holders"`
	}{FileID: id, Size: rec.Size, PieceSize: rec.PieceSize, Pieces: pieces, Refs: []ref{}, Holders: []holder{}}
	for _, x := range rec.Refs {
		out.Refs = append(out.Refs, ref{x.ConversationId, x.Name, x.Mime, x.Uploader, x.CreatedMs})
	}
	out.Stats, _ = protojson.MarshalOptions{EmitUnpopulated: true}.Marshal(fa.Stats)
	for _, h := range fa.Holders {
		n := pieces
		if !h.Complete {
			n = 0
			for _, b := range h.Bitmap {
				n += bits.OnesCount8(b)
			}
		}
		out.Holders = append(out.Holders, holder{h.UserId, h.DeviceId, h.SessionId, h.Complete, n, h.Banned})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(out)
}
