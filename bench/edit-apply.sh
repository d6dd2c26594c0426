#!/usr/bin/env bash
# An edit of one account's name in a large state document, from the save of
# the file until the real mailfountaind logs "state applied", saved the way
# editors save: a new file renamed over the old one, and the file truncated
# and written in place.
#
#   bash bench/edit-apply.sh [DOMAINS ACCOUNTS MAILINGS]   (default 50 200 100)
#
#   BENCH_EDITS   edits per way of saving (default 30)
#   BENCH_BASE    a git revision to measure too, side by side (e.g. main)
#
# Each side runs its own mailfountaind on a fresh data directory with no
# mail server listening and no resync; the first apply (the whole document)
# is not counted. The driver (bench/editapply) waits for each edit to be
# applied, then 200 ms, before the next. It prints p50, p90, min and max in
# milliseconds. `make bench-validate` measures `mfapply plan` on the same
# document.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH"

domains=${1:-50} accounts=${2:-200} mailings=${3:-100}
edits=${BENCH_EDITS:-30}
base=${BENCH_BASE:-}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

go build -o "$work/editapply" ./bench/editapply
go build -o "$work/mailfountaind" ./cmd/mailfountaind
go run ./bench/gendoc -domains "$domains" -accounts "$accounts" -mailings "$mailings" >"$work/big.yaml"
sides=(this)
if [[ -n $base ]]; then
	mkdir "$work/base"
	git archive "$base" | tar -x -C "$work/base"
	(cd "$work/base" && go build -o "$work/mailfountaind-base" ./cmd/mailfountaind)
	sides=(base this)
fi

lines=$(wc -l <"$work/big.yaml")
echo "document: $domains domains x $accounts accounts (3 aliases each), $mailings mailings; $lines lines, $(du -h "$work/big.yaml" | cut -f1)"
echo "edits: $edits per way of saving; machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
for side in "${sides[@]}"; do
	bin=$work/mailfountaind label="this tree ($(git rev-parse --short HEAD)$(git diff --quiet HEAD || echo ', modified'))"
	if [[ $side == base ]]; then
		bin=$work/mailfountaind-base label="$base ($(git rev-parse --short "$base"))"
	fi
	echo
	echo "== $label"
	"$work/editapply" -daemon "$bin" -doc "$work/big.yaml" -edits "$edits" -log "$work/$side.log"
done
