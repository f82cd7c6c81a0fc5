#!/bin/sh
# SPDX-License-Identifier: MIT
# make demo: a libudprr client makes 20 requests to a libudprr server over
# loopback, through the impairment relay (build/udprr-relay, docs/relay.md),
# which loses a seeded 25% of the datagrams each way: requests and replies.
# A lost request costs a retransmission that runs the handler; a lost reply
# costs a retransmission that the server answers from its reply cache,
# without running the handler again. It prints the relay's impairment and
# what it did to each datagram, every attempt and wait of the client (in
# milliseconds), each handler call, and the server's closing counters.
#
# Everything is bounded: the server and the relay stop by themselves after
# 60 s at the latest, and are stopped as soon as the client is done.
#
# Usage: sh examples/demo.sh [EXAMPLES_DIR [RELAY_PROGRAM]]
set -u
bin=${1:-build/examples}
relay=${2:-build/udprr-relay}
requests=20
# Seed 8 loses the replies to the first request's first two attempts, sent
# while the client still waits out its initial 1 s RTO: no timing can
# change that, so every run has answers from the reply cache (and the
# loopback itself loses nothing).
seed=8
loss=0.25 loss_text="25%"
server_out=$(mktemp)
relay_out=$(mktemp)
server_pid="" relay_pid=""
trap 'kill $relay_pid $server_pid 2>/dev/null; rm -f "$server_out" "$relay_out"' EXIT

# Waits (at most 5 s) until sed finds $2 in file $1; prints what it found.
wait_for() {
    for _ in $(seq 50); do
        found=$(sed -n "$2" "$1")
        if [ -n "$found" ]; then
            echo "$found"
            return 0
        fi
        sleep 0.1
    done
    return 1
}

"$bin/udp_remote" server 127.0.0.1 -p 0 --seconds 60 >"$server_out" 2>&1 &
server_pid=$!
server_port=$(wait_for "$server_out" 's/^Listening at 127\.0\.0\.1:\([0-9]*\).*/\1/p') || {
    echo "demo: the server did not start:" >&2
    cat "$server_out" >&2
    exit 1
}

"$relay" --listen 0 --server "127.0.0.1:$server_port" --seed "$seed" \
    --drop "$loss" --seconds 60 --log >"$relay_out" 2>&1 &
relay_pid=$!
relay_port=$(wait_for "$relay_out" 's/^udprr-relay: clients send to 127\.0\.0\.1:\([0-9]*\);.*/\1/p') || {
    echo "demo: the relay did not start:" >&2
    cat "$relay_out" >&2
    exit 1
}

echo "=== server: $(head -n 1 "$server_out")"
echo "=== relay: 127.0.0.1:$relay_port -> 127.0.0.1:$server_port, seed $seed, losing $loss_text of the datagrams each way"
sed -n '2,3p' "$relay_out"
echo "=== client: $requests requests to the relay at 127.0.0.1:$relay_port"
"$bin/udp_remote" client 127.0.0.1 -p "$relay_port" --count "$requests" \
    --text "This is my message"
status=$?

# The relay first, so that nothing is still on its way to the server when
# the server stops: then the counters of all three agree.
kill -TERM "$relay_pid"
wait "$relay_pid"
kill -TERM "$server_pid"
wait "$server_pid"
relay_pid="" server_pid=""

echo "=== relay: what it did to each datagram (#n counts each direction)"
sed -n '4,$p' "$relay_out"
echo "=== server: one line per handler call, then its counters"
sed -n '2,$p' "$server_out"

num() { sed -n "s/^Server stats:.* \([0-9][0-9]*\) $1.*/\1/p" "$server_out"; }
handled=$(num 'handler calls')
hits=$(num 'from the reply cache')
echo "=== $requests requests; the handler ran ${handled:-?} times; ${hits:-?} retransmissions answered from the reply cache"
exit $status
