#!/usr/bin/env bash
# Authoritative DNS: queries per second, and per CPU-second of the server,
# of MailFountain's DNS server side by side with NSD and Knot in one run,
# all serving the same generated zone on loopback, measured by dnsperf.
#
#   bash bench/dns.sh          (as root; it installs dnsperf, nsd, knot if missing)
#
#   HOSTS        host names in the zone besides the manual's records (default 10000)
#   QUERIES      lines of the query file, which dnsperf goes round (default 200000)
#   DURATION     seconds of each measured run (default 20)
#   CLIENTS      dnsperf's clients (sockets) (default 8)
#   OUTSTANDING  dnsperf's queries in flight at most (default 200)
#   SWAPS        zone swaps during MailFountain's run (default 5)
#   ROUNDS       runs of each server, in turn (default 1); the figures of
#                each server's fastest run are the ones compared (a busy
#                machine slows a run, never speeds it up)
#   BENCH_SIDES  what to run (default "nsd knot mailfountain")
#
# Everything runs in a network namespace of its own (mfbench-dns-PID,
# deleted at the end), each server on port 53 of an address of its own
# (NSD 127.0.0.1, Knot 127.0.0.2, MailFountain 127.0.0.3); one server runs
# at a time, so that the servers do not share the CPUs with each other, only
# with dnsperf (one thread: dnsperf -T 1).
#   nsd           NSD, one server process (server-count: 1), response rate
#                 limiting off (rrl-ratelimit: 0), no database file;
#   knot          Knot, one UDP worker (udp-workers: 1), one TCP worker,
#                 one background worker; no module (so no RRL);
#   mailfountain  bench/dns/serve: the zone file loaded into a
#                 dnszone.Live and served by runtime/dnsd, the daemon's
#                 DNS server.
# During MailFountain's run, its zone is swapped SWAPS times, evenly spaced
# (SIGHUP: bench/dns/serve publishes the zone again with the next serial):
# each swap's time, from the Publish to the first answer with the new
# serial, is reported, and dnsperf's lost queries say whether a swap
# dropped any (the issue's target: under 50 ms for a 10,000-record zone,
# none dropped).
# Before its measured run, each server is checked to publish every record
# set of the zone (bench/dns/serve -check: dnszone.Check), and to answer
# NXDOMAIN and NODATA with the SOA in the authority section (dig); then a
# 3-second warm-up.
#
# The zone, mf-bench.test: the manual's records (SOA, NS, mail A and AAAA,
# MX, SPF, DKIM ed25519 and RSA-2048, DMARC, MTA-STS, www) and HOSTS hosts
# h0 … h{HOSTS-1} with an A record each. The query file, in a fixed
# pseudo-random order: 40% A of a host, 10% A of mail, 10% MX, 5% SPF (TXT
# of the apex), 5% DKIM (TXT of a selector, half of them RSA: 400-byte
# answers), 5% DMARC, 5% www A, 10% NXDOMAIN (A of a name that does not
# exist), 10% NODATA (AAAA of a host, TXT of mail). Queries carry EDNS0
# (dnsperf -e).
#
# Reported per server: queries per second (dnsperf's figure), the server's
# CPU seconds over the run (utime+stime from /proc/PID/stat of the server
# and every process under it, before and after), queries per CPU-second,
# the queries dnsperf lost, dnsperf's own CPU seconds; then the ratios of
# MailFountain to NSD and Knot. The summary goes to stdout and
# bench/out/dns.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH:/usr/sbin:/sbin"

hosts=${HOSTS:-10000}
queries=${QUERIES:-200000}
duration=${DURATION:-20}
clients=${CLIENTS:-8}
outstanding=${OUTSTANDING:-200}
swaps=${SWAPS:-5}
rounds=${ROUNDS:-1}
sides=${BENCH_SIDES:-nsd knot mailfountain}
origin=mf-bench.test.
out=bench/out/dns.txt

