#!/bin/sh
# SPDX-License-Identifier: MIT
# make demo: a libudprr client makes 20 requests to a libudprr server over
# loopback, through the impairment relay (build/udprr-relay, docs/relay.md),
# which loses a seeded 25% of the datagrams each way: requests and replies.
# A lost request costs a retransmission that runs the handler; a lost reply
# costs a retransmission that the server answers from its reply cache,
# without running the handler again. It prints the relay's impairment,
# every attempt and wait of the client (in milliseconds), the relay's
# counts (DEMO_TRACE=1 adds what it did to each datagram), each handler
# call and the server's counters, then three lines on what happened: the
# retries, the RTO adapting, the reply cache.
#
# Everything is bounded: the server and the relay stop by themselves after
# 60 s at the latest, and are stopped as soon as the client is done.
#
# Usage: [DEMO_TRACE=1] sh examples/demo.sh [EXAMPLES_DIR [RELAY_PROGRAM]]
#        DEMO_TRACE=1 make demo
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
client_out=$(mktemp)
server_pid="" relay_pid=""
trap 'kill $relay_pid $server_pid 2>/dev/null; rm -f "$server_out" "$relay_out" "$client_out" "$client_out.status"' EXIT

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
# Shown as it runs, and kept for the closing lines; the client's status
# passes the pipe in a file.
{
    "$bin/udp_remote" client 127.0.0.1 -p "$relay_port" --count "$requests" \
        --text "This is my message"
    echo $? >"$client_out.status"
} | tee "$client_out"
status=$(cat "$client_out.status" 2>/dev/null || echo 1)

# The relay first, so that nothing is still on its way to the server when
# the server stops: then the counters of all three agree.
kill -TERM "$relay_pid"
wait "$relay_pid"
kill -TERM "$server_pid"
wait "$server_pid"
relay_pid="" server_pid=""

# The relay's log of every datagram (line 4 on, "t=... to_server #n ...")
# is long beside the client's own story: its counts are enough, the log
# is there for the asking.
if [ "${DEMO_TRACE:-0}" = 1 ]; then
    echo "=== relay: what it did to each datagram (#n counts each direction)"
    sed -n '4,$p' "$relay_out"
else
    echo "=== relay: what it did (DEMO_TRACE=1 make demo shows each datagram)"
    grep -E '^(udprr-relay: stopped|to_server: [0-9]|to_client: [0-9])' "$relay_out"
fi
echo "=== server: one line per handler call, then its counters"
sed -n '2,$p' "$server_out"

# The figures of the closing lines, from the three programs' own output.
num() { sed -n "s/^$1.*[ (]\([0-9][0-9]*\) $2.*/\1/p" "$3" | head -n 1; }
handled=$(num 'Server stats:' 'handler calls' "$server_out")
hits=$(num 'Server stats:' 'from the reply cache' "$server_out")
received=$(num 'Server stats:' 'datagrams received' "$server_out")
retrans=$(num 'Client stats:' 'retransmissions' "$client_out")
lost_up=$(num 'to_server: [0-9]' 'dropped' "$relay_out")
lost_down=$(num 'to_client: [0-9]' 'dropped' "$relay_out")
# The RTO each request started with (its first attempt's), and the last.
rto() { sed -n "/^Request $1:/,/^Request/s/^  attempt 1: .*(RTO \([0-9.]*\) ms)$/\1/p" \
    "$client_out" | head -n 1; }
rto_end=$(sed -n 's/^Client stats:.* RTO \([0-9.]*\) ms$/\1/p' "$client_out")
srtt_end=$(sed -n 's/^Client stats:.* SRTT \([0-9.]*\) ms.*/\1/p' "$client_out")
echo "=== what happened"
echo "retries:     ${retrans:-?} retransmissions for $requests requests; the relay lost ${lost_up:-?} requests and ${lost_down:-?} replies"
echo "the RTO:     $(rto 1) ms for request 1 (nothing measured yet), $(rto 2) ms for request 2, ${rto_end:-?} ms at the end (smoothed RTT ${srtt_end:-?} ms)"
once=""
[ "${handled:-}" = "$requests" ] && once=", once per request"
echo "reply cache: the server got ${received:-?} datagrams and ran the handler ${handled:-?} times$once; ${hits:-?} retransmissions were answered from its cache"
exit "$status"
