#!/bin/sh
# SPDX-License-Identifier: MIT
# The failover example (examples/failover.c): one client over two servers
# on loopback, each an examples/udp_broadcast server answering with its
# name ("server A", "server B"), so every reply says who answered.
#
# 1. Failing over and back. A on one port of 127.0.0.1; B behind the
#    impairment relay holding every datagram 5 ms, so that B is the
#    farther server and A, the nearer, is the best endpoint while it is
#    up. The client, A listed first, sends 60 requests, one every 50 ms,
#    with a 200 ms endpoint back-off. Once request 10 is answered the test
#    stops A; once request 20 is answered it starts A again on the same
#    port. Checks: every request answered, none close to its deadline;
#    the first ones by A; the first after the stop refused by A and
#    answered by B in the same request (a refusal moves it at once); then
#    B alone until A's back-off ran out and A answered again, to the end;
#    A's refusals and both endpoints' answers in the counters.
# 2. A is a blackhole (../shared/peers/plain_peer.py dropping everything)
#    and the first RTO 100 ms: request 1 waits that out on A and is
#    answered by B; A never answers.
# 3. The same blackhole with --refused-only: request 1 is retransmitted to
#    A alone until its deadline, UDPRR_ETIMEDOUT, and B hears nothing of
#    it; request 2, a new one, goes to B (A has failed).
#
# Every process started here is stopped on exit; every wait is bounded
# (each client by `timeout`, the servers and the relay stop by themselves
# after 60 s). About 6 s in all. Records its result in build/tally.
#
#   sh tests/failover-examples-test.sh [EXAMPLES_DIR [RELAY_PROGRAM]]
set -u
bin=${1:-build/examples}
relay=${2:-build/udprr-relay}
peer=${UDPRR_PLAIN_PEER:-../shared/peers/plain_peer.py}
tmp=$(mktemp -d)

tally_name=failover-examples-test
. tests/tally.sh

. tests/procs.sh

# wait_line PID FILE SED: as procs.sh's wait_for, in steps of 20 ms (a
# request every 50 ms is to be caught within about one).
wait_line() {
    for _ in $(seq 250); do
        found=$(sed -n "$3" "$2")
        if [ -n "$found" ]; then
            echo "$found"
            return 0
        fi
        exited "$1" && return 1
        sleep 0.02
    done
    return 1
}

# start_named NAME PORT FILE: a udp_broadcast server answering NAME, on
# PORT (0: a free one), output in FILE; sets $named_pid and $named_port
# ("" on failure).
start_named() {
    "$bin/udp_broadcast" server -p "$2" --name "$1" --seconds 60 \
        >"$3" 2>"$3.err" &
    named_pid=$!
    procs="$procs $named_pid"
    if ! named_port=$(wait_for "$named_pid" "$3" \
        's/^Listening at .*:\([0-9]*\), answering as .*/\1/p'); then
        named_port=""
        fail "'$1' started on port $2"
        sed 's/^/    | /' "$3" "$3.err"
    fi
}

# start_blackhole FILE: plain_peer.py dropping every datagram, on a free
# port of 127.0.0.1; sets $hole_pid and $hole_port ("" on failure).
start_blackhole() {
    hole_port=""
    if [ ! -f "$peer" ]; then
        skip_part "$label: the textbook's plain peer is not at $peer (shared/ beside the project, or UDPRR_PLAIN_PEER)"
        return
    fi
    if ! command -v python3 >/dev/null 2>&1; then
        fail "python3 is needed for $peer"
        return
    fi
    python3 "$peer" server --host 127.0.0.1 -p 0 --drop 1 --count 1000 \
        --seconds 60 >"$1" 2>&1 &
    hole_pid=$!
    procs="$procs $hole_pid"
    if ! hole_port=$(wait_for "$hole_pid" "$1" \
        "s/^Listening at ('127\.0\.0\.1', \([0-9]*\))/\1/p"); then
        hole_port=""
        fail "the blackhole started"
        sed 's/^/    | /' "$1"
    fi
}

