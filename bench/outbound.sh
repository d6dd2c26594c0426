#!/usr/bin/env bash
# Outbound SMTP: messages per second relayed to 1,000 outside domains,
# MailFountain side by side with Postfix in one run, both fed by the same
# injector and delivering to the same sink, plus MailFountain's memory with
# 10,000 and 100,000 messages queued.
#
#   bash bench/outbound.sh          (as root; it installs postfix if missing)
#
#   COUNT        messages of each run (default 100000)
#   DOMAINS      recipient domains, round-robin (default 1000)
#   SIZE         body bytes of each message (default 10240)
#   CONNS        the injector's parallel connections (default 50)
#   QUEUED       queue sizes at which MailFountain's memory is read
#                (default "10000 100000")
#   BENCH_SIDES  what to run (default "ceiling postfix mailfountain nodkim queued")
#
# Everything runs in a network namespace of its own (mfbench-PID, deleted
# at the end), so that the sink may listen on port 25 of every loopback
# address without touching the host's network: domain i (dom<i>.bench) has
# the MX mx.dom<i>.bench at 127.1.(i/250).(i%250+1), a destination of its
# own for each relay, all served by the one sink (bench/outbound/drive sink).
# The bench's DNS server (drive dns) answers on 127.0.0.1:53 of the
# namespace, which is its resolv.conf (/etc/netns/NAME/resolv.conf): Postfix
# looks the MX up through it as MailFountain does through --resolver, one MX
# and one A lookup a delivery, on both sides.
#
# Runs, in that order, each with a fresh sink that counts the messages by
# the number the injector gave them and checks that none comes twice:
#   ceiling       the injector straight into the sink: the rate the rest of
#                 the bench can measure at most;
#   postfix       the injector into a private Postfix (bench/outbound/
#                 postfix-*.cf: delivery at Postfix's defaults) relaying to
#                 the sink;
#   mailfountain  the injector into mailfountaind's submission port (AUTH
#                 PLAIN without TLS from loopback: legacy_plain_auth),
#                 smtp.mode direct, --resolver the bench's DNS server,
#                 --remote-port 25 (the sink);
#   nodkim        the mailfountain run with the domain's DKIM keys removed
#                 after the apply (and --resync 0, so that the mail
#                 reconciler does not make them again): the same work as
#                 Postfix, which signs nothing here; mailfountain signs
#                 every message twice (ed25519 and RSA-2048);
#   queued        mailfountaind with --remote-port where nothing listens, so
#                 that every delivery is deferred: its VmHWM (peak) and VmRSS
#                 once QUEUED messages are queued.
# The rate is COUNT / (the injector's first message .. the sink's last
# message), so a relay's whole queue is counted; accepted/s is COUNT / the
# injector's own time. The summary goes to stdout and bench/out/outbound.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH:/usr/sbin:/sbin"

count=${COUNT:-100000}
domains=${DOMAINS:-1000}
size=${SIZE:-10240}
conns=${CONNS:-50}
queued=${QUEUED:-10000 100000}
sides=${BENCH_SIDES:-ceiling postfix mailfountain nodkim queued}
out=bench/out/outbound.txt
user=bench@mf-bench.test
pass=bench-password
# The port of the remote MX hosts: the sink's; nothing listens on dead_port.
sink_port=25
dead_port=26
# Ports of the relays in the namespace.
pf_port=2525
mf_port=2587

