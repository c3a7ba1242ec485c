# The checks of particular README sections, for scripts/check-readme.sh,
# which sources this file: what a section's prose says its blocks do.
#
# hook_SLUG runs after the blocks of the section whose heading gives SLUG
# (lower case, every run of other characters an underscore: "Quick start"
# is quick_start), while the servers its blocks started still run; it must
# compare each of the section's text blocks (sample output) and say so with
# claimed[N]=1. partial_SLUG N runs for a block N of that section marked
# <!-- not run in CI: … -->: what can be checked of it here.
#
# At hand: $sdir (the section's temp dir), servers (the addresses its
# blocks serve on, in order), section_blocks (its block numbers), b_kind,
# b_line, $work/block.N (a block's text), section_prose, commands_of N,
# run_fg, shell_capture, start_node, open_stream / stream_until /
# read_event / close_stream, expect_status, mint_hs256, pyjwt_python,
# fail and say.
# Each fails its section with `fail`.


# Each hook_SLUG / partial_SLUG runs inside its section (see run_section):
# $sdir, servers, port_of and the helpers below are at hand.

# The quick start: the page it names is the wire inspector, and a
# subscriber of topic demo gets a demo event.
hook_quick_start() {
    local page base answer event
    page=$(section_prose | grep -o '<http://[^>]*>' | head -n 1 | tr -d '<>') ||
        fail "the quick start names no page to open"
    [ -n "$page" ] || fail "the quick start names no page to open"
    base="http://${servers[0]:?the quick start started no server}"
    case $page in "$base"/*) ;; *) fail "the page $page is not on the quick start's server, $base" ;; esac
    answer=$(curl -s --max-time 5 -o "$sdir/page.html" -w '%{http_code} %{content_type}' "$page") ||
        fail "GET $page failed"
    [ "$answer" = "200 text/html; charset=utf-8" ] || fail "GET $page answered $answer, not the inspector page"
    grep -q '<title>sseloop · wire inspector</title>' "$sdir/page.html" ||
        fail "GET $page is not the wire inspector page"
    # The first whole demo event on topic demo: its type and its data. curl
    # ends at the next write after awk has what it needs, or at its bound.
    event=$(curl -sN --max-time "$event_timeout_s" "$base/events?topic=demo" | awk '
        /^$/ { if (type != "" && data != "") { print type " " data; exit } type = ""; data = ""; next }
        /^event: / { type = substr($0, 8) }
        /^data: / { data = substr($0, 7) }') || true
    case $event in
    progress\ \{*\"job\"* | complete\ \{*\"job\"* | error\ \{*\"job\"*) ;;
    *) fail "no demo event on topic demo within ${event_timeout_s}s (got ${event:-nothing})" ;;
    esac
    say "$page serves the inspector; a subscriber of demo got: $event"
}

# Install: the installed binary runs from the PATH (`sseloop --help`).
hook_install() {
    local where
    where=$(shell_capture 'command -v sseloop') || fail "sseloop is not on the PATH after the install"
    case $where in "$sdir/cargo-root/bin/sseloop"*) ;; *) fail "sseloop on the PATH is $where, not the one installed" ;; esac
    shell_capture 'sseloop --help' >"$sdir/help.txt" || fail "\`sseloop --help\` failed"
    grep -q '^usage: sseloop' "$sdir/help.txt" || fail "\`sseloop --help\` printed no usage: $(head -c 300 "$sdir/help.txt")"
    say "the installed \`sseloop --help\` runs"
}

# The reset event shown is what a resume from an id that left the history
# gets: a node keeping one event, three published, a resume from the first.
hook_ids_replay_and_the_reset_event() {
    local n text=() addr ids=() i got
    for n in "${section_blocks[@]}"; do
        [ "${b_kind[$n]}" = text ] && text+=("$n")
    done
    [ "${#text[@]}" -eq 1 ] || fail "this section should show one reset event, not ${#text[@]} text blocks"
    addr=$(start_node reset --history 1)
    for i in 1 2 3; do
        ids+=("$(curl -s --max-time 5 --data-binary "event $i" "http://$addr/publish?topic=t")") ||
            fail "publishing to $addr failed"
    done
    open_stream "" "curl -sN -H 'Last-Event-ID: ${ids[0]}' 'http://$addr/events?topic=t'"
    read_event "$stream_handle"
    close_stream "$stream_handle"
    got=$stream_event
    local norm='s/[0-9a-f]{12}-[0-9]+/ID/g'
    [ "$(printf '%s' "$got" | sed -E "$norm")" = "$(sed -E "$norm" "$work/block.${text[0]}")" ] ||
        fail "a stale resume got
$got
where the README shows (ids aside)
$(cat "$work/block.${text[0]}")"
    [ "$(printf '%s' "$got" | sed -n 's/^id: //p')" = "${ids[2]}" ] ||
        fail "the reset carries $(printf '%s' "$got" | sed -n 's/^id: //p'), not the newest id ${ids[2]}"
    claimed[${text[0]}]=1
    say "a stale resume gets the reset event shown at line ${b_line[${text[0]}]}, with the newest id"
}

# Private topics: a token with the JSON block's claims, and one minted by the
# Python block, are accepted for user/42 by a node with --jwt-key (a key
# made as the README says), and neither for user/43; no token gets 401.
hook_private_topics() {
    local n json=() python=() key addr token
    for n in "${section_blocks[@]}"; do
        case ${b_kind[$n]} in json) json+=("$n") ;; python) python+=("$n") ;; esac
    done
    [ "${#json[@]}" -ge 1 ] && [ "${#python[@]}" -ge 1 ] ||
        fail "Private topics should show the claims (json) and the minting (python)"
    key=$(openssl rand -base64 32) || fail "openssl rand failed"
    addr=$(start_node jwt --jwt-key "$key")
    expect_status "http://$addr/events?topic=user/42" "" 401
    token=$(mint_hs256 "$(python3 -c 'import json, sys; print(json.dumps(json.load(sys.stdin), separators=(",", ":")))' <"$work/block.${json[0]}")" "$key")
    expect_status "http://$addr/events?topic=user/42" "$token" 200
    expect_status "http://$addr/events?topic=user/43" "$token" 403
    token=$(SSELOOP_CHECK_KEY=$key "$(pyjwt_python)" -c '
import os, sys
exec(open(sys.argv[1]).read())
print(sseloop_token(42, os.environ["SSELOOP_CHECK_KEY"]))' "$work/block.${python[0]}") ||
        fail "the Python block's sseloop_token(42, key) failed"
    expect_status "http://$addr/events?topic=user/42" "$token" 200
    expect_status "http://$addr/events?topic=user/43" "$token" 403
    say "the claims shown and the token Python mints subscribe to user/42 and to nothing else"
}

# Mercure: the publisher's command, run with a token the Python block mints
# for the section's hub (with the key its shell exported), is answered with
# the id it gives, and a subscriber of the topic on the hub gets the event
# as published; without a token, the same command is refused.
partial_mercure() {
    local n=$1 m python= key hub token cmd id answer stream
    for m in "${section_blocks[@]}"; do
        [ "${b_kind[$m]}" = python ] && python=$m
    done
    [ -n "$python" ] || fail "the Mercure section shows no Python block to mint the token with"
    [ "${#servers[@]}" -ge 1 ] || fail "the Mercure section started no hub before the publisher's command"
    key=$(shell_capture 'printf %s "$SSELOOP_JWT_KEY"') || fail "the section's shell has no SSELOOP_JWT_KEY"
    [ -n "$key" ] || fail "the section's shell has no SSELOOP_JWT_KEY"
    hub="http://${servers[0]}/.well-known/mercure"
    token=$(SSELOOP_CHECK_KEY=$key SSELOOP_CHECK_HUB=$hub "$(pyjwt_python)" -c '
import os, sys
exec(open(sys.argv[1]).read())
print(mercure_token(["publish"], ["https://example.com/books/:id"], os.environ["SSELOOP_CHECK_KEY"], os.environ["SSELOOP_CHECK_HUB"]))' \
        "$work/block.$python") || fail "the Python block's mercure_token(...) failed"
    cmd=$(commands_of "$n" | subst)
    id=$(printf '%s' "$cmd" | grep -o "id=[^']*" | head -n 1)
    id=${id#id=}
    [ -n "$id" ] || fail "the publisher's command gives no id"
    open_stream "$hub?match=https%3A%2F%2Fexample.com%2Fbooks%2F1"
    stream=$stream_handle
    answer=$(shell_capture "TOKEN=$(printf '%q' "$token"); $cmd") || fail "\`$cmd\` failed"
    [ "$answer" = "$id" ] || fail "the publish was answered \"$answer\", not its id $id"
    stream_until "$stream" "id: $id"
    stream_until "$stream" "event: book.updated"
    stream_until "$stream" 'data: {"title": "The Hub", "stock": 3}'
    close_stream "$stream"
    answer=$(shell_capture "TOKEN=; $cmd -o /dev/null -w '%{http_code}'") || true
    case $answer in 400 | 401) ;; *) fail "without a token the publish got ${answer:-nothing}, not 400 or 401" ;; esac
    say "published with the token the Python block mints: answered $id, received on the hub; refused ($answer) without a token"
}

# Mercure: the hub serves an anonymous subscriber (--anonymous), and
# resuming from an unknown id says so in Mercure-Last-Event-ID.
hook_mercure() {
    local hub=http://${servers[0]:?the Mercure section started no hub}/.well-known/mercure said
    expect_status "$hub?match=anything" "" 200
    said=$(curl -s --max-time 2 -D - -o /dev/null -H 'Last-Event-ID: unknown' "$hub?match=x" |
        tr -d '\r' | sed -n 's/^Mercure-Last-Event-ID: //p') || true
    [ "$said" = earliest ] || fail "a resume from an unknown id said Mercure-Last-Event-ID: ${said:-nothing}, not earliest"
    say "an anonymous subscriber is served; an unknown id resumes as earliest"
}

# Cluster: an event published on the first node reaches a subscriber of the
# second.
hook_cluster() {
    [ "${#servers[@]}" -ge 2 ] || fail "the cluster section started ${#servers[@]} node(s), not two"
    local stream id
    open_stream "http://${servers[1]}/events?topic=cluster-check"
    stream=$stream_handle
    id=$(curl -s --max-time 5 --data-binary across "http://${servers[0]}/publish?topic=cluster-check") ||
        fail "publishing on ${servers[0]} failed"
    stream_until "$stream" "id: $id"
    close_stream "$stream"
    say "event $id published on ${servers[0]} reached a subscriber on ${servers[1]}"
}

# Run as a service: systemctl needs systemd as PID 1. The block's other
# commands run with their destinations under a scratch root, and the unit
# installed there must pass `systemd-analyze verify`.
partial_run_as_a_service() {
    local n=$1 root=$sdir/root cmd units=() unit out
    command -v systemd-analyze >/dev/null || fail "systemd-analyze is missing (./test.sh installs it)"
    mkdir -p "$root/usr/local/bin" "$root/etc/systemd/system" "$root/usr/lib/systemd"
    local host_units
    for host_units in /usr/lib/systemd/system /lib/systemd/system; do
        [ -d "$host_units" ] && break
    done
    cp -r "$host_units" "$root/usr/lib/systemd/system"
    while IFS= read -r cmd; do
        case $cmd in
        systemctl* | journalctl*) say "not run (systemd is not PID 1 here): $cmd" ;;
        *) run_fg "$(printf '%s' "$cmd" | sed -E "s#(^|[[:space:]])/(etc|usr|var|opt|srv)/#\\1$root/\\2/#g")" ;;
        esac
    done < <(commands_of "$n")
    mapfile -t units < <(cd "$root/etc/systemd/system" && ls -- *.service 2>/dev/null)
    [ "${#units[@]}" -gt 0 ] || fail "the block installs no unit under /etc/systemd/system"
    for unit in "${units[@]}"; do
        out=$(SYSTEMD_PAGER='' SYSTEMD_COLORS=0 systemd-analyze verify --man=no "--root=$root" "$unit" 2>&1) ||
            fail "systemd-analyze verify $unit failed: $out"
        [ -z "$out" ] || fail "systemd-analyze verify found faults in the $unit installed: $out"
        say "systemd-analyze verify passes the $unit the block installs"
    done
}

# Fuzzing: every target the commands run is one of fuzz/'s, every one of
# them is run, the files and directories they name exist (or are made by
# the block's mkdir), and the prose counts them right.
partial_fuzzing() {
    local n=$1 targets=() ran=() t made count word
    mapfile -t targets < <(awk '/^\[\[bin\]\]/ { bin = 1; next } bin && /^name *=/ { gsub(/.*= *"|".*/, ""); print; bin = 0 }' fuzz/Cargo.toml)
    [ "${#targets[@]}" -gt 0 ] || fail "fuzz/Cargo.toml lists no targets"
    made=$(commands_of "$n" | awk '$1 == "mkdir" { for (i = 2; i <= NF; i++) if ($i !~ /^-/) print $i }')
    while read -r -a words; do
        local i=0
        while [ "$i" -lt "${#words[@]}" ] && [ "${words[i]}" != fuzz ]; do i=$((i + 1)); done
        [ "${words[i + 1]:-}" = run ] || continue
        t=${words[i + 2]:-}
        printf '%s\n' "${targets[@]}" | grep -qx -- "$t" || fail "\`cargo fuzz run $t\`: fuzz/Cargo.toml has no target $t"
        [ -f "fuzz/fuzz_targets/$t.rs" ] || fail "fuzz/fuzz_targets/$t.rs is missing"
        ran+=("$t")
        for ((i = i + 3; i < ${#words[@]}; i++)); do
            case ${words[i]} in
            --) ;;
            -dict=*) [ -f "fuzz/${words[i]#-dict=}" ] || fail "fuzz/${words[i]#-dict=} is missing" ;;
            -*) ;;
            *) [ -d "fuzz/${words[i]}" ] || printf '%s\n' "$made" | grep -qx -- "${words[i]}" ||
                fail "fuzz/${words[i]} is missing and the block does not make it" ;;
            esac
        done
    done < <(commands_of "$n")
    for t in "${targets[@]}"; do
        printf '%s\n' "${ran[@]}" | grep -qx -- "$t" || fail "the commands do not run the target $t"
    done
    word=$(section_prose | grep -oE '\b(One|Two|Three|Four|Five|Six|Seven|Eight|Nine|Ten) `cargo fuzz` targets' | head -n 1) || true
    case ${word%% *} in
    One) count=1 ;; Two) count=2 ;; Three) count=3 ;; Four) count=4 ;; Five) count=5 ;;
    Six) count=6 ;; Seven) count=7 ;; Eight) count=8 ;; Nine) count=9 ;; Ten) count=10 ;;
    *) count=0 ;;
    esac
    [ "${count:-0}" = "${#targets[@]}" ] ||
        fail "the prose says \"${word:-no count of \`cargo fuzz\` targets}\"; fuzz/ has ${#targets[@]}"
    say "the fuzz block runs all ${#targets[@]} targets of fuzz/ with files that exist, and the prose counts them"
}

