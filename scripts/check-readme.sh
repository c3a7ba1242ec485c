#!/usr/bin/env bash
# Runs every code block of README.md as the README writes it, read out of
# README.md itself so the two cannot drift, and checks what the README says
# the blocks do. CI (.ci/run) runs it on a fresh clone.
#
#   scripts/check-readme.sh [--list] [--section TITLE]...
#
# --list prints how each block is checked and runs nothing; --section runs
# only the blocks under that heading (repeatable; a heading is a "## " or
# "### " line, and a block belongs to the nearest one above it).
#
# A block is a fenced code block (an indented one is refused: nothing could
# tell what it is). What is done with it depends on its info string, unless
# the line right before its fence is one of these comments:
#
#   <!-- not run in CI: WHY -->            not run; CI checks what it can of
#                                          it where this script has a partial
#                                          check for its section (partial_*)
#   <!-- output not compared in CI: WHY --> a console block whose commands
#                                          run but whose output is not
#                                          compared, or a text block nothing
#                                          compares
#
#   sh       run as a terminal would, one command after another in one shell
#            state (cwd and exported variables carry over): a command that
#            starts the sseloop server (`cargo run …`, `sseloop …`) or ends
#            in `&` runs in the background, a server waited for on its
#            /health; every other command must exit 0 within a bound.
#   console  `$ command` lines, each followed by what it prints: run, and the
#            output compared with what is shown (ids aside); a `curl -N`
#            keeps streaming in the background, read up to its `: connected`
#            before the next command runs, and compared once a block of
#            another kind starts or the section ends.
#   nginx    run in a real nginx (wrapped in a `server` when it is only
#            `location`s) in front of the section's servers, or of a node
#            started for each address it proxies to; Chromium opens the wire
#            inspector through it and publishes from its form
#            (tests/clients/inspector-check.mjs), and a publish with a
#            foreign Origin through it must get 403.
#   js       added to the inspector page of the section's first server in
#            Chromium (tests/clients/page-script.mjs); once it has
#            subscribed, the section's publish command runs again and the
#            page must log the id it answered.
#   rust     a doctest: src/lib.rs includes README.md under cfg(doctest);
#            `cargo test --doc ReadmeDoctests` must run one test per block.
#   python   run with PyJWT (tests/pyjwt/venv, which ./test.sh makes).
#   json     must parse.
#   text     sample output: the section's check (hook_*) must compare it.
#
# Anything else fails. A section may have a check of its own, hook_SLUG
# below (SLUG: the heading in lower case, other characters as _), run after
# its blocks while its servers still run: what the prose says the blocks do.
#
# Ports: a section whose servers all name their --listen address runs on
# free ports put in place of every 127.0.0.1:PORT, localhost:PORT and nginx
# `listen PORT;` its blocks write; otherwise (the quick start: a server on
# the default 127.0.0.1:8080) the README's ports are used as written and
# must be free. A `redis://HOST:PORT` is served by a redis-server started
# for the section; `cargo install` installs into a scratch root put first
# on the PATH.
#
# The section that runs ./test.sh (the README's test command) goes first:
# it installs what the other blocks need (nginx, Chromium, Node's packages,
# redis-server, systemd's tools, PyJWT). Every process is started in a
# process group of its own, in a temp dir, and ended by its group when its
# section ends, also on failure. Every wait is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
root_dir=$PWD
readme=README.md

# Bounds: a server's start (after the build below), one demo event, a line
# of a stream, a shutdown, a browser step, any foreground command (the test
# suite is one), and the README's doctests (their build included).
start_timeout_s=60
event_timeout_s=10
line_timeout_s=10
stop_timeout_s=10
browser_step_ms=15000
command_timeout_s=1800
doctest_timeout_s=600

list_only=0
only=()
while [ $# -gt 0 ]; do
    case $1 in
    --list) list_only=1 ;;
    --section)
        [ $# -ge 2 ] || { echo "check-readme: --section needs a title" >&2; exit 2; }
        only+=("$2")
        shift
        ;;
    -h | --help)
        sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "check-readme: unknown argument $1 (see --help)" >&2
        exit 2
        ;;
    esac
    shift
done

say() { echo "check-readme: $*" >&2; }
fail() {
    say "FAILED: $*"
    exit 1
}

work=$(mktemp -d)
chmod 755 "$work" # nginx's workers, run as root, drop to a user that reads it
sections_failed=()

# ---- process groups ---------------------------------------------------------

# Ends the process group $1: SIGTERM, then SIGKILL for what is left after
# stop_timeout_s (a process group has no handle to wait on: watch it go).
end_group() {
    local group=$1 tries
    if ! kill -0 -- "-$group" 2>/dev/null; then
        # Not a group (yet): a child of this shell between fork and setsid
        # (never a stranger who took a freed pid). Killed now, it never
        # starts what it was to run.
        if [ "$(ps -o ppid= -p "$group" 2>/dev/null | tr -d ' ')" = "$BASHPID" ]; then
            kill -KILL "$group" 2>/dev/null || true
        fi
        return 0
    fi
    kill -TERM -- "-$group" 2>/dev/null || true
    tries=$((stop_timeout_s * 20))
    while kill -0 -- "-$group" 2>/dev/null && [ "$tries" -gt 0 ]; do
        sleep 0.05
        tries=$((tries - 1))
    done
    if kill -0 -- "-$group" 2>/dev/null; then
        say "process group $group did not stop on SIGTERM within ${stop_timeout_s}s: killed"
        kill -KILL -- "-$group" 2>/dev/null || true
    fi
}

