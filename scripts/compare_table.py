"""The table of scripts/compare.sh: medians over rounds of each case and
server, from the results.jsonl it wrote (one sseloop-bench JSON per run);
for the many-small-streams cases a table of the publishing side, with the
spread over rounds; then, for the runs whose server spread its CPU over
several threads (or processes), each thread's median share of the
server's CPU over the run; then what else took the machine meanwhile.

    python3 scripts/compare_table.py RESULTS.jsonl [--others-under PERCENT]

With --others-under, a run during which everything but the server and the
client took more than that share of a CPU (a build, a browser: the
report's machine.others_percent) is left out of the medians as disturbed,
and the runs column says how many were."""

import argparse
import json
import statistics
import sys

CASES = {
    "latency": "1 subscriber, 1 000 events/s",
    "fanout": "1 000 subscribers, 200 events/s",
    "fanout-fast": "1 000 subscribers, 1 000 events/s",
    "closed": "1 000 subscribers, closed loop",
    "idle": "10 000 idle subscribers, 15 s",
    "wide": "10 000 subscribers, 10 events/s",
    "wide-closed": "10 000 subscribers, closed loop",
    "big": "19 000 subscribers, 10 events/s",
    "big-closed": "19 000 subscribers, closed loop",
    "streams": "10 000 topics × 1 subscriber, 20 000 events/s",
    "streams-fast": "10 000 topics × 1 subscriber, 100 000 events/s",
    "streams-closed": "10 000 topics × 1 subscriber, closed loop",
}

# Many small streams: what a publish costs matters, not the fan-out.
STREAMS = ("streams", "streams-fast", "streams-closed")

# Cases wide enough for the memory per stream to show.
WIDE = ("idle", "wide", "wide-closed", "big", "big-closed") + STREAMS

# A thread with less than this share of the server's CPU over the run (a
# signal handler, nginx's master) is left out of the per-thread section.
THREAD_SHARE_SHOWN = 1.0


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def dig(result, *path):
    for key in path:
        if not isinstance(result, dict) or key not in result:
            return None
        result = result[key]
    return result


def duration(us):
    if us is None:
        return "—"
    if us >= 1_000_000:
        return f"{us / 1e6:.1f} s"
    if us >= 1000:
        return f"{us / 1000:.1f} ms" if us < 100_000 else f"{us / 1000:.0f} ms"
    return f"{us:.0f} µs"


def number(v, unit=""):
    if v is None:
        return "—"
    if v >= 10_000:
        return f"{v / 1000:.0f} k{unit}"
    return f"{v:.0f}{unit}"


# Runs left out as disturbed, by (case, server).
DISTURBED = {}


def main(path, others_under=None):
    runs = {}
    for line in open(path):
        run = json.loads(line)
        # A run that exited non-zero (no report, or a faulty one) is counted
        # as failed and left out of the medians.
        good = run.get("exit", 0) == 0 and run["result"] is not None
        key = (run["case"], run["server"])
        others = dig(run["result"], "machine", "others_percent") if good else None
        if others_under is not None and others is not None and others > others_under:
            DISTURBED[key] = DISTURBED.get(key, 0) + 1
            runs.setdefault(key, [])
            continue
        runs.setdefault(key, []).append(run["result"] if good else None)
    # A cluster's Redis has a column of its own, when a cluster ran.
    with_redis = any(dig(r, "redis") for rs in runs.values() for r in rs if r)
    header = "| case | server | runs | p50 | p99 | p99 from schedule | deliveries/s | missing | server CPU per delivery | server RSS per stream | server CPU while idle |"
    print(header + (" Redis CPU per delivery |" if with_redis else ""))
    print("| --- " * (12 if with_redis else 11) + "|")
    for case, title in CASES.items():
        for (c, server), results in runs.items():
            if c != case:
                continue
            ok = [r for r in results if r is not None]
            cells = [title, server, runs_cell(results, (case, server))]
            if case == "idle":
                cells += ["—", "—", "—", "—", "—", "—"]
            else:
                cpu = median([dig(r, "server", "cpu_per_delivery_us") for r in ok])
                cells += [
                    duration(median([dig(r, "latency", "p50_us") for r in ok])),
                    duration(median([dig(r, "latency", "p99_us") for r in ok])),
                    # A closed loop has no schedule.
                    duration(median([dig(r, "scheduled", "p99_us") for r in ok])),
                    number(median([dig(r, "deliveries", "per_second") for r in ok])),
                    number(median([dig(r, "deliveries", "missing") for r in ok])),
                    "—" if cpu is None else f"{cpu:.2f} µs",
                ]
            rss = median([dig(r, "server", "rss_bytes_per_stream") for r in ok])
            cells.append("—" if rss is None or case not in WIDE else f"{rss:.0f} B")
            idle_cpu = median([dig(r, "server", "cpu_run_us") for r in ok]) if case == "idle" else None
            cells.append("—" if idle_cpu is None else f"{idle_cpu / 1000:.0f} ms")
            if with_redis:
                redis = median([dig(r, "redis", "cpu_per_delivery_us") for r in ok])
                cells.append("—" if redis is None else f"{redis:.2f} µs")
            print("| " + " | ".join(cells) + " |")
    streams_section(runs)
    thread_section(runs)
    machine_section(runs)