# Performance: the commands parse, and scripts/compare.sh takes every option
# they give it.
partial_performance() {
    local n=$1 opt
    bash -n "$work/block.$n" || fail "the block is no valid shell"
    while read -r opt; do
        grep -q -- "\[$opt " scripts/compare.sh || fail "scripts/compare.sh takes no $opt"
    done < <(grep -oE -- '--[a-z-]+' "$work/block.$n" | sort -u | grep -v -- '--release')
    say "the comparison's commands parse and scripts/compare.sh takes their options"
}

# Publishing exactly once: two publishes with one Idempotency-Key are
# answered with one id, and a subscriber gets the event once.
hook_publishing_exactly_once() {
    local base="http://${servers[0]:?the section started no server}" stream first again plain
    open_stream "$base/events?topic=once-check"
    stream=$stream_handle
    first=$(curl -sf --max-time 5 -H 'Idempotency-Key: check-once' --data-binary once "$base/publish?topic=once-check") ||
        fail "the first keyed publish failed"
    again=$(curl -sf --max-time 5 -H 'Idempotency-Key: check-once' --data-binary once "$base/publish?topic=once-check") ||
        fail "the repeated keyed publish failed"
    [ "$first" = "$again" ] || fail "one Idempotency-Key, two ids: $first and $again"
    plain=$(curl -sf --max-time 5 --data-binary after "$base/publish?topic=once-check") ||
        fail "the publish without a key failed"
    stream_until "$stream" "id: $plain"
    [ "$(grep -c "^id: $first\$" "$sdir/$stream.got")" = 1 ] ||
        fail "the keyed event did not come exactly once: $(cat "$sdir/$stream.got")"
    close_stream "$stream"
    say "two publishes with one Idempotency-Key were answered $first both, and the event came once"
}

