#!/usr/bin/env bash
# compare.sh: sseloop and the peer servers measured side by side with
# sseloop-bench, servers alternating within each round so machine noise hits
# them alike.
#
#   scripts/compare.sh [--rounds N] [--cases LIST] [--servers LIST] [--out DIR]
#                      [--settle SECONDS]
#
# Cases (the README's performance table):
#   latency      1 subscriber, 5 000 events at 1 000/s (client spins, so its
#                own wake-up stays out of the figures)
#   fanout       1 000 subscribers, 1 000 events at 200/s
#   fanout-fast  1 000 subscribers, 4 000 events at 1 000/s
#   closed       1 000 subscribers, 2 000 events closed-loop (32 outstanding)
#   idle         10 000 subscribers held 15 s with no event (heartbeats: 20 s)
#   wide         10 000 subscribers, 100 events at 10/s
#   wide-closed  10 000 subscribers, 200 events closed-loop
#   big          19 000 subscribers, 100 events at 10/s
#   big-closed   19 000 subscribers, 100 events closed-loop
#   streams      many small streams: 10 000 topics with one subscriber each,
#                200 000 events at 20 000/s over 100 publishing connections
#                (each topic's events over one of them, each connection
#                waiting for its answer before its next publish)
#   streams-fast the same, 300 000 events at 100 000/s
#   streams-closed  the same, 200 000 events closed-loop (100 outstanding,
#                one on each connection)
# Default: all of them.
#
# Servers (default: sseloop sseloop-busy sseloop-loops2 sseloop-loops2-split
# axum node nchan):
#   sseloop               defaults (one loop)
#   sseloop-busy          --busy-poll 10ms
#   sseloop-loops2        --loops 2, free to run on CPUs 0 and 1
#   sseloop-loops2-split  --loops 2, loop 0 (the main thread) pinned to CPU 0
#                         and loop 1 (thread sseloop-loop) to CPU 1
#   sseloop-loops2-cpu0   --loops 2, both on CPU 0: the core budget of one
#                         loop, the client alone on its core, so any
#                         difference with sseloop is what two loops cost
#   sseloop-cpu1          defaults, on CPU 1 beside the client (CPU 0
#                         left idle): what sharing the client's core costs
#                         one loop
#   cluster               two sseloop nodes on one Redis (redis-server, no
#                         persistence, on a port 500 above the server's):
#                         events published on node A (1 000 above), streams
#                         on node B; Redis and both nodes share CPU 0 as a
#                         single server does. Its CPU per delivery is both
#                         nodes'; the Redis column is Redis's own.
#   axum, node, nchan     the peers of ../shared/peers, started with its
#                         start.sh (PEERS_DIR overrides the directory); the
#                         WORKERS env is passed through to every peer of the
#                         session (tokio worker threads for axum, nginx worker
#                         processes for nchan: name such a run, nchan-w2=nchan).
#                         nchan's CPU and RSS are its master's and workers'
#                         summed (each given to the bench with --pid).
# A server is written [NAME=]KIND[@BINARY]: an sseloop KIND may run another
# binary (a path absolute or from the repository's root; it must know the
# KIND's options), and NAME (default: the spec as written) is what the table
# calls it.
# A before/after comparison from one session, say against a build of an
# older commit in /tmp/before:
#   scripts/compare.sh --cases closed \
#     --servers "sseloop before=sseloop@/tmp/before/target/release/sseloop"
# COMPARE_PORT moves the ports used (from it upwards; default 18100), for
# two sessions on one machine.
#
# CPU pinning: the client always runs on CPU 1, and a one-thread server on
# CPU 0, so neither disturbs the other. A two-loop server needs both cores
# to show what two loops do, so it shares CPU 1 with the client: its
# deliveries/s and latency then depend on the client too, and the figures
# that do not are its CPU per delivery and each thread's share of the CPU
# (the table's last section). sseloop-loops2 leaves the kernel to place its
# loops on CPUs 0-1; sseloop-loops2-split pins loop 0 to CPU 0 and loop 1
# to CPU 1 (beside the client), so the loops never migrate or share a core
# with each other, and per-thread CPU shows what a loop costs alone on a
# core (loop 0) and beside the client (loop 1). nchan runs on CPU 0, or on
# CPUs 0-1 when WORKERS > 1.
#
# Every run's JSON goes to DIR/results.jsonl (default target/compare); the
# table of medians over rounds is printed at the end and saved as
# DIR/table.md, followed, for servers with several threads (or processes)
# that took CPU, by each thread's share of the server's CPU over the run
# (threads named alike are numbered in pid order: nginx #2 is the first
# worker). Every case on every server takes roughly 15-20 minutes a round.
# Needs python3 for the table. "p99 from schedule" counts from when each
# event was due, so a server that slows its publisher down is charged for
# it (so is the client's own wake-up, except where it spins).
# A run whose bench exited non-zero is counted as failed, not in the medians.
# On a machine others use too, --settle S waits before each run, up to S
# seconds, for a second in which everything took under a tenth of a CPU
# (the table's last section says how much others took during each case).
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3
cases="latency fanout fanout-fast closed idle wide wide-closed big big-closed streams streams-fast streams-closed"
servers="sseloop sseloop-busy sseloop-loops2 sseloop-loops2-split axum node nchan"
out=target/compare
peers=${PEERS_DIR:-../shared/peers}
settle=0
usage="usage: $0 [--rounds N] [--cases LIST] [--servers LIST] [--out DIR] [--settle S] (see the header)"
while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --cases) cases=$2; shift 2 ;;
    --servers) servers=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --settle) settle=$2; shift 2 ;;
    *) echo "$usage" >&2; exit 2 ;;
    esac
