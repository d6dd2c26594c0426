#!/usr/bin/env bash
# Validation and planning of a large state document, side by side with the
# CUE command line on the same schema and data, in one run.
#
#   bash bench/validate-plan.sh [DOMAINS ACCOUNTS MAILINGS]   (default 50 200 100)
#
# Reports the median wall time of RUNS runs of each command and the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$HOME/go/bin:$PATH"

domains=${1:-50} accounts=${2:-200} mailings=${3:-100}
runs=${RUNS:-7}
cue_version=v0.16.1 # the CUE module version MailFountain embeds

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

go build -o "$work/mfapply" ./cmd/mfapply
go run ./bench/gendoc -domains "$domains" -accounts "$accounts" -mailings "$mailings" >"$work/big.yaml"
chmod 600 "$work/big.yaml"
if ! command -v cue >/dev/null || [ "$(cue version | awk 'NR==1{print $3}')" != "$cue_version" ]; then
	GOBIN="$work" go install "cuelang.org/go/cmd/cue@$cue_version"
	cue="$work/cue"
else
	cue=$(command -v cue)
fi
data="$work/data"

# median_ms CMD...: runs CMD $runs times, prints the median wall time in ms.
median_ms() {
	local times=() t0 t1
	for _ in $(seq "$runs"); do
		t0=$(date +%s%N)
		"$@" >/dev/null 2>&1 || { local rc=$?; [ "$rc" -eq 2 ] || { echo "command failed ($rc): $*" >&2; exit 1; }; }
		t1=$(date +%s%N)
		times+=($(((t1 - t0) / 1000000)))
	done
	printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'
}

lines=$(wc -l <"$work/big.yaml")
echo "document: $domains domains x $accounts accounts (3 aliases each), $mailings mailings; $lines lines, $(du -h "$work/big.yaml" | cut -f1)"
echo "runs: $runs (median); machine: $(nproc) cores"

cue_ms=$(median_ms "$cue" vet -c -d '#State' schema/mailfountain.cue "$work/big.yaml")
validate_ms=$(median_ms "$work/mfapply" --data "$data" validate -f "$work/big.yaml")
first_plan_ms=$(median_ms "$work/mfapply" --data "$data" plan -f "$work/big.yaml")
"$work/mfapply" --data "$data" apply -f "$work/big.yaml" --yes -m bench >/dev/null
insync_ms=$(median_ms "$work/mfapply" --data "$data" plan -f "$work/big.yaml")
# The plan alone: the in-sync plan's time less validation's, measured in-process.
noop_plan=$(go test -run '^$' -bench 'BenchmarkPlanNoop' -benchtime 5x ./reconcilers/accounts 2>/dev/null | awk '/BenchmarkPlanNoop/{printf "%.1f", $3/1e6}')

printf '\n%-44s %8s\n' "command" "ms"
printf '%-44s %8d\n' "cue vet (CUE $cue_version, schema only)" "$cue_ms"
printf '%-44s %8d\n' "mfapply validate (schema + rules)" "$validate_ms"
printf '%-44s %8d\n' "mfapply plan, empty store" "$first_plan_ms"
printf '%-44s %8d\n' "mfapply plan, store in sync (validate+plan)" "$insync_ms"
printf '%-44s %8s\n' "no-op plan alone (accounts reconciler)" "${noop_plan:-n/a}"
echo
awk -v c="$cue_ms" -v v="$validate_ms" -v p="$insync_ms" 'BEGIN{
	printf "mfapply validate / cue vet:        %.2f\n", v/c
	printf "mfapply plan (in sync) / cue vet:  %.2f\n", p/c
}'