# Waits until $1, started with setsid, leads a process group of its own
# (setsid, not a group leader here, makes one and execs in place: its pid is
# the group's id), so that ending the group ends all of it; $2 names it.
own_group() {
    local tries=100
    until [ "$(ps -o pgid= -p "$1" | tr -d ' ')" = "$1" ]; do
        kill -0 "$1" 2>/dev/null || return 0 # gone already: its log says why
        tries=$((tries - 1))
        [ "$tries" -gt 0 ] || fail "$2 did not get a process group of its own"
        sleep 0.01
    done
}

# Ends every group listed in the file $1 ("pgid name" lines), newest first.
end_groups() {
    [ -f "$1" ] || return 0
    local group _name
    while read -r group _name; do
        end_group "$group"
    done < <(tac "$1")
    : >"$1"
}

cleanup() {
    local status=$? file
    for file in "$work"/*/groups; do
        end_groups "$file"
    done
    rm -rf "$work"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# ---- the README's blocks ----------------------------------------------------

# blocks.tsv: index, fence line, heading line, heading, info string, marker;
# block.N: the block's lines. Indented code blocks are listed with the info
# string "(indented)", and a fence left open with "(unclosed)".
awk -v dir="$work" '
function trim(s) { gsub(/^[ \t]+|[ \t]+$/, "", s); return s }
infence {
    if (substr($0, 1, length(fence)) == fence && trim(substr($0, length(fence) + 1)) == "") {
        infence = 0; close(body); prev = $0; next
    }
    print > body; next
}
/^##+ / { heading = $0; sub(/^#+ /, "", heading); headline = NR }
match($0, /^(```+|~~~+)/) {
    fence = substr($0, 1, RLENGTH)
    info = trim(substr($0, RLENGTH + 1))
    marker = ""
    if (prev ~ /^<!--.*-->$/) { marker = prev; sub(/^<!--[ \t]*/, "", marker); sub(/[ \t]*-->$/, "", marker) }
    n++; body = dir "/block." n; printf "" > body
    printf "%d\t%d\t%d\t%s\t%s\t%s\n", n, NR, headline, heading, info, marker > (dir "/blocks.tsv")
    infence = 1; prev = $0; next
}
/^    / && prev == "" && lastnb !~ /^ *([-*+]|[0-9]+[.)]) / && lastnb !~ /^  / && lastnb !~ /^\|/ {
    n++; printf "%d\t%d\t%d\t%s\t(indented)\t\n", n, NR, headline, heading > (dir "/blocks.tsv")
    printf "" > (dir "/block." n)
}
{ prev = $0; if ($0 != "") lastnb = $0 }
END {
    if (infence) { n++; printf "%d\t%d\t%d\t%s\t(unclosed)\t\n", n, NR, headline, heading > (dir "/blocks.tsv") }
}' "$readme"
touch "$work/blocks.tsv"

declare -a b_line b_headline b_heading b_info b_marker b_kind b_note
nblocks=0
while IFS=$'\t' read -r n line headline heading info marker; do
    b_line[n]=$line
    b_headline[n]=$headline
    b_heading[n]=$heading
    b_info[n]=$info
    b_marker[n]=$marker
    nblocks=$n
done <"$work/blocks.tsv"

slug() { printf '%s' "$1" | tr '[:upper:]' '[:lower:]' | sed -E 's/[^a-z0-9]+/_/g; s/^_|_$//g'; }
has_function() { declare -F "$1" >/dev/null; }

# Sets b_kind[N] and b_note[N] (how it is checked), or b_kind[N]=error and
# the reason in b_note[N].
classify() {
    local n=$1 info=${b_info[$1]} marker=${b_marker[$1]} partial
    partial=partial_$(slug "${b_heading[$n]}")
    b_kind[n]=error
    case $marker in
    "not run in CI:"*)
        local why=${marker#not run in CI:}
        why=${why# }
        if [ -z "$why" ]; then
            b_note[n]="\"not run in CI:\" must say why"
        else
            b_kind[n]=notrun
            b_note[n]="not run: $why"
            if has_function "$partial"; then
                b_note[n]+="; partial check: $partial"
            fi
        fi
        return
        ;;
    "output not compared in CI:"*)
        case $info in
        console)
            b_kind[n]=console-run
            b_note[n]="commands run, output not compared: ${marker#output not compared in CI: }"
            ;;
        text)
            b_kind[n]=text-shown
            b_note[n]="sample output, not compared: ${marker#output not compared in CI: }"
            ;;
        *) b_note[n]="\"output not compared in CI\" is for console and text blocks, not ${info:-an untagged block}" ;;
        esac
        return
        ;;
    "") ;;
    *)
        b_note[n]="unknown comment before the fence: <!-- $marker -->"
        return
        ;;
    esac
    case $info in
    sh) b_kind[n]=sh b_note[n]="run as written" ;;
    console) b_kind[n]=console b_note[n]="run; output compared, ids aside" ;;
    nginx) b_kind[n]=nginx b_note[n]="real nginx in front of the section's servers; Chromium publishes from the inspector through it" ;;
    rust) b_kind[n]=rust b_note[n]="doctest (src/lib.rs includes README.md)" ;;
    js) b_kind[n]=js b_note[n]="in the inspector page in Chromium; must log the section's published event" ;;
    python) b_kind[n]=python b_note[n]="run with PyJWT" ;;
    json) b_kind[n]=json b_note[n]="parsed" ;;
    text)
        if has_function "hook_$(slug "${b_heading[$n]}")"; then
            b_kind[n]=text b_note[n]="sample output: hook_$(slug "${b_heading[$n]}") must compare it"
        else
            b_note[n]="sample output that nothing compares: give its section a hook_* in this script, or mark it <!-- output not compared in CI: why -->"
        fi
        ;;
    "(indented)") b_note[n]="an indented code block: fence it, with its kind, so that it can be checked" ;;
    "(unclosed)") b_note[n]="a fence that is never closed" ;;
    "") b_note[n]="no info string: say what the block is (sh, console, nginx, rust, js, python, json, text), or mark it <!-- not run in CI: why -->" ;;
    rust,* | *,rust) b_note[n]="$info: a Rust block must run as it is (plain \`rust\`), or say why not with <!-- not run in CI: why -->" ;;
    *) b_note[n]="\`$info\` is no kind this script runs: give it one, or mark it <!-- not run in CI: why -->" ;;
    esac
    if has_function "hook_$(slug "${b_heading[$n]}")" && [ "${b_kind[$n]}" != error ]; then
        b_note[n]+="; then hook_$(slug "${b_heading[$n]}")"
    fi
}

