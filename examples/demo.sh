#!/bin/sh
# SPDX-License-Identifier: MIT
# make demo: a libudprr server that pretends to drop a seeded 30% of the
# requests it gets, and a client that makes 20 requests to it over
# loopback, printing every attempt, every wait and the RTO as it adapts.
# Everything is bounded: the server stops itself after 60 s at the latest.
set -u
bin=${1:-build/examples}
out=$(mktemp)
trap 'kill "$server" 2>/dev/null; rm -f "$out"' EXIT

"$bin/udp_remote" server 127.0.0.1 -p 0 --drop 0.3 --seed 1 --seconds 60 >"$out" 2>&1 &
server=$!
# Wait (at most 5 s) for the server to say where it listens.
port=""
for _ in $(seq 50); do
    port=$(sed -n 's/^Listening at 127\.0\.0\.1:\([0-9]*\).*/\1/p' "$out")
    [ -n "$port" ] && break
    sleep 0.1
done
if [ -z "$port" ]; then
    echo "demo: the server did not start:" >&2
    cat "$out" >&2
    exit 1
fi

echo "=== server: $(head -n 1 "$out")"
echo "=== client: 20 requests to 127.0.0.1:$port"
"$bin/udp_remote" client 127.0.0.1 -p "$port" --count 20 --text "This is my message"
status=$?
kill -TERM "$server"
wait "$server"
echo "=== server log"
cat "$out"
exit $status
