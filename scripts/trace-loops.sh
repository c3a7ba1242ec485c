#!/usr/bin/env bash
# trace-loops.sh PLACEMENT [ROUNDS] -- BENCH_ARGS...: how each of sseloop's
# loops spends a sseloop-bench run, counted by the kernel for each thread
# (perf stat's syscall tracepoints and scheduler counts, which cost the
# server next to nothing): writes per delivery (how many events a write
# carries), polls, eventfd wake-ups of other loops, futex calls (a lock
# that made a thread wait), context switches and migrations; beside the
# bench's deliveries a second, latency and server CPU per delivery.
#
#   PLACEMENT    the server, with the client on CPU 1 as in compare.sh:
#     one        one loop on CPU 0 (compare.sh's sseloop)
#     one-cpu1   one loop on CPU 1, beside the client (sseloop-cpu1)
#     two        two loops free on CPUs 0-1 (sseloop-loops2)
#     two-split  loop 0 on CPU 0, loop 1 on CPU 1 (sseloop-loops2-split)
#     two-cpu0   two loops on CPU 0 (sseloop-loops2-cpu0)
#   ROUNDS       runs, one after another (default 1)
#
# Example: the 1 000 subscribers at 1 000 events/s of the README's two-loop
# analysis:
#   scripts/trace-loops.sh two-split 3 -- --subscribers 1000 --events 3000 --rate 1000
# Needs perf and python3; SSELOOP=path runs another server binary.
set -euo pipefail
cd "$(dirname "$0")/.."
placement=${1:?usage: $0 PLACEMENT [ROUNDS] -- BENCH_ARGS...}
shift
rounds=1
if [ "${1:-}" != "--" ] && [ $# -gt 0 ]; then rounds=$1; shift; fi
if [ "${1:-}" = "--" ]; then shift; fi
case "$placement" in
one | one-cpu1 | two | two-split | two-cpu0) ;;
*) echo "$placement: one of one, one-cpu1, two, two-split, two-cpu0" >&2; exit 2 ;;
esac
cargo build --release --quiet --workspace
binary=${SSELOOP:-target/release/sseloop}
ulimit -n "$(ulimit -Hn)"
port=${TRACE_PORT:-18480}
out=$(mktemp -d)
server=
cleanup() {
    if [ -n "$server" ]; then kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; fi
    rm -rf "$out"
}
trap cleanup EXIT

for round in $(seq 1 "$rounds"); do
    listen=(--listen "127.0.0.1:$port" --log-level warn --max-connections 19500)
    case "$placement" in
    one) taskset -c 0 "$binary" "${listen[@]}" 2>/dev/null & ;;
    one-cpu1) taskset -c 1 "$binary" "${listen[@]}" 2>/dev/null & ;;
    two | two-split) taskset -c 0,1 "$binary" "${listen[@]}" --loops 2 2>/dev/null & ;;
    two-cpu0) taskset -c 0 "$binary" "${listen[@]}" --loops 2 2>/dev/null & ;;
    esac
    server=$!
    server_pid=$server
    listening=
    for _ in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then listening=1; break; fi
        kill -0 "$server" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$listening" ]; then echo "$binary did not listen on port $port" >&2; exit 1; fi
    # Loop 1's thread starts after the listeners are bound: wait for it.
    loop1=
    case "$placement" in
    two*)
        for _ in $(seq 1 100); do
            loop1=$(for t in /proc/"$server"/task/*; do
                if [ "$(cat "$t/comm" 2>/dev/null)" = sseloop-loop ]; then echo "${t##*/}"; fi
            done)
            if [ -n "$loop1" ]; then break; fi
            sleep 0.05
        done
        if [ -z "$loop1" ]; then echo "$binary: no sseloop-loop thread" >&2; exit 1; fi ;;
    esac
    if [ "$placement" = two-split ]; then
        taskset -p -c 0 "$server" >/dev/null
        taskset -p -c 1 "$loop1" >/dev/null
    fi
    events=context-switches,cpu-migrations
    for call in writev write epoll_wait recvfrom futex; do events+=",syscalls:sys_enter_$call"; done
    perf stat -x, --per-thread -e "$events" -p "$server" -o "$out/stat" &
    stat=$!
    sleep 0.2
    taskset -c 1 target/release/sseloop-bench --addr "127.0.0.1:$port" --pid "$server" --json "$@" \
        >"$out/bench.json" || true
    kill -INT "$stat"
    wait "$stat" || true
    # Each loop's deliveries, to tell how many events each loop's writes carried.
    exec 3<>"/dev/tcp/127.0.0.1/$port"
    printf 'GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n' >&3
    cat <&3 >"$out/metrics"
    exec 3<&-
    kill "$server"
    wait "$server" 2>/dev/null || true
    server=
    python3 - "$out/bench.json" "$out/stat" "$placement" "$round" "$out/metrics" "$server_pid" <<'PY'
import collections, json, re, sys
report = json.load(open(sys.argv[1]))
d, s = report["deliveries"], report["server"]
deliveries = d["received"] - d["duplicate"]
names = {t["tid"]: (t["name"], t["cpu_run_us"]) for t in s["threads"]}
counts = collections.defaultdict(dict)
for line in open(sys.argv[2]):
    parts = line.strip().split(",")
    if len(parts) < 4 or not parts[1].replace(".", "").isdigit():
        continue
    counts[int(parts[0].rsplit("-", 1)[1])][parts[3].split(":")[-1]] = float(parts[1])
lat = report["latency"]
print(f"{sys.argv[3]} round {sys.argv[4]}: {d['per_second'] / 1e3:.0f} k deliveries/s, "
      f"{report['publish']['per_second']:.0f} publishes/s, p50 {lat['p50_us'] / 1e3:.2f} ms, "
      f"p99 {lat['p99_us'] / 1e3:.2f} ms, {s['cpu_per_delivery_us']:.2f} µs CPU per delivery, "
      f"missing {d['missing']}, client core {report['client']['core_busy_percent']:.0f} %, "
      f"steal {report['machine']['steal_us'] / 1e3:.0f} ms, "
      f"others {report['machine']['others_cpu_us'] / 1e3:.0f} ms")
# Deliveries by loop from /metrics (over the server's life: the bench's
# run is all it did); one loop has no breakdown.
metrics = open(sys.argv[5], errors="replace").read()
by_loop = {int(m[1]): int(m[2]) for m in re.finditer(r'sseloop_loop_deliveries_total\{loop="(\d+)"\} (\d+)', metrics)}
total = re.search(r"^sseloop_deliveries_total (\d+)", metrics, re.M)
pid = int(sys.argv[6])
for tid, c in sorted(counts.items()):
    name, cpu = names.get(tid, ("?", 0))
    if cpu < 1000:
        continue  # the signal thread
    # Loop 0 runs on the main thread, loop 1 on the thread sseloop-loop.
    loop = 0 if tid == pid else 1
    own = by_loop.get(loop, int(total[1]) if total and not by_loop else 0)
    writes = c.get("sys_enter_writev", 0)
    print(f"  loop {loop} CPU {cpu / 1e3:6.0f} ms, {own / max(writes, 1):5.2f} deliveries a write, "
          f"polls {c.get('sys_enter_epoll_wait', 0):.0f}, wake-ups sent {c.get('sys_enter_write', 0):.0f}, "
          f"futex {c.get('sys_enter_futex', 0):.0f}, context switches {c.get('context-switches', 0):.0f}, "
          f"migrations {c.get('cpu-migrations', 0):.0f}")
PY
done