# ---- the sections' own checks ------------------------------------------------

# hook_* and partial_* (classify looks them up).
# shellcheck source=scripts/check-readme-sections.sh
source scripts/check-readme-sections.sh

# ---- classify, list ---------------------------------------------------------

errors=0
for ((n = 1; n <= nblocks; n++)); do
    classify "$n"
    [ "${b_kind[$n]}" != error ] || errors=$((errors + 1))
done

if [ "$list_only" = 1 ] || [ "$errors" -gt 0 ]; then
    for ((n = 1; n <= nblocks; n++)); do
        if [ "$list_only" = 1 ] || [ "${b_kind[$n]}" = error ]; then
            printf '%s:%s [%s] %s: %s%s\n' "$readme" "${b_line[$n]}" "${b_heading[$n]}" \
                "${b_info[$n]:-(untagged)}" "$([ "${b_kind[$n]}" != error ] || echo 'ERROR: ')" "${b_note[$n]}"
        fi
    done
    [ "$errors" -eq 0 ] || fail "$errors block(s) of $readme cannot be checked (above)"
    exit 0
fi

# ---- helpers for the sections -----------------------------------------------

# The prose of the current section: its heading line to the next heading.
section_prose() {
    awk -v from="$section_headline" 'NR > from && /^##+ / { exit } NR >= from' "$readme"
}