# ---- outside the namespace: tools, binaries, the zone, the namespace ----
if [[ -z ${MFBENCH_NS:-} ]]; then
	if [[ $(id -u) != 0 ]]; then
		echo "dns: run as root (a network namespace; servers on port 53)" >&2
		exit 1
	fi
	missing=()
	for t in dnsperf:dnsperf nsd:nsd knotd:knot dig:bind9-dnsutils ip:iproute2 openssl:openssl; do
		command -v "${t%%:*}" >/dev/null 2>&1 || missing+=("${t#*:}")
	done
	if ((${#missing[@]})); then
		echo "== installing ${missing[*]}" >&2
		# Debian's policy-rc.d, where there is one, keeps the packages'
		# own services from starting; the bench starts its own, in the
		# namespace, with configurations of its own.
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
	work=$(mktemp -d)
	chmod 755 "$work"
	ns=mfbench-dns-$$
	cleanup_ns() {
		local p
		for p in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$p" 2>/dev/null || true; done
		sleep 0.5
		for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
		ip netns del "$ns" 2>/dev/null || true
		rm -rf "$work"
	}
	trap cleanup_ns EXIT
	trap 'exit 130' INT TERM
	go build -o "$work/serve" ./bench/dns/serve

	# The zone. The DKIM keys are real keys' public halves, made here.
	ed=$(openssl genpkey -algorithm ed25519 2>/dev/null | openssl pkey -pubout -outform DER 2>/dev/null | tail -c 32 | base64 -w0)
	rsa=$(openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 2>/dev/null | openssl pkey -pubout -outform DER 2>/dev/null | base64 -w0)
	{
		echo "\$ORIGIN $origin"
		echo "\$TTL 28800"
		echo "@ 3600 IN SOA ns1 hostmaster 2026120401 3600 900 1209600 3600"
		echo "@ NS ns1"
		echo "ns1 10800 A 192.0.2.10"
		echo "mail 10800 A 192.0.2.10"
		echo "mail 10800 AAAA 2001:db8::10"
		echo "@ MX 10 mail"
		echo "@ TXT \"v=spf1 mx -all\""
		echo "mf202612e._domainkey TXT \"v=DKIM1; k=ed25519; p=$ed\""
		# TXT strings hold 255 bytes at most: the RSA key in two.
		echo "mf202612r._domainkey TXT \"v=DKIM1; k=rsa; p=${rsa:0:200}\" \"${rsa:200}\""
		echo "_dmarc TXT \"v=DMARC1; p=none\""
		echo "_mta-sts TXT \"v=STSv1; id=2026120401\""
		echo "www 10800 A 198.51.100.80"
		awk -v n="$hosts" 'BEGIN{for (i = 0; i < n; i++) printf "h%d 10800 A 10.%d.%d.%d\n", i, int(i/62500), int(i/250)%250, i%250+1}'
	} >"$work/zone.db"
	# The queries, the same file for every server.
	awk -v n="$queries" -v h="$hosts" -v o="${origin%.}" 'BEGIN{
		srand(11)
		for (i = 0; i < n; i++) {
			r = rand() * 100; x = int(rand() * h)
			if (r < 40) q = "h" x "." o " A"
			else if (r < 50) q = "mail." o " A"
			else if (r < 60) q = o " MX"
			else if (r < 65) q = o " TXT"
			else if (r < 70) q = (x % 2 ? "mf202612r" : "mf202612e") "._domainkey." o " TXT"
			else if (r < 75) q = "_dmarc." o " TXT"
			else if (r < 80) q = "www." o " A"
			else if (r < 90) q = "nx" x "." o " A"
			else q = (x % 2 ? "h" x "." o " AAAA" : "mail." o " TXT")
			print q
		}
	}' >"$work/queries.txt"

	ip netns add "$ns"
	ip -n "$ns" link set lo up
	rc=0
	MFBENCH_NS=$ns MFBENCH_WORK=$work ip netns exec "$ns" bash "$0" || rc=$?
	exit "$rc"
fi

# ---- inside the namespace ----
ns=$MFBENCH_NS
work=$MFBENCH_WORK
server_pid="" server_log=""
cleanup() {
	if [[ -n $server_pid ]]; then server_stop || true; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
	echo "dns: $1" >&2
	if [[ -n $server_log && -r $server_log ]]; then
		echo "the end of $server_log:" >&2
		tail -15 "$server_log" >&2
	fi
	exit 1
}

# tree_cpu PID: the CPU seconds of PID and its descendants, those alive and
# those reaped (a reaped child's time is in its parent's cutime, cstime).
tree_cpu() {
	{ cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="$1" '{
		pid = $1; sub(/^.*\) /, ""); ppid[pid] = $2; cpu[pid] = $12 + $13 + $14 + $15 }
		END { for (p in cpu) for (q = p; q > 1; q = ppid[q]) if (q == root) { t += cpu[p]; break }
			printf "%.2f\n", t / 100 }'
}
# busy: the CPU seconds all CPUs were busy since boot (not idle, iowait, steal).
busy() { awk 'NR==1{printf "%.2f\n", ($2 + $3 + $4 + $7 + $8) / 100}' /proc/stat; }

addr_of() {
	case $1 in
	nsd) echo 127.0.0.1 ;;
	knot) echo 127.0.0.2 ;;
	mailfountain) echo 127.0.0.3 ;;
	esac
}

