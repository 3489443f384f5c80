# Postern: two commands matter on a fresh machine — `make demo` and `make test`.
GO        ?= go
PKGS      := ./...
STATICCHECK_VERSION := v0.8.2
FUZZTIME  ?= 10s
SHORTFUZZ ?= 3s

.PHONY: all build test test-deps unit cases lint fmt demo fuzz bench deps-graph clean docs

all: build

build:
	$(GO) build -buildvcs=auto -o bin/postern ./cmd/postern

## test: install the system packages the tests need, lint, run every test
## under the race detector, then a short fuzz run of every fuzz target.
test: test-deps lint unit cases fuzz-short

test-deps:
	@bash scripts/install-test-deps.sh

unit:
	POSTERN_REQUIRE_PEERS=1 $(GO) test -race -count=1 $(PKGS)

## cases: every example's dry-run cases through the binary, as users run them
## (the secrets the example policies read from the environment are set to
## placeholders so no warning drowns the result).
cases: build
	@set -e; for d in examples/*; do [ -f $$d/cases.yaml ] || continue; \
		SMARTHOST_SECRET=x SMARTHOST_PASSWORD=x BRAND_A_RELAY_SECRET=x \
		./bin/postern test -c $$d/policy.yaml $$d/cases.yaml; done

fuzz-short:
	@FUZZTIME=$(SHORTFUZZ) bash scripts/fuzz.sh

fuzz:
	@FUZZTIME=$(FUZZTIME) bash scripts/fuzz.sh

lint: deps-graph
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) test -tags pprof -run TestPprofServer ./cmd/postern   # the profiling build (bench/README.md) works too
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKGS)

## deps-graph: imports flow one way (the graph is drawn in README.md and scripts/check-imports.sh).
deps-graph:
	@bash scripts/check-imports.sh

fmt:
	gofmt -w $$(git ls-files '*.go')

docs:
	$(GO) run ./internal/gendocs -out docs
	$(GO) run ./cmd/postern man > docs/postern.1

## demo: an offline dry-run of the quickstart policy (static zone file):
## direct MX, a local domain, a smarthost, a null-MX domain.
demo: build
	SMARTHOST_SECRET=demo-not-shown ./bin/postern check -c examples/quickstart/policy.yaml
	SMARTHOST_SECRET=demo-not-shown ./bin/postern dry-run -c examples/quickstart/policy.yaml --seed 1 \
		--from alice@example.org --to bob@example.com --to carol@example.org \
		--to dave@outlook.com --to info@parked.example

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

clean:
	rm -rf bin

## bench-e2e: end-to-end delivery benchmark on loopback: engine.Deliver vs
## smtp-source (the client ceiling) vs a throwaway Postfix, all into
## smtp-sink (bench/README.md, "End-to-end delivery"). Needs postfix; not
## part of `make test`. Flags: make bench-e2e E2EFLAGS="-n 2000 -runs 1"
.PHONY: bench-e2e
bench-e2e:
	$(GO) run ./bench/e2e $(E2EFLAGS)

## bench-tls: end-to-end STARTTLS delivery on loopback: engine (tls.starttls
## require) vs a throwaway Postfix (smtp_tls_security_level = encrypt), and
## both in plaintext, into the benchmark's own STARTTLS sink (bench/README.md,
## "End-to-end delivery", "STARTTLS"). Needs postfix; not part of
## `make test`. Flags: make bench-tls E2EFLAGS="-n 2000 -runs 1"
.PHONY: bench-tls
bench-tls:
	$(GO) run ./bench/e2e -tls $(E2EFLAGS)

## bench-diff: postern diff over a generated corpus of 100,000 envelopes on
## a static zone of 2,000 domains: envelopes per second and peak memory
## (bench/README.md, "Policy diff"). Not part of `make test`.
## Flags: make bench-diff DIFFFLAGS="-n 20000 -runs 1"
.PHONY: bench-diff
bench-diff:
	$(GO) run ./bench/diff $(DIFFFLAGS)

## bench-soak: the soak benchmark: 100,000 messages through engine.Deliver
## into three smtp-sinks with connection reuse, metrics and logging on; RSS,
## heap, goroutines and open fds sampled; then the cost of metrics+logging
## (alternating short runs). bench/README.md, "Soak". Needs postfix's
## smtp-sink; not part of `make test`.
## Flags: make bench-soak SOAKFLAGS="-n 20000" COMPAREFLAGS="-compare-runs 5"
.PHONY: bench-soak
bench-soak:
	$(GO) run ./bench/soak -metrics -log $(SOAKFLAGS)
	$(GO) run ./bench/soak -compare $(COMPAREFLAGS)

## bench-relay: `postern relay` against a throwaway Postfix: the same load
## (smtp-source) into smtp-sink, each queue on the same disk: intake and
## end-to-end msg/s, CPU per 1000 messages, peak memory, sync calls and
## block flushes per message; then the relay's memory with 100,000 messages
## queued (bench/README.md, "Relay"). Needs postfix and strace; not part of
## `make test`. Flags: make bench-relay RELAYFLAGS="-runs 3" QUEUEDFLAGS="-step 20000"
.PHONY: bench-relay
bench-relay: build
	$(GO) run ./bench/relay -postern bin/postern $(RELAYFLAGS)
	$(GO) run ./bench/relay -postern bin/postern -queued 100000 $(QUEUEDFLAGS)
