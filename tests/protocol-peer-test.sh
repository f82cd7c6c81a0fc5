#!/bin/sh
# SPDX-License-Identifier: MIT
# The protocol page holds (issue 16): tests/peer/udprr_peer.py, a peer in
# Python written from docs/protocol.md alone, talks to the library both
# ways on 127.0.0.1, plain and sealed, through tests/peer_driver.c (the
# library's client and server with their defaults):
#   - the peer reproduces the page's two worked examples (selftest);
#   - library client -> Python server: replies byte for byte (a short
#     body, an empty one, 8000 bytes), a decline is UDPRR_EREMOTE, a large
#     answer behind the peer's amplification echo; the same sealed, and a
#     client with another key gets nothing;
#   - Python client -> library server: the same, plus the library's
#     amplification guard (a 6000-byte answer to an 8-byte request: the
#     peer must answer the echo with the cookie), and a request sent twice
#     (attempt 1, then 2) that gets the same answer with the handler run
#     once; sealed with the same key, and with another key (the peer times
#     out, the server counts dropped_auth).
#
# Every process started here is stopped on exit; every wait is bounded
# (servers stop by themselves after 30 s, clients by their deadlines and
# `timeout`). About 5 s. Records its result in build/tally.
#
#   sh tests/protocol-peer-test.sh [PEER_DRIVER]
set -u
drv=${1:-build/tests/peer_driver}
peer=tests/peer/udprr_peer.py
tmp=$(mktemp -d)

tally_name=protocol-peer-test
. tests/tally.sh

. tests/procs.sh

# The first python3 with PyNaCl: Debian's python3-nacl serves the system's
# python3, which may not be the first on PATH.
py=""
for p in python3 /usr/bin/python3; do
    if "$p" -c 'import nacl.bindings' >/dev/null 2>&1; then
        py=$p
        break
    fi
done
if [ -z "$py" ]; then
    fail "a python3 with PyNaCl (sh tests/ensure-deps.sh python3-nacl)"
    tally_finish
    exit
fi
if [ ! -x "$drv" ]; then
    make -s --no-print-directory "$drv" >/dev/null || {
        fail "build $drv"
        tally_finish
        exit
    }
fi

umask 077
head -c 32 /dev/urandom >"$tmp/good.key"
head -c 32 /dev/urandom >"$tmp/other.key"

# A library built with SODIUM=no has no sealed mode: the plain half runs,
# then the test says it skipped the rest.
sealed=yes
if timeout 10 "$drv" client 127.0.0.1 9 --key "$tmp/good.key" --deadline 1 2>&1 |
    grep -q '^client: open: UDPRR_ENOTSUP$'; then
    sealed=no
fi

# Bodies and the answers they must get.
printf 'hello' >"$tmp/hello.in"
: >"$tmp/empty.in"
head -c 8000 /dev/urandom >"$tmp/big.in"
printf 'decline' >"$tmp/decline.in"
printf 'big:6000' >"$tmp/amp.in"
"$py" -c 'import sys; sys.stdout.buffer.write(bytes((i * 13 + 1) & 0xff for i in range(6000)))' \
    >"$tmp/amp.want"
for b in hello empty big; do
    { printf 'peer:'; cat "$tmp/$b.in"; } >"$tmp/$b.peer.want"
    { printf 'lib:'; cat "$tmp/$b.in"; } >"$tmp/$b.lib.want"
done

# --- the page's examples -----------------------------------------------------------

timeout 20 "$py" "$peer" selftest >"$tmp/selftest.out" 2>&1
check "selftest: the page's examples reproduce (exit status)" "$?" 0
check "selftest: every check held" "$(grep -c '^selftest ok:' "$tmp/selftest.out")" 11
grep -v '^selftest ok:' "$tmp/selftest.out" | sed 's/^/    | /'

# start_peer LABEL ARGS...: a Python server on a free port; its port in
# $port, its pid in $pid, its output in $tmp/LABEL.out.
start_peer() {
    label=$1
    shift
    "$py" "$peer" server --port 0 --seconds 30 "$@" >"$tmp/$label.out" 2>&1 &
    pid=$!
    procs="$procs $pid"
    port=$(wait_for "$pid" "$tmp/$label.out" \
        's/^Listening at 127\.0\.0\.1:\([0-9]*\).*/\1/p') || port=""
    if [ -z "$port" ]; then
        fail "$label: the Python server started"
        sed 's/^/    | /' "$tmp/$label.out"
        tally_finish
        exit
    fi
}

# start_lib LABEL ARGS...: the same with the library's server.
start_lib() {
    label=$1
    shift
    "$drv" server --seconds 30 "$@" >"$tmp/$label.out" 2>&1 &
    pid=$!
    procs="$procs $pid"
    port=$(wait_for "$pid" "$tmp/$label.out" \
        's/^Listening at 127\.0\.0\.1:\([0-9]*\)$/\1/p') || port=""
    if [ -z "$port" ]; then
        fail "$label: the library's server started"
        sed 's/^/    | /' "$tmp/$label.out"
        tally_finish
        exit
    fi
}