# server_start SIDE: the server of SIDE on port 53 of its address, its pid
# in server_pid, once it answers.
server_start() {
	local side=$1 addr dir=$work/$1
	addr=$(addr_of "$side")
	mkdir -p "$dir"
	server_log=$dir/log
	case $side in
	nsd)
		cat >"$dir/nsd.conf" <<-EOF
			server:
			  ip-address: $addr@53
			  server-count: 1
			  rrl-ratelimit: 0
			  username: ""
			  chroot: ""
			  database: ""
			  zonesdir: "$work"
			  zonelistfile: "$dir/zone.list"
			  xfrdfile: "$dir/xfrd.state"
			  xfrdir: "$dir"
			  pidfile: "$dir/nsd.pid"
			  logfile: "$server_log"
			  verbosity: 1
			remote-control:
			  control-enable: no
			zone:
			  name: ${origin%.}
			  zonefile: "$work/zone.db"
		EOF
		server_cmd=(nsd -d -c "$dir/nsd.conf")
		;;
	knot)
		cat >"$dir/knot.conf" <<-EOF
			server:
			  rundir: "$dir"
			  listen: $addr@53
			  udp-workers: 1
			  tcp-workers: 1
			  background-workers: 1
			log:
			  - target: stderr
			    any: warning
			database:
			  storage: "$dir"
			zone:
			  - domain: ${origin%.}
			    storage: "$work"
			    file: "zone.db"
			    journal-content: none
			    zonefile-sync: -1
		EOF
		server_cmd=(knotd -c "$dir/knot.conf")
		;;
	mailfountain)
		server_cmd=("$work/serve" -zone "$work/zone.db" -origin "$origin" -listen "$addr:53")
		;;
	esac
	"${server_cmd[@]}" >>"$server_log" 2>&1 &
	server_pid=$!
	for _ in $(seq 200); do
		[[ $(dig +short +norec +time=1 +tries=1 @"$addr" "${origin}" SOA 2>/dev/null) == ns1.* ]] && return 0
		kill -0 "$server_pid" 2>/dev/null || fail "$side exited"
		sleep 0.1
	done
	fail "$side does not answer on $addr:53 after 20 s"
}

server_stop() {
	kill -TERM "$server_pid" 2>/dev/null || true
	for _ in $(seq 100); do
		kill -0 "$server_pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$server_pid" 2>/dev/null || true
	wait "$server_pid" 2>/dev/null || true
	server_pid=""
}

# verify SIDE: the server publishes every record set of the zone, and
# answers NXDOMAIN and NODATA with the zone's SOA in the authority section.
verify() {
	local side=$1 addr status
	addr=$(addr_of "$side")
	"$work/serve" -zone "$work/zone.db" -origin "$origin" -check "$addr:53" >"$work/$side/check.out" 2>&1 ||
		fail "$side does not publish the zone as its file says: $(head -5 "$work/$side/check.out")"
	awk '/record sets match/{print $1}' "$work/$side/check.out" >"$work/checked"
	for q in "nx1.${origin} A NXDOMAIN" "h1.${origin} AAAA NOERROR" "mail.${origin} TXT NOERROR"; do
		read -r name type want <<<"$q"
		status=$(dig +norec +time=2 +tries=1 @"$addr" "$name" "$type")
		grep -q "status: $want" <<<"$status" || fail "$side: $name $type: not $want: $(grep status: <<<"$status")"
		grep -q "ANSWER: 0, AUTHORITY: 1" <<<"$status" || fail "$side: $name $type: not the SOA alone in authority: $(grep -A1 'flags:' <<<"$status" | tr '\n' ' ')"
	done
}

