# MailFountain: `make demo` runs the box, `make test` runs the whole suite.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
export PATH := /usr/local/go/bin:$(PATH)

GO ?= go

# Packages with goroutines of their own: their tests run under the race
# detector (which needs a C compiler: gcc below).
RACE_PKGS := ./schema/... ./runtime/... ./reconcilers/...

# Dependencies kept here with a patch of ours, each a module of its own
# (see its README.md): vetted and tested, under the race detector, too, and
# checked to be the upstream version of go.mod plus the files of patches/.
PATCHED_MODS := runtime/smtpd/go-smtp runtime/imapd/go-imap

# Tools the suite needs beyond Go, as command:debian-packages (comma
# separated). `make deps` installs the missing ones (as root: apt-get update
# once, then install). swaks needs Net::SSLeay and IO::Socket::SSL for TLS,
# which Debian only recommends. git applies the patched modules' patches.
# Later issues add here: nft:nftables dnsmasq:dnsmasq
# chromium:chromium ...
TOOLS := gcc:gcc python3:python3 swaks:swaks,libnet-ssleay-perl,libio-socket-ssl-perl \
	fetchmail:fetchmail openssl:openssl s-nail:s-nail mbsync:isync curl:curl git:git srs:srs \
	smtp-sink:postfix dig:bind9-dnsutils ip:iproute2 \
	nft:nftables dnsmasq:dnsmasq-base pppoe-server:pppoe pppd:ppp dhclient:isc-dhcp-client \
	udhcpc:udhcpc busybox:busybox

# Python modules the tests import from Debian's python3 (/usr/bin/python3,
# not a python3 of a user's own), as module:debian-packages: independent
# implementations that ours must agree with.
PYMODS := SRS:python3-srs dkim:python3-dkim nacl:python3-nacl

DEMO_DATA := ./.demo-data
DEMO_STATE := examples/ma-societe.yaml
# The demo's servers, on loopback high ports: a box takes the standard ones.
DEMO_LISTEN := --smtp 127.0.0.1:2525 --submission 127.0.0.1:2587 --submissions 127.0.0.1:2465 \
	--pop3 127.0.0.1:2110 --pop3s 127.0.0.1:2995 --imap 127.0.0.1:2143 --imaps 127.0.0.1:2993 \
	--dns 127.0.0.1:2053
# The demo sends nothing off the machine: its DNS server is a closed port
# of loopback, so mail to other domains waits in its queue.
DEMO_OUTBOUND := --resolver 127.0.0.1:1

FUZZTIME ?= 10s

.PHONY: all demo test deps fmt-check vet patched-check patches-refresh unit race bench bench-validate bench-edit bench-inbound bench-outbound bench-dns bench-firewall fuzz build clean

all: test

## demo: run the box on the example document, data in ./.demo-data, loopback only
# Built then exec'd rather than `go run`, so Ctrl-C ends with the daemon's
# own clean exit status instead of go run's 1.
demo:
	$(GO) build -o bin/mailfountaind ./cmd/mailfountaind
	@echo "== MailFountain demo, data in $(DEMO_DATA), state $(DEMO_STATE)"
	@echo "   SMTP (MX)   127.0.0.1:2525    submission 127.0.0.1:2587 (STARTTLS), 127.0.0.1:2465 (TLS)"
	@echo "   POP3        127.0.0.1:2110 (STLS), 127.0.0.1:2995 (TLS)"
	@echo "   IMAP        127.0.0.1:2143 (STARTTLS), 127.0.0.1:2993 (TLS)"
	@echo "   DNS         127.0.0.1:2053 (UDP and TCP): dig @127.0.0.1 -p 2053 ma-societe.fr MX"
	@echo "   log in with the full address, e.g. rene.ricard@ma-societe.fr / rene-demo"
	exec bin/mailfountaind --data $(DEMO_DATA) -f $(DEMO_STATE) $(DEMO_LISTEN) $(DEMO_OUTBOUND)

## test: the whole suite: tools, gofmt, go vet, tests (race detector where there is concurrency; fuzz seeds included)
test: deps fmt-check vet patched-check unit race
	@echo "== all tests passed"

