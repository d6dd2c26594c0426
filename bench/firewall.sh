#!/usr/bin/env bash
# The firewall: the time of the firewall reconciler's applies of the table
# inet mailfountain, side by side with `nft -f` loading the same ruleset,
# in one run; and the time of a no-op reconcile.
#
#   bash bench/firewall.sh          (as root; it installs nftables if missing)
#
#   SIZES   numbers of port forwards loaded from an empty table
#           (default "10,100,1000")
#   ROUNDS  rounds of each measurement (default 7); medians are compared
#   NOOPS   no-op reconciles timed (default 500)
#
# Everything runs in a network namespace of its own (mfbench-fw-PID,
# deleted at the end): the bench changes that namespace's ruleset only.
# bench/firewall/drive does the measuring (see its doc comment):
#   load N        a router document with N port forwards, from an empty
#                 table: MailFountain's Observe + Plan + Apply in process
#                 (one netlink batch), against `nft -f` of the same
#                 ruleset rendered as nft text by the reconciler (the table
#                 replaced in one transaction), timed from the process's
#                 start to its exit, as a script that loads rules pays it;
#                 the two in turn, each first every other round;
#   one forward   one forward more on top of the largest N: MailFountain's
#                 reconcile (one batch of the forward's 2 rules; checked),
#                 with its last observation still valid (the daemon's case:
#                 a reconcile since the last apply) and a new reconciler
#                 (a restart: the table listed, every forward rendered);
#                 against `nft -f` of the two `add rule` lines;
#   no-op         Observe + Plan of the largest N + 1, in sync: the
#                 generation read, nothing listed, nothing sent (checked:
#                 no batch).
# The issue's targets: loads within 1.2x of nft -f, one forward under
# 20 ms, a no-op under 5 ms with nothing sent. The summary goes to stdout
# and bench/out/firewall.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH:/usr/sbin:/sbin"

sizes=${SIZES:-10,100,1000}
rounds=${ROUNDS:-7}
noops=${NOOPS:-500}
out=bench/out/firewall.txt

if [[ $(id -u) != 0 ]]; then
	echo "firewall: run as root (a network namespace; nftables)" >&2
	exit 1
fi
if ! command -v nft >/dev/null 2>&1; then
	echo "== installing nftables" >&2
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nftables >/dev/null
fi
work=$(mktemp -d)
ns=mfbench-fw-$$
cleanup() {
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
go build -o "$work/drive" ./bench/firewall/drive
ip netns add "$ns"
mkdir -p bench/out
{
	echo "firewall: the table inet mailfountain, MailFountain's reconciler vs nft -f ($(nft --version)), $(nproc) CPUs, $(date -u +%Y-%m-%dT%H:%MZ)"
	echo "medians of $rounds rounds (min, max); in a network namespace of its own"
	ip netns exec "$ns" "$work/drive" -rounds "$rounds" -sizes "$sizes" -noops "$noops" -nft "$(command -v nft)"
	echo "rerun: SIZES=$sizes ROUNDS=$rounds NOOPS=$noops bash bench/firewall.sh"
} | tee "$out"