def spread(values, show):
    """The median, and the range over rounds when there are several."""
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return show(values[0])
    return f"{show(statistics.median(values))} ({show(min(values))}–{show(max(values))})"


def streams_section(runs):
    rows = []
    for case in STREAMS:
        for (c, server), results in runs.items():
            if c != case:
                continue
            ok = [r for r in results if r is not None]
            per_second = [dig(r, "publish", "per_second") for r in ok]
            cpu = [dig(r, "server", "cpu_per_publish_us") for r in ok]
            rows.append([
                CASES[case], server, runs_cell(results, (case, server)),
                spread(per_second, number),
                spread(cpu, lambda v: f"{v:.1f} µs"),
                duration(median([dig(r, "latency", "p50_us") for r in ok])),
                duration(median([dig(r, "latency", "p99_us") for r in ok])),
                duration(median([dig(r, "scheduled", "p99_us") for r in ok])),
                duration(median([dig(r, "publish", "max_lag_us") for r in ok])),
                spread([dig(r, "client", "core_busy_percent") for r in ok], lambda v: f"{v:.0f} %"),
            ])
    if not rows:
        return
    print()
    print("Many small streams: publishes a second and server CPU per publish, median (range) over rounds, and how busy the client's core was")
    print()
    print("| case | server | runs | publishes/s | server CPU per publish | p50 | p99 | p99 from schedule | max lag | client core busy |")
    print("| --- " * 10 + "|")
    for cells in rows:
        print("| " + " | ".join(cells) + " |")


def runs_cell(results, key):
    """How many runs the medians are of, and how many failed or were left
    out as disturbed."""
    ok = [r for r in results if r is not None]
    notes = []
    if len(results) > len(ok):
        notes.append(f"{len(results) - len(ok)} failed")
    if DISTURBED.get(key):
        notes.append(f"{DISTURBED[key]} disturbed")
    return f"{len(ok)}" + (f" ({', '.join(notes)})" if notes else "")


def thread_shares(result):
    """{label: share %} of one run's server threads; a label is the
    thread's name, numbered (#2, #3, ...) where several threads or
    processes share one (nginx's master and workers are all `nginx`)."""
    threads = dig(result, "server", "threads") or []
    seen = {}
    shares = {}
    for t in threads:
        name = t.get("name", "?")
        seen[name] = seen.get(name, 0) + 1
        label = name if seen[name] == 1 else f"{name} #{seen[name]}"
        if t.get("run_share_percent") is not None:
            shares[label] = t["run_share_percent"]
    return shares


def thread_section(runs):
    rows = []
    for case, title in CASES.items():
        if case == "idle":
            continue
        for (c, server), results in runs.items():
            if c != case:
                continue
            per_run = [thread_shares(r) for r in results if r is not None]
            labels = []
            for shares in per_run:
                labels += [label for label in shares if label not in labels]
            medians = [(label, median([s.get(label, 0.0) for s in per_run])) for label in labels]
            shown = [(label, m) for label, m in medians if m >= THREAD_SHARE_SHOWN]
            if len(shown) < 2:
                continue
            cpu = median([dig(r, "server", "cpu_per_delivery_us") for r in results if r is not None])
            cells = [title, server, " · ".join(f"{label} {m:.0f} %" for label, m in shown)]
            # Each thread's CPU per delivery: its share of the whole.
            cells.append("—" if cpu is None else " · ".join(f"{m * cpu / 100:.2f} µs" for _, m in shown))
            rows.append(cells)
    if not rows:
        return
    print()
    print("Server CPU by thread: each thread's share of the server's CPU over the run, and that share of the CPU per delivery (medians over rounds; threads under 1 % left out)")
    print()
    print("| case | server | share of server CPU | CPU per delivery |")
    print("| --- | --- | --- | --- |")
    for cells in rows:
        print("| " + " | ".join(cells) + " |")


def machine_section(runs):
    """What else took the machine during each case's runs: the hypervisor
    (steal) and everything but the server and the client (a build, a
    browser), median and most over rounds: a run that others disturbed
    shows here."""
    rows = []
    for case, title in CASES.items():
        for (c, server), results in runs.items():
            if c != case:
                continue
            ok = [r for r in results if r is not None]
            steal = [dig(r, "machine", "steal_us") for r in ok]
            others = [dig(r, "machine", "others_percent") for r in ok]
            if not any(v is not None for v in steal + others):
                continue
            def most(vs, show):
                vs = [v for v in vs if v is not None]
                return show(max(vs)) if vs else "—"
            percent = lambda v: f"{v:.0f} %"
            rows.append([title, server, duration(median(steal)), most(steal, duration),
                         "—" if median(others) is None else percent(median(others)), most(others, percent)])
    if not rows:
        return
    print()
    print("The machine during the runs: CPU time the hypervisor stole, and the share of a CPU everything but the server and the client took (median and most over rounds)")
    print()
    print("| case | server | steal | most | others' share of a CPU | most |")
    print("| --- " * 6 + "|")
    for cells in rows:
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="the tables of scripts/compare.sh")
    parser.add_argument("results")
    parser.add_argument("--others-under", type=float, metavar="PERCENT",
                        help="leave out runs during which others took more than this share of a CPU")
    args = parser.parse_args()
    main(args.results, args.others_under)