# lib_client LABEL BODY WANT_RC [WANT_FILE] [ARGS...]: the library's
# client sends $tmp/BODY.in to $port; checks its exit status and, for a
# reply, the reply byte for byte against WANT_FILE.
lib_client() {
    label=$1 body=$2 want_rc=$3 want=$4
    shift 4
    timeout 20 "$drv" client 127.0.0.1 "$port" --body-file "$tmp/$body.in" \
        --out "$tmp/reply" --deadline 2000 "$@" >"$tmp/client.out" 2>&1
    rc=$?
    cstats=$(grep '^Client stats:' "$tmp/client.out")
    check "$label: exit status" "$rc" "$want_rc"
    if [ "$rc" -ne "$want_rc" ]; then
        sed 's/^/    | /' "$tmp/client.out"
    fi
    if [ -n "$want" ]; then
        check "$label: the reply, byte for byte" \
            "$(yes_if "cmp -s '$tmp/reply' '$tmp/$want'")" yes
    fi
}

# py_client LABEL WANT_RC ARGS...: the Python client to $port; its exit
# status checked, its output in $tmp/py.out.
py_client() {
    label=$1 want_rc=$2
    shift 2
    # A first wait of 1.5 s: no retransmission on a busy machine changes
    # the counts (ARGS may set a shorter one).
    timeout 30 "$py" "$peer" client 127.0.0.1 "$port" --rto-ms 1500 "$@" \
        >"$tmp/py.out" 2>&1
    rc=$?
    check "$label: exit status" "$rc" "$want_rc"
    if [ "$rc" -ne "$want_rc" ]; then
        sed 's/^/    | /' "$tmp/py.out"
    fi
}

# stop_and_stats PID FILE PATTERN: stops the server, prints its stats line
# into $stats.
stop_and_stats() {
    stop "$1"
    stats=$(grep "$3" "$2" | head -n 1)
    echo "    $stats"
}

# --- library client -> Python server, plain ----------------------------------------

start_peer peer-plain --decline-on decline --guard 3
pid_pp=$pid
lib_client "lib -> peer: 'hello'" hello 0 hello.peer.want
lib_client "lib -> peer: an empty body" empty 0 empty.peer.want
lib_client "lib -> peer: 8000 bytes" big 0 big.peer.want
lib_client "lib -> peer: a decline" decline 3 ""
check "lib -> peer: the decline is UDPRR_EREMOTE" \
    "$(grep -c '^client: UDPRR_EREMOTE$' "$tmp/client.out")" 1
lib_client "lib -> peer: 6000 bytes behind the peer's echo" amp 0 amp.want
check "lib -> peer: the library's client answered one echo" \
    "$(num_after "$cstats" echoes)" 1
check "lib -> peer: ... with one retransmission" \
    "$(num_after "$cstats" retransmissions)" 1
stop_and_stats "$pid_pp" "$tmp/peer-plain.out" '^peer server stats:'
check "peer server: handler calls" "$(num_after "$stats" handled)" 5
check "peer server: one echo" "$(num_after "$stats" echoes)" 1
check "peer server: the cookie was good" "$(num_after "$stats" cookies_bad)" 0
check "peer server: the request with the cookie answered from its cache" \
    "$(num_after "$stats" from_cache)" 1
check "peer server: nothing malformed" "$(num_after "$stats" malformed)" 0

# --- library client -> Python server, sealed ---------------------------------------

if [ "$sealed" = yes ]; then

start_peer peer-sealed --decline-on decline --guard 3 --key "$tmp/good.key" --key-id 5
pid_ps=$pid
lib_client "lib -> sealed peer: 'hello'" hello 0 hello.peer.want --key "$tmp/good.key" --key-id 5
lib_client "lib -> sealed peer: an empty body" empty 0 empty.peer.want --key "$tmp/good.key" --key-id 5
lib_client "lib -> sealed peer: 8000 bytes" big 0 big.peer.want --key "$tmp/good.key" --key-id 5
lib_client "lib -> sealed peer: a decline" decline 3 "" --key "$tmp/good.key" --key-id 5
lib_client "lib -> sealed peer: 6000 bytes behind the echo" amp 0 amp.want --key "$tmp/good.key" --key-id 5
check "lib -> sealed peer: the library's client answered one echo" \
    "$(num_after "$cstats" echoes)" 1
lib_client "lib -> sealed peer, another key" hello 1 "" --key "$tmp/other.key" --key-id 5
other_sent=$(num_after "$cstats" attempts)
check "lib -> sealed peer, another key: UDPRR_ETIMEDOUT" \
    "$(grep -c '^client: UDPRR_ETIMEDOUT$' "$tmp/client.out")" 1
stop_and_stats "$pid_ps" "$tmp/peer-sealed.out" '^peer server stats:'
check "sealed peer server: handler calls" "$(num_after "$stats" handled)" 5
check "sealed peer server: every datagram with another key did not open" \
    "$(num_after "$stats" not_opened)" "$other_sent"
check "sealed peer server: none outside the replay window" \
    "$(num_after "$stats" outside_window)" 0
