#!/bin/sh
# SPDX-License-Identifier: MIT
# Interoperability with ../shared/peers/plain_peer.py, the textbook's plain
# UDP client and server, which know nothing of libudprr:
#   - the raw udp_local client against the plain server dropping a seeded
#     half of the requests: the library's retries get every answer;
#   - the plain client against the raw udp_local server.
# Everything runs on 127.0.0.1, every wait is bounded, and every process the
# test starts is stopped on exit. Records its result in build/tally.
set -u
peer=${UDPRR_PLAIN_PEER:-../shared/peers/plain_peer.py}
bin=build/examples
tmp=$(mktemp -d)
pids=""
trap 'for p in $pids; do kill "$p" 2>/dev/null; done; rm -rf "$tmp"' EXIT
tally_name=peers-test
. tests/tally.sh
finish() {
    tally_finish
    exit
}

if [ ! -f "$peer" ]; then
    tally_skip "the textbook's plain peer is not at $peer (shared/ beside the project, or UDPRR_PLAIN_PEER)"
    exit
fi
if ! command -v python3 >/dev/null 2>&1; then
    fail "python3 is needed to run $peer"
    finish
fi

# wait_for FILE PATTERN: up to 10 s for a line matching PATTERN.
wait_for() {
    for _ in $(seq 100); do
        grep -q "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}

# A port nobody uses right now, chosen by the kernel.
free_port() {
    python3 -c 'import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# 1. libudprr raw client -> plain server that drops half the requests.
started=""
for attempt in 1 2 3; do
    port=$(free_port)
    python3 "$peer" server --host 127.0.0.1 -p "$port" --drop 0.5 --seed 7 \
        --count 200 --seconds 60 >"$tmp/server.log" 2>&1 &
    server=$!
    pids="$pids $server"
    if wait_for "$tmp/server.log" "^Listening at"; then
        started=yes
        break
    fi
    kill "$server" 2>/dev/null # the port was taken meanwhile: try another
done
if [ -z "$started" ]; then
    fail "plain_peer.py server did not start: $(cat "$tmp/server.log")"
else
    # --deadline 0: retry until answered (the drops are seeded, so the run
    # is the same every time; timeout only guards against a hang).
    timeout 60 "$bin/udp_local" client -p "$port" --count 10 --deadline 0 \
        --text "This is my message" >"$tmp/client.log" 2>&1
    rc=$?
    answers=$(grep -c "^The server replied 'Your data was 18 bytes long'$" "$tmp/client.log")
    drops=$(grep -c "^Pretending to drop" "$tmp/server.log")
    if [ "$rc" -eq 0 ] && [ "$answers" -eq 10 ]; then
        pass "udp_local client got all 10 answers from plain_peer.py server"
    else
        fail "udp_local client: exit $rc, $answers of 10 answers: $(cat "$tmp/client.log")"
    fi
    if [ "$drops" -gt 0 ]; then
        pass "the plain server dropped $drops requests and the client retried past them"
    else
        fail "the plain server (seed 7, --drop 0.5) dropped nothing: the retry path was not exercised"
    fi
    kill "$server" 2>/dev/null
fi

# 2. plain client -> libudprr raw server.
"$bin/udp_local" server -p 0 --seconds 60 >"$tmp/local.log" 2>&1 &
pids="$pids $!"
if wait_for "$tmp/local.log" "^Listening at 127.0.0.1:"; then
    port=$(sed -n 's/^Listening at 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$tmp/local.log")
    timeout 30 python3 "$peer" client --host 127.0.0.1 -p "$port" \
        >"$tmp/plain.log" 2>&1
    rc=$?
    if [ "$rc" -eq 0 ] && grep -q "^The server says b'Your data was 18 bytes long'$" "$tmp/plain.log"; then
        pass "plain_peer.py client got its answer from the udp_local server"
    else
        fail "plain_peer.py client: exit $rc: $(cat "$tmp/plain.log")"
    fi
    if grep -q "^The client at 127.0.0.1:[0-9]* says 'This is my message'$" "$tmp/local.log"; then
        pass "udp_local server saw the plain client's text"
    else
        fail "udp_local server log: $(cat "$tmp/local.log")"
    fi
else
    fail "udp_local server did not start: $(cat "$tmp/local.log")"
fi
finish