# Publishes $2 on the node at $1 until it is acknowledged (a 503 while the
# cluster has no primary, or no replica that confirms it); prints the id.
publish_until_stored() {
    local url=$1 body=$2 code until=$((SECONDS + 60))
    while :; do
        code=$(curl -s --max-time 5 -o "$sdir/publish.out" -w '%{http_code}' --data-binary "$body" "$url") || code=000
        [ "$code" != 200 ] || { cat "$sdir/publish.out"; return 0; }
        [ "$SECONDS" -lt "$until" ] || fail "publishing on $url still answered $code after 60 s"
        # A refusal says Retry-After: 1; sooner here, to follow the failover.
        sleep 0.2
    done
}

# Failover: the node publishes on the primary the Sentinels name; the
# primary shut down, they promote a replica, the node follows, and its
# subscriber gets the reset of the new epoch and the next event.
hook_failover() {
    local node=${servers[0]:?the failover section started no node} stream before after job kept=()
    before=$(publish_until_stored "http://$node/publish?topic=failover-check" before)
    open_stream "http://$node/events?topic=failover-check"
    stream=$stream_handle
    # As the section says: once the Sentinels know both replicas (from the
    # primary's INFO, every 10 s), the primary shut down without saving.
    local p replicas until=$((SECONDS + 30))
    for p in 26390 26391 26392; do
        while replicas=$(redis-cli -p "$p" sentinel replicas hub 2>/dev/null | grep -c '^name$'); [ "$replicas" -lt 2 ]; do
            [ "$SECONDS" -lt "$until" ] || fail "the Sentinel on $p knows $replicas replicas after 30 s, not 2"
            sleep 0.2
        done
    done
    redis-cli -p 6390 shutdown nosave >/dev/null 2>&1 || true
    ! redis-cli -p 6390 ping >/dev/null 2>&1 || fail "the primary on 6390 still answers"
    say "shut the primary down; publishing until the node follows the new one"
    after=$(publish_until_stored "http://$node/publish?topic=failover-check" after)
    [ "${after%-*}" != "${before%-*}" ] || fail "$after is of the epoch of $before: no new epoch on the new primary"
    stream_until "$stream" "id: $after"
    grep -q '^event: reset$' "$sdir/$stream.got" ||
        fail "the stream got no reset where the new epoch began: $(cat "$sdir/$stream.got")"
    close_stream "$stream"
    # The shell that ran the primary has ended with it, as meant.
    for job in "${bg_jobs[@]}"; do
        if grep -q "^$job redis-server /tmp/ha/6390.conf\$" "$sdir/groups"; then continue; fi
        kept+=("$job")
    done
    bg_jobs=("${kept[@]}")
    say "before the failover $before, after it $after; the subscriber got the reset and $after"
}

# The failure lab in the terminal: the summary of `sseloop lab proxy` shows
# the cause holding events back by hundreds of milliseconds and the fix
# delivering them at once (coarse bounds a busy machine keeps).
hook_failure_lab() {
    local n got="" cause fix
    for n in "${section_blocks[@]}"; do
        if [ "${b_kind[$n]}" = console-run ]; then got=$sdir/console$n.1.got; fi
    done
    [ -n "$got" ] && [ -s "$got" ] || fail "the lab's terminal block printed nothing"
    cause=$(awk '$1 == "with" && $3 == "cause" { print $5 }' "$got")
    fix=$(awk '$1 == "with" && $3 == "fix" { print $5 }' "$got")
    [ -n "$cause" ] && [ -n "$fix" ] || fail "no summary in what \`sseloop lab\` printed: $(tail -c 400 "$got")"
    awk -v c="$cause" -v f="$fix" 'BEGIN { exit !(c >= 100 && f <= 30) }' ||
        fail "the lab's medians are $cause ms with the cause and $fix ms with the fix, not >= 100 and <= 30"
    say "sseloop lab proxy: median $cause ms with the cause, $fix ms with the fix"
}