check "sealed peer server: nothing malformed" "$(num_after "$stats" malformed)" 0
fi

# --- Python client -> library server -----------------------------------------------

# py_cases LABEL ARGS...: the same requests plain or sealed (ARGS: key).
py_cases() {
    l=$1
    shift
    py_client "peer -> $l: 'hello'" 0 hello "$@"
    check "peer -> $l: the reply" \
        "$(grep -c "^client: reply b'lib:hello'$" "$tmp/py.out")" 1
    py_client "peer -> $l: an empty body" 0 "" --out "$tmp/reply" "$@"
    check "peer -> $l: the empty body's reply" \
        "$(yes_if "cmp -s '$tmp/reply' '$tmp/empty.lib.want'")" yes
    py_client "peer -> $l: a decline" 3 decline "$@"
    py_client "peer -> $l: 6000 bytes behind the library's echo" 0 big:6000 \
        --out "$tmp/reply" "$@"
    check "peer -> $l: the peer followed one echo" \
        "$(grep -c '^client: echo for attempt 1: sending again with the cookie$' "$tmp/py.out")" 1
    check "peer -> $l: ... with the cookie, attempt 2" \
        "$(grep -c '^client: sent request [0-9a-f]* attempt 2 (8 bytes, with a cookie)$' "$tmp/py.out")" 1
    check "peer -> $l: the 6000 bytes, byte for byte" \
        "$(yes_if "cmp -s '$tmp/reply' '$tmp/amp.want'")" yes
    py_client "peer -> $l: the same request twice (attempts 1 and 2)" 0 again --again "$@"
    check "peer -> $l: the same answer both times" \
        "$(grep -c '^client: the same request got the same answer twice$' "$tmp/py.out")" 1
    check "peer -> $l: attempt 2 was sent" \
        "$(grep -c '^client: sent request [0-9a-f]* attempt 2 (5 bytes)$' "$tmp/py.out")" 1
    again_id=$(sed -n 's/^client: sent request \([0-9a-f]*\) attempt 1 .*/\1/p' "$tmp/py.out")
}

start_lib lib-plain
pid_lp=$pid
py_cases "lib"
# 8000 bytes: a reply over 3 times its request would not be, so no echo.
py_client "peer -> lib: 8000 bytes" 0 "" --size 8000 --out "$tmp/reply"
"$py" -c 'import sys; sys.stdout.buffer.write(b"lib:" + bytes((i * 7 + 3) & 0xff for i in range(8000)))' \
    >"$tmp/pattern.want"
check "peer -> lib: 8000 bytes, byte for byte" \
    "$(yes_if "cmp -s '$tmp/reply' '$tmp/pattern.want'")" yes
stop_and_stats "$pid_lp" "$tmp/lib-plain.out" '^Server stats:'
check "lib server: the request sent twice ran the handler once" \
    "$(grep -c "^handler: request $again_id attempt" "$tmp/lib-plain.out")" 1
check "lib server: handler calls (one per request)" "$(num_after "$stats" handled)" 6
check "lib server: one amplification echo" "$(num_after "$stats" amplification_echoes)" 1
check "lib server: from the cache (the cookie's return, attempt 2)" \
    "$(num_after "$stats" cache_hits)" 2
check "lib server: nothing malformed" "$(num_after "$stats" dropped_malformed)" 0
check "lib server: nothing unexpected" "$(num_after "$stats" dropped_unexpected)" 0

if [ "$sealed" = no ]; then
    tally_skip "the sealed half: this libudprr has no sealed mode (built with SODIUM=no)"
    exit
fi
start_lib lib-sealed --key "$tmp/good.key" --key-id 9
pid_ls=$pid
py_cases "sealed lib" --key "$tmp/good.key" --key-id 9
py_client "peer -> sealed lib, another key" 1 hello --key "$tmp/other.key" --key-id 9 \
    --attempts 2 --rto-ms 200
check "peer -> sealed lib, another key: it sent 2 and heard nothing" \
    "$(grep -c '^client: timeout after attempt 2$' "$tmp/py.out")" 1
py_client "peer -> sealed lib, no key" 1 hello --attempts 2 --rto-ms 200
stop_and_stats "$pid_ls" "$tmp/lib-sealed.out" '^Server stats:'
check "sealed lib server: the request sent twice ran the handler once" \
    "$(grep -c "^handler: request $again_id attempt" "$tmp/lib-sealed.out")" 1
check "sealed lib server: handler calls" "$(num_after "$stats" handled)" 5
check "sealed lib server: one amplification echo" \
    "$(num_after "$stats" amplification_echoes)" 1
check "sealed lib server: from the cache" "$(num_after "$stats" cache_hits)" 2
check "sealed lib server: the 4 datagrams without the key dropped (dropped_auth)" \
    "$(num_after "$stats" dropped_auth)" 4
check "sealed lib server: none outside the replay window" \
    "$(num_after "$stats" dropped_clock)" 0
check "sealed lib server: nothing malformed" "$(num_after "$stats" dropped_malformed)" 0
tally_finish
