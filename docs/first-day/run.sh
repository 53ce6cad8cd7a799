#!/bin/bash
# The operator's first day (issue 16), replayed with real processes in a
# terminal 80 columns wide: the demo; a server with its own data dir; two
# drones; a queue import; one drone stopped (SIGTERM) and one killed
# (SIGKILL) while each holds work; a blocked package explained; `control
# fresh` refused without a terminal; `monitor --once`.
#
#   bash docs/first-day/run.sh > docs/first-day/transcript.txt
#
# Environment: SWARM, the swarm binary (default: target/debug/swarm, else
# swarm on PATH). Everything runs on 127.0.0.1 in a temporary directory that
# is removed at exit, with every process this script started stopped.
# tests/first_day.rs runs it and fails when a line of the CLI's output passes
# 80 columns.
set -u
export COLUMNS=80 LINES=24
here=$(cd "$(dirname "$0")/../.." && pwd)
SWARM=${SWARM:-$here/target/debug/swarm}
[ -x "$SWARM" ] || SWARM=$(command -v swarm) || { echo "no swarm binary (set SWARM)" >&2; exit 2; }
world=$here/swarm-bin/data/tiny.toml

farm=$(mktemp -d /tmp/first-day.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
	sleep 1
	for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$farm"
}
trap cleanup EXIT
cd "$farm" || exit 2
export HOME=$farm
unset SWARM_URL SWARMV3_URL SWARM_ADMIN_TOKEN SWARM_TOKEN_FILE SWARM_DATA_DIR SWARM_CONFIG

# What the operator types, then what it prints (stdout and stderr, as a
# terminal shows them). Commands run with no terminal on stdin.
swarm() { "$SWARM" "$@"; }
say() {
	printf '\n$ %s\n' "$1"
	eval "$1" 2>&1 </dev/null
	local rc=$?
	[ "$rc" = 0 ] || printf '[exit %s]\n' "$rc"
}
note() { printf '\n# %s\n' "$*"; }
# Waits (at most $1 s) until the shell test $2 holds.
until_() {
	local deadline=$((SECONDS + $1))
	until eval "$2" >/dev/null 2>&1; do
		if [ $SECONDS -ge "$deadline" ]; then
			echo "gave up waiting for: $2" >&2
			tail -n 5 ./*.log >&2
			exit 1
		fi
		sleep 0.2
	done
}
json() { "$SWARM" "$@" --json 2>/dev/null; }

note "1. The demo: a whole swarm on this machine, stand-in builds."
say "swarm --version"
say "swarm demo --packages tiny --drones 2 --speed 1440"

note "2. A server of my own, with its data where I want it."
# Shorter timeouts than the defaults (a silent drone is suspect after 90 s,
# offline after 5 min) so this transcript takes seconds, not minutes.
SWARM_POLICY_HEARTBEAT_GRACE_MS=3000 SWARM_POLICY_OFFLINE_TIMEOUT_MS=8000 \
	SWARM_POLICY_CONFIRMED_DEAD_AFTER_MS=8000 SWARM_POLICY_FAILOVER_GRACE_MS=1000 \
	SWARM_PROBE_ENABLED=false \
	"$SWARM" serve --data-dir "$farm/data" --listen 127.0.0.1:0 >serve.out 2>serve.log &
pids+=($!)
until_ 20 'grep -q http serve.out'
url=$(grep -o 'http://[0-9.:]*' serve.out | head -1)
printf '\n$ swarm serve --data-dir ~/data --listen 127.0.0.1:0 &\n'
cat serve.out
sed -n '1,6p' serve.log | sed "s|$farm|~|g"
say "export SWARM_URL=$url"
cp "$world" world.toml
say "swarm queue import world.toml"
note "Admin commands find the token when told where the data dir is."
say "export SWARM_DATA_DIR=~/data"
say "swarm queue import world.toml"
say "swarm control block =sys-libs/ncurses-6.4_p20240414"

note "3. Two drones (in their own terminals; their first log lines)."
# The stand-in builder writes a few KiB: the default 5 GiB floor of free
# disk (--min-free-disk) is for real builds, and on a small disk it would
# keep these drones idle.
for d in drone-a drone-b; do
	mkdir -p "$d"
	SWARM_STANDIN_SCALE_MS=2000 SWARM_STANDIN_FAIL==dev-vcs/git-2.47.1 \
		"$SWARM" drone --server "${url#http://}" --name "$d" --builder standin --slots 1 \
		--heartbeat-s 1 --poll-s 1 --work-dir "$farm/$d" --pkgdir "$farm/$d/pkgdir" \
		--machine-id "first-day-$d" --portage-timestamp-file "$farm/none" \
		--min-free-disk 64MiB \
		>"$d.out" 2>"$d.log" </dev/null &
	pids+=($!)
	eval "pid_${d//-/_}=$!"
done
printf '\n$ swarm drone --server %s --name drone-a --builder standin\n' "${url#http://}"
until_ 20 'grep -q registered drone-a.log'
head -n 4 drone-a.log | sed "s|$farm|~|g"
until_ 30 '[ "$(json fleet | grep -c "\"building_since\": [0-9]")" -ge 2 ]'
say "swarm status"
say "swarm fleet"
say "swarm queue list"

note "4. drone-a is stopped cleanly (SIGTERM) while it builds."
printf '\n$ kill -TERM %s   # drone-a; its last log lines:\n' "$pid_drone_a"
kill -TERM "$pid_drone_a"
until_ 30 '! kill -0 $pid_drone_a'
tail -n 3 drone-a.log | sed "s|$farm|~|g"
say "swarm fleet"
note "drone-b loses power (SIGKILL) while it builds."
until_ 30 'json fleet | grep -q "\"building_since\": [0-9]"'
printf '\n$ kill -KILL %s   # drone-b\n' "$pid_drone_b"
{ kill -KILL "$pid_drone_b" && wait "$pid_drone_b"; } 2>/dev/null
note "(the server's timeouts here: suspect after 3 s of silence, offline after 8 s)"
until_ 30 'json fleet | grep -q "\"status\": \"suspect\""'
say "swarm fleet"
say "swarm queue list --state assigned"
until_ 30 'json fleet | grep -q "\"status\": \"offline\""'
say "swarm status"

note "5. Why is readline not built?"
say "swarm explain =sys-libs/readline-8.2_p13"
say "swarm explain =sys-libs/ncurses-6.4_p20240414"
say "RUST_BACKTRACE=1 swarm explain =app-misc/nonexistent-1"

note "6. Start over? Not without asking (no terminal here, so no question)."
say "swarm control fresh"
say "swarm node remove drone-a"

note "7. The whole farm on one 80x24 screen."
say "swarm monitor --once"
