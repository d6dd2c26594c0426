#!/usr/bin/env bash
# Inbound SMTP: messages per second accepted, fsync'd and delivered to a
# Maildir, MailFountain side by side with Postfix on the same machine, both
# driven by Postfix's smtp-source: 50 concurrent clients, 10 KB messages.
#
#   bash bench/inbound.sh          (as root it installs postfix if missing)
#
#   BENCH_MESSAGES   messages of a measured run (default 20000)
#   BENCH_RUNS       measured runs of each server, alternating (default 3)
#   BENCH_SIDES      servers to run (default "postfix mailfountain")
#
# Every run starts a fresh server on a free port of 127.0.0.1 with an empty
# mailbox, sends a warm-up of 1000 messages (not counted), then the measured
# messages. The rate is messages / time from smtp-source's start until all
# of them are files of the Maildir, so Postfix's delivery after its 250 is
# counted; MailFountain writes and fsyncs the Maildir file before its 250,
# Postfix fsyncs its queue file before 250 and the Maildir file before
# delivery: the same durability (two fsyncs a message on each side). Every
# run checks that every message arrived once, whole, and measures the CPU
# time of the server, of smtp-source and of the rest of the machine, so
# that a busy machine shows in the figures. The summary (median rates,
# their ratio, the commands) goes to stdout and to bench/out/inbound.txt.
# Root is needed for Postfix (its daemons switch to the postfix user).
# Run it on a quiet machine, and not within 6 minutes of deleting many
# files on the same filesystem (see chattr +T below): on ext4 without a
# journal, recently freed inodes make every file creation dearer.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/usr/local/go/bin:$PATH:/usr/sbin:/sbin"

messages=${BENCH_MESSAGES:-20000}
runs=${BENCH_RUNS:-3}
sides=${BENCH_SIDES:-postfix mailfountain}
warmup=1000
clients=50
payload=10240
from=sender@client.test
rcpt=user@bench.test
out=bench/out/inbound.txt

# Tools beyond Go, as command:debian-package (as the Makefile's deps).
# smtp-source comes with postfix; the package is preseeded to "No
# configuration" so that installing it neither configures nor starts the
# host's own Postfix.
missing=()
for t in postfix:postfix smtp-source:postfix; do
	command -v "${t%%:*}" >/dev/null 2>&1 || missing+=("${t#*:}")
