package actors

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/asynkron/protoactor-go/actor"
)

// TestQuietHandler: protoactor's Info goes to Debug, and so does its Error
// for a grain call that met a dead letter (it retries on a new
// activation); its other errors still show.
func TestQuietHandler(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(quietHandler{slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})})
	log.Info("actor started")
	log.Error("cluster.RequestFuture failed", slog.Any("error", actor.ErrDeadLetter), slog.String("pid", "p"))
	log.Error("cluster.RequestFuture failed", slog.Any("error", errors.New("boom")), slog.String("pid", "p"))
	log.Error("cluster.RequestFuture failed", slog.Any("error", actor.ErrTimeout))
	out := buf.String()
	if strings.Contains(out, "actor started") || strings.Contains(out, "dead letter") {
		t.Fatalf("info or dead-letter retry logged:\n%s", out)
	}
	if !strings.Contains(out, "boom") || !strings.Contains(out, "timeout") {
		t.Fatalf("a real failure was hidden:\n%s", out)
	}
}