deps:
	@missing=(); \
	for t in $(TOOLS); do \
		command -v "$${t%%:*}" >/dev/null 2>&1 || { p="$${t#*:}"; missing+=($${p//,/ }); }; \
	done; \
	perl -MNet::SSLeay -MIO::Socket::SSL -e1 2>/dev/null || missing+=(libnet-ssleay-perl libio-socket-ssl-perl); \
	for m in $(PYMODS); do \
		/usr/bin/python3 -c "import $${m%%:*}" 2>/dev/null || { p="$${m#*:}"; missing+=($${p//,/ }); }; \
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
	@for m in $(PATCHED_MODS); do (cd "$$m" && $(GO) vet ./...); done

# Each patched module is its upstream version (go mod download) plus its
# patches/, byte for byte.
patched-check:
	@echo "== patched modules: upstream plus patches/"
	@bash tests/patched-modules.sh check $(PATCHED_MODS)

## patches-refresh: MOD=runtime/smtpd/go-smtp PATCH=0004 folds the edits of MOD's tree into that patch file
patches-refresh:
	@[[ -n "$(MOD)" && -n "$(PATCH)" ]] || { echo "usage: make patches-refresh MOD=<module dir> PATCH=<NNNN>" >&2; exit 1; }
	bash tests/patched-modules.sh refresh $(MOD) $(PATCH)

# Every package is tested once: those of RACE_PKGS by `race`, the others
# here. `go test` also runs every fuzz target on its seed corpus (f.Add and
# testdata/fuzz/): the fuzz seeds are ordinary tests.
unit:
	@echo "== go test (packages outside RACE_PKGS)"
	@race=$$($(GO) list $(RACE_PKGS)); all=$$($(GO) list ./...); \
	pkgs=$$(grep -vxF -f <(echo "$$race") <<<"$$all" || true); \
	if [[ -n "$$pkgs" ]]; then $(GO) test $$pkgs; fi

race:
	@echo "== go test -race ($(RACE_PKGS) $(PATCHED_MODS))"
	@$(GO) test -race $(RACE_PKGS)
	@for m in $(PATCHED_MODS); do (cd "$$m" && $(GO) test -race ./...); done

## bench: every benchmark, each side by side with its peer (not part of `make test`)
bench: bench-validate bench-edit bench-inbound bench-outbound bench-dns bench-firewall

## bench-validate: validate and plan a large document, side by side with `cue vet`
bench-validate:
	bash bench/validate-plan.sh

## bench-edit: an edit of one account in a large document, from the file's save to "state applied" in mailfountaind (BENCH_BASE=REV: that revision too)
bench-edit:
	bash bench/edit-apply.sh

## bench-inbound: SMTP in, 10 KB messages, 50 clients, fsync'd, side by side with Postfix (as root)
bench-inbound:
	bash bench/inbound.sh

## bench-outbound: SMTP out, 100,000 10 KB messages to 1,000 domains relayed into one sink, side by side with Postfix, and the queue's memory (as root; COUNT, DOMAINS, SIZE override)
bench-outbound:
	bash bench/outbound.sh

## bench-dns: authoritative DNS, a 10,000-host zone, queries/s and queries per CPU-second with dnsperf, side by side with NSD and Knot (as root; HOSTS, DURATION override)
bench-dns:
	bash bench/dns.sh

## bench-firewall: the firewall reconciler's applies of 10, 100 and 1,000 port forwards, one forward more, a no-op, side by side with nft -f (as root; SIZES, ROUNDS override)
bench-firewall:
	bash bench/firewall.sh

## fuzz: fuzz every target for FUZZTIME each (not part of `make test`)
fuzz:
	@for dir in . $(PATCHED_MODS); do \
		for pkg in $$(cd "$$dir" && $(GO) list ./...); do \
			for f in $$(cd "$$dir" && $(GO) test -list '^Fuzz' "$$pkg" | grep '^Fuzz' || true); do \
				echo "== $$pkg $$f"; \
				(cd "$$dir" && $(GO) test -run '^$$' -fuzz "^$$f\$$" -fuzztime $(FUZZTIME) "$$pkg"); \
			done; \
		done; \
	done

build:
	$(GO) build -o bin/ ./cmd/...

clean:
	rm -rf bin $(DEMO_DATA)