# ---- outside the namespace: tools, binaries, the namespace itself ----
if [[ -z ${MFBENCH_NS:-} ]]; then
	if [[ $(id -u) != 0 ]]; then
		echo "outbound: run as root (a network namespace; Postfix's daemons switch to the postfix user)" >&2
		exit 1
	fi
	missing=()
	for t in postfix:postfix ip:iproute2; do
		command -v "${t%%:*}" >/dev/null 2>&1 || missing+=("${t#*:}")
	done
	if ((${#missing[@]})); then
		echo "== installing ${missing[*]}" >&2
		# "No configuration": installing neither configures nor starts
		# the host's own Postfix.
		echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
		apt-get update -qq
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	fi
	work=$(mktemp -d)
	chmod 755 "$work" # Postfix's daemons walk through it
	# Each run's directory in a block group of its own: Postfix's deleted
	# queue files do not slow the next run (see bench/inbound.sh).
	chattr +T "$work" 2>/dev/null || true
	ns=mfbench-$$
	cleanup_ns() {
		# Whatever the inner script left running in the namespace (it
		# stops its own processes; this is for an interrupted run).
		local p
		for p in $(ip netns pids "$ns" 2>/dev/null); do kill -TERM "$p" 2>/dev/null || true; done
		sleep 0.5
		for p in $(ip netns pids "$ns" 2>/dev/null); do kill -KILL "$p" 2>/dev/null || true; done
		ip netns del "$ns" 2>/dev/null || true
		rm -rf "/etc/netns/$ns"
		rmdir /etc/netns 2>/dev/null || true
		rm -rf "$work"
	}
	trap cleanup_ns EXIT
	trap 'exit 130' INT TERM
	go build -o "$work/drive" ./bench/outbound/drive
	go build -o "$work/mailfountaind" ./cmd/mailfountaind
	go run ./cmd/mfapply validate -f bench/outbound/state.yaml >/dev/null
	ip netns add "$ns"
	ip -n "$ns" link set lo up
	mkdir -p "/etc/netns/$ns"
	echo "nameserver 127.0.0.1" >"/etc/netns/$ns/resolv.conf"
	rc=0
	MFBENCH_NS=$ns MFBENCH_WORK=$work ip netns exec "$ns" bash "$0" || rc=$?
	exit "$rc"
fi

# ---- inside the namespace ----
ns=$MFBENCH_NS
work=$MFBENCH_WORK
drive=$work/drive
mfd=$work/mailfountaind
dns_pid="" sink_pid="" pf_dir="" mf_pid=""
cleanup() {
	if [[ -n $pf_dir ]]; then postfix_stop "$pf_dir" || true; fi
	if [[ -n $mf_pid ]]; then mf_stop || true; fi
	if [[ -n $sink_pid ]]; then kill "$sink_pid" 2>/dev/null || true; fi
	if [[ -n $dns_pid ]]; then kill "$dns_pid" 2>/dev/null || true; fi
	wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fail() {
	echo "outbound: $1" >&2
	if [[ -n ${server_log:-} && -r $server_log ]]; then
		echo "the end of $server_log:" >&2
		tail -15 "$server_log" >&2
	fi
	exit 1
}

"$drive" dns -listen 127.0.0.1:53 -domains "$domains" 2>"$work/dns.err" &
dns_pid=$!
for _ in $(seq 100); do
	"$drive" dnsstats >/dev/null 2>&1 && break
	sleep 0.05
done
# The namespace's resolver is the bench's: what Postfix's smtp(8) will ask.
if [[ $(getent hosts mx.dom0.bench | awk 'NR==1{print $1}') != 127.1.0.1 ]]; then
	fail "the namespace's resolver does not answer for mx.dom0.bench (/etc/netns/$ns/resolv.conf)"
fi

# cpu_of PID: the CPU seconds of a live process (utime + stime).
cpu_of() { awk '{sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / 100}' "/proc/$1/stat"; }
# tree_cpu PID: the CPU seconds of PID and its descendants, those alive and
# those reaped (a reaped child's time is in its parent's cutime, cstime).
tree_cpu() {
	# cat fails on the processes that ended since the glob: no matter.
	{ cat /proc/[0-9]*/stat 2>/dev/null || true; } | awk -v root="$1" '{
		pid = $1; sub(/^.*\) /, ""); ppid[pid] = $2; cpu[pid] = $12 + $13 + $14 + $15 }
		END { for (p in cpu) for (q = p; q > 1; q = ppid[q]) if (q == root) { t += cpu[p]; break }
			printf "%.2f\n", t / 100 }'
}
# busy: the CPU seconds all CPUs were busy since boot (not idle, iowait, steal).
busy() { awk 'NR==1{printf "%.2f\n", ($2 + $3 + $4 + $7 + $8) / 100}' /proc/stat; }

sink_start() { # sink_start N: a fresh sink on port 25 of every address, waiting for N messages
	"$drive" sink -listen ":$sink_port" -expect "$1" -timeout "$((120 + $1 / 20))s" >"$work/sink.out" 2>"$work/sink.err" &
	sink_pid=$!
	for _ in $(seq 200); do
		grep -q listening "$work/sink.err" 2>/dev/null && return 0
		sleep 0.05
	done
	fail "the sink did not start: $(cat "$work/sink.err")"
}

# postfix_start DIR: a private Postfix relay under DIR, SMTP on 127.0.0.1:pf_port.
postfix_start() {
	local dir=$1
	mkdir -p "$dir/etc" "$dir/queue" "$dir/lib"
	sed -e "s|@DIR@|$dir|g" bench/outbound/postfix-main.cf >"$dir/etc/main.cf"
	sed -e "s|@PORT@|$pf_port|g" bench/outbound/postfix-master.cf >"$dir/etc/master.cf"
	chown postfix: "$dir/lib"
	pf_dir=$dir
	postfix -c "$dir/etc" start >/dev/null 2>&1 || fail "postfix did not start"
}

postfix_stop() {
	local dir=$1 pid=""
	[[ -r $dir/queue/pid/master.pid ]] && pid=$(tr -d ' \n' <"$dir/queue/pid/master.pid")
	postfix -c "$dir/etc" stop >/dev/null 2>&1 || true
	for _ in $(seq 100); do
		[[ -z $pid ]] || ! kill -0 "$pid" 2>/dev/null && break
		sleep 0.1
	done
	pf_dir=""
}

# mf_start DIR REMOTE_PORT [ARGS...]: mailfountaind with its data under
# DIR, submission on 127.0.0.1:mf_port and nothing else, and ARGS; waits
# for its state.
mf_start() {
	local dir=$1 remote=$2
	shift 2
	mkdir -p "$dir"
	install -m 600 bench/outbound/state.yaml "$dir/state.yaml"
	mf_cmd=("$mfd" --data "$dir/data" -f "$dir/state.yaml" --submission "127.0.0.1:$mf_port"
		--smtp off --submissions off --pop3 off --pop3s off --imap off --imaps off --dns off
		--resolver 127.0.0.1:53 --remote-port "$remote" "$@")
	server_log=$dir/mailfountaind.log
	"${mf_cmd[@]}" >"$server_log" 2>&1 &
	mf_pid=$!
	for _ in $(seq 600); do
		grep -q 'state applied' "$server_log" && return 0
		kill -0 "$mf_pid" 2>/dev/null || fail "mailfountaind exited"
		sleep 0.1
	done
	fail "mailfountaind did not apply its state within 60 s"
}

# mf_stop: SIGTERM, then SIGKILL (and failure) after 60 s.
mf_stop() {
	kill -TERM "$mf_pid" 2>/dev/null || true
	local rc=0
	for _ in $(seq 600); do
		# A zombie (exited, not yet waited for) has State Z.
		grep -qs '^State:[[:space:]]*[^Z]' "/proc/$mf_pid/status" || break
		sleep 0.1
	done
	if grep -qs '^State:[[:space:]]*[^Z]' "/proc/$mf_pid/status"; then
		echo "outbound: mailfountaind did not stop within 60 s of SIGTERM: killed" >&2
		kill -KILL "$mf_pid" 2>/dev/null || true
		rc=1
	fi
	wait "$mf_pid" || rc=$?
	mf_pid=""
	return "$rc"
}

# inject_cmd SIDE: the injector's command line for a run of SIDE.
inject_cmd() {
	local args=(-count "$count" -conns "$conns" -domains "$domains" -size "$size" -from "$user" -wait 30s)
	case $1 in
	ceiling) echo "$drive" inject -addr "127.1.0.1:$sink_port" "${args[@]}" ;;
	postfix) echo "$drive" inject -addr "127.0.0.1:$pf_port" "${args[@]}" ;;
	mailfountain | nodkim) echo "$drive" inject -addr "127.0.0.1:$mf_port" -user "$user" -pass "$pass" "${args[@]}" ;;
	esac
}

