#!/bin/sh
# SPDX-License-Identifier: MIT
# The demo as a test: the examples build from a staged install with
# pkg-config alone, and the lossy exchange of `make demo` completes every
# request, with the server's and the client's counters agreeing.
# Records its result in build/tally.
set -u
passed=0 failed=0
check() {
    if [ "$2" = "$3" ]; then
        echo "ok: $1 ($2)"
        passed=$((passed + 1))
    else
        echo "FAIL: $1: got '$2', want '$3'"
        failed=$((failed + 1))
    fi
}
out=$(sh examples/demo.sh build/examples 2>&1)
rc=$?
check "demo exits 0" "$rc" 0
client=$(echo "$out" | grep '^Client stats:')
server=$(echo "$out" | grep '^Server stats:')
num() { echo "$1" | sed -n "s/.* \([0-9][0-9]*\) $2.*/\1/p"; }
check "client completed every request" "$(num "$client" completed)" 20
sent=$(num "$client" 'datagrams sent')
retrans=$(echo "$client" | sed -n 's/.*(\([0-9]*\) retransmissions).*/\1/p')
check "client sent requests + retransmissions" "$sent" "$((20 + retrans))"
# The last request's spurious retransmission, if any, may still be in
# flight when the server stops.
received=$(num "$server" 'datagrams received')
check "the server saw the datagrams sent" \
    "$([ "$received" -le "$sent" ] && [ "$received" -ge $((sent - 1)) ] && echo yes)" yes
drops=$(num "$server" 'pretended drops')
hits=$(num "$server" 'from the reply')
# Timing may add spurious retransmissions (answered from the cache), never
# remove drops: these hold however loaded the machine is.
check "the handler ran once per request plus once per drop" \
    "$(num "$server" 'handler calls')" "$((20 + drops))"
check "answers: one per request, plus cached ones" \
    "$(num "$server" 'answers sent')" "$((20 + hits))"
check "every pretended drop cost a retransmission" \
    "$([ "$retrans" -ge "$drops" ] && echo yes)" yes
check "the seeded server dropped some requests" \
    "$([ "$drops" -gt 0 ] && echo yes)" yes
mkdir -p build
echo "$passed $failed" >>build/tally
echo "demo-test: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
