# Cascade: the two commands a user needs are `make run` and `make test`.
SHELL := /bin/bash

GO       ?= go
BIN      := bin/cascade
VERSION  := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
# Packages whose tests run in-process (with the race detector); cmd/cascade
# holds the end-to-end tests that drive the real binary and real clients.
UNIT_PKGS := $(shell $(GO) list ./... 2>/dev/null | grep -v /cmd/cascade)

.PHONY: all build run test test-unit test-e2e test-e2e-race test-deps bench bench-micro bench-load fuzz lint clean

all: build

## build: compile bin/cascade
build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/cascade

## run: build and start one dev node (balancer, API and pages in one) on 127.0.0.1:8080
run: build
	./$(BIN) serve --dev --data-dir ./data

## test: install what the tests need, then run every test
test: test-deps lint test-unit test-e2e

test-unit:
	$(GO) test -race -count=1 -timeout 10m $(UNIT_PKGS)

test-e2e:
	$(GO) test -count=1 -timeout 20m -v ./cmd/cascade 2>&1 | tee .e2e.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic|\s+\S+_test.go)' ; exit $${PIPESTATUS[0]}

## test-e2e-race: the end-to-end tests with the node under test built with -race: a data race it
## meets under real load fails the test. Slower; timing-bound tests (ICE restart) may then flake.
test-e2e-race: test-deps
	CASCADE_E2E_RACE=1 $(GO) test -count=1 -timeout 20m ./cmd/cascade

## test-deps: install Chromium for the browser tests when it is missing
test-deps:
	@if ! command -v chromium >/dev/null 2>&1; then \
		echo "installing chromium for the browser tests"; \
		if [ "$$(id -u)" -ne 0 ]; then SUDO=sudo; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; \
	fi
	@command -v chromium >/dev/null 2>&1 || { echo "chromium is required for the browser tests and could not be installed"; exit 1; }

## bench: hot-path benchmarks with allocation counts, then `cascade bench` (fanout) on a fresh build
bench: bench-micro build
	./$(BIN) bench --scenario fanout --viewers 50,100,200,400 --duration 10s --taskset-server 0 --taskset-bench 1

bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./media/ ./balancer/ ./node/

## bench-load: one real node, a 2.5 Mbit/s publisher, 25..200 pion viewers: CPU, loss, RSS
bench-load:
	$(GO) test -run '^$$' -bench ViewersCPU -benchtime 1x -count=1 -v ./cmd/cascade | grep -E '\||^(ok|FAIL)'

## fuzz: run every fuzz target for FUZZTIME each (default 20s)
FUZZTIME ?= 20s
fuzz:
	@for pkg in $(UNIT_PKGS); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "fuzz $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

## lint: gofmt and go vet
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin .e2e.log
