#!/usr/bin/env bash
# Runs the README's first commands exactly as the README writes them, read
# out of README.md itself so the two cannot drift, and checks what the README
# says they do (.ci/run runs this after the tests):
#
#   1. the quick-start command (`cargo run --release -- --demo`): the page at
#      the README's address is the wire inspector, and a subscriber of topic
#      `demo` receives a demo event;
#   2. the empty-hub command (`cargo run --release`): /health answers, and the
#      curl session of "On the wire" (a subscriber in one terminal, a publish
#      from another) prints what the README's transcript shows, ids aside.
#
#   scripts/check-quickstart.sh
#
# Each server runs in a process group of its own, ended on the way out, also
# on failure. The README's port (8080) must be free: the check says so and
# fails when it is taken. Every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."

readme=README.md
# Bounds: the server's start (after the build below, cargo only checks it is
# fresh), one demo event (the demo publishes several a second), one stream
# item, and a shutdown.
start_timeout_s=60
event_timeout_s=10
line_timeout_s=5
stop_timeout_s=10

fail() {
    echo "check-quickstart: $*" >&2
    exit 1
}

# The lines of a README section: from its "## Title" line to the next "## ".
section() {
    awk -v title="## $1" '$0 == title { on = 1; next } on && /^## / { exit } on' "$readme"
}

# The README's commands and addresses.
quick=$(section "Quick start")
[ -n "$quick" ] || fail "README.md has no \"## Quick start\" section"
demo_line=$(printf '%s\n' "$quick" | awk '/^```sh$/ { getline; print; exit }')
demo_cmd=$(printf '%s' "${demo_line%%#*}" | sed 's/[[:space:]]*$//')
base=$(printf '%s' "$demo_line" | grep -o 'http://[0-9.]*:[0-9]*' | head -n 1) ||
    fail "the quick-start line names no address: $demo_line"
page=$(printf '%s\n' "$quick" | grep -o '<http://[^>]*>' | head -n 1 | tr -d '<>') ||
    fail "the quick start names no page to open"