# measure SIDE ROUND: one run; appends to $work/results the line
#   side qps server_cpu dnsperf_cpu busy_cpu sent completed lost noerror nxdomain elapsed round wall
# (elapsed: dnsperf's run time; wall: the time between the CPU readings,
# which includes dnsperf's wait for the answers of its last queries)
measure() {
	local side=$1 round=$2 addr cpu0 cpu1 b0 b1 perf_cmd t0 t1 w0 w1
	addr=$(addr_of "$side")
	server_start "$side"
	verify "$side"
	perf_cmd=(dnsperf -s "$addr" -p 53 -d "$work/queries.txt" -e -T 1 -c "$clients" -q "$outstanding")
	"${perf_cmd[@]}" -l 3 >/dev/null 2>&1 || fail "$side: the warm-up failed"
	echo "$side (round $round): ${perf_cmd[*]} -l $duration" >&2
	echo "${perf_cmd[*]} -l $duration" >"$work/cmd-$side"
	echo "${server_cmd[*]}" >"$work/server-$side"
	cpu0=$(tree_cpu "$server_pid") b0=$(busy) t0=$(tree_cpu $$) w0=$(date +%s.%N)
	"${perf_cmd[@]}" -l "$duration" >"$work/$side/dnsperf.out" 2>&1 &
	local perf_pid=$! i
	if [[ $side == mailfountain ]] && ((swaps > 0)); then
		for ((i = 1; i <= swaps; i++)); do
			sleep "$(awk -v d="$duration" -v n="$swaps" 'BEGIN{print d / (n + 1)}')"
			kill -HUP "$server_pid"
		done
	fi
	wait "$perf_pid" || fail "$side: dnsperf failed: $(tail -3 "$work/$side/dnsperf.out")"
	cpu1=$(tree_cpu "$server_pid") b1=$(busy) t1=$(tree_cpu $$) w1=$(date +%s.%N)
	kill -0 "$server_pid" 2>/dev/null || fail "$side exited during the run"
	server_stop
	awk -v side="$side" -v round="$round" -v c0="$cpu0" -v c1="$cpu1" -v b0="$b0" -v b1="$b1" -v t0="$t0" -v t1="$t1" -v w0="$w0" -v w1="$w1" '
		/Queries sent:/ { sent = $3 }
		/Queries completed:/ { done = $3 }
		/Queries lost:/ { lost = $3 }
		/Response codes:/ { for (i = 3; i <= NF; i++) { if ($i == "NOERROR") noerr = $(i+1); if ($i == "NXDOMAIN") nx = $(i+1) } }
		/Run time \(s\):/ { elapsed = $4 }
		/Queries per second:/ { qps = $4 }
		END { if (qps == "") exit 1
			# The script'"'"'s tree holds the server, too.
			printf "%s %.0f %.2f %.2f %.2f %d %d %d %d %d %.2f %d %.2f\n", side, qps, c1-c0, (t1-t0)-(c1-c0), b1-b0, sent, done, lost, noerr, nx, elapsed, round, w1-w0 }
	' "$work/$side/dnsperf.out" >>"$work/results" || fail "$side: no figures in dnsperf's output: $(cat "$work/$side/dnsperf.out")"
	tail -1 "$work/results" | awk '{printf "  %.0f queries/s; server %.2f CPU s: %.0f queries per CPU-second; lost %d; dnsperf %.2f CPU s\n", $2, $3, ($3 > 0 ? $7/$3 : 0), $8, $4}' >&2
}

for ((round = 1; round <= rounds; round++)); do
	for side in $sides; do
		case $side in
		nsd | knot | mailfountain) measure "$side" "$round" ;;
		*) fail "unknown side $side (nsd, knot, mailfountain)" ;;
		esac
	done
done

# Each server's fastest run.
[[ ! -s $work/results ]] || awk '!($1 in q) || $2 > q[$1] {q[$1] = $2; best[$1] = $0} END {for (s in best) print best[s]}' "$work/results" >"$work/best"
field() { awk -v s="$1" -v f="$2" '$1==s{print $f}' "$work/best" 2>/dev/null; }
per_cpu() { awk -v s="$1" '$1==s && $3 > 0 {printf "%.0f", $7/$3}' "$work/best" 2>/dev/null; }

