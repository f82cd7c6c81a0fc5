#!/bin/sh
# SPDX-License-Identifier: MIT
# The deferred-answer examples. deferred_server (4 workers, 50 ms of work
# per request) on 127.0.0.1 gets 100 requests from its own client mode,
# whose fixed 10 ms RTO retransmits every request while it is worked on;
# stopped with SIGINT, it must print: handler calls == deferred ==
# deferred answers == 100 (the retransmissions never ran the handler),
# deferred_retransmissions > 0, nothing expired, refused or left pending,
# and the client must have had every request answered with its own reply.
# Then the same once more through the impairment relay losing a seeded
# 10% of the datagrams each way and duplicating 5%: still exactly 100
# handler calls (at most once), and lost replies answered from the reply
# cache. Last, one_loop (a server and a client in one poll loop): its exit
# status and its summary line.
#
# Every process started here is stopped on exit; every wait is bounded
# (a client run by 60 s; the servers and the relay stop by themselves
# after 120 s at the latest). Records its result in build/tally.
#
#   sh tests/deferred-examples-test.sh [EXAMPLES_DIR [RELAY_PROGRAM]]
set -u
bin=${1:-build/examples}
relay=${2:-build/udprr-relay}
requests=100
# Seed 3 loses the 11th datagram to the server and the very first one back
# (with --drop 0.1 --dup 0.05): each run has at least $requests each way,
# so both losses happen whatever the timing.
seed=3
tmp=$(mktemp -d)

tally_name=deferred-examples-test
. tests/tally.sh

. tests/procs.sh

# interrupt PID: SIGINT, as a user's ^C; at most 5 s to exit. Sets
# $interrupt_status to its exit status ("hung" when it had to be
# killed), reaps it and forgets it.
interrupt() {
    kill -INT "$1" 2>/dev/null
    for _ in $(seq 50); do
        exited "$1" && break
        sleep 0.1
    done
    if exited "$1"; then
        wait "$1"
        interrupt_status=$?
        procs=$(echo " $procs " | sed "s/ $1 / /g")
    else
        interrupt_status=hung
        stop "$1"
    fi
}

# start_server LABEL: deferred_server on a free port of 127.0.0.1, output
# in $tmp/server.out; sets $server_pid and $server_port ("" on failure).
start_server() {
    server_port=""
    "$bin/deferred_server" --bind 127.0.0.1 --seconds 120 0 4 50 \
        >"$tmp/server.out" 2>"$tmp/server.err" &
    server_pid=$!
    procs="$procs $server_pid"
    if server_port=$(wait_for "$server_pid" "$tmp/server.out" \
        's/^Listening at 127\.0\.0\.1:\([0-9]*\), 4 workers, 50 ms .*/\1/p')
    then
        pass "$1: deferred_server listens on 127.0.0.1:$server_port"
    else
        server_port=""
        fail "$1: deferred_server started"
        sed 's/^/    | /' "$tmp/server.out" "$tmp/server.err"
    fi
}

# run_client LABEL PORT: the client mode, $requests requests to
# 127.0.0.1:PORT; checks its exit status and summary line.
run_client() {
    label=$1
    timeout 60 "$bin/deferred_server" client 127.0.0.1 "$2" $requests \
        >"$tmp/client.out" 2>"$tmp/client.err"
    rc=$?
    summary=$(grep "^deferred_server client: $requests requests, " \
        "$tmp/client.out" | head -n 1)
    if [ "$rc" -ne 0 ] || [ -z "$summary" ]; then
        sed 's/^/    out| /' "$tmp/client.out"
        sed 's/^/    err| /' "$tmp/client.err" | head -n 20
    else
        echo "    $summary"
    fi
    check "$label: the client's exit status" "$rc" 0
    check "$label: every request completed" \
        "$(num_before "$summary" completed)" $requests
    check "$label: no request failed" "$(num_before "$summary" failed)" 0
    check "$label: every reply was its own request's" \
        "$(num_before "$summary" 'wrong replies')" 0
    check "$label: nothing on the client's stderr" \
        "$(wc -c <"$tmp/client.err")" 0
    client_retrans=$(num_before "$summary" retransmissions)
    check "$label: the client's 10 ms RTO made it retransmit" \
        "$(yes_if "[ $client_retrans -ge 1 ]")" yes
}