# measure SIDE: one run; appends to $work/results the line
#   side elapsed_s inject_s inject_cpu sink_cpu dns_cpu busy_cpu dns_mx dns_a dns_other conns max_parallel addresses min_bytes max_bytes relay_cpu peak_rss_kb
measure() {
	local side=$1 dir=$work/$1 relay_pid="" cmd inj sink dns0 dns1 busy0 busy1 dnscpu0 dnscpu1 relay_cpu=- rss=-
	mkdir -p "$dir"
	server_log=""
	sink_start "$count"
	case $side in
	postfix)
		postfix_start "$dir"
		server_log=$dir/maillog
		relay_pid=$(tr -d ' \n' <"$dir/queue/pid/master.pid")
		;;
	mailfountain)
		mf_start "$dir" "$sink_port"
		relay_pid=$mf_pid
		;;
	nodkim)
		mf_start "$dir" "$sink_port" --resync 0
		rm -r "$dir/data/dkim/mf-bench.test"
		relay_pid=$mf_pid
		;;
	esac
	read -ra cmd <<<"$(inject_cmd "$side")"
	echo "${cmd[*]}" >"$work/cmd-$side"
	echo "$side: $count messages: ${cmd[*]}" >&2
	read -r dns0 < <("$drive" dnsstats | tr ' ' ,)
	busy0=$(busy) dnscpu0=$(cpu_of "$dns_pid")
	if [[ -n $relay_pid ]]; then relay_cpu=$(tree_cpu "$relay_pid"); fi
	inj=$("${cmd[@]}") || fail "$side: the injection failed"
	local rc=0
	wait "$sink_pid" || rc=$?
	sink_pid=""
	sink=$(cat "$work/sink.out")
	((rc == 0)) || fail "$side: the sink did not receive every message: $sink $(cat "$work/sink.err")"
	busy1=$(busy) dnscpu1=$(cpu_of "$dns_pid")
	read -r dns1 < <("$drive" dnsstats | tr ' ' ,)
	if [[ -n $relay_pid ]]; then
		relay_cpu=$(awk -v a="$relay_cpu" -v b="$(tree_cpu "$relay_pid")" 'BEGIN{printf "%.2f", b-a}')
		if [[ $side == mailfountain || $side == nodkim ]]; then rss=$(awk '/^VmHWM:/{print $2}' "/proc/$relay_pid/status"); fi
	fi
	case $side in
	postfix)
		echo "postfix -c $dir/etc start   (bench/outbound/postfix-main.cf, smtpd on 127.0.0.1:$pf_port)" >"$work/server-$side"
		postfix_stop "$dir"
		if grep -Eq 'status=(deferred|bounced)|fatal:|panic:' "$server_log"; then
			fail "postfix logged problems: $(grep -Em3 'status=(deferred|bounced)|fatal:|panic:' "$server_log")"
		fi
		;;
	mailfountain | nodkim)
		echo "${mf_cmd[*]}" >"$work/server-$side"
		mf_stop || fail "mailfountaind exited with an error"
		if grep -q 'level=ERROR' "$server_log"; then
			fail "mailfountaind logged errors: $(grep -m3 'level=ERROR' "$server_log")"
		fi
		;;
	esac
	# inj: start_ns end_ns sent cpu; sink: first_ns last_ns distinct dups rcpts unnumbered conns max_parallel addrs min max cpu
	local line
	line=$(awk -v side="$side" -v inj="$inj" -v sink="$sink" -v d0="$dns0" -v d1="$dns1" \
		-v b0="$busy0" -v b1="$busy1" -v c0="$dnscpu0" -v c1="$dnscpu1" -v n="$count" \
		-v rcpu="$relay_cpu" -v rss="$rss" 'BEGIN{
		split(inj, i, " "); split(sink, s, " "); split(d0, x, ","); split(d1, y, ",")
		if (i[3] != n || s[3] != n || s[4] != 0 || s[6] != 0) { print "bad"; exit }
		printf "%s %.3f %.3f %.2f %.2f %.2f %.2f %d %d %d %d %d %d %d %d %s %s\n", side,
			(s[2]-i[1])/1e9, (i[2]-i[1])/1e9, i[4], s[12], c1-c0, b1-b0,
			y[1]-x[1], y[2]-x[2], y[3]-x[3], s[7], s[8], s[9], s[10], s[11], rcpu, rss
	}')
	[[ $line != bad ]] || fail "$side: injected ($inj) and received ($sink) do not match: every message once"
	echo "$line" >>"$work/results"
	awk -v n="$count" '{printf "  %.1f s: %.0f msg/s delivered (injection done after %.1f s: %.0f msg/s accepted); %d connections to the sink, %d at most at once, to %d addresses; DNS: %d MX, %d A, %d other\n", $2, n/$2, $3, n/$3, $11, $12, $13, $8, $9, $10}' <<<"$line" >&2
}