# The block's commands: comment-only and blank lines dropped, lines ending
# in a backslash joined to the next.
commands_of() {
    awk '
        /\\$/ { sub(/\\$/, ""); acc = acc $0; next }
        { line = acc $0; acc = ""; t = line; gsub(/^[ \t]+|[ \t]+$/, "", t)
          if (t != "" && t !~ /^#/) print t }
        END { if (acc != "") print acc }' "$work/block.$1"
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_taken() { (exec 3<>"/dev/tcp/${1%:*}/${1##*:}") 2>/dev/null; }

# Standard input with the section's ports in place of the README's.
subst() {
    local old script=()
    for old in "${!port_of[@]}"; do
        [ "$old" != "${port_of[$old]}" ] || continue
        script+=(-e "s/(127\\.0\\.0\\.1|localhost|\\[::1\\]):$old\\b/\\1:${port_of[$old]}/g"
            -e "s/(listen[[:space:]]+)$old;/\\1${port_of[$old]};/g")
    done
    if [ "${#script[@]}" -eq 0 ]; then cat; else sed -E "${script[@]}"; fi
}
subst_text() { printf '%s' "$1" | subst; }

# A bash script that runs command $1 in the section's shell state (cwd and
# exported variables) and, when $2 is "keep", saves the state it leaves.
in_shell() {
    local keep=
    if [ "${2:-}" = keep ]; then
        keep=$(printf '\n__rc=$?; declare -px | grep -v "^declare -[a-zA-Z]*r" >%q; pwd >%q; exit $__rc' \
            "$sdir/state" "$sdir/cwd")
    fi
    printf 'source %q\ncd %q || exit 1\n%s%s\n' "$sdir/state" "$(cat "$sdir/cwd")" "$1" "$keep"
}

# Runs command $1 in the foreground of the section's shell (its output
# shown), bounded; it must exit 0.
run_fg() {
    local cmd=$1 rc=0 pid
    case $cmd in
    "cargo install"*)
        # Not the user's ~/.cargo/bin: a scratch root, first on the PATH.
        shell_state "export CARGO_INSTALL_ROOT=$(printf '%q' "$sdir/cargo-root") PATH=$(printf '%q' "$sdir/cargo-root/bin"):\$PATH"
        ;;
    esac
    say "\$ $cmd"
    setsid timeout -k 5 "$command_timeout_s" bash -c "$(in_shell "$cmd" keep)" </dev/null &
    pid=$!
    echo "$pid $cmd" >>"$sdir/groups"
    own_group "$pid" "\`$cmd\`"
    wait "$pid" || rc=$?
    [ "$rc" -ne 124 ] || fail "\`$cmd\` did not finish within ${command_timeout_s}s"
    [ "$rc" -eq 0 ] || fail "\`$cmd\` exited with status $rc"
}

# Changes the section's shell state with command $1 (an export), quietly.
shell_state() {
    bash -c "$(in_shell "$1" keep)" || fail "could not set up the shell: $1"
}

# What command $1 prints in the section's shell (state kept), bounded.
shell_capture() {
    timeout -k 5 "$event_timeout_s" bash -c "$(in_shell "$1")" </dev/null
}

# Starts command $1 in the background of the section's shell, in a group of
# its own with its output in a log; $2 is the address it serves on, when it
# is a server: then it must answer /health.
start_bg() {
    local cmd=$1 addr=${2:-} k pid tries
    k=$(wc -l <"$sdir/groups")
    if [ -n "$addr" ] && [ "$ports_as_written" = 1 ] && port_taken "$addr"; then
        fail "$addr is taken (see \`ss -ltnp 'sport = :${addr##*:}'\`): the README's \`$cmd\` needs it; stop what listens there and run again"
    fi
    say "\$ $cmd   (in the background${addr:+, serving on $addr})"
    setsid bash -c "$(in_shell "$cmd")" >"$sdir/bg$k.log" 2>&1 </dev/null &
    pid=$!
    echo "$pid $cmd" >>"$sdir/groups"
    own_group "$pid" "\`$cmd\`"
    if [ -z "$addr" ]; then
        bg_jobs+=("$pid")
        return
    fi
    tries=$((start_timeout_s * 10))
    until curl -sf --max-time 1 -o /dev/null "http://$addr/health"; do
        kill -0 "$pid" 2>/dev/null || fail "\`$cmd\` exited before http://$addr/health answered: $(tail -n 20 "$sdir/bg$k.log")"
        tries=$((tries - 1))
        [ "$tries" -gt 0 ] || fail "http://$addr/health did not answer within ${start_timeout_s}s of \`$cmd\`"
        sleep 0.1
    done
    servers+=("$addr")
}

# Starts a node of the release build on a free port (or $SSELOOP_CHECK_ADDR)
# with options "$@" (name $1 first), for a check; prints its address.
start_node() {
    local name=$1 addr
    shift
    addr=${SSELOOP_CHECK_ADDR:-127.0.0.1:$(free_port)}
    ports_as_written=0 start_bg "$(printf '%q ' "$root_dir/target/release/sseloop" --listen "$addr" "$@")" "$addr" >&2
    echo "$addr"
}

# A redis-server in the section's dir on port $1, for the blocks' redis://.
start_redis() {
    local port=$1 dir=$sdir/redis-$1 tries reply
    command -v redis-server >/dev/null || fail "redis-server is missing (./test.sh installs it)"
    mkdir -p "$dir"
    say "redis-server on 127.0.0.1:$port for the section's redis:// address"
    setsid redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --save '' --appendonly no \
        >"$dir/redis.log" 2>&1 </dev/null &
    echo "$! redis-server" >>"$sdir/groups"
    own_group "$!" redis-server
    tries=$((start_timeout_s * 10))
    while :; do
        reply=$( (exec 3<>"/dev/tcp/127.0.0.1/$port" && printf 'PING\r\n' >&3 && IFS= read -r -t 1 line <&3 && printf '%s' "$line") 2>/dev/null) || true
        [ "${reply%$'\r'}" != +PONG ] || break
        tries=$((tries - 1))
        [ "$tries" -gt 0 ] || fail "redis-server did not answer on $port: $(tail -n 5 "$dir/redis.log")"
        sleep 0.1
    done
}

# PyJWT's Python, from the venv ./test.sh makes.
pyjwt_python() {
    local python=$root_dir/tests/pyjwt/venv/bin/python
    [ -x "$python" ] || fail "tests/pyjwt/venv is missing: ./test.sh makes it"
    echo "$python"
}

# An HS256 JWT of the claims $1 signed with the key $2 (its bytes as given).
mint_hs256() {
    local b64url='s/=+$//; y#+/#-_#' header payload sig
    header=$(printf '%s' '{"alg":"HS256","typ":"JWT"}' | base64 -w0 | sed -E "$b64url")
    payload=$(printf '%s' "$1" | base64 -w0 | sed -E "$b64url")
    sig=$(printf '%s' "$header.$payload" | openssl dgst -sha256 -hmac "$2" -binary | base64 -w0 | sed -E "$b64url")
    printf '%s.%s.%s' "$header" "$payload" "$sig"
}

# A subscribe to $1 (http://HOST:PORT/PATH) with the token $2 (none when
# empty) must get status $3. Read off a socket of this shell: the status
# line, then the socket is closed, without waiting on the stream.
expect_status() {
    local url=$1 token=$2 want=$3 addr path fd line
    addr=${url#http://}
    path=/${addr#*/}
    addr=${addr%%/*}
    exec {fd}<>"/dev/tcp/${addr%:*}/${addr##*:}" || fail "cannot connect to $addr"
    printf 'GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n' "$path" "$addr" \
        "${token:+Authorization: Bearer $token$'\r\n'}" >&"$fd"
    IFS= read -r -t "$line_timeout_s" line <&"$fd" || line=
    exec {fd}>&-
    line=${line%$'\r'}
    [ "$(echo "$line" | cut -d' ' -f2)" = "$want" ] ||
        fail "GET $url${token:+ with a token} answered \"$line\", not $want"
}

# Streams: a command whose output is read line by line through a FIFO, so
# every wait is a bounded read. open_stream URL sets stream_handle; the
# command is `curl -sN URL` unless $2 gives one (a console block's). Not in
# a $(…): the FIFO's reading end belongs to this shell.
declare -A stream_fd stream_pid
open_stream() {
    local cmd=${2:-"curl -sN $(printf '%q' "$1")"} k line fd
    k=s$(wc -l <"$sdir/groups")
    mkfifo "$sdir/$k.fifo"
    setsid bash -c "$(in_shell "$cmd")" >"$sdir/$k.fifo" 2>"$sdir/$k.log" </dev/null &
    echo "$! $cmd" >>"$sdir/groups"
    stream_pid[$k]=$!
    exec {fd}<"$sdir/$k.fifo"
    own_group "${stream_pid[$k]}" "\`$cmd\`"
    stream_fd[$k]=$fd
    : >"$sdir/$k.got"
    # Subscribed once the greeting is in (it comes with the head).
    stream_until "$k" ": connected"
    stream_handle=$k
}
# Reads stream $1 until a line equal to $2 (or $3 lines in all, when given).
stream_until() {
    local k=$1 want=$2 count=${3:-} line
    while :; do
        if [ -n "$count" ]; then
            [ "$(wc -l <"$sdir/$k.got")" -lt "$count" ] || return 0
        fi
        IFS= read -r -t "$line_timeout_s" line <&"${stream_fd[$k]}" ||
            fail "the stream (\`$(awk -v p="${stream_pid[$k]}" '$1 == p { $1 = ""; print; exit }' "$sdir/groups")\`) stopped or stalled, waiting for \"${want:-line $count}\", after:
$(cat "$sdir/$k.got")"
        line=${line%$'\r'}
        printf '%s\n' "$line" >>"$sdir/$k.got"
        [ -z "$want" ] || [ "$line" != "$want" ] || return 0
    done
}
# Reads stream $1 up to the blank line that ends its next event (comments
# skipped); the event's lines are in stream_event.
read_event() {
    local k=$1 line fields=0
    stream_event=
    while :; do
        IFS= read -r -t "$line_timeout_s" line <&"${stream_fd[$k]}" ||
            fail "the stream stopped or stalled in an event, after:
$(cat "$sdir/$k.got")"
        line=${line%$'\r'}
        printf '%s\n' "$line" >>"$sdir/$k.got"
        case $line in
        '') [ "$fields" -eq 0 ] || return 0 ;;
        :*) ;;
        *)
            fields=$((fields + 1))
            stream_event+=$line$'\n'
            ;;
        esac
    done
}
close_stream() {
    end_group "${stream_pid[$1]}"
    exec {stream_fd[$1]}<&-
}

normalise_ids() { sed -E 's/[0-9a-f]{12}-([0-9]+)/RUN-\1/g'; }

# ---- the kinds --------------------------------------------------------------

run_sh() {
    local n=$1 cmd addr
    while IFS= read -r cmd; do
        cmd=$(subst_text "$cmd")
        if [[ $cmd == *'&' && $cmd != *'&&' ]]; then
            cmd=${cmd%&}
            cmd=${cmd%"${cmd##*[![:space:]]}"}
            addr=$(server_address "$cmd") || addr=
            start_bg "$cmd" "$addr"
        elif addr=$(server_address "$cmd"); then
            start_bg "$cmd" "$addr"
        else
            run_fg "$cmd"
        fi
        case $cmd in *"/publish"*) publish_cmd=$cmd ;; esac
    done < <(commands_of "$n")
}

# The address command $1 serves on, when it starts the sseloop server:
# `cargo run` of the sseloop binary or `sseloop`, with options (no
# subcommand, no --help or --version); its --listen, or the default.
server_address() {
    local -a w args
    read -ra w <<<"$1"
    local i=0 j addr=127.0.0.1:8080
    while [[ ${w[i]:-} == [A-Za-z_]*=* ]]; do i=$((i + 1)); done
    if [ "${w[i]:-}" = cargo ] && [ "${w[i + 1]:-}" = run ]; then
        for ((i = i + 2; i < ${#w[@]}; i++)); do
            case ${w[i]} in
            --) break ;;
            --example | --example=* | -p | --package | --package=* | --bench | --test) return 1 ;;
            --bin) [ "${w[i + 1]:-}" = sseloop ] || return 1 ;;
            --bin=*) [ "${w[i]}" = --bin=sseloop ] || return 1 ;;
            esac
        done
        args=("${w[@]:i+1}")
    elif [ "${w[i]:-}" = sseloop ] || [[ ${w[i]:-} == */sseloop ]]; then
        args=("${w[@]:i+1}")
    else
        return 1
    fi
    for ((j = 0; j < ${#args[@]}; j++)); do
        case ${args[j]} in
        '#'*) break ;;
        '|' | '&&' | ';' | '||') return 1 ;;
        --help | -h | --version | -V) return 1 ;;
        --listen) addr=${args[j + 1]:-} ;;
        --listen=*) addr=${args[j]#--listen=} ;;
        -*) ;;
        *) [ "$j" -gt 0 ] || return 1 ;; # a subcommand
        esac
    done
    printf '%s\n' "$addr"
}