empty_cmd=$(printf '%s\n' "$quick" | sed -n 's/.*`\(cargo run[^`]*\)` serves an empty hub.*/\1/p' | head -n 1)
[ -n "$demo_cmd" ] || fail "the quick start has no command in a sh block"
[ -n "$empty_cmd" ] || fail "the quick start does not say which command serves an empty hub"
case "$page" in "$base"/*) ;; *) fail "the page $page is not on the quick start's address $base" ;; esac
hostport=${base#http://}
host=${hostport%:*}
port=${hostport##*:}

work=$(mktemp -d)
pgid=
stop_server() {
    [ -n "$pgid" ] || return 0
    local group=$pgid
    pgid=
    kill -0 -- "-$group" 2>/dev/null || return 0
    kill -TERM -- "-$group" 2>/dev/null || true
    # A process group has no handle to wait on: watch it go, then SIGKILL
    # whatever is left.
    local tries=$((stop_timeout_s * 20))
    while kill -0 -- "-$group" 2>/dev/null && [ "$tries" -gt 0 ]; do
        sleep 0.05
        tries=$((tries - 1))
    done
    if kill -0 -- "-$group" 2>/dev/null; then
        echo "check-quickstart: the server did not stop on SIGTERM within ${stop_timeout_s}s: killed" >&2
        kill -KILL -- "-$group" 2>/dev/null || true
    fi
}
sub_pid=
cleanup() {
    local status=$?
    [ -z "$sub_pid" ] || kill -- "-$sub_pid" 2>/dev/null || true
    stop_server
    if [ "$status" -ne 0 ]; then
        for log in "$work"/*.log; do
            [ -f "$log" ] || continue
            echo "---- $(basename "$log") ----" >&2
            tail -n 40 "$log" >&2
        done
    fi
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port_taken() { (exec 3<>"/dev/tcp/$host/$port") 2>/dev/null; }

# Starts the command "$2" as a shell would, in a process group of its own
# (setsid: this script runs without job control, so the child is no group
# leader and setsid execs in place: its pid is the group's id), and waits
# until "$base$3" answers.
start_server() {
    local name=$1 cmd=$2 probe=$3
    if port_taken; then
        fail "port $port on $host is taken (see \`ss -ltnp 'sport = :$port'\`): the README's \`$cmd\` needs it; stop what listens there and run again"
    fi
    echo "check-quickstart: $cmd" >&2
    setsid bash -c "$cmd" >"$work/$name.log" 2>&1 </dev/null &
    local pid=$!
    pgid=$pid
    [ "$(ps -o pgid= -p "$pid" | tr -d ' ')" = "$pid" ] || fail "$cmd did not get a process group of its own"
    local tries=$((start_timeout_s * 10))
    until curl -sf --max-time 1 -o /dev/null "$base$probe"; do
        kill -0 "$pid" 2>/dev/null || fail "\`$cmd\` exited before $base$probe answered"
        tries=$((tries - 1))
        [ "$tries" -gt 0 ] || fail "$base$probe did not answer within ${start_timeout_s}s of \`$cmd\`"
        sleep 0.1
    done
}

# Build first, so the start-up bound need not cover a compile; the commands
# below then run exactly as a user types them.
cargo build --release --quiet --bin sseloop

# ---- 1. the quick start ---------------------------------------------------
start_server demo "$demo_cmd" /health
answer=$(curl -s --max-time 5 -o "$work/page.html" -w '%{http_code} %{content_type}' "$page") ||
    fail "GET $page failed"
[ "$answer" = "200 text/html; charset=utf-8" ] || fail "GET $page answered $answer, not the inspector page"
grep -q '<title>sseloop · wire inspector</title>' "$work/page.html" ||
    fail "GET $page is not the wire inspector page"
# The first whole demo event on topic demo: its type and its data. curl ends
# at the next write after awk has what it needs, or at its time bound.
event=$(curl -sN --max-time "$event_timeout_s" "$base/events?topic=demo" | awk '
    /^$/ { if (type != "" && data != "") { print type " " data; exit } type = ""; data = ""; next }
    /^event: / { type = substr($0, 8) }
    /^data: / { data = substr($0, 7) }') || true
case "$event" in
progress\ \{*\"job\"*) ;;
complete\ \{*\"job\"*) ;;
error\ \{*\"job\"*) ;;
*) fail "no demo event on topic demo within ${event_timeout_s}s (got ${event:-nothing})" ;;
esac
echo "check-quickstart: $page serves the inspector; a subscriber of demo got: $event" >&2
stop_server

# ---- 2. the empty hub and the README's curl session -------------------------
start_server empty "$empty_cmd" /health
health=$(curl -s --max-time 5 "$base/health") || fail "GET $base/health failed"
[ "$health" = ok ] || fail "GET $base/health answered ${health:-nothing}, not ok"

wire=$(section "On the wire")
# The two console blocks: "$ command" and the lines it prints, in order.
blocks=$(printf '%s\n' "$wire" | awk '/^```console$/ { n++; on = 1; next } /^```$/ { on = 0 } on { print n "\t" $0 }')
sub_cmd=$(printf '%s\n' "$blocks" | awk -F'\t' '$1 == 1 && /\t\$ / { sub(/^[^\t]*\t\$ /, ""); print; exit }')
pub_cmd=$(printf '%s\n' "$blocks" | awk -F'\t' '$1 == 2 && /\t\$ / { sub(/^[^\t]*\t\$ /, ""); print; exit }')
[ -n "$sub_cmd" ] && [ -n "$pub_cmd" ] || fail "\"On the wire\" lacks its two console blocks"
expected_sub=$(printf '%s\n' "$blocks" | awk -F'\t' '$1 == 1 && !/\t\$ / { sub(/^[^\t]*\t/, ""); print }')
expected_pub=$(printf '%s\n' "$blocks" | awk -F'\t' '$1 == 2 && !/\t\$ / { sub(/^[^\t]*\t/, ""); print }')
# Ids are the run (12 hex digits, new each start) and a sequence number.
normalise() { sed -E 's/[0-9a-f]{12}-([0-9]+)/RUN-\1/g'; }

mapfile -t expected_lines < <(printf '%s\n' "$expected_sub")
connected=-1
for i in "${!expected_lines[@]}"; do
    [ "${expected_lines[$i]}" != ": connected" ] || { connected=$i; break; }
done
[ "$connected" -ge 0 ] || fail "the README's subscriber transcript has no \": connected\" line"

# The subscriber, as the first terminal runs it (in a group of its own),
# read line by line through a FIFO, so each wait is a bounded read.
mkfifo "$work/sub.fifo"
setsid bash -c "$sub_cmd" >"$work/sub.fifo" 2>"$work/sub.log" </dev/null &
sub_pid=$!
exec 4<"$work/sub.fifo"
got_sub=
read_sub_lines() { # until the transcript so far has $1 lines
    local line
    while [ "$(printf '%s' "$got_sub" | grep -c '')" -lt "$1" ]; do
        IFS= read -r -t "$line_timeout_s" line <&4 ||
            fail "the subscriber (\`$sub_cmd\`) stopped or stalled after printing:
$got_sub"
        got_sub+="${line%$'\r'}"$'\n'
    done
}
# Through the ": connected" line: subscribed, so what is published next
# reaches it.
read_sub_lines $((connected + 1))
bash -c "$pub_cmd" >"$work/pub.out" 2>"$work/pub.log" || fail "\`$pub_cmd\` failed"
# Byte for byte, its line end included: the shell prompt must not stick to it.
printf '%s\n' "$expected_pub" | normalise >"$work/pub.expected"
normalise <"$work/pub.out" >"$work/pub.got"
cmp -s "$work/pub.expected" "$work/pub.got" ||
    fail "\`$pub_cmd\` printed (od -c) $(od -An -c "$work/pub.out" | tr -s ' ' | head -n 2); the README shows it printing the line \"$expected_pub\""
# The rest: the event, up to the blank line that ends it.
read_sub_lines "${#expected_lines[@]}"
kill -- "-$sub_pid" 2>/dev/null || true
wait "$sub_pid" 2>/dev/null || true
sub_pid=
exec 4<&-
[ "$(printf '%s' "$got_sub" | normalise)" = "$(printf '%s\n' "$expected_sub" | normalise)" ] ||
    fail "the subscriber printed
$got_sub
where the README shows
$expected_sub"
[ "$(normalise <"$work/pub.out")" = "$(printf '%s' "$got_sub" | sed -n 's/^id: //p' | normalise)" ] ||
    fail "the publish answered $(cat "$work/pub.out"), not the id the subscriber got"
echo "check-quickstart: \`$empty_cmd\` serves an empty hub; the README's curl session prints its transcript" >&2
stop_server
echo "check-quickstart: ok" >&2