mkdir -p bench/out
{
	echo "authoritative DNS: the zone ${origin} ($(grep -vc '^\$' "$work/zone.db") records: the manual's and $hosts hosts), $queries queries in a fixed mix"
	echo "(40% host A, 10% mail A, 10% MX, 5% SPF, 5% DKIM, 5% DMARC, 5% www A, 10% NXDOMAIN, 10% NODATA), EDNS0,"
	echo "dnsperf -T 1 -c $clients -q $outstanding for $duration s against each server in turn, $rounds round(s), in the network namespace $ns"
	echo "machine: $(nproc) CPUs ($(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)), Linux $(uname -r)"
	echo "$(nsd -v 2>&1 | head -1) (server-count: 1, rrl-ratelimit: 0); Knot $(knotd -V | awk '{print $NF}') (udp-workers: 1, background-workers: 1);"
	echo "$(dnsperf -h 2>&1 | awk '/^Version/{print "dnsperf " $2}'); mailfountain at $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo '+changes')"
	echo "server CPU: utime+stime of the server's processes over the run (/proc/PID/stat); rest: the machine's other busy CPU time (other processes, and the kernel's interrupt work, loopback's included)"
	echo
	if [[ -s $work/results ]]; then
		printf '%-13s %5s %10s %10s %14s %8s %10s %9s %9s %9s\n' server round queries/s server_cpu queries/cpu_s lost dnsperf_cpu rest_cpu noerror nxdomain
		# A star: the run of the server compared below.
		awk 'NR == FNR {best[$0] = 1; next} {printf "%-13s %4d%s %10.0f %10.2f %14.0f %8d %10.2f %9.2f %9d %9d\n", $1, $12, ($0 in best ? "*" : " "), $2, $3, ($3 > 0 ? $7/$3 : 0), $8, $4, $5-$3-$4, $9, $10}' "$work/best" "$work/results"
		echo
	fi
	n=$(field nsd 2) k=$(field knot 2) m=$(field mailfountain 2)
	nc=$(per_cpu nsd) kc=$(per_cpu knot) mc=$(per_cpu mailfountain)
	if [[ -n $n && -n $k ]]; then
		awk -v n="$n" -v k="$k" -v nc="$nc" -v kc="$kc" 'BEGIN{printf "knot/nsd: %.2f in queries/s, %.2f in queries per CPU-second\n", k/n, kc/nc}'
	fi
	if [[ -n $m ]]; then
		for peer in nsd knot; do
			p=$(field "$peer" 2) pc=$(per_cpu "$peer")
			[[ -n $p ]] || continue
			awk -v m="$m" -v p="$p" -v mc="$mc" -v pc="$pc" -v peer="$peer" 'BEGIN{printf "mailfountain/%s: %.2f in queries/s, %.2f in queries per CPU-second\n", peer, m/p, mc/pc}'
		done
		echo "target: at least NSD's, aiming at Knot's"
	else
		echo "mailfountain: not measured"
	fi
	# Other processes' share of the CPUs during each run, as a warning:
	# queries/s suffers from it, queries per CPU-second much less.
	[[ ! -s $work/results ]] || awk -v cpus="$(nproc)" '{other = $5-$3-$4; avail = cpus*$13
		if (avail > 0 && other > 0.1*avail) printf "warning: other processes used %.0f%% of the CPUs during the %s run (round %d): its queries/s understates what it does on a quiet machine\n", 100*other/avail, $1, $12 }' "$work/results"
	if grep -q '^swap' "$work/mailfountain/log" 2>/dev/null; then
		awk -v lost="$(awk '$1 == "mailfountain" {l += $8} END {print l + 0}' "$work/results")" '/^swap serial/ {gsub(/:/, ""); ms[++n] = $4} /^swap: / {bad++}
			END {printf "mailfountain: %d zone swaps during its runs, %d failed; from the Publish to the new serial answered:", n + bad, bad
				for (i = 1; i <= n; i++) printf " %s", ms[i]
				printf " ms; queries lost over its runs: %s (target: under 50 ms, none lost)\n", lost}' "$work/mailfountain/log"
	fi
	echo
	echo "every server checked first: each of the zone's $(cat "$work/checked" 2>/dev/null || echo '?') record sets published as its file says (bench/dns/serve -check),"
	echo "NXDOMAIN and NODATA with the SOA alone in the authority section (dig)"
	echo "commands:"
	for side in nsd knot mailfountain; do
		[[ -r $work/cmd-$side ]] || continue
		echo "  $side: $(sed "s|$work/|\$WORK/|g" "$work/cmd-$side")"
		echo "    server: $(sed "s|$work/|\$WORK/|g" "$work/server-$side")"
	done
	echo "rerun: HOSTS=$hosts QUERIES=$queries DURATION=$duration CLIENTS=$clients OUTSTANDING=$outstanding SWAPS=$swaps ROUNDS=$rounds BENCH_SIDES='$sides' bash bench/dns.sh"
} | tee "$out"