# Console blocks: "$ command" and the lines it prints.
declare -a pending_streams
run_console() {
    local n=$1 compare=$2 k=0 cmd expected got rc
    awk -v dir="$sdir/console$n" '
        /^\$ / { k++; sub(/^\$ /, ""); print > (dir "." k ".cmd"); close(dir "." k ".cmd"); printf "" > (dir "." k ".out"); next }
        k { print >> (dir "." k ".out") }' "$work/block.$n"
    while [ -f "$sdir/console$n.$((k + 1)).cmd" ]; do
        k=$((k + 1))
        cmd=$(subst <"$sdir/console$n.$k.cmd")
        expected=$sdir/console$n.$k.out
        subst <"$expected" >"$expected.subst"
        case $cmd in *"/publish"*) publish_cmd=$cmd ;; esac
        if [[ " $cmd " == *" curl "* && ( " $cmd " == *" -N "* || " $cmd " == *" --no-buffer "* ) ]]; then
            say "\$ $cmd   (streaming, in the background)"
            grep -qx ': connected' "$expected.subst" || fail "\`$cmd\` should show the stream's \": connected\""
            open_stream "" "$cmd"
            pending_streams+=("$stream_handle|$expected.subst|$compare|$cmd")
        else
            say "\$ $cmd"
            rc=0
            timeout -k 5 "$event_timeout_s" bash -c "$(in_shell "$cmd" keep)" >"$sdir/console$n.$k.got" </dev/null || rc=$?
            [ "$rc" -eq 0 ] || fail "\`$cmd\` exited with status $rc"
            [ "$compare" = 1 ] || continue
            # Byte for byte, its line end included (a prompt must not stick
            # to what it prints).
            cmp -s <(normalise_ids <"$expected.subst") <(normalise_ids <"$sdir/console$n.$k.got") ||
                fail "\`$cmd\` printed
