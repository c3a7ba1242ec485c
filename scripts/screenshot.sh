#!/usr/bin/env bash
# Takes docs/inspector.png, the README's picture of the wire inspector, with
# the machinery of its test (tests/clients/inspector-check.mjs): the release
# binary runs `--demo` on a free loopback port, the page subscribes to topic
# `demo`, lets the demo's render jobs fill both views, publishes one
# multi-line event through its form and is shot at 1280x800.
#
#   scripts/screenshot.sh [OUTPUT.png]
#
# Needs chromium (Debian package) and `npm ci` in tests/clients; ./test.sh
# installs both.
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:-docs/inspector.png}
# Long enough for a few render jobs to report, short enough that the event
# published afterwards is still near the top of both views.
settle_ms=3000
startup_timeout_s=10

command -v chromium >/dev/null || { echo "screenshot.sh: chromium not found: apt-get install chromium" >&2; exit 1; }
command -v node >/dev/null || { echo "screenshot.sh: node not found: apt-get install nodejs npm" >&2; exit 1; }
if [ ! -f tests/clients/node_modules/playwright-core/package.json ]; then
    (cd tests/clients && npm ci --no-audit --no-fund)
fi

cargo build --release --bin sseloop

work=$(mktemp -d)
server=
cleanup() {
    if [ -n "$server" ]; then
        kill "$server" 2>/dev/null || true
        wait "$server" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

target/release/sseloop --demo --listen 127.0.0.1:0 2>"$work/server.log" &
server=$!

# Port 0: the kernel picks the port and the log line names it.
addr=
for _ in $(seq $((startup_timeout_s * 20))); do
    addr=$(sed -n 's|.*listening on http://\([0-9.:]*\).*|\1|p' "$work/server.log" | head -n 1)
    [ -n "$addr" ] && break
    kill -0 "$server" 2>/dev/null || break
    sleep 0.05
done
if [ -z "$addr" ]; then
    echo "screenshot.sh: sseloop did not start:" >&2
    cat "$work/server.log" >&2
    exit 1
fi

mkdir -p "$(dirname "$out")"
# A fresh HOME and TMPDIR: Chromium's profile and caches go there and are
# removed with it. No CJK or emoji in the data: not every machine has fonts
# for them, and tofu boxes would end up in the README.
HOME="$work" TMPDIR="$work" node tests/clients/inspector-check.mjs "http://$addr" \
    --topics demo \
    --type log \
    --data $'frame 48 of 120 rendered\ncache: 3 hits, 1 miss \xe2\x9c\x93' \
    --settle-ms "$settle_ms" \
    --screenshot "$out" >"$work/report.json" || {
    echo "screenshot.sh: inspector-check failed:" >&2
    cat "$work/report.json" >&2
    exit 1
}
echo "screenshot.sh: wrote $out" >&2