done

client_cpu=1
# Every spec checked before the first run, so a typo does not end a long
# session halfway.
for spec in $servers; do
    kind=${spec#*=}
    binary=${kind#*@}
    kind=${kind%%@*}
    case "$kind" in
    sseloop | sseloop-busy | sseloop-loops2 | sseloop-loops2-split | sseloop-loops2-cpu0 | \
        sseloop-cpu1 | cluster) ;;
    axum | node | nchan)
        if [ "$binary" != "$kind" ]; then echo "$spec: a peer takes no @BINARY" >&2; exit 2; fi
        if [ ! -x "$peers/start.sh" ]; then
            echo "$spec: no $peers/start.sh (set PEERS_DIR to the peers' directory)" >&2
            exit 2
        fi ;;
    *) echo "$spec: unknown server (see the header)" >&2; exit 2 ;;
    esac
    if [ "$binary" != "$kind" ] && [ ! -x "$binary" ]; then
        echo "$spec: $binary is not an executable" >&2
        exit 2
    fi
done

cargo build --release --quiet --workspace
mkdir -p "$out"
results=$out/results.jsonl
: >"$results"
ulimit -n "$(ulimit -Hn)"

port=${COMPARE_PORT:-18100}
server_pid=
pids=()
# A cluster's other processes, and what the bench needs to know of them.
cluster_pids=()
bench_extra=()
stop_server() {
    for pid in "$server_pid" "${cluster_pids[@]}"; do
        if [ -n "$pid" ]; then
            kill "$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        fi
    done
    server_pid=
    cluster_pids=()
    bench_extra=()
}
trap stop_server EXIT

# The thread ids of process $1 whose name is $2.
threads_named() {
    local task
    for task in /proc/"$1"/task/*; do
        if [ "$(cat "$task/comm" 2>/dev/null)" = "$2" ]; then echo "${task##*/}"; fi
    done
}

