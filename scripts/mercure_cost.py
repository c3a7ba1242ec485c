#!/usr/bin/env python3
"""What a Mercure subscriber's URL pattern costs the server, in instructions
(callgrind counts them the same on a busy machine as on a quiet one).

For each case a fresh sseloop runs under `valgrind --tool=callgrind` on a free
port; S subscribers subscribe on /.well-known/mercure (with `*`, a URL pattern
or an exact topic), E events are published on /publish over one keep-alive
connection, each to a topic of its own or all to one, every subscriber
receives every event, and the server is shut down. Reported: the instructions
of the loop's fan-out work (`Reactor::take_messages`, inclusive: everything a
delivery costs but the socket writes) per event, and what a URL pattern adds
per event (evaluated, or answered from its cache) and per delivery.

    cargo build --release            # with symbols, see below
    scripts/mercure_cost.py target/release/sseloop

The binary needs symbols: build with CARGO_PROFILE_RELEASE_STRIP=false (and
CARGO_PROFILE_RELEASE_DEBUG=line-tables-only for file names).
"""

import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse

SUBSCRIBERS = 100
EVENTS = 200


def quote(text):
    return urllib.parse.quote(text, safe="")


def topic_of(n, same):
    return "https://bench.example/bench/0" if same else f"https://bench.example/bench/{n}"


def target(mode):
    return {
        "star": "/.well-known/mercure?match=*",
        "pattern": "/.well-known/mercure?match_urlpattern=" + quote("https://bench.example/bench/:n"),
        "exact": "/.well-known/mercure?match=" + quote(topic_of(0, True)),
    }[mode]


def run_clients(port, mode, subscribers, events, same):
    counts = [0] * subscribers
    ready = [threading.Event() for _ in range(subscribers)]

    def reader(i):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(f"GET {target(mode)} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
        buf = b""
        while b": connected" not in buf:
            chunk = s.recv(65536)
            if not chunk or buf.startswith(b"HTTP/1.1 4"):
                raise SystemExit(f"subscribe refused: {buf!r}")
            buf += chunk
        ready[i].set()
        buf = b""
        while counts[i] < events:
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
            counts[i] += buf.count(b"\ndata: e")
            buf = buf[buf.rfind(b"\n"):]
        s.close()

    threads = [threading.Thread(target=reader, args=(i,), daemon=True) for i in range(subscribers)]
    for t in threads:
        t.start()
    for r in ready:
        if not r.wait(120):
            raise SystemExit("a subscriber did not connect")
    p = socket.create_connection(("127.0.0.1", port))
    f = p.makefile("rb")
    for n in range(events):
        body = f"e{n}".encode()
        head = f"POST /publish?topic={quote(topic_of(n, same))} HTTP/1.1\r\nHost: localhost\r\n"
        p.sendall(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        line = f.readline()
        if not line.startswith(b"HTTP/1.1 200"):
            raise SystemExit(f"publish answered {line!r}")
        length = 0
        while (h := f.readline()) != b"\r\n":
            if h.lower().startswith(b"content-length:"):
                length = int(h.split(b":")[1])
        f.read(length)
    for t in threads:
        t.join(300)
    if min(counts) < events:
        raise SystemExit(f"a subscriber got {min(counts)} of {events} events")


def measure(binary, mode, subscribers, events, same):
    """Instructions of the fan-out work per event."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        log = open(os.path.join(tmp, "server.log"), "w+")
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", binary,
             "--listen", "127.0.0.1:0", "--heartbeat", "0"],
            stderr=log,
        )
        try:
            port = None
            for _ in range(600):
                log.seek(0)
                found = re.search(r"listening on http://127\.0\.0\.1:(\d+)", log.read())
                if found:
                    port = int(found.group(1))
                    break
                time.sleep(0.1)
            if port is None:
                raise SystemExit("the server did not start")
            run_clients(port, mode, subscribers, events, same)
        finally:
            server.send_signal(2)
            server.wait(120)
        annotated = subprocess.run(
            ["callgrind_annotate", "--inclusive=yes", "--threshold=100", "--auto=no", out],
            # Elsewhere than the sources: run from the repository, it
            # shortens their paths and gives exclusive counts instead.
            capture_output=True, text=True, check=True, cwd=tmp,
        ).stdout
    # The function's own line (with the binary's name) carries its
    # inclusive total; lines of code inlined into it carry parts.
    totals = [
        int(line.split()[0].replace(",", ""))
        for line in annotated.splitlines()
        if re.search(r"Reactor::take_messages \[", line)
    ]
    if not totals:
        raise SystemExit("no Reactor::take_messages in the profile: a binary with symbols?")
    return max(totals) / events


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else "target/release/sseloop"
    s, e = SUBSCRIBERS, EVENTS
    star = measure(binary, "star", s, e, same=False)
    evaluated = measure(binary, "pattern", s, e, same=False)
    cached = measure(binary, "pattern", s, e, same=True)
    star_same = measure(binary, "star", s, e, same=True)
    exact = measure(binary, "exact", s, e, same=True)
    one_pattern = measure(binary, "pattern", 1, e, same=True)
    one_exact = measure(binary, "exact", 1, e, same=True)
    print(f"fan-out instructions per event, {s} subscribers, {e} events:")
    print(f"  *, a topic per event:                    {star:9.0f}")
    print(f"  URL pattern, a topic per event:          {evaluated:9.0f}  (+{evaluated - star:.0f}: evaluated)")
    print(f"  *, one topic:                            {star_same:9.0f}")
    print(f"  URL pattern, one topic:                  {cached:9.0f}  (+{cached - star_same:.0f}: its cache)")
    print(f"  exact, one topic:                        {exact:9.0f}")
    print("per added delivery (1 against 100 subscribers):")
    print(f"  URL pattern: {(cached - one_pattern) / (s - 1):.0f}   exact: {(exact - one_exact) / (s - 1):.0f}")


if __name__ == "__main__":
    main()