# answers FILE: "K PORT" for every request of the client's output in FILE
# that was answered, PORT the answering endpoint's.
answers() {
    sed -n 's/^request \([0-9]*\): UDPRR_OK .* from 127\.0\.0\.1:\([0-9]*\) in .*/\1 \2/p' "$1"
}

# show FILE: the client's output, indented.
show() { sed 's/^/    | /' "$1"; }

# --- 1. failing over and back ----------------------------------------------

label="over and back"
count=60
start_named "server A" 0 "$tmp/a1.out"
a_pid=$named_pid a_port=$named_port
start_named "server B" 0 "$tmp/b1.out"
b_pid=$named_pid b_port=$named_port
r_port=""
if [ -n "$b_port" ]; then
    "$relay" --listen 0 --server "127.0.0.1:$b_port" --delay 5 --seconds 60 \
        >"$tmp/relay.out" 2>&1 &
    r_pid=$!
    procs="$procs $r_pid"
    r_port=$(wait_for "$r_pid" "$tmp/relay.out" \
        's/^udprr-relay: clients send to 127\.0\.0\.1:\([0-9]*\);.*/\1/p') ||
        { fail "$label: the relay started"; show "$tmp/relay.out"; r_port=""; }
fi
if [ -n "$a_port" ] && [ -n "$r_port" ]; then
    A=127.0.0.1:$a_port B=127.0.0.1:$r_port
    echo "    A is $A, B is $B (the relay to server B at 127.0.0.1:$b_port)"
    timeout 30 "$bin/failover" "$A" "$B" --count $count --interval 50 \
        --retry 200 --deadline 2000 >"$tmp/c1.out" 2>"$tmp/c1.err" &
    c_pid=$!
    procs="$procs $c_pid"
    if wait_line "$c_pid" "$tmp/c1.out" '/^request 10: /p' >/dev/null; then
        stop "$a_pid"
        stopped_after=$(sed -n 's/^request \([0-9]*\): .*/\1/p' \
            "$tmp/c1.out" | tail -n 1)
        echo "    A stopped after request $stopped_after"
    else
        fail "$label: the client got to request 10"
    fi
    if wait_line "$c_pid" "$tmp/c1.out" '/^request 20: /p' >/dev/null; then
        start_named "server A" "$a_port" "$tmp/a2.out"
        a2_pid=$named_pid
        restarted_after=$(sed -n 's/^request \([0-9]*\): .*/\1/p' \
            "$tmp/c1.out" | tail -n 1)
        echo "    A started again after request $restarted_after"
        check "$label: A is back on its port" "$named_port" "$a_port"
    else
        a2_pid=""
        fail "$label: the client got to request 20"
    fi
    wait "$c_pid"
    rc=$?
    procs=$(echo " $procs " | sed "s/ $c_pid / /g")
    [ -n "$a2_pid" ] && stop "$a2_pid"
    stop "$b_pid"
    stop "$r_pid"
    show "$tmp/c1.out"

    check "$label: the client's exit status" "$rc" 0
    check "$label: every request answered" \
        "$(grep -c '^request [0-9]*: UDPRR_OK ' "$tmp/c1.out")" $count
    check "$label: nothing on the client's stderr" \
        "$(wc -c <"$tmp/c1.err")" 0
    slowest=$(sed -n 's/^request [0-9]*: .* in \([0-9]*\)\.[0-9] ms.*/\1/p' \
        "$tmp/c1.out" | sort -n | tail -n 1)
    check "$label: no request took half its 2000 ms deadline (slowest ${slowest:-?} ms)" \
        "$(yes_if "[ ${slowest:-9999} -lt 1000 ]")" yes

    answers "$tmp/c1.out" >"$tmp/c1.answers"
    # The first request goes to the first endpoint listed; one of the next
    # measures B, which counts as the nearest until measured; then A, the
    # nearer, answers the rest.
    check "$label: A answered request 1" \
        "$(sed -n 's/^1 //p' "$tmp/c1.answers")" "$a_port"
    check "$label: A answered at least 9 of requests 1..10" \
        "$(yes_if "[ $(awk -v p="$a_port" '$1 <= 10 && $2 == p' \
            "$tmp/c1.answers" | wc -l) -ge 9 ]")" yes
    # The first request A refused: B answered it, within the request.
    moved=$(grep "^request [0-9]*: UDPRR_OK 'server B' from $B in .*; $A refused" \
        "$tmp/c1.out" | head -n 1)
    moved_k=$(echo "$moved" | sed -n 's/^request \([0-9]*\):.*/\1/p')
    check "$label: a request refused by A was answered by B at once" \
        "$(yes_if "[ -n '$moved_k' ]")" yes
    # Then B alone until A is back; then A again, to the end.
    back_k=$(awk -v p="$a_port" -v m="${moved_k:-999}" \
        '$1 > m && $2 == p { print $1; exit }' "$tmp/c1.answers")
    check "$label: A answered again after B took over (request ${back_k:-none})" \
        "$(yes_if "[ -n '$back_k' ]")" yes
    if [ -n "$moved_k" ] && [ -n "$back_k" ]; then
        check "$label: B answered every request from $moved_k to $((back_k - 1))" \
            "$(awk -v p="$r_port" -v m="$moved_k" -v b="$back_k" \
                '$1 >= m && $1 < b && $2 == p' "$tmp/c1.answers" | wc -l)" \
            $((back_k - moved_k))
        check "$label: A answered again only after it was started again" \
            "$(yes_if "[ $back_k -gt ${restarted_after:-999} ]")" yes
        check "$label: the client said the answers came from A again" \
            "$(yes_if "grep -q '^  the answers now come from $A (before: $B)' \
                '$tmp/c1.out'")" yes
    fi
    check "$label: A answered the last request" \
        "$(sed -n "s/^$count //p" "$tmp/c1.answers")" "$a_port"

    stats_a=$(grep "^endpoint $A: " "$tmp/c1.out")
    stats_b=$(grep "^endpoint $B: " "$tmp/c1.out")
    check "$label: A's endpoint counted refusals" \
        "$(yes_if "[ $(num_after "$stats_a" refusals) -ge 1 ]")" yes
    check "$label: both endpoints counted answers" \
        "$(yes_if "[ $(num_after "$stats_a" answers) -ge 1 ] &&
            [ $(num_after "$stats_b" answers) -ge 1 ]")" yes
    check "$label: answers add up to the requests" \
        "$(($(num_after "$stats_a" answers) + $(num_after "$stats_b" answers)))" \
        $count
    check "$label: A is healthy again at the end" \
        "$(num_after "$stats_a" failures)" 0
    handled_a2=$(num_after "$(grep '^Server stats:' "$tmp/a2.out")" handled)
    check "$label: the restarted A ran requests" \
        "$(yes_if "[ $handled_a2 -ge 1 ]")" yes