# Waits (bounded) until $1 answers a connect on $2, or fails if the process
# $3 has exited; a peer builds on first use, so the wait is long.
await_port() {
    for _ in $(seq 1 3000); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
        if ! kill -0 "$3" 2>/dev/null; then
            echo "$1 exited before it listened on port $2 (see $log)" >&2
            exit 1
        fi
        sleep 0.1
    done
    echo "$1 did not start on port $2 (see $log)" >&2
    exit 1
}

start_server() { # name kind binary port [sseloop options]
    local name=$1 kind=$2 binary=$3 port=$4
    shift 4
    log=$out/${name//\//_}.log
    local listen=(--listen "127.0.0.1:$port" --log-level warn)
    case "$kind" in
    sseloop) taskset -c 0 "$binary" "${listen[@]}" "$@" 2>>"$log" & ;;
    sseloop-busy) taskset -c 0 "$binary" "${listen[@]}" --busy-poll 10ms "$@" 2>>"$log" & ;;
    sseloop-loops2 | sseloop-loops2-split)
        taskset -c 0,1 "$binary" "${listen[@]}" --loops 2 "$@" 2>>"$log" & ;;
    sseloop-loops2-cpu0) taskset -c 0 "$binary" "${listen[@]}" --loops 2 "$@" 2>>"$log" & ;;
    sseloop-cpu1) taskset -c 1 "$binary" "${listen[@]}" "$@" 2>>"$log" & ;;
    axum | node) taskset -c 0 "$peers/start.sh" "$kind" "$port" >>"$log" 2>&1 & ;;
    nchan)
        local cpus=0
        if [ "${WORKERS:-1}" -gt 1 ]; then cpus=0,1; fi
        taskset -c "$cpus" "$peers/start.sh" nchan "$port" >>"$log" 2>&1 & ;;
    cluster)
        local redis_port=$((port + 500)) publish_port=$((port + 1000))
        taskset -c 0 redis-server --port "$redis_port" --bind 127.0.0.1 --save '' \
            --appendonly no --daemonize no --dir "$out" --logfile '' >>"$log" 2>&1 &
        local redis_pid=$!
        cluster_pids+=("$redis_pid")
        await_port redis-server "$redis_port" "$redis_pid"
        taskset -c 0 "$binary" --listen "127.0.0.1:$publish_port" --log-level warn \
            --redis "redis://127.0.0.1:$redis_port" "$@" 2>>"$log" &
        local publish_pid=$!
        cluster_pids+=("$publish_pid")
        await_port "cluster node A" "$publish_port" "$publish_pid"
        bench_extra=(--publish-addr "127.0.0.1:$publish_port" --pid "$publish_pid" --redis-pid "$redis_pid")
        taskset -c 0 "$binary" "${listen[@]}" --redis "redis://127.0.0.1:$redis_port" "$@" 2>>"$log" & ;;
    esac
    server_pid=$!
    pids=("$server_pid")
    await_port "$name" "$port" "$server_pid"
    case "$kind" in
    sseloop-loops2 | sseloop-loops2-split | sseloop-loops2-cpu0)
        # The listeners are bound before loop 1's thread starts: wait for it.
        local loop1=
        for _ in $(seq 1 100); do
            loop1=$(threads_named "$server_pid" sseloop-loop)
            if [ -n "$loop1" ]; then break; fi
            sleep 0.05
        done
        if [ -z "$loop1" ]; then echo "$name: no sseloop-loop thread (see $log)" >&2; exit 1; fi
        if [ "$kind" = sseloop-loops2-split ]; then
            # -p without -a moves one thread: loop 0 is the main thread.
            taskset -p -c 0 "$server_pid" >/dev/null
            taskset -p -c 1 "$loop1" >/dev/null
        fi ;;
    nchan)
        # nginx is the master (start.sh execs it); its workers are children.
        local workers=
        for _ in $(seq 1 100); do
            workers=$(pgrep -P "$server_pid" || true)
            if [ "$(echo "$workers" | wc -w)" -ge "${WORKERS:-1}" ]; then break; fi
            sleep 0.05
        done
        if [ -z "$workers" ]; then echo "$name: no nginx worker (see $log)" >&2; exit 1; fi
        # shellcheck disable=SC2206
        pids+=($workers) ;;
    esac
}