done
if ((${#missing[@]})); then
	if [[ $(id -u) != 0 ]]; then
		echo "inbound: missing tools: ${missing[*]}; run as root to install them (apt-get)" >&2
		exit 1
	fi
	echo "== installing postfix" >&2
	echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postfix >/dev/null
fi
if [[ $sides == *postfix* && $(id -u) != 0 ]]; then
	echo "inbound: the private Postfix instance needs root (its daemons switch to the postfix user)" >&2
	exit 1
fi

work=$(mktemp -d)
chmod 755 "$work" # Postfix's daemons and the mailbox owner walk through it
# Postfix deletes its queue file once a message is delivered: ~21000
# inodes a run. ext4 without a journal (as here) does not reuse an inode
# freed less than 60 s ago (360 s if its inode table block is dirty, as
# the next allocations make it), and allocating one walks past every such
# inode of its block group: a run made next to the previous run's files
# pays for that run's deletions (20-30% more CPU for MailFountain after a
# Postfix run, measured with perf). With the T attribute, ext4 puts each
# run's directory in a block group of its own, as it does directories at
# the root: no run is slowed by another's deletions, each server only by
# its own.
if ! chattr +T "$work" 2>/dev/null; then
	echo "inbound: warning: cannot set the T attribute on $work (not ext4?): runs may slow each other" >&2
fi
pf_dir="" mf_pid=""
cleanup() {
	if [[ -n $pf_dir ]]; then postfix_stop "$pf_dir" || true; fi
	if [[ -n $mf_pid ]]; then mf_stop || true; fi
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

go build -o "$work/drive" ./bench/inbound/drive
drive=$work/drive
if [[ $sides == *mailfountain* ]]; then
	go build -o "$work/mailfountaind" ./cmd/mailfountaind
	if [[ $("$work/mailfountaind" -h 2>&1) != *-smtp* ]]; then
		echo "inbound: this mailfountaind has no --smtp flag yet" >&2
		exit 1
	fi
	go run ./cmd/mfapply validate -f bench/inbound/state.yaml >/dev/null
fi

# The mailboxes of the private Postfix belong to a uid that no account
# uses (virtual(8) refuses to deliver as root).
vuid=5000
while getent passwd "$vuid" >/dev/null || getent group "$vuid" >/dev/null; do vuid=$((vuid + 1)); done

# postfix_start DIR PORT: a private Postfix instance under DIR, listening
# on 127.0.0.1:PORT; its mailbox is DIR/vmail/bench.test/user.
postfix_start() {
	local dir=$1 port=$2
	mkdir -p "$dir/etc" "$dir/queue" "$dir/lib" "$dir/vmail"
	sed -e "s|@DIR@|$dir|g" -e "s|@UID@|$vuid|g" \
		bench/inbound/postfix-main.cf >"$dir/etc/main.cf"
	sed -e "s|@PORT@|$port|g" bench/inbound/postfix-master.cf >"$dir/etc/master.cf"
	echo "$rcpt  bench.test/user/" >"$dir/etc/vmailbox"
	chown postfix: "$dir/lib"
	chown "$vuid:$vuid" "$dir/vmail"
	pf_dir=$dir
	postfix -c "$dir/etc" start >/dev/null 2>&1 || {
		echo "inbound: postfix did not start; its log:" >&2
		tail -20 "$dir/maillog" >&2 || true
		exit 1
	}
}

# postfix_stop DIR: stops the instance and waits for its master to exit.
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

# mf_start DIR PORT: mailfountaind with its data under DIR, SMTP (the MX
# service) on 127.0.0.1:PORT and nothing else; its mailbox is
# DIR/data/mail/bench.test/user.
mf_start() {
	local dir=$1 port=$2
	mkdir -p "$dir"
	install -m 600 bench/inbound/state.yaml "$dir/state.yaml"
	mf_cmd=("$work/mailfountaind" --data "$dir/data" -f "$dir/state.yaml" --smtp "127.0.0.1:$port"
		--submission off --submissions off --pop3 off --pop3s off --imap off --imaps off --dns off)
	"${mf_cmd[@]}" >"$dir/mailfountaind.log" 2>&1 &
	mf_pid=$!
}

mf_stop() {
	kill -TERM "$mf_pid" 2>/dev/null || true
	local rc=0
	wait "$mf_pid" || rc=$?
	mf_pid=""
	return "$rc"
}

# fail MESSAGE: ends the bench on a failed run, with the end of the
# server's log.
fail() {
	echo "inbound: $1" >&2
	if [[ -n ${server_log:-} && -r $server_log ]]; then
		echo "the end of $server_log:" >&2
		tail -15 "$server_log" >&2
	fi
	exit 1
}

# source COUNT PORT: the command line that drives a server.
source_cmd() {
	echo smtp-source -s "$clients" -m "$1" -l "$payload" -f "$from" -t "$rcpt" "127.0.0.1:$2"
}

# measure SIDE RUN: one run of a server; appends to $work/results the line
#   side run elapsed_s source_s server_cpu_s client_cpu_s kernel_cpu_s machine_cpu_s body_sha256
measure() {
	local side=$1 run=$2 dir port maildir pid
	dir=$work/$side-$run
	port=$("$drive" freeport)
	case $side in
	postfix)
		server_log=$dir/maillog
		postfix_start "$dir" "$port"
		maildir=$dir/vmail/bench.test/user
		pid=$(tr -d ' \n' <"$dir/queue/pid/master.pid")
		;;
	mailfountain)
		server_log=$dir/mailfountaind.log
		mf_start "$dir" "$port"
		maildir=$dir/data/mail/bench.test/user
		pid=$mf_pid
		;;
	esac
	if ! "$drive" waitsmtp -addr "127.0.0.1:$port" -from "$from" -rcpt "$rcpt"; then
		fail "$side did not take mail for $rcpt"
	fi

	local warm cmd times check
	read -ra warm <<<"$(source_cmd "$warmup" "$port")"
	if ! "$drive" run -maildir "$maildir" -expect "$warmup" -- "${warm[@]}" >/dev/null; then
		fail "$side run $run: the warm-up failed"
	fi
	read -ra cmd <<<"$(source_cmd "$messages" "$port")"
	echo "$side run $run: ${cmd[*]}" >&2
	if ! times=$("$drive" run -maildir "$maildir" -expect $((warmup + messages)) -server "$pid" -- "${cmd[@]}"); then
		fail "$side run $run failed"
	fi
	if ! check=$("$drive" check -maildir "$maildir" -expect $((warmup + messages)) -payload "$payload"); then
		fail "$side run $run delivered wrongly"
	fi
	echo "${cmd[*]}" >"$work/cmd-$side"
	case $side in
	postfix)
		postfix_stop "$dir"
		if grep -Eq 'status=(deferred|bounced)|fatal:|panic:' "$server_log"; then
			fail "postfix run $run logged problems: $(grep -Em3 'status=(deferred|bounced)|fatal:|panic:' "$server_log")"
		fi
		echo "postfix -c $dir/etc start   (main.cf from bench/inbound/postfix-main.cf, smtpd on 127.0.0.1:$port)" >"$work/server-$side"
		;;
	mailfountain)
		echo "${mf_cmd[*]}" >"$work/server-$side"
		if ! mf_stop; then
			fail "mailfountaind exited with an error"
		fi
		if grep -q 'level=ERROR' "$server_log"; then
			fail "mailfountaind logged errors: $(grep -m3 'level=ERROR' "$server_log")"
		fi
		;;
	esac
	local sum line
	read -r _ sum _ <<<"$check"
	line="$side $run $times $sum"
	echo "$line" >>"$work/results"
	awk -v n="$messages" '{printf "  %.2f s: %.0f msg/s delivered (smtp-source done after %.2f s: %.0f msg/s accepted); CPU s: server %.1f, smtp-source %.1f, kernel threads %.1f, other %.1f, stolen by the hypervisor %.1f\n", $3, n/$3, $4, n/$4, $5, $6, $7, $8-$5-$6-$7, $9}' <<<"$line" >&2
	# The run's files stay until the end (the exit trap removes $work):
	# deleting ~20000 inodes just before the other server's run would make
	# ext4's allocator skip the freed inodes and slow that run down.
}