else
    [ -n "$a_port" ] && stop "$a_pid"
    [ -n "$b_port" ] && stop "$b_pid"
fi

# --- 2. A a blackhole: moved after its RTO -----------------------------------

label="A a blackhole"
count=10
start_blackhole "$tmp/hole2.out"
start_named "server B" 0 "$tmp/b2.out"
b_pid=$named_pid b_port=$named_port
if [ -n "$hole_port" ] && [ -n "$b_port" ]; then
    A=127.0.0.1:$hole_port B=127.0.0.1:$b_port
    timeout 30 "$bin/failover" "$A" "$B" --count $count --interval 50 \
        --rto 100 --retry 200 --deadline 2000 >"$tmp/c2.out" 2>"$tmp/c2.err"
    rc=$?
    stop "$hole_pid"
    stop "$b_pid"
    show "$tmp/c2.out"
    check "$label: the client's exit status" "$rc" 0
    check "$label: every request answered by B" \
        "$(answers "$tmp/c2.out" | awk -v p="$b_port" '$2 == p' | wc -l)" \
        $count
    first=$(grep '^request 1: ' "$tmp/c2.out")
    took=$(echo "$first" | sed -n 's/.* in \([0-9]*\)\.[0-9] ms.*/\1/p')
    check "$label: request 1 went unanswered at A, then to B" \
        "$(echo "$first" | grep -c "from $B in .*; $A unanswered")" 1
    check "$label: ... after A's RTO, not the deadline (${took:-?} ms)" \
        "$(yes_if "[ ${took:-0} -ge 50 ] && [ ${took:-9999} -lt 1000 ]")" yes
    stats_a=$(grep "^endpoint $A: " "$tmp/c2.out")
    check "$label: A's endpoint: no answer, timeouts" \
        "$(num_after "$stats_a" answers)/$(yes_if "[ $(num_after \
            "$stats_a" timeouts) -ge 1 ]")" 0/yes
    check "$label: the blackhole got the request" \
        "$(yes_if "[ $(grep -c '^Pretending to drop' "$tmp/hole2.out") -ge 1 ]")" \
        yes
