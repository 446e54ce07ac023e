# gpagent: high availability for Greenplum-style PostgreSQL clusters.
GO           ?= go
BIN          ?= bin/gpagent
STATICCHECK  ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
TEST_FLAGS   ?= -race -count=1 -timeout 30m

.PHONY: build test lint demo bench fuzz

build:
	$(GO) build -o $(BIN) ./cmd/gpagent

# Every test: pure rules, Raft, real PostgreSQL (as the postgres OS user when
# run as root) and the end-to-end demo flow. Needs PostgreSQL 15 binaries.
test:
	$(GO) test $(TEST_FLAGS) ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# A local cluster on embedded defaults: one agent, a coordinator and two
# segments with mirrors on 127.0.0.1. Ctrl-C stops it all.
demo: build
	./$(BIN) demo $(DEMO_FLAGS)

bench:
	$(GO) test -run '^$$' -bench . -benchtime 1x ./e2e/

fuzz:
	$(GO) test -run '^$$' -fuzz FuzzParseSpec -fuzztime 30s ./topology/
	$(GO) test -run '^$$' -fuzz FuzzParseMirrorFile -fuzztime 30s ./topology/
	$(GO) test -run '^$$' -fuzz FuzzDecodeCommand -fuzztime 30s ./consensus/
