#!/usr/bin/env bash
# Installs what the tests need and runs them all, the doctests (the README's
# Rust blocks among them) included: the README's one test command, which CI
# runs as the README writes it (scripts/check-readme.sh).
#
# The real-client tests (tests/it/browsers.rs, nginx.rs, clients.rs,
# inspector.rs, corpus.rs, lab/browsers.rs and lab/nginx.rs, which the
# browsers:: and nginx:: filters below also match) drive headless Chromium
# and Firefox, nginx, the
# npm packages `eventsource`, `@microsoft/fetch-event-source` and
# `playwright-core`, and the PyPI packages `sseclient-py` and `httpx-sse`;
# tests/it/service.rs checks the systemd unit with systemd-analyze (Debian
# package systemd) and strace.
# What is missing is installed here: the Debian packages with apt-get (as
# root, or through sudo), the npm packages with `npm ci` in tests/clients,
# the Python ones with pip into the venv tests/clients/.venv.
# Those tests fail when a client is missing. SSELOOP_SKIP_REAL_CLIENTS=1 leaves
# them out (and the installs): cargo counts them as filtered out, not passed.
# PyJWT, for the private-topic tests, is installed either way (see below).
#
# The TLS tests (tests/it/tls.rs: nodes on a redis-server and a Sentinel
# that take TLS, with a CA the test makes with the openssl program) need
# the cargo feature `tls`: a second run, `cargo test --features tls --test
# it tls::`, after the rest, counted in the same summary.
set -euo pipefail
cd "$(dirname "$0")"

have() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }

# The cluster tests (tests/it/cluster.rs, tests/it/real/sentinel.rs) run
# real Redis servers and Sentinels of their own, on free ports:
# redis-server and redis-sentinel are needed even without the real clients.
# (Installing them may also start the system's own Redis on port 6379 and
# Sentinel on 26379; the tests do not use them.)
redis_packages=()
have redis-server || redis_packages+=(redis-server)
have redis-sentinel || redis_packages+=(redis-sentinel)
# The TLS tests make their CA and certificates with it.
have openssl || redis_packages+=(openssl)
if [ "${#redis_packages[@]}" -gt 0 ]; then
    sudo=()
    if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
    echo "test.sh: installing ${redis_packages[*]}" >&2
    "${sudo[@]}" apt-get update
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${redis_packages[@]}"
fi

filters=()
if [ "${SSELOOP_SKIP_REAL_CLIENTS:-}" = 1 ]; then
    echo "test.sh: SSELOOP_SKIP_REAL_CLIENTS=1: the real-client tests are left out" >&2
    # browsers:: covers private::browsers:: and mercure::browsers:: too.
    filters=(--skip browsers:: --skip nginx:: --skip clients:: --skip inspector:: --skip corpus:: --skip service::)
else
    packages=()
    have chromium || packages+=(chromium)
    have firefox-esr || packages+=(firefox-esr)
    have nginx || packages+=(nginx)
    have node || packages+=(nodejs)
    have npm || packages+=(npm)
    if ! have python3; then
        packages+=(python3 python3-venv)
    elif ! python3 -c 'import ensurepip, venv' 2>/dev/null; then
        packages+=(python3-venv)
    fi
    have systemd-analyze || packages+=(systemd)
    have strace || packages+=(strace)
    have ss || packages+=(iproute2)
    if [ "${#packages[@]}" -gt 0 ]; then
        sudo=()
        if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
        echo "test.sh: installing ${packages[*]}" >&2
        "${sudo[@]}" apt-get update
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${packages[@]}"
    fi
    # npm ci when the pinned packages are not installed, or the lock changed
    # since they were.
    if [ ! -f tests/clients/node_modules/.package-lock.json ] ||
        [ tests/clients/package-lock.json -nt tests/clients/node_modules/.package-lock.json ]; then
        (cd tests/clients && npm ci --no-audit --no-fund)
    fi
    # A fresh venv when there is none, or the pinned list changed since it
    # was made (the venv keeps a copy of the list it was made from).
    venv=tests/clients/.venv
    if ! cmp -s tests/clients/requirements.txt "$venv/requirements.txt"; then
        echo "test.sh: installing the Python clients into $venv" >&2
        rm -rf "$venv"
        python3 -m venv "$venv"
        "$venv/bin/pip" install --no-input --disable-pip-version-check -q -r tests/clients/requirements.txt
        cp tests/clients/requirements.txt "$venv/requirements.txt"
    fi
fi

# PyJWT mints the tokens of the private-topic tests (tests/it/private/),
# which run with or without the real clients: a venv of its own,
# tests/pyjwt/venv, made when missing or older than its requirements.
pyjwt=tests/pyjwt
if [ ! -x "$pyjwt/venv/bin/python" ] || [ "$pyjwt/requirements.txt" -nt "$pyjwt/venv/.installed" ]; then
    if ! python3 -m venv --help >/dev/null 2>&1; then
        sudo=()
        if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
        echo "test.sh: installing python3-venv" >&2
        "${sudo[@]}" apt-get update
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv
    fi
    echo "test.sh: installing $pyjwt/requirements.txt into $pyjwt/venv" >&2
    python3 -m venv "$pyjwt/venv"
    "$pyjwt/venv/bin/pip" install --quiet --disable-pip-version-check -r "$pyjwt/requirements.txt"
    touch "$pyjwt/venv/.installed"
fi

# The per-target "test result" lines end with the last target's, often a
# bench with 0 tests; the summary line sums them all.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
if [ "${#filters[@]}" -eq 0 ]; then
    cargo test --workspace --all-targets 2>&1 | tee "$log" || status=$?
    # --all-targets leaves out the doctests: the crate docs' examples and
    # the README's Rust blocks, which src/lib.rs includes.
    cargo test --workspace --doc 2>&1 | tee -a "$log" || status=$?
else
    # The benches' harness (criterion) takes no --skip: they run apart.
    cargo test --workspace --lib --bins --test it --test alloc --examples -- "${filters[@]}" 2>&1 | tee "$log" || status=$?
    cargo test --workspace --bench '*' 2>&1 | tee -a "$log" || status=$?
    cargo test --workspace --doc 2>&1 | tee -a "$log" || status=$?
fi
# The TLS tests, built with the feature that has TLS (the default build
# has none).
cargo test --features tls --test it tls:: 2>&1 | tee -a "$log" || status=$?
awk '/^test result:/ { p += $4; f += $6; i += $8; o += $12 }
     END { printf "tests: %d passed, %d failed, %d ignored, %d filtered out (all targets)\n", p, f, i, o }' "$log"
exit "$status"
