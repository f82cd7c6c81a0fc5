#!/bin/sh
# SPDX-License-Identifier: MIT
# The asynchronous client's examples, poll_client (poll(2)) and uv_client
# (libuv), against udp_remote's server on 127.0.0.1: 200 pipelined
# requests each, at windows 1 and 16, then once more each at window 16
# through the impairment relay losing a seeded 10% of the datagrams each
# way, so that requests are retransmitted and the window shrinks. Checks
# each run's exit status and its summary line: every request completed
# with its own reply, the counters add up, the window and the requests in
# flight stayed within the ceiling given.
#
# Every process started here is stopped on exit; every wait is bounded
# (a client run by 60 s, the server and the relay stop by themselves).
# Records its result in build/tally.
#
#   sh tests/async-examples-test.sh [EXAMPLES_DIR [RELAY_PROGRAM]]
set -u
bin=${1:-build/examples}
relay=${2:-build/udprr-relay}
requests=200
# Seed 3 loses datagrams among the first $requests of each direction, so
# every run through the relay has losses whatever the timing.
seed=3
loss=0.1
tmp=$(mktemp -d)

tally_name=async-examples-test
. tests/tally.sh

. tests/procs.sh

# --- the server --------------------------------------------------------------

server_port=""
"$bin/udp_remote" server 127.0.0.1 -p 0 --seconds 300 >"$tmp/server.out" 2>&1 &
server_pid=$!
procs="$procs $server_pid"
if server_port=$(wait_for "$server_pid" "$tmp/server.out" \
    's/^Listening at 127\.0\.0\.1:\([0-9]*\).*/\1/p'); then
    pass "udp_remote server listens on 127.0.0.1:$server_port"
else
    fail "udp_remote server started"
    sed 's/^/    | /' "$tmp/server.out"
fi

# --- the clients -------------------------------------------------------------

# client LABEL PROGRAM PORT WINDOW: runs PROGRAM against 127.0.0.1:PORT
# with $requests requests and that window, and checks what every run must
# show. Leaves the summary line in $summary (empty when there is none)
# and its numbers in $attempts, $retrans and $reductions.
client() {
    label=$1 prog=$2 port=$3 window=$4
    summary=""
    if [ -z "$port" ]; then
        fail "$label: not run, nothing to send to"
        return
    fi
    timeout 60 "$bin/$prog" 127.0.0.1 "$port" $requests "$window" \
        >"$tmp/client.out" 2>"$tmp/client.err"
    rc=$?
    summary=$(grep "^$prog: $requests requests, " "$tmp/client.out" | head -n 1)
    if [ "$rc" -ne 0 ] || [ -z "$summary" ]; then
        sed 's/^/    out| /' "$tmp/client.out"
        sed 's/^/    err| /' "$tmp/client.err" | head -n 20
    else
        echo "    $summary"
    fi
    if [ -z "$summary" ]; then
        fail "$label: no summary line (exit $rc)"
        return
    fi
    check "$label: exit status" "$rc" 0
    check "$label: every request completed" \
        "$(num_before "$summary" completed)" $requests
    check "$label: no request failed" "$(num_before "$summary" failed)" 0
    check "$label: every reply was its own request's" \
        "$(num_before "$summary" 'wrong replies')" 0
    check "$label: nothing on stderr" "$(wc -c <"$tmp/client.err")" 0
    attempts=$(num_before "$summary" attempts)
    retrans=$(num_before "$summary" retransmissions)
    check "$label: attempts = requests + retransmissions" \
        "$attempts" $((requests + retrans))
    win=$(num_after "$summary" window)
    peak=$(num_after "$summary" 'peak in flight')
    reductions=$(num_before "$summary" 'window reductions')
    check "$label: the ceiling is the window given" \
        "$(num_after "$summary" '(max')" "$window"
    # The initial window is min(4, WINDOW), and all the requests are
    # queued at once: that many are in flight right after the sends.
    first=$((window < 4 ? window : 4))
    check "$label: window and requests in flight within 1..$window" \
        "$(yes_if "[ $win -ge 1 ] && [ $win -le $window ] &&
                   [ $peak -ge $first ] && [ $peak -le $window ]")" yes
    if [ "$reductions" -eq 0 ]; then
        # No loss seen: every reply found the window full (the queue
        # refills it), so it grew by one per reply up to the ceiling,
        # which 200 requests reach from 4 with room to spare.
        check "$label: with no loss the window grew to the ceiling" \
            "$win/$peak" "$window/$window"
    fi
}

client "poll_client, window 1" poll_client "$server_port" 1
check "poll_client, window 1: one request in flight at a time" \
    "$(num_after "$summary" 'peak in flight')" 1
client "poll_client, window 16" poll_client "$server_port" 16
client "uv_client, window 1" uv_client "$server_port" 1
check "uv_client, window 1: one request in flight at a time" \
    "$(num_after "$summary" 'peak in flight')" 1
client "uv_client, window 16" uv_client "$server_port" 16

# --- through the impairment relay ---------------------------------------------

# lossy PROGRAM: PROGRAM at window 16 through a relay of its own that
# loses a seeded $loss of the datagrams each way; checks that the losses
# cost retransmissions and shrank the window, and that the relay's
# counters agree with the client's.
lossy() {
    prog=$1 label="$1 through the lossy relay"
    if [ -z "$server_port" ]; then
        fail "$label: not run, no server"
        return
    fi
    "$relay" --listen 0 --server "127.0.0.1:$server_port" --seed $seed \
        --drop $loss --seconds 120 >"$tmp/relay.out" 2>&1 &
    relay_pid=$!
    procs="$procs $relay_pid"
    if ! relay_port=$(wait_for "$relay_pid" "$tmp/relay.out" \
        's/^udprr-relay: clients send to 127\.0\.0\.1:\([0-9]*\);.*/\1/p'); then
        fail "$label: the relay started"
        sed 's/^/    | /' "$tmp/relay.out"
        stop "$relay_pid"
        return
    fi
    client "$label" "$prog" "$relay_port" 16
    stop "$relay_pid" # prints its counters as it stops
    [ -n "$summary" ] || return
    to_server=$(grep '^to_server: [0-9]' "$tmp/relay.out" | head -n 1)
    to_client=$(grep '^to_client: [0-9]' "$tmp/relay.out" | head -n 1)
    lost_up=$(num_before "$to_server" dropped)
    lost_down=$(num_before "$to_client" dropped)
    seen_up=$(num_before "$to_server" datagrams)
    check "$label: the relay lost requests and replies" \
        "$(yes_if "[ $lost_up -ge 1 ] && [ $lost_down -ge 1 ]")" yes
    check "$label: every lost datagram cost a retransmission" \
        "$(yes_if "[ $retrans -ge $((lost_up + lost_down)) ]")" yes
    check "$label: the relay saw no more than the client sent" \
        "$(yes_if "[ $seen_up -ge $requests ] && [ $seen_up -le $attempts ]")" yes
    check "$label: a loss shrank the window" \
        "$(yes_if "[ $reductions -ge 1 ]")" yes
}

lossy poll_client
lossy uv_client

# --- the server's side ---------------------------------------------------------

if [ -n "$server_port" ]; then
    stop "$server_pid" # prints its counters as it stops
    stats=$(grep '^Server stats:' "$tmp/server.out" | head -n 1)
    # Six runs of $requests; through the relay the reply cache answers
    # retransmissions, so the handler runs once per request.
    check "the server's handler ran once per request" \
        "$(num_before "$stats" 'handler calls')" $((6 * requests))
fi
tally_finish