$(od -An -c "$sdir/console$n.$k.got" | head -n 8)
where the README shows
$(cat "$expected.subst")"
        fi
    done
}

# Reads what each streaming console command still owes, ends it and
# compares.
finish_streams() {
    local entry handle expected compare cmd
    for entry in "${pending_streams[@]}"; do
        IFS='|' read -r handle expected compare cmd <<<"$entry"
        stream_until "$handle" "" "$(wc -l <"$expected")"
        close_stream "$handle"
        [ "$compare" = 1 ] || continue
        [ "$(normalise_ids <"$sdir/$handle.got")" = "$(normalise_ids <"$expected")" ] ||
            fail "\`$cmd\` printed
$(cat "$sdir/$handle.got")
where the README shows
$(cat "$expected")"
        say "\`$cmd\` printed what the README shows"
    done
    pending_streams=()
}

# A process's home for Chromium and Node: nothing of the user's.
client_env() {
    local home=$1
    mkdir -p "$home"
    echo env -u http_proxy -u https_proxy -u HTTP_PROXY -u HTTPS_PROXY -u all_proxy -u ALL_PROXY \
        -u DISPLAY -u WAYLAND_DISPLAY "HOME=$home" "TMPDIR=$home" "XDG_CONFIG_HOME=$home/.config" \
        "XDG_CACHE_HOME=$home/.cache" "XDG_RUNTIME_DIR=$home"
}

require_clients() {
    command -v node >/dev/null || fail "node is missing (./test.sh installs it)"
    command -v chromium >/dev/null || fail "chromium is missing (./test.sh installs it)"
    [ -d tests/clients/node_modules/playwright-core ] || fail "tests/clients/node_modules is missing (./test.sh runs npm ci)"
}

