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

# Each fuzz target (package:Func) for FUZZTIME (default 15s).
FUZZTIME ?= 15s
FUZZ_TARGETS = \
	./gateway/protocol:FuzzDecodeClientFrame \
	./persistence:FuzzDecodeKey \
	./actors/conversation:FuzzStep \
	./gateway:FuzzTusHeaders \
	./actors/conversation:FuzzImport \
	./actors/channel:FuzzStep \
	./client:FuzzDecodePeerMsg \
	./actors/call:FuzzRoomStep \
	./media/transport:FuzzDemux \
	./media/offer:FuzzParseAnswer
fuzz:
	@set -e; for spec in $(FUZZ_TARGETS); do \
		pkg=$${spec%%:*}; fn=$${spec##*:}; \
		echo "fuzz $$pkg $$fn"; \
		$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

# Regenerates the protobuf and grain code (committed). Needs Debian's
# protobuf-compiler.
generate:
	GOBIN=$(GOBIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.11
	GOBIN=$(GOBIN) $(GO) install github.com/asynkron/protoactor-go/protobuf/protoc-gen-go-grain@v0.0.0-20240822202345-3c0e61ca19c9
	PATH="$(GOBIN):$$PATH" protoc -I . --go_out=. --go_opt=paths=source_relative gateway/protocol/parley.proto
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