for run in $(seq "$runs"); do
	for side in $sides; do
		measure "$side" "$run"
	done
done

median() { # median SIDE COLUMN: the median over SIDE's runs of an awk expression
	awk -v s="$1" -v n="$messages" '$1==s{print '"$2"'}' "$work/results" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}'
}

if [[ $(awk '{print $10}' "$work/results" | sort -u | wc -l) != 1 ]]; then
	echo "inbound: the servers stored different bodies" >&2
	exit 1
fi

rerun="bash bench/inbound.sh"
[[ $sides == "postfix mailfountain" ]] || rerun="BENCH_SIDES='$sides' $rerun"
rerun="BENCH_MESSAGES=$messages BENCH_RUNS=$runs $rerun"

mkdir -p bench/out
{
	echo "inbound SMTP: $payload-byte messages (smtp-source -l), $clients concurrent clients, $messages messages per measured run after a $warmup-message warm-up"
	echo "machine: $(nproc) CPUs ($(awk -F': ' '/^model name/{print $2; exit}' /proc/cpuinfo)), Linux $(uname -r), data on $(df -T "$work" | awk 'NR==2{print $2" ("$1")"}')"
	echo "postfix $(postconf -d -h mail_version) (virtual(8) Maildir delivery); mailfountaind at $(git rev-parse --short HEAD 2>/dev/null || echo '?')$(git diff --quiet HEAD 2>/dev/null || echo '+changes')"
	echo "runs: $runs of each, alternating, each in a block group of its own (chattr +T); delivered/s = messages / (smtp-source start .. last message in the Maildir);"
	echo "accepted/s = messages / smtp-source's own time; CPU seconds meanwhile: the server's processes, smtp-source's, kernel"
	echo "threads' (filesystem journal, network), the rest of the machine's busy time (anything else running skews the rates),"
	echo "and the time the hypervisor gave the CPUs to other machines (steal)"
	echo
	printf '%-13s %3s %9s %11s %10s %10s %10s %10s %9s %9s\n' server run elapsed_s delivered/s accepted/s server_cpu client_cpu kernel_cpu other_cpu steal
	awk -v n="$messages" '{printf "%-13s %3d %9.2f %11.0f %10.0f %10.1f %10.1f %10.1f %9.1f %9.1f\n", $1, $2, $3, n/$3, n/$4, $5, $6, $7, $8-$5-$6-$7, $9}' "$work/results"
	echo
	for side in $sides; do
		printf 'median %-13s %6.0f msg/s  (%.0f us of server CPU per message)\n' "$side" \
			"$(median "$side" 'n/$3')" "$(median "$side" '1e6*$5/n')"
	done
	if [[ $sides == *postfix* && $sides == *mailfountain* ]]; then
		awk -v m="$(median mailfountain 'n/$3')" -v p="$(median postfix 'n/$3')" \
			-v mc="$(median mailfountain '$5/n')" -v pc="$(median postfix '$5/n')" 'BEGIN{
			printf "ratio mailfountain/postfix: %.2f (target: at least 3)\n", m/p
			printf "server CPU per message, postfix/mailfountain: %.2f\n", pc/mc
		}'
	fi
	# Other processes' share of the CPUs over all runs, as a warning.
	awk -v cpus="$(nproc)" '{other += $8-$5-$6-$7; avail += cpus*$3}
		END{ if (other > 0.1*avail) printf "warning: other processes used %.0f%% of the CPUs during the runs: the rates understate what the servers do on a quiet machine\n", 100*other/avail }' "$work/results"
	awk -v cpus="$(nproc)" '$9 > 0.05*cpus*$3 {printf "warning: the hypervisor took %.0f%% of the CPUs during %s run %d: that run understates its server\n", 100*$9/(cpus*$3), $1, $2}' "$work/results"
	echo
	echo "every run: all $((warmup + messages)) messages in the Maildir, once each (distinct Message-Id), the same $payload-byte body"
	echo "driven by (each run on its own free port; the last run's):"
	for side in $sides; do
		echo "  $side: $(cat "$work/cmd-$side")"
		echo "    server: $(cat "$work/server-$side")"
	done
	echo "rerun: $rerun"
} | tee "$out"