# The machine's busy clock ticks so far (user, nice, system, irq, softirq).
busy_ticks() { awk '/^cpu /{print $2 + $3 + $4 + $7 + $8}' /proc/stat; }

# Waits up to $settle seconds for a second in which the whole machine was
# busy under a tenth of a CPU.
await_quiet() {
    local waited=0 before after
    local quiet=$(($(getconf CLK_TCK) / 10))
    while [ "$waited" -lt "$settle" ]; do
        before=$(busy_ticks)
        sleep 1
        after=$(busy_ticks)
        if [ $((after - before)) -le "$quiet" ]; then return 0; fi
        waited=$((waited + 1))
    done
    if [ "$settle" -gt 0 ]; then echo "the machine stayed busy for $settle s: running anyway" >&2; fi
}

case_args() {
    local long="--timeout 60s --drain-timeout 30s --max-time 5m"
    local streams="--subscribers 10000 --topics 10000 --publishers 100 --timeout 30s --max-time 2m"
    case "$1" in
    latency) echo "--subscribers 1 --events 5000 --rate 1000 --spin" ;;
    fanout) echo "--subscribers 1000 --events 1000 --rate 200" ;;
    fanout-fast) echo "--subscribers 1000 --events 4000 --rate 1000 --max-time 2m" ;;
    closed) echo "--subscribers 1000 --events 2000 --rate 0" ;;
    idle) echo "--subscribers 10000 --idle 15s" ;;
    wide) echo "--subscribers 10000 --events 100 --rate 10 $long" ;;
    wide-closed) echo "--subscribers 10000 --events 200 --rate 0 $long" ;;
    big) echo "--subscribers 19000 --events 100 --rate 10 $long" ;;
    big-closed) echo "--subscribers 19000 --events 100 --rate 0 $long" ;;
    streams) echo "$streams --events 200000 --rate 20000" ;;
    streams-fast) echo "$streams --events 300000 --rate 100000" ;;
    streams-closed) echo "$streams --events 200000 --rate 0 --window 100" ;;
    *) echo "unknown case $1" >&2; exit 2 ;;
    esac
}
for case in $cases; do case_args "$case" >/dev/null; done

for round in $(seq 1 "$rounds"); do
    for case in $cases; do
        for spec in $servers; do
            name=${spec%%=*}
            kind=${spec#*=}
            binary=${kind#*@}
            kind=${kind%%@*}
            if [ "$binary" = "$kind" ]; then binary=target/release/sseloop; fi
            port=$((port + 1))
            # sseloop serves 10 000 connections unless told more (the
            # publisher's is one more); the peers take no options.
            extra=()
            case "$case" in wide* | big* | streams*) extra=(--max-connections 19500) ;; esac
            await_quiet
            start_server "$name" "$kind" "$binary" "$port" "${extra[@]}"
            echo "round $round: $case on $name" >&2
            pid_args=()
            for p in "${pids[@]}"; do pid_args+=(--pid "$p"); done
            # Exit 1: the run failed (say, a delivery went missing); its
            # report is kept, and the table leaves it out of the medians.
            status=0
            # shellcheck disable=SC2046
            json=$(taskset -c "$client_cpu" target/release/sseloop-bench \
                --addr "127.0.0.1:$port" "${pid_args[@]}" "${bench_extra[@]}" --json \
                $(case_args "$case")) || status=$?
            stop_server
            if [ -z "$json" ]; then json=null; fi
            printf '{"round":%d,"case":"%s","server":"%s","exit":%d,"result":%s}\n' \
                "$round" "$case" "$name" "$status" "$json" >>"$results"
        done
    done
done

python3 scripts/compare_table.py "$results" | tee "$out/table.md"