# measure_queued: MailFountain's memory with QUEUED messages queued, every
# delivery deferred (nothing listens on dead_port).
measure_queued() {
	local dir=$work/queued sent=0 target warm=100 cmd
	mf_start "$dir" "$dead_port"
	local base=("$drive" inject -addr "127.0.0.1:$mf_port" -user "$user" -pass "$pass" -conns "$conns"
		-domains "$domains" -size "$size" -from "$user" -wait 30s)
	# A warm-up, so that the login's password hash (argon2id, 64 MiB) is
	# checked and cached before the peak is reset: the peak is the queue's.
	"${base[@]}" -count "$warm" -first 0 >/dev/null || fail "queued: the warm-up failed"
	sent=$warm
	echo 5 >"/proc/$mf_pid/clear_refs" # VmHWM := VmRSS
	{
		echo "0 $(awk '/^VmHWM:/{h=$2} /^VmRSS:/{r=$2} END{print h, r}' "/proc/$mf_pid/status") $( (du -sk "$dir/data" 2>/dev/null || echo 0) | cut -f1)"
	} >"$work/queued.txt"
	for target in $queued; do
		((target > sent - warm)) || continue
		cmd=("${base[@]}" -count "$((target - (sent - warm)))" -first "$sent")
		echo "queued: up to $target: ${cmd[*]}" >&2
		"${cmd[@]}" >/dev/null || fail "queued: the injection up to $target failed"
		sent=$((warm + target))
		sleep 2 # what the daemon does right after its 250s (first delivery attempts) shows too
		echo "$target $(awk '/^VmHWM:/{h=$2} /^VmRSS:/{r=$2} END{print h, r}' "/proc/$mf_pid/status") $( (du -sk "$dir/data" 2>/dev/null || echo 0) | cut -f1)" >>"$work/queued.txt"
	done
	echo "${mf_cmd[*]}" >"$work/server-queued"
	echo "${base[*]} -count N -first M" >"$work/cmd-queued"
	mf_stop || fail "mailfountaind exited with an error"
}

