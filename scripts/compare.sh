#!/usr/bin/env bash
# compare.sh: sseloop and the peer servers measured side by side with
# sseloop-bench, server pinned to CPU 0 and client to CPU 1, servers
# alternating within each round so machine noise hits them alike.
#
#   scripts/compare.sh [--rounds N] [--cases "latency fanout closed idle big"]
#                      [--servers "sseloop sseloop-busy axum node cluster"] [--out DIR]
#
# Cases (the README's performance table):
#   latency  1 subscriber, 5 000 events at 1 000/s (client spins, so its own
#            wake-up stays out of the figures)
#   fanout   1 000 subscribers, 1 000 events at 200/s
#   closed   1 000 subscribers, 2 000 events closed-loop (32 outstanding)
#   idle     10 000 subscribers held 15 s with no event (heartbeats are 20 s)
#   big      19 000 subscribers, 100 events at 10/s
# Servers: sseloop (defaults), sseloop-busy (--busy-poll 10ms), and the peers
# of ../shared/peers (axum, node), started with its start.sh; and cluster:
# two sseloop nodes on one Redis (redis-server, no persistence), events
# published on node A and streams on node B, Redis and both nodes sharing
# CPU 0 as a single server does. Its CPU per delivery is both nodes'; the
# Redis column is Redis's own.
#
# Every run's JSON goes to DIR/results.jsonl (default target/compare); the
# table of medians over rounds is printed at the end and saved as
# DIR/table.md. Needs python3 for the table. "p99 from schedule" counts from
# when each event was due, so a server that slows its publisher down is
# charged for it (so is the client's own wake-up, except where it spins).
# A run whose bench exited non-zero is counted as failed, not in the medians.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=3
cases="latency fanout closed idle big"
servers="sseloop sseloop-busy axum node"
out=target/compare
peers=${PEERS_DIR:-../shared/peers}
while [ $# -gt 0 ]; do
    case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --cases) cases=$2; shift 2 ;;
    --servers) servers=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    *) echo "usage: $0 [--rounds N] [--cases LIST] [--servers LIST] [--out DIR]" >&2; exit 2 ;;
    esac
done

cargo build --release --quiet --workspace
mkdir -p "$out"
results=$out/results.jsonl
: >"$results"
ulimit -n "$(ulimit -Hn)"

# COMPARE_PORT moves the ports used (from it upwards; a cluster also takes
# those 500 and 1 000 above; all below the kernel's ephemeral range, where
# the bench's own connections would collide with them), for two runs on
# one machine.
port=${COMPARE_PORT:-18100}
server_pid=
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

wait_port() { # port name log pid
    for _ in $(seq 1 3000); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        if ! kill -0 "$4" 2>/dev/null; then break; fi
        sleep 0.1
    done
    echo "$2 did not start on port $1 (see $3)" >&2
    exit 1
}
trap stop_server EXIT

start_server() { # name port [sseloop options]
    local log=$out/$1.log name=$1 port=$2
    shift 2
    case "$name" in
    sseloop) taskset -c 0 target/release/sseloop --listen "127.0.0.1:$port" --log-level warn "$@" 2>>"$log" & ;;
    sseloop-busy) taskset -c 0 target/release/sseloop --listen "127.0.0.1:$port" --log-level warn --busy-poll 10ms "$@" 2>>"$log" & ;;
    axum) taskset -c 0 "$peers/start.sh" axum "$port" >>"$log" 2>&1 & ;;
    node) taskset -c 0 "$peers/start.sh" node "$port" >>"$log" 2>&1 & ;;
    cluster)
        local redis_port=$((port + 500)) publish_port=$((port + 1000))
        taskset -c 0 redis-server --port "$redis_port" --bind 127.0.0.1 --save '' \
            --appendonly no --daemonize no --dir "$out" --logfile '' >>"$log" 2>&1 &
        local redis_pid=$!
        cluster_pids+=("$redis_pid")
        wait_port "$redis_port" redis-server "$log" "$redis_pid"
        taskset -c 0 target/release/sseloop --listen "127.0.0.1:$publish_port" --log-level warn \
            --redis "redis://127.0.0.1:$redis_port" "$@" 2>>"$log" &
        local publish_pid=$!
        cluster_pids+=("$publish_pid")
        wait_port "$publish_port" "cluster node A" "$log" "$publish_pid"
        bench_extra=(--publish-addr "127.0.0.1:$publish_port" --pid "$publish_pid" --redis-pid "$redis_pid")
        taskset -c 0 target/release/sseloop --listen "127.0.0.1:$port" --log-level warn \
            --redis "redis://127.0.0.1:$redis_port" "$@" 2>>"$log" &
        ;;
    *) echo "unknown server $name" >&2; exit 2 ;;
    esac
    server_pid=$!
    # Ready when it answers; a peer builds on first use, so wait long.
    wait_port "$port" "$name" "$log" "$server_pid"
}

case_args() {
    case "$1" in
    latency) echo "--subscribers 1 --events 5000 --rate 1000 --spin" ;;
    fanout) echo "--subscribers 1000 --events 1000 --rate 200" ;;
    closed) echo "--subscribers 1000 --events 2000 --rate 0" ;;
    idle) echo "--subscribers 10000 --idle 15s" ;;
    big) echo "--subscribers 19000 --events 100 --rate 10 --timeout 60s --drain-timeout 30s" ;;
    *) echo "unknown case $1" >&2; exit 2 ;;
    esac
}

for round in $(seq 1 "$rounds"); do
    for case in $cases; do
        for server in $servers; do
            port=$((port + 1))
            # sseloop serves 10 000 connections unless told more.
            extra=()
            if [ "$case" = big ]; then extra=(--max-connections 19500); fi
            start_server "$server" "$port" "${extra[@]}"
            echo "round $round: $case on $server" >&2
            # Exit 1: the run failed (say, a delivery went missing); its
            # report is kept, and the table leaves it out of the medians.
            status=0
            # shellcheck disable=SC2046
            json=$(taskset -c 1 target/release/sseloop-bench --addr "127.0.0.1:$port" \
                --pid "$server_pid" "${bench_extra[@]}" --json $(case_args "$case")) || status=$?
            stop_server
            if [ -z "$json" ]; then json=null; fi
            printf '{"round":%d,"case":"%s","server":"%s","exit":%d,"result":%s}\n' \
                "$round" "$case" "$server" "$status" "$json" >>"$results"
        done
    done
done

python3 scripts/compare_table.py "$results" | tee "$out/table.md"
