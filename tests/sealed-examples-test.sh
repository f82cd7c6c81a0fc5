#!/bin/sh
# SPDX-License-Identifier: MIT
# udp_remote's --key (the sealed mode, issue 15) as a user runs it, on
# 127.0.0.1: a key file that is too open or of the wrong size is refused
# with a clear message; a sealed server and a client with the same key
# file make their round trips; a client with another key, with the same
# key under another key ID, or with no key at all gets no answer and
# times out, and the server's closing counters show each of its datagrams
# dropped (dropped_auth) without a handler call.
#
# Every process started here is stopped on exit; every wait is bounded
# (each client by its --deadline and `timeout`, the server stops by itself
# after 60 s). About 5 s. Records its result in build/tally.
#
#   sh tests/sealed-examples-test.sh [EXAMPLES_DIR]
set -u
bin=${1:-build/examples}
requests=3
deadline_ms=1500
tmp=$(mktemp -d)

tally_name=sealed-examples-test
. tests/tally.sh

. tests/procs.sh

# Key files: 32 random bytes, the owner's only; and the wrong kinds.
umask 077
head -c 32 /dev/urandom >"$tmp/good.key"
head -c 32 /dev/urandom >"$tmp/other.key"
head -c 31 /dev/urandom >"$tmp/short.key"
cp "$tmp/good.key" "$tmp/open.key"
chmod 644 "$tmp/open.key"

# --- key files the example must refuse ------------------------------------------

timeout 10 "$bin/udp_remote" client 127.0.0.1 -p 9 --key "$tmp/open.key" \
    >"$tmp/open.out" 2>&1
check "a key file readable by others: refused (exit status)" "$?" 2
check "a key file readable by others: says why" \
    "$(grep -c 'open to its group or others (mode 0644)' "$tmp/open.out")" 1
timeout 10 "$bin/udp_remote" server 127.0.0.1 -p 0 --key "$tmp/short.key" \
    >"$tmp/short.out" 2>&1
check "a 31-byte key file: refused (exit status)" "$?" 2
check "a 31-byte key file: says why" \
    "$(grep -c 'holds 31 bytes; a key is exactly 32' "$tmp/short.out")" 1

# --- a sealed server -------------------------------------------------------------

"$bin/udp_remote" server 127.0.0.1 -p 0 --seconds 60 --key "$tmp/good.key" \
    >"$tmp/server.out" 2>&1 &
server_pid=$!
procs="$procs $server_pid"
if ! server_port=$(wait_for "$server_pid" "$tmp/server.out" \
    's/^Listening at 127\.0\.0\.1:\([0-9]*\), sealed with key ID 1$/\1/p'); then
    if grep -q 'not supported by this build' "$tmp/server.out"; then
        tally_skip "this libudprr has no sealed mode (built with SODIUM=no)"
        exit
    fi
    fail "the sealed server started"
    sed 's/^/    | /' "$tmp/server.out"
    tally_finish
    exit
fi
pass "udp_remote server listens on 127.0.0.1:$server_port, sealed with key ID 1"

# client LABEL ARGS...: runs the client against the server with ARGS; its
# output in $tmp/client.out, its exit status in $rc, its stats line in
# $stats and the datagrams it sent in $sent.
client() {
    label=$1
    shift
    timeout 30 "$bin/udp_remote" client 127.0.0.1 -p "$server_port" \
        --deadline "$deadline_ms" "$@" >"$tmp/client.out" 2>&1
    rc=$?
    stats=$(grep '^Client stats:' "$tmp/client.out" | head -n 1)
    sent=$(num_before "$stats" 'datagrams sent')
    echo "    $label: $stats"
}

client "same key" --count $requests --key "$tmp/good.key"
check "same key: exit status" "$rc" 0
check "same key: every request answered" \
    "$(grep -c "^  The server says 'Your data was 18 bytes long'" "$tmp/client.out")" \
    $requests
check "same key: completed" "$(num_before "$stats" completed)" $requests
good_sent=$sent

client "another key" --key "$tmp/other.key"
check "another key: exit status" "$rc" 1
check "another key: the client timed out" \
    "$(grep -c '^  I think the server is down, or does not hold key ID 1$' "$tmp/client.out")" 1
check "another key: timeouts" "$(num_before "$stats" timeouts)" 1
other_sent=$sent

client "same key, key ID 2" --key "$tmp/good.key" --key-id 2
check "key ID 2: exit status" "$rc" 1
check "key ID 2: timeouts" "$(num_before "$stats" timeouts)" 1
id_sent=$sent

client "no key"
check "no key: exit status" "$rc" 1
check "no key: timeouts" "$(num_before "$stats" timeouts)" 1
plain_sent=$sent

# --- the server's counters ---------------------------------------------------------

stop "$server_pid"
server=$(grep '^Server stats:' "$tmp/server.out" | head -n 1)
sealed=$(grep '^Sealed:' "$tmp/server.out" | head -n 1)
echo "    $server"
echo "    $sealed"
check "the handler ran only for the requests with the key" \
    "$(num_before "$server" 'handler calls')" $requests
check "one handler line per request with the key" \
    "$(grep -c "^The client at 127.0.0.1:[0-9]* says 'This is my message'" "$tmp/server.out")" \
    $requests
check "every datagram without the key was dropped as not opening" \
    "$(num_before "$sealed" 'datagrams did not open')" \
    $((other_sent + id_sent + plain_sent))
check "the server got the sealed client's datagrams and the others'" \
    "$(num_before "$server" 'datagrams received')" \
    $((good_sent + other_sent + id_sent + plain_sent))
check "none fell outside the replay window" \
    "$(num_before "$sealed" 'requests outside')" 0
tally_finish
