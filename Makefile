# gpagent: high availability for Greenplum-style PostgreSQL clusters.
GO           ?= go
BIN          ?= bin/gpagent
STATICCHECK  ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2
TEST_FLAGS   ?= -race -count=1 -timeout 30m
NFPM         ?= github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
VERSION      ?= $(shell sed -n 's/^const Version = "\(.*\)"/\1/p' agent/mesh.go)
GOARCH       ?= $(shell $(GO) env GOARCH)
DEB          ?= bin/gpagent_$(VERSION)_$(GOARCH).deb

.PHONY: build test lint demo bench fuzz package

build:
	$(GO) build -o $(BIN) ./cmd/gpagent

# A .deb of the binary, the unit, /etc/gpagent/agent.yaml and a postinst
# (deploy/nfpm.yaml). The binary is static: no libc to match on the hosts.
package:
	CGO_ENABLED=0 GOOS=linux GOARCH=$(GOARCH) $(GO) build -trimpath -o bin/pkg/gpagent ./cmd/gpagent
	VERSION=$(VERSION) GOARCH=$(GOARCH) $(GO) run $(NFPM) package --config deploy/nfpm.yaml --packager deb --target $(DEB)

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
