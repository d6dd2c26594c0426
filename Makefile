# MailFountain: `make demo` runs the box, `make test` runs the whole suite.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
export PATH := /usr/local/go/bin:$(PATH)

GO ?= go

# Packages with goroutines of their own: their tests run under the race
# detector (which needs a C compiler: gcc below).
RACE_PKGS := ./schema/... ./runtime/... ./reconcilers/...

# Tools the suite needs beyond Go, as command:debian-package. `make deps`
# installs the missing ones (as root: apt-get update once, then install).
# Later issues add here: swaks:swaks nft:nftables ip:iproute2
# dnsmasq:dnsmasq chromium:chromium ...
TOOLS := gcc:gcc

DEMO_DATA := ./.demo-data
DEMO_STATE := examples/ma-societe.yaml

FUZZTIME ?= 10s

.PHONY: all demo test deps fmt-check vet unit race bench fuzz build clean

all: test

## demo: run the box on the example document, data in ./.demo-data, loopback only
# Built then exec'd rather than `go run`, so Ctrl-C ends with the daemon's
# own clean exit status instead of go run's 1.
demo:
	$(GO) build -o bin/mailfountaind ./cmd/mailfountaind
	exec bin/mailfountaind --data $(DEMO_DATA) -f $(DEMO_STATE)

## test: the whole suite: tools, gofmt, go vet, tests (race detector where there is concurrency; fuzz seeds included)
test: deps fmt-check vet unit race
	@echo "== all tests passed"

deps:
	@missing=(); \
	for t in $(TOOLS); do \
		command -v "$${t%%:*}" >/dev/null 2>&1 || missing+=("$${t#*:}"); \
	done; \
	if (( $${#missing[@]} )); then \
		if [[ $$(id -u) != 0 ]]; then \
			echo "make: missing tools: $${missing[*]}; run as root to install them (apt-get)" >&2; exit 1; \
		fi; \
		echo "== installing $${missing[*]}"; \
		apt-get update -qq; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$${missing[@]}" >/dev/null; \
	fi

fmt-check:
	@echo "== gofmt"
	@out=$$(gofmt -l .); \
	if [[ -n "$$out" ]]; then echo "gofmt: these files need formatting (gofmt -w):" >&2; echo "$$out" >&2; exit 1; fi

vet:
	@echo "== go vet"
	@$(GO) vet ./...

# Every package is tested once: those of RACE_PKGS by `race`, the others
# here. `go test` also runs every fuzz target on its seed corpus (f.Add and
# testdata/fuzz/): the fuzz seeds are ordinary tests.
unit:
	@echo "== go test (packages outside RACE_PKGS)"
	@race=$$($(GO) list $(RACE_PKGS)); all=$$($(GO) list ./...); \
	pkgs=$$(grep -vxF -f <(echo "$$race") <<<"$$all" || true); \
	if [[ -n "$$pkgs" ]]; then $(GO) test $$pkgs; fi

race:
	@echo "== go test -race ($(RACE_PKGS))"
	@$(GO) test -race $(RACE_PKGS)

## bench: validate and plan a large document, side by side with `cue vet`
bench:
	bash bench/validate-plan.sh

## fuzz: fuzz every target for FUZZTIME each (not part of `make test`)
fuzz:
	@for pkg in $$($(GO) list ./...); do \
		for f in $$($(GO) test -list '^Fuzz' "$$pkg" | grep '^Fuzz' || true); do \
			echo "== $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) "$$pkg"; \
		done; \
	done

build:
	$(GO) build -o bin/ ./cmd/...

clean:
	rm -rf bin $(DEMO_DATA)