run_nginx() {
    local n=$1 text dir front conf addr addrs=() report status code
    command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || fail "nginx is missing (./test.sh installs it)"
    require_clients
    text=$(subst <"$work/block.$n")
    dir=$sdir/nginx$n
    mkdir -p "$dir"
    chmod 755 "$sdir" "$dir"
    if printf '%s\n' "$text" | grep -qE '^[[:space:]]*server[[:space:]]*\{'; then
        front=$(printf '%s\n' "$text" | grep -oE '^[[:space:]]*listen[[:space:]]+([0-9.]+:)?[0-9]+' | head -n 1 | grep -oE '[0-9]+$') ||
            fail "the nginx block at line ${b_line[$n]} has a server without a listen port"
        conf=$text
    else
        front=$(free_port)
        conf=$(printf 'server {\n    listen 127.0.0.1:%s;\n%s\n}' "$front" "$text")
    fi
    # What it proxies to: a node of this section, or one started for it.
    mapfile -t addrs < <(printf '%s\n' "$text" | grep -oE '(proxy_pass[[:space:]]+http://|^[[:space:]]*server[[:space:]]+)[0-9.]+:[0-9]+' |
        grep -oE '[0-9.]+:[0-9]+$' | sort -u)
    [ "${#addrs[@]}" -gt 0 ] || fail "the nginx block at line ${b_line[$n]} proxies to no address"
    for addr in "${addrs[@]}"; do
        if ! curl -sf --max-time 1 -o /dev/null "http://$addr/health"; then
            say "nothing of this section serves $addr: a node for it"
            SSELOOP_CHECK_ADDR=$addr start_node upstream >/dev/null
        fi
    done
    cat >"$dir/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes 1;
pid $dir/nginx.pid;
error_log $dir/error.log info;
events {
    worker_connections 64;
}
http {
    access_log $dir/access.log;
    client_body_temp_path $dir/client_body_temp;
    proxy_temp_path $dir/proxy_temp;
    fastcgi_temp_path $dir/fastcgi_temp;
    uwsgi_temp_path $dir/uwsgi_temp;
    scgi_temp_path $dir/scgi_temp;
$conf
}
EOF
    say "nginx with the block at line ${b_line[$n]}, on 127.0.0.1:$front"
    setsid "$(command -v nginx || echo /usr/sbin/nginx)" -e "$dir/error.log" -c "$dir/nginx.conf" -p "$dir/" \
        >"$dir/nginx.out" 2>&1 </dev/null &
    local pid=$! tries=$((start_timeout_s * 10))
    echo "$pid nginx" >>"$sdir/groups"
    own_group "$pid" nginx
    # nginx writes its pid file once it listens; a child offers nothing to
    # block on, so poll.
    until [ -s "$dir/nginx.pid" ]; do
        kill -0 "$pid" 2>/dev/null || fail "nginx exited: $(tail -n 5 "$dir/error.log" "$dir/nginx.out")"
        tries=$((tries - 1))
        [ "$tries" -gt 0 ] || fail "nginx wrote no pid file within ${start_timeout_s}s: $(tail -n 5 "$dir/error.log")"
        sleep 0.1
    done

    # The inspector through nginx, publishing from its form.
    report=$($(client_env "$dir/home") node tests/clients/inspector-check.mjs "http://127.0.0.1:$front" \
        --chromium "$(command -v chromium)" --timeout-ms "$browser_step_ms" \
        --total-timeout-ms $((browser_step_ms * 8)) 2>"$dir/inspector.log" | grep '^{"report":"inspector-check"') || true
    status=$(printf '%s' "$report" | python3 -c '
import json, sys
text = sys.stdin.read()
if not text:
    print("no report"); sys.exit()
r = json.loads(text)
why = []
if r["failed"]: why.append("failed: " + r["failed"])
if r["state"] != "open": why.append("stream state %r" % r["state"])
if r["publishStatus"] != "ok": why.append("publish %r: %r" % (r["publishStatus"], r["publishText"]))
if not r["publishedId"] or r["eventId"] != r["publishedId"]: why.append("event %r, published %r" % (r["eventId"], r["publishedId"]))
if r["eventData"] != r["publishedData"]: why.append("data %r, published %r" % (r["eventData"], r["publishedData"]))
if r["consoleErrors"] or r["pageErrors"]: why.append("errors %r %r" % (r["consoleErrors"], r["pageErrors"]))
print("; ".join(why) if why else "ok " + r["publishedId"])')
    [ "${status%% *}" = ok ] ||
        fail "the inspector through the nginx block at line ${b_line[$n]}: $status
$(tail -n 20 "$dir/inspector.log")
$(tail -n 5 "$dir/error.log")"
    say "Chromium opened the inspector through it, published from the form and got event ${status#ok }"
    # A page of another site may not publish through it.
    code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -H 'Origin: http://foreign.example' \
        --data-binary foreign "http://127.0.0.1:$front/publish?topic=readme-check") || true
    [ "$code" = 403 ] || fail "a publish with a foreign Origin through the nginx block at line ${b_line[$n]} got $code, not 403"
    say "a publish with a foreign Origin through it gets 403"
}

run_js() {
    local n=$1 report
    require_clients
    [ "${#servers[@]}" -gt 0 ] || fail "the js block at line ${b_line[$n]} has no server in its section to run on"
    [ -n "$publish_cmd" ] || fail "the js block at line ${b_line[$n]} has no publish command before it in its section"
    mkdir -p "$sdir/js$n"
    say "the js block at line ${b_line[$n]} in http://${servers[0]}/, then: $publish_cmd"
    report=$($(client_env "$sdir/js$n/home") node tests/clients/page-script.mjs "http://${servers[0]}/" \
        --script "$work/block.$n" --then "$(in_shell "$publish_cmd")" --chromium "$(command -v chromium)" \
        --timeout-ms "$browser_step_ms" 2>"$sdir/js$n/node.log") ||
        fail "the js block at line ${b_line[$n]}: $report $(tail -n 20 "$sdir/js$n/node.log")"
    say "the page logged: $(printf '%s' "$report" | python3 -c 'import json, sys; print(json.load(sys.stdin)["logged"])')"
}

doctests_run=0
run_rust() {
    local listed rust=0 m
    [ "$doctests_run" = 0 ] || return 0
    doctests_run=1
    grep -q 'include_str!("../README.md")' src/lib.rs || fail "src/lib.rs does not include README.md in the doctests"
    for ((m = 1; m <= nblocks; m++)); do
        [ "${b_kind[$m]}" != rust ] || rust=$((rust + 1))
    done
    say "\$ cargo test --doc -- ReadmeDoctests"
    # Bounded: an example that never returns would hang the test run.
    timeout -k 5 "$doctest_timeout_s" cargo test --doc --quiet -- ReadmeDoctests 2>&1 |
        tee "$sdir/doctests.log" >&2 ||
        fail "the README's Rust blocks failed as doctests"
    listed=$(sed -nE 's/^test result: ok\. ([0-9]+) passed.*/\1/p' "$sdir/doctests.log" | tail -n 1)
    [ "$listed" = "$rust" ] || fail "$rust Rust blocks in $readme, but ${listed:-no} README doctests ran"
}

run_python() {
    say "the python block at line ${b_line[$1]}, with PyJWT"
    "$(pyjwt_python)" "$work/block.$1" || fail "the python block at line ${b_line[$1]} failed"
}

run_json() {
    python3 -m json.tool "$work/block.$1" >/dev/null || fail "the json block at line ${b_line[$1]} does not parse"
}

# ---- sections ---------------------------------------------------------------

