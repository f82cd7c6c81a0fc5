#!/bin/sh
# SPDX-License-Identifier: MIT
# The demo as a test: the examples build from a staged install with
# pkg-config alone, and `make demo`'s exchange through the seeded lossy
# relay answers every request, runs the handler once per request, answers
# lost replies' retransmissions from the reply cache, and leaves the
# client's, the relay's and the server's counters agreeing, and closes
# with the retries, the RTO and the reply cache in three lines.
# Records its result in build/tally.
set -u
tally_name=demo-test
. tests/tally.sh
requests=20
out=$(DEMO_TRACE=0 sh examples/demo.sh build/examples build/udprr-relay 2>&1)
rc=$?
check "demo exits 0" "$rc" 0
line() { echo "$out" | grep "^$1" | head -n 1; }
client=$(line 'Client stats:')
server=$(line 'Server stats:')
to_server=$(line 'to_server: [0-9]')
to_client=$(line 'to_client: [0-9]')
# The number in front of $2 in line $1 (0 when absent, so checks fail).
num() {
    n=$(echo "$1" | sed -n "s/.*[ (]\([0-9][0-9]*\) $2.*/\1/p")
    echo "${n:-0}"
}
check "client made every request" "$(num "$client" requests)" $requests
check "client completed every request" "$(num "$client" completed)" $requests
check "every request answered" \
    "$(echo "$out" | grep -c "^  The server says 'Your data was 18 bytes long'")" $requests
sent=$(num "$client" 'datagrams sent')
retrans=$(num "$client" retransmissions)
check "client sent requests + retransmissions" "$sent" $((requests + retrans))

handled=$(num "$server" 'handler calls')
hits=$(num "$server" 'from the reply cache')
received=$(num "$server" 'datagrams received')
answered=$(num "$server" 'answers sent')
check "the handler ran once per request" "$handled" $requests
check "one handler line per handler call" \
    "$(echo "$out" | grep -c '^The client at .* says ')" "$handled"
check "retransmissions were answered from the reply cache" \
    "$(yes_if "[ $hits -ge 1 ]")" yes
check "every datagram the server got ran the handler or hit the cache" \
    "$received" $((handled + hits))
check "the server answered every datagram it got" "$answered" "$received"

seen_up=$(num "$to_server" datagrams)
lost_up=$(num "$to_server" dropped)
sent_up=$(num "$to_server" 'copies sent')
seen_down=$(num "$to_client" datagrams)
lost_down=$(num "$to_client" dropped)
# Across processes, a datagram can still be on its way when the relay and
# the server are stopped (a retransmission sent just before the last reply
# arrived): so no process can count more than the one before it passed
# on, and the exact checks above stay within one process.
check "the relay saw no more than the client sent" \
    "$(yes_if "[ $seen_up -le $sent ] && [ $seen_up -ge $requests ]")" yes
check "the server got no more than the relay passed on" \
    "$(yes_if "[ $received -le $sent_up ]")" yes
check "the relay saw no more answers than the server sent" \
    "$(yes_if "[ $seen_down -le $answered ] && [ $seen_down -ge $requests ]")" yes
check "the seeded relay lost requests and replies" \
    "$(yes_if "[ $lost_up -ge 1 ] && [ $lost_down -ge 1 ]")" yes
check "every lost datagram cost a retransmission" \
    "$(yes_if "[ $retrans -ge $((lost_up + lost_down)) ]")" yes

# The closing lines tell the story from the same counters, and the
# relay's per-datagram log stays out of the default output.
check "the closing lines give the retries" \
    "$(line 'retries: ' | grep -c "^retries: *$retrans retransmissions for $requests requests; the relay lost $lost_up requests and $lost_down replies$")" 1
check "the closing lines give the RTO, from 1000 ms for request 1" \
    "$(line 'the RTO: ' | grep -c '^the RTO: *1000\.0 ms for request 1 .*, [0-9.]* ms at the end')" 1
check "the closing lines give the reply cache" \
    "$(line 'reply cache: ' | grep -c "^reply cache: .* got $received datagrams and ran the handler $handled times, once per request; $hits retransmissions were answered")" 1
check "no per-datagram relay log without DEMO_TRACE" \
    "$(echo "$out" | grep -c '^t=[0-9.]*ms to_')" 0
tally_finish