else
    [ -n "$hole_port" ] && stop "$hole_pid"
    [ -n "$b_port" ] && stop "$b_pid"
fi

# --- 3. --refused-only: a timeout never moves a request ----------------------

# Request 1 waits on A to its deadline; request 2, a new request, goes to
# the best endpoint when it is sent, which is B now that A has failed.
label="refused-only, A a blackhole"
start_blackhole "$tmp/hole3.out"
start_named "server B" 0 "$tmp/b3.out"
b_pid=$named_pid b_port=$named_port
if [ -n "$hole_port" ] && [ -n "$b_port" ]; then
    A=127.0.0.1:$hole_port B=127.0.0.1:$b_port
    timeout 30 "$bin/failover" "$A" "$B" --count 2 --interval 50 --rto 100 \
        --deadline 500 --refused-only >"$tmp/c3.out" 2>"$tmp/c3.err"
    rc=$?
    stop "$hole_pid"
    stop "$b_pid"
    show "$tmp/c3.out"
    check "$label: the client's exit status" "$rc" 1
    first=$(grep '^request 1: ' "$tmp/c3.out")
    took=$(echo "$first" | sed -n 's/.* in \([0-9]*\)\.[0-9] ms.*/\1/p')
    check "$label: request 1 ended with UDPRR_ETIMEDOUT, A unanswered" \
        "$(echo "$first" |
            grep -c "^request 1: UDPRR_ETIMEDOUT in .*; $A unanswered")" 1
    check "$label: ... at its deadline (${took:-?} ms)" \
        "$(yes_if "[ ${took:-0} -ge 450 ] && [ ${took:-9999} -lt 1500 ]")" yes
    check "$label: A got request 1 more than once" \
        "$(yes_if "[ $(grep -c '^Pretending to drop' "$tmp/hole3.out") -ge 2 ]")" \
        yes
    check "$label: request 1 never reached server B" \
        "$(grep -c "asks 'request 1'" "$tmp/b3.out")" 0
    check "$label: request 2 went to B, A having failed" \
        "$(grep -c "^request 2: UDPRR_OK 'server B' from $B in " \
            "$tmp/c3.out")/$(grep -c "asks 'request 2'" "$tmp/b3.out")" 1/1
    b_stats=$(grep '^Server stats:' "$tmp/b3.out")
    check "$label: server B received and handled request 2 alone" \
        "$(num_after "$b_stats" received)/$(num_after "$b_stats" handled)" 1/1
    stats_a=$(grep "^endpoint $A: " "$tmp/c3.out")
    check "$label: A's endpoint: no failover, no answer" \
        "$(num_after "$stats_a" failovers)/$(num_after "$stats_a" answers)" 0/0
else
    [ -n "$hole_port" ] && stop "$hole_pid"
    [ -n "$b_port" ] && stop "$b_pid"
fi

tally_end