# Runs the blocks of the section whose heading is on line $1, in a subshell
# of its own whose processes end with it.
run_section() (
    section_headline=$1
    sdir=$work/section-$1
    mkdir -p "$sdir"
    : >"$sdir/groups"
    trap 'end_groups "$sdir/groups"' EXIT
    declare -px | grep -v '^declare -[a-zA-Z]*r' |
        grep -vE '^declare -x (http_proxy|https_proxy|HTTP_PROXY|HTTPS_PROXY|all_proxy|ALL_PROXY)=' >"$sdir/state"
    echo "$root_dir" >"$sdir/cwd"
    section_blocks=()
    local n
    for ((n = 1; n <= nblocks; n++)); do
        [ "${b_headline[$n]}" != "$1" ] || section_blocks+=("$n")
    done
    section_heading=${b_heading[${section_blocks[0]}]}
    local started=$SECONDS
    say "==== ${section_heading} ($readme:$1) ===="
    servers=()
    bg_jobs=()
    publish_cmd=
    declare -A port_of claimed
    # A server on the default address: the README's ports as written.
    ports_as_written=0
    local cmd addr port all_text=
    for n in "${section_blocks[@]}"; do
        case ${b_kind[$n]} in
        sh)
            while IFS= read -r cmd; do
                cmd=${cmd%&}
                if addr=$(server_address "$cmd") && [[ " $cmd " != *" --listen"* ]]; then
                    ports_as_written=1
                fi
            done < <(commands_of "$n")
            ;;
        esac
        case ${b_kind[$n]} in sh | console | console-run | nginx | js) all_text+=$(cat "$work/block.$n")$'\n' ;; esac
    done
    while read -r port; do
        [ -n "$port" ] || continue
        if [ "$ports_as_written" = 1 ]; then port_of[$port]=$port; else port_of[$port]=$(free_port); fi
    done < <(printf '%s' "$all_text" | grep -oE '((127\.0\.0\.1|localhost|\[::1\]):[0-9]+|listen[[:space:]]+[0-9]+;)' |
        grep -oE '[0-9]+;?$' | tr -d ';' | sort -u)
    while read -r port; do
        [ -n "$port" ] || continue
        start_redis "${port_of[$port]:-$port}"
    done < <(printf '%s' "$all_text" | grep -oE 'redis://[^ /]*:[0-9]+' | grep -oE '[0-9]+$' | sort -u)

    for n in "${section_blocks[@]}"; do
        case ${b_kind[$n]} in console | console-run) ;; *) finish_streams ;; esac
        case ${b_kind[$n]} in
        sh) run_sh "$n" ;;
        console) run_console "$n" 1 ;;
        console-run) run_console "$n" 0 ;;
        nginx) run_nginx "$n" ;;
        js) run_js "$n" ;;
        rust) run_rust "$n" ;;
        python) run_python "$n" ;;
        json) run_json "$n" ;;
        text | text-shown) ;;
        notrun)
            say "line ${b_line[$n]}: ${b_note[$n]}"
            if has_function "partial_$(slug "$section_heading")"; then
                "partial_$(slug "$section_heading")" "$n"
            fi
            ;;
        esac
    done
    finish_streams
    if has_function "hook_$(slug "$section_heading")"; then
        "hook_$(slug "$section_heading")"
    fi
    for n in "${section_blocks[@]}"; do
        [ "${b_kind[$n]}" != text ] || [ -n "${claimed[$n]:-}" ] ||
            fail "the sample output at line ${b_line[$n]} was compared with nothing"
    done
    local job
    for job in "${bg_jobs[@]}"; do
        kill -0 "$job" 2>/dev/null || fail "a background command of this section ended before the section did"
    done
    say "==== ${section_heading}: ok ($((SECONDS - started)) s)"
)

# Build first, so the start-up bounds need not cover a compile; the README's
# commands then run exactly as a user types them.
cargo build --release --quiet --bin sseloop

# The sections, the one that runs ./test.sh first.
mapfile -t headlines < <(for ((n = 1; n <= nblocks; n++)); do echo "${b_headline[$n]}"; done | uniq)
first=()
rest=()
for h in "${headlines[@]}"; do
    if [ "${#only[@]}" -gt 0 ]; then
        keep=0
        for n in $(seq 1 "$nblocks"); do
            [ "${b_headline[$n]}" = "$h" ] || continue
            for title in "${only[@]}"; do [ "${b_heading[$n]}" != "$title" ] || keep=1; done
            break
        done
        [ "$keep" = 1 ] || continue
    fi
    runs_tests=0
    for n in $(seq 1 "$nblocks"); do
        if [ "${b_headline[$n]}" = "$h" ] && [ "${b_kind[$n]}" = sh ] && grep -qx '\./test\.sh' "$work/block.$n"; then
            runs_tests=1
        fi
    done
    if [ "$runs_tests" = 1 ]; then first+=("$h"); else rest+=("$h"); fi
done
[ "${#first[@]}" -gt 0 ] || [ "${#rest[@]}" -gt 0 ] || fail "no section of $readme has blocks${only:+ under ${only[*]}}"

# Each section in a job of its own, not in a condition: a condition would
# turn off `set -e` inside it.
for h in "${first[@]}" "${rest[@]}"; do
    run_section "$h" &
    wait "$!" || sections_failed+=("$(sed -n "${h}p" "$readme")")
done
if [ "${#sections_failed[@]}" -gt 0 ]; then
    say "FAILED sections: ${sections_failed[*]}"
    exit 1
fi
say "ok: every block of $readme ran as written (${SECONDS} s)"
