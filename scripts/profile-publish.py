#!/usr/bin/env python3
"""What one publish costs sseloop: instructions (callgrind) and syscalls
(strace -c), per publish, in total and by function or syscall name.

    scripts/profile-publish.py [--topics K] [--subscribers N] [--publishers P]
        [--window W] [--events E] [--loops L] [--binary PATH] [--top T]
        [--no-strace] [--no-callgrind]

The server runs under the tool while sseloop-bench publishes twice over
the same streams setup: E events, then 3E. Everything but the publishes
(start-up, the streams' connects and closes) is the same in both runs, so
the difference divided by 2E is what a publish costs alone, whatever the
tool's own start-up and the connects cost. Instructions are counted in
the server's own code and the libraries it calls in user space (not the
kernel): repeatable to a few per cent whatever else the machine runs.
Syscalls are counted per name over every thread.

Defaults: 1 000 topics with one subscriber each, one publishing connection,
closed loop with one event outstanding (each publish is read, carried out
and answered alone: the figure without batching); `--publishers 10
--window 32` shows what batching under load saves.

Builds the server with symbols into target/profile (release settings, not
stripped) unless --binary names one; needs valgrind and strace.
"""

import argparse
import collections
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def build(args):
    if args.binary or args.command:
        return args.binary
    env = dict(os.environ, CARGO_PROFILE_RELEASE_STRIP="false",
               CARGO_PROFILE_RELEASE_DEBUG="line-tables-only")
    subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "sseloop",
                    "--target-dir", "target/profile"], cwd=ROOT, env=env, check=True)
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "sseloop-bench"],
                   cwd=ROOT, check=True)
    return os.path.join(ROOT, "target/profile/release/sseloop")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def await_port(port, proc, seconds=60):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"the server exited before it listened (status {proc.returncode})")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"the server did not listen on {port} within {seconds} s")


def settled(args, port, seconds=120):
    """Waits until the server has closed every stream of the last run (the
    bench exits before the server has seen every close): each run's
    dump then holds its closes, not the next one's. Another server than
    sseloop has no /metrics to ask: it gets a few seconds."""
    if args.command:
        time.sleep(5)
        return
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                s.sendall(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
                text = b""
                while chunk := s.recv(65536):
                    text += chunk
        except OSError:
            text = b""
        # This request's own connection is the one left.
        if re.search(rb"^sseloop_connections 1$", text, re.M):
            return
        time.sleep(0.2)
    sys.exit("the server did not close the streams")


def bench(args, port, events):
    cmd = [os.path.join(ROOT, "target/release/sseloop-bench"),
           "--addr", f"127.0.0.1:{port}", "--subscribers", str(args.subscribers),
           "--topics", str(args.topics), "--publishers", str(args.publishers),
           "--events", str(events), "--rate", "0", "--window", str(args.window),
           "--timeout", "120s", "--max-time", "30m"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"sseloop-bench failed:\n{done.stdout}{done.stderr}")
    settled(args, port)


def server_cmd(args, binary, port):
    if args.command:
        return [part.replace("{port}", str(port)) for part in args.command.split()]
    return [binary, "--listen", f"127.0.0.1:{port}", "--log-level", "warn",
            "--loops", str(args.loops), "--max-connections", str(args.subscribers + 1000)]


def stop(proc, traced=False):
    """Ends the server with SIGINT; under strace, the traced child is sent
    it (strace itself would only detach), and strace ends with it."""
    if traced:
        children = subprocess.run(["pgrep", "-P", str(proc.pid)],
                                  capture_output=True, text=True).stdout.split()
        for child in children:
            os.kill(int(child), signal.SIGINT)
    else:
        proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=120)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# --- callgrind -----------------------------------------------------------

# Calls to these are heap allocations (a realloc that grows in place is
# counted too: it costs about as much).
ALLOCATORS = ("malloc", "realloc", "calloc")


def exclusive_costs(path):
    """{function: instructions spent in its own code} of one dump
    (written with --compress-strings=no), and under the key ALLOCATIONS
    the calls made to the allocator."""
    costs = collections.Counter()
    fn = callee = None
    skip_next = False
    with open(path) as f:
        for line in f:
            if line.startswith("fn="):
                fn = line[3:].strip()
            elif line.startswith("cfn="):
                callee = line[4:].strip()
            elif line.startswith("calls="):
                if callee in ALLOCATORS:
                    costs[ALLOCATIONS] += int(line[6:].split()[0])
                skip_next = True  # the next cost line is the callee's, inclusive
            elif line[:1].isdigit() or line[:1] in "+-*":
                if skip_next:
                    skip_next = False
                    continue
                parts = line.split()
                if len(parts) >= 2 and fn is not None:
                    costs[fn] += int(parts[1])
    return costs