for side in $sides; do
	case $side in
	ceiling | postfix) measure "$side" ;;
	mailfountain | nodkim) measure "$side" ;;
	queued) measure_queued ;;
	*) fail "unknown side $side (ceiling, postfix, mailfountain, nodkim, queued)" ;;
	esac
done

rate() { awk -v s="$1" -v n="$count" '$1==s{printf "%.0f", n/$2}' "$work/results" 2>/dev/null; }

mkdir -p bench/out
{
	echo "outbound SMTP: $count messages of $size body bytes to $domains domains (one MX address each), injected over $conns connections,"
	echo "relayed to one sink on port $sink_port of every 127.1.x.y address, in the network namespace $ns"
	echo "machine: $(nproc) CPUs ($(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)), Linux $(uname -r), data on $(df -T "$work" | awk 'NR==2{print $2" ("$1")"}')"
	echo "postfix $(postconf -d -h mail_version) (bench/outbound/postfix-main.cf: delivery at its defaults); mailfountaind at $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo '+changes')"
	echo "delivered/s = messages / (injector's first message .. sink's last message); accepted/s = messages / injector's own time;"
	echo "CPU seconds meanwhile: the injector's, the sink's, the DNS server's, the relay's (Postfix's master and its daemons;"
	echo "mailfountaind), and the rest of the machine's busy time (anything else running: it skews the rates); rss: mailfountaind's VmHWM"
	echo
	if [[ -s $work/results ]]; then
		printf '%-13s %9s %11s %10s %9s %8s %8s %8s %8s %8s %7s %6s %7s %7s\n' run elapsed_s delivered/s accepted/s sink_conn parallel inj_cpu sink_cpu dns_cpu relay_cpu rest_cpu dns_mx dns_a rss_MiB
		awk -v n="$count" '{rest = $7-$4-$5-$6; if ($16 != "-") rest -= $16
			printf "%-13s %9.1f %11.0f %10.0f %9d %8d %8.1f %8.1f %8.1f %8s %8.1f %7d %6d %7s\n", $1, $2, n/$2, n/$3, $11, $12, $4, $5, $6, $16, rest, $8, $9, ($17 == "-" ? "-" : sprintf("%.0f", $17/1024))}' "$work/results"
		echo
	fi
	p=$(rate postfix) m=$(rate mailfountain) c=$(rate ceiling) u=$(rate nodkim)
	if [[ -n $c ]]; then echo "ceiling (injector straight into the sink): $c msg/s"; fi
	if [[ -n $p ]]; then echo "postfix: $p msg/s"; fi
	if [[ -n $m ]]; then echo "mailfountain: $m msg/s"; fi
	if [[ -n $u ]]; then echo "mailfountain without DKIM signatures: $u msg/s"; fi
	[[ ! -s $work/results ]] || awk '$16 != "-" {printf "%s: %.2f ms of relay CPU per message; DNS server: %.0f us of CPU per query\n", $1, 1000*$16/n, ($8+$9+$10) ? 1e6*$6/($8+$9+$10) : 0}' n="$count" "$work/results"
	if [[ -n $p && -n $m ]]; then
		awk -v m="$m" -v p="$p" 'BEGIN{printf "ratio mailfountain/postfix: %.2f (target: at least 5)\n", m/p}'
	fi
	if [[ -n $p && -n $u ]]; then
		awk -v m="$u" -v p="$p" 'BEGIN{printf "ratio mailfountain without DKIM/postfix: %.2f\n", m/p}'
	fi
	if [[ -n $c ]]; then
		for r in "$p" "$m" "$u"; do
			if [[ -n $r ]]; then
				awk -v r="$r" -v c="$c" 'BEGIN{ if (r > 0.5*c) print "warning: a relay reached more than half the ceiling: the injector or the sink may bound it" }'
			fi
		done
	fi
	# Other processes' share of the CPUs over the relays' runs, as a warning.
	[[ ! -s $work/results ]] || awk -v cpus="$(nproc)" '$1 != "ceiling" {rest = $7-$4-$5-$6-$16; other += rest; avail += cpus*$2}
		END{ if (avail > 0 && other > 0.1*avail) printf "warning: other processes used %.0f%% of the CPUs during the relays'"'"' runs: the rates understate what the relays do on a quiet machine\n", 100*other/avail }' "$work/results"
	if [[ -s $work/queued.txt ]]; then
		echo
		echo "mailfountaind's memory with messages queued, every delivery deferred (--remote-port $dead_port: nothing listens);"
		echo "peak reset after a 100-message warm-up (the login's argon2id hash), read 2 s after the last 250:"
		printf '%8s %10s %10s %12s\n' queued VmHWM_MiB VmRSS_MiB data_dir_MiB
		awk 'NF == 4 {printf "%8d %10.0f %10.0f %12.0f\n", $1, $2/1024, $3/1024, $4/1024}' "$work/queued.txt"
	fi
	echo
	echo "every run: each message received once (by its X-Bench-Seq number), none missing"
	echo "commands:"
	for side in ceiling postfix mailfountain nodkim queued; do
		[[ -r $work/cmd-$side ]] || continue
		echo "  $side: $(sed "s|$work/|\$WORK/|g" "$work/cmd-$side")"
		if [[ -r $work/server-$side ]]; then echo "    server: $(sed "s|$work/|\$WORK/|g" "$work/server-$side")"; fi
	done
	echo "rerun: COUNT=$count DOMAINS=$domains SIZE=$size CONNS=$conns QUEUED='$queued' BENCH_SIDES='$sides' bash bench/outbound.sh"
} | tee "$out"
