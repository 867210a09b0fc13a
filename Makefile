# Parley. `make run` starts a single-node server; `make test` runs every test.
GO ?= go
PROTOACTOR_DIR = $(shell $(GO) list -m -f '{{.Dir}}' github.com/asynkron/protoactor-go)
GOBIN ?= $(shell $(GO) env GOPATH)/bin

.PHONY: run build test test-short fuzz generate bench web-deps clean

run:
	$(GO) run ./cmd/parley serve

build:
	$(GO) build -o bin/parley ./cmd/parley

# All tests with the race detector (the integration tests start real servers
# and real WebSocket clients).
test:
	$(GO) test -race -count=1 -timeout 20m ./...

test-short:
	$(GO) test -count=1 ./...

# Each fuzz target (package:Func:execs) for its number of executions (about
# 15 s each on a 2-core machine), or for FUZZTIME if given (make fuzz
# FUZZTIME=5m). Counts, not durations, by default: Go 1.26's coordinator
# can fail a duration-bounded run with a bare "context deadline exceeded"
# at the deadline (no crasher; golang/go#75804, fixed in Go 1.27).
FUZZTIME ?=
FUZZ_TARGETS = \
	./gateway/protocol:FuzzDecodeClientFrame:400000 \
	./persistence:FuzzDecodeKey:150000 \
	./actors/conversation:FuzzStep:30000 \
	./gateway:FuzzTusHeaders:50000 \
	./actors/conversation:FuzzImport:10000 \
	./actors/channel:FuzzStep:15000 \
	./client:FuzzDecodePeerMsg:70000 \
	./actors/call:FuzzRoomStep:200000 \
	./media/transport:FuzzDemux:150000 \
	./media/offer:FuzzParseAnswer:700000 \
	./persistence/replication:FuzzDecodeFrame:150000 \
	./persistence/replication:FuzzDecodeCommand:150000 \
	./persistence/replication:FuzzSnapshotStream:100000
fuzz:
	@set -e; for spec in $(FUZZ_TARGETS); do \
		pkg=$${spec%%:*}; rest=$${spec#*:}; fn=$${rest%%:*}; n=$${rest##*:}; \
		t=$${n}x; if [ -n "$(FUZZTIME)" ]; then t=$(FUZZTIME); fi; \
		echo "fuzz $$pkg $$fn ($$t)"; \
		$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $$t $$pkg; \
	done

# Regenerates the protobuf and grain code (committed). Needs Debian's
# protobuf-compiler.
generate:
	GOBIN=$(GOBIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.11
	GOBIN=$(GOBIN) $(GO) install github.com/asynkron/protoactor-go/protobuf/protoc-gen-go-grain@v0.0.0-20240822202345-3c0e61ca19c9
	PATH="$(GOBIN):$$PATH" protoc -I . --go_out=. --go_opt=paths=source_relative gateway/protocol/parley.proto
	PATH="$(GOBIN):$$PATH" protoc -I . --go_out=. --go_opt=paths=source_relative actors/grainpb/cluster.proto
	PATH="$(GOBIN):$$PATH" protoc -I . -I $(PROTOACTOR_DIR) --go_out=. --go_opt=paths=source_relative \
		--go-grain_out=. --go-grain_opt=paths=source_relative actors/grainpb/grains.proto

bench:
	$(GO) run ./bench/cmd/parley-bench -scenario all

# npm packages of the browser tests (playwright-core, pinned by
# web/test/package-lock.json). The tests drive Debian's /usr/bin/chromium
# (apt-get install chromium); no browser is downloaded.
web-deps:
	cd web/test && npm ci --no-audit --no-fund --loglevel=error

clean:
	rm -rf bin data