ALLOCATIONS = " allocations"


def dumps(out_dir):
    """The dump files written so far, by part number, all threads."""
    parts = collections.defaultdict(list)
    for name in os.listdir(out_dir):
        m = re.match(r"cg\.out(?:\.(\d+))?(?:-(\d+))?$", name)
        if m:
            parts[int(m.group(1) or 0)].append(os.path.join(out_dir, name))
    return parts


def costs_of_part(out_dir, part):
    total = collections.Counter()
    for path in dumps(out_dir).get(part, []):
        total.update(exclusive_costs(path))
    return total


def callgrind(args, binary):
    out_dir = tempfile.mkdtemp(prefix="profile-publish-")
    port = free_port()
    cmd = ["valgrind", "--tool=callgrind", "--compress-strings=no", "--compress-pos=no",
           "--separate-threads=yes", f"--callgrind-out-file={out_dir}/cg.out",
           ] + server_cmd(args, binary, port)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await_port(port, proc)
        counts = []
        for events in (args.events, 3 * args.events):
            bench(args, port, events)
            before = set(sum(dumps(out_dir).values(), []))
            subprocess.run(["callgrind_control", "-d", str(proc.pid)],
                           capture_output=True, check=True)
            deadline = time.monotonic() + 60
            while set(sum(dumps(out_dir).values(), [])) == before:
                if time.monotonic() > deadline:
                    sys.exit("callgrind wrote no dump")
                time.sleep(0.2)
            time.sleep(0.5)  # every thread's file
            counts.append(max(dumps(out_dir)))
    finally:
        stop(proc)
    first, second = (costs_of_part(out_dir, p) for p in counts)
    publishes = 2 * args.events
    diff = {fn: (second[fn] - first.get(fn, 0)) / publishes for fn in second}
    allocations = diff.pop(ALLOCATIONS, 0)
    total = sum(diff.values())
    print(f"instructions per publish: {total:,.0f} (user space, server threads)")
    print(f"heap allocations per publish: {allocations:.2f}")
    for fn, cost in sorted(diff.items(), key=lambda kv: -kv[1])[: args.top]:
        print(f"  {cost:8,.0f}  {cost * 100 / total:5.1f} %  {shorten(fn)}")


def shorten(fn):
    fn = re.sub(r"::h[0-9a-f]{16}$", "", fn)
    fn = re.sub(r"<[^<>]*>", "<…>", fn) if len(fn) > 100 else fn
    return fn


# --- strace ----------------------------------------------------------------

def strace_counts(args, binary, events):
    port = free_port()
    with tempfile.NamedTemporaryFile(suffix=".strace", delete=False) as f:
        out = f.name
    cmd = ["strace", "-f", "-c", "-o", out] + server_cmd(args, binary, port)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await_port(port, proc)
        bench(args, port, events)
    finally:
        stop(proc, traced=True)
    calls = {}
    with open(out) as f:
        for line in f:
            parts = line.split()
            # % time, seconds, usecs/call, calls, [errors], syscall
            if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
                calls[parts[-1]] = int(parts[3])
    os.unlink(out)
    return calls


def strace(args, binary):
    first = strace_counts(args, binary, args.events)
    second = strace_counts(args, binary, 3 * args.events)
    publishes = 2 * args.events
    diff = {name: (second.get(name, 0) - first.get(name, 0)) / publishes
            for name in set(first) | set(second)}
    shown = {name: n for name, n in diff.items() if abs(n) >= 0.01}
    print(f"syscalls per publish: {sum(shown.values()):.2f}")
    for name, n in sorted(shown.items(), key=lambda kv: -kv[1]):
        print(f"  {n:6.2f}  {name}")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--topics", type=int, default=1000)
    p.add_argument("--subscribers", type=int)
    p.add_argument("--publishers", type=int, default=1)
    p.add_argument("--window", type=int, default=1)
    p.add_argument("--events", type=int, default=2000)
    p.add_argument("--loops", default="1")
    p.add_argument("--binary")
    p.add_argument("--command", help="another server to measure alike, its port written {port} "
                   "(e.g. a peer: '/tmp/sseloop-peers/axum-target/release/axum-sse {port}')")
    p.add_argument("--top", type=int, default=25)
    p.add_argument("--no-strace", action="store_true")
    p.add_argument("--no-callgrind", action="store_true")
    args = p.parse_args()
    if args.subscribers is None:
        args.subscribers = args.topics
    binary = build(args)
    print(f"{args.subscribers} subscribers on {args.topics} topics, {args.publishers} "
          f"publishing connection(s), window {args.window}, --loops {args.loops}")
    if not args.no_callgrind:
        callgrind(args, binary)
    if not args.no_strace:
        strace(args, binary)


if __name__ == "__main__":
    main()