# stop_server LABEL: SIGINT to the server; checks that it stopped at once
# and the counters it printed. Leaves the stats line in $stats.
stop_server() {
    label=$1
    interrupt "$server_pid"
    check "$label: deferred_server exits 0 on SIGINT" "$interrupt_status" 0
    stats=$(grep '^Server stats:' "$tmp/server.out" | head -n 1)
    workers=$(grep '^Workers:' "$tmp/server.out" | head -n 1)
    echo "    $stats"
    echo "    $workers"
    check "$label: the handler ran once per request" \
        "$(num_after "$stats" handled)" $requests
    check "$label: every request was deferred" \
        "$(num_after "$stats" deferred)" $requests
    check "$label: every deferred request was answered through its token" \
        "$(num_after "$stats" deferred_answered)" $requests
    check "$label: the workers gave every answer" \
        "$(num_before "$workers" 'answers given')" $requests
    retrans=$(num_after "$stats" deferred_retransmissions)
    check "$label: retransmissions arrived while the work was in progress" \
        "$(yes_if "[ $retrans -ge 1 ]")" yes
    check "$label: none pending, expired, refused, declined or malformed" \
        "$(num_after "$stats" deferred_pending)/$(num_after "$stats" \
            deferred_expired)/$(num_after "$stats" deferred_refused)/$(
            num_after "$stats" declined)/$(num_after "$stats" \
            dropped_malformed)" 0/0/0/0/0
    check "$label: nothing was queued at the stop" \
        "$(num_before "$workers" 'requests still queued')" 0
    check "$label: nothing on the server's stderr" \
        "$(wc -c <"$tmp/server.err")" 0
    # Every datagram that reached the server is a request's first
    # transmission (one per request, the handler's), a retransmission
    # dropped while its request was deferred, or one answered from the
    # cache: none ran the handler twice.
    check "$label: received = handled + in-progress drops + cache hits" \
        "$(num_after "$stats" received)" $(($(num_after "$stats" handled) +
        retrans + $(num_after "$stats" cache_hits)))
}

# --- straight to the server -------------------------------------------------

label="loopback"
start_server "$label"
if [ -n "$server_port" ]; then
    run_client "$label" "$server_port"
    stop_server "$label"
fi

# --- through the impairment relay -------------------------------------------

label="through the lossy relay"
start_server "$label"
if [ -n "$server_port" ]; then
    "$relay" --listen 0 --server "127.0.0.1:$server_port" --seed $seed \
        --drop 0.1 --dup 0.05 --seconds 120 >"$tmp/relay.out" 2>&1 &
    relay_pid=$!
    procs="$procs $relay_pid"
    if relay_port=$(wait_for "$relay_pid" "$tmp/relay.out" \
        's/^udprr-relay: clients send to 127\.0\.0\.1:\([0-9]*\);.*/\1/p'); then
        run_client "$label" "$relay_port"
        stop "$relay_pid" # prints its counters as it stops
        stop_server "$label"
        to_server=$(grep '^to_server: [0-9]' "$tmp/relay.out" | head -n 1)
        to_client=$(grep '^to_client: [0-9]' "$tmp/relay.out" | head -n 1)
        echo "    $to_server"
        echo "    $to_client"
        lost_up=$(num_before "$to_server" dropped)
        lost_down=$(num_before "$to_client" dropped)
        check "$label: the relay lost requests and replies" \
            "$(yes_if "[ $lost_up -ge 1 ] && [ $lost_down -ge 1 ]")" yes
        # A lost reply leaves its client retransmitting after the answer
        # was sent: only the cache can answer it.
        check "$label: lost replies were answered from the reply cache" \
            "$(yes_if "[ $(num_after "$stats" cache_hits) -ge 1 ]")" yes
    else
        fail "$label: the relay started"
        sed 's/^/    | /' "$tmp/relay.out"
        stop "$relay_pid"
        stop "$server_pid"
    fi
fi

# --- one_loop ---------------------------------------------------------------

loop_requests=200
timeout 60 "$bin/one_loop" $loop_requests >"$tmp/loop.out" 2>"$tmp/loop.err"
rc=$?
summary=$(grep "^one_loop: $loop_requests requests, " "$tmp/loop.out" |
    head -n 1)
stats=$(grep '^Server stats:' "$tmp/loop.out" | head -n 1)
if [ "$rc" -ne 0 ] || [ -z "$summary" ]; then
    sed 's/^/    out| /' "$tmp/loop.out"
    sed 's/^/    err| /' "$tmp/loop.err" | head -n 20
else
    echo "    $summary"
fi
check "one_loop: exit status" "$rc" 0
check "one_loop: every request completed with its own reply" \
    "$(num_before "$summary" completed)/$(num_before "$summary" failed)/$(
        num_before "$summary" 'wrong replies')" "$loop_requests/0/0"
check "one_loop: half answered at once, half on a later turn" \
    "$(num_before "$summary" 'answered at once')/$(num_before "$summary" \
        'deferred to a later turn')" \
    "$((loop_requests / 2))/$((loop_requests / 2))"
check "one_loop: the server deferred and answered half through tokens" \
    "$(num_after "$stats" handled)/$(num_after "$stats" deferred)/$(
        num_after "$stats" deferred_answered)/$(num_after "$stats" \
        deferred_pending)" "$loop_requests/$((loop_requests / 2))/$((
        loop_requests / 2))/0"
check "one_loop: nothing on stderr" "$(wc -c <"$tmp/loop.err")" 0
tally_finish
