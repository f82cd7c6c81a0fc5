#!/bin/sh
# SPDX-License-Identifier: MIT
# Interop: the examples dns_query and coap_get, which use libudprr's
# id-at-offset framing through the public API only, against real peers
# started here on 127.0.0.1: dnsmasq (Debian dnsmasq-base) and libcoap's
# coap-server (Debian libcoap3-bin). Nothing but 127.0.0.1 is contacted.
#
# Every process started here is stopped on exit; every wait is bounded. A
# peer that is missing or does not start fails its checks: nothing is
# skipped. Records its result in build/tally.
#
#   sh tests/interop-test.sh [EXAMPLES_DIR]      (default build/examples)
set -u
bin=${1:-build/examples}
tmp=$(mktemp -d)

tally_name=interop-test
. tests/tally.sh

. tests/procs.sh

random_port() {
    echo $((20000 + $(od -An -N2 -tu2 /dev/urandom) % 40000))
}

# start_peer NAME READY LAUNCHER [ARG...]: runs "LAUNCHER PORT LOG ARG..."
# in the background (the launcher execs the peer, so $! is the peer) on a
# random port in 20000-59999, trying another port when that one is taken.
# The peer is ready once LOG matches the regex READY. On success sets
# peer_pid and peer_port; on failure prints why and returns 1.
start_peer() {
    name=$1 ready=$2 launcher=$3
    shift 3
    log=$tmp/$name.log
    for _ in 1 2 3 4 5 6 7 8; do
        port=$(random_port)
        : >"$log"
        "$launcher" "$port" "$log" "$@" &
        pid=$!
        procs="$procs $pid"
        for _ in $(seq 50); do
            if grep -qE "$ready" "$log"; then
                peer_pid=$pid peer_port=$port
                return 0
            fi
            exited "$pid" && break
            sleep 0.1
        done
        stop "$pid"
        grep -qi 'address already in use' "$log" || break
    done
    echo "interop: $name did not start (last try on port $port):"
    sed 's/^/    | /' "$log"
    return 1
}

# run NAME CMD...: runs CMD, bounded by 20 s; its output goes to
# $tmp/NAME.out and .err, its exit status to $rc.
run() {
    name=$1
    shift
    timeout 20 "$@" >"$tmp/$name.out" 2>"$tmp/$name.err"
    rc=$?
}

# expect LABEL NAME RC STREAM REGEX: the last run of NAME exited RC and its
# STREAM (out or err) matches REGEX.
expect() {
    if [ "$rc" = "$3" ] && grep -qE -- "$5" "$tmp/$2.$4"; then
        pass "$1"
    else
        fail "$1: exit $rc (want $3), std$4 should match /$5/"
        sed 's/^/    out| /' "$tmp/$2.out"
        sed 's/^/    err| /' "$tmp/$2.err"
    fi
}

sh tests/ensure-deps.sh dnsmasq-base libcoap3-bin ||
    echo "interop: the peers could not be installed; their checks fail"

# --- DNS: dns_query against dnsmasq ----------------------------------------

# Answers only from the benchmarking ranges (198.18.0.0/15, 2001:2::/48);
# no upstream server, no /etc/hosts, no configuration file. --no-daemon
# keeps it in the foreground and under our user (it does not switch to the
# dnsmasq user even as root), so it runs the same as root and not.
launch_dnsmasq() {
    dnsmasq=/usr/sbin/dnsmasq
    [ -x "$dnsmasq" ] || dnsmasq=$(command -v dnsmasq) || {
        echo "dnsmasq is not installed (Debian package dnsmasq-base)" >"$2"
        exit 1
    }
    exec "$dnsmasq" --no-daemon --no-resolv --no-hosts --conf-file=/dev/null \
        --listen-address=127.0.0.1 --bind-interfaces --port="$1" \
        --pid-file="$tmp/dnsmasq.pid" --log-facility="$tmp/dnsmasq.syslog" \
        --address=/udprr-test.example/198.18.0.7 \
        --host-record=udprr-v6.example,198.18.0.8,2001:2::8 \
        --cname=udprr-alias.example,udprr-v6.example \
        --local=/udprr-nx.example/ >"$2" 2>&1
}

dns_port=""
if start_peer dnsmasq 'started, version' launch_dnsmasq; then
    dns_pid=$peer_pid dns_port=$peer_port
    pass "dnsmasq started on 127.0.0.1:$dns_port"
else
    fail "dnsmasq started on 127.0.0.1"
fi

# dns LABEL RC STREAM REGEX ARG...: dns_query ARG... against that dnsmasq.
dns() {
    label=$1 want=$2 stream=$3 regex=$4
    shift 4
    if [ -z "$dns_port" ]; then
        fail "$label: not run, dnsmasq is not running"
        return
    fi
    run dns "$bin/dns_query" --server 127.0.0.1 --port "$dns_port" "$@"
    expect "$label" dns "$want" "$stream" "$regex"
}

tab=$(printf '\t')
dns "dns_query: A record of udprr-test.example is 198.18.0.7" 0 out \
    "^udprr-test\.example\.${tab}[0-9]+${tab}IN${tab}A${tab}198\.18\.0\.7\$" \
    udprr-test.example
dns "dns_query: AAAA record of udprr-v6.example is 2001:2::8" 0 out \
    "^udprr-v6\.example\.${tab}[0-9]+${tab}IN${tab}AAAA${tab}2001:2::8\$" \
    --type AAAA udprr-v6.example
dns "dns_query: follows the CNAME udprr-alias.example to 198.18.0.8" 0 out \
    "^udprr-v6\.example\.${tab}[0-9]+${tab}IN${tab}A${tab}198\.18\.0\.8\$" \
    udprr-alias.example
dns "dns_query: reports NXDOMAIN for a name that does not exist" 1 err \
    "udprr-nx\.example: NXDOMAIN" udprr-nx.example
dns "dns_query: reports REFUSED for a name dnsmasq will not look up" 1 err \
    "REFUSED" udprr-elsewhere.example

if [ -n "$dns_port" ]; then
    stop "$dns_pid"
    start_ns=$(date +%s%N)
    run dns timeout 10 "$bin/dns_query" --server 127.0.0.1 --port "$dns_port" \
        --deadline 8000 udprr-test.example
    elapsed_ms=$((($(date +%s%N) - start_ns) / 1000000))
    expect "dns_query: dnsmasq stopped, says nothing listens (UDPRR_EREFUSED)" \
        dns 1 err "nothing listens at 127\.0\.0\.1 port $dns_port"
    if [ "$elapsed_ms" -lt 2000 ]; then
        pass "dns_query: ... and says it at once (${elapsed_ms} ms), not at the deadline"
    else
        fail "dns_query: took ${elapsed_ms} ms to report nothing listens"
    fi
else
    fail "dns_query: says nothing listens once dnsmasq stops: not run"
fi

# --- CoAP: coap_get against libcoap's coap-server ----------------------------

# -v 7 logs each endpoint it creates (the readiness signal) and each packet.
launch_coap_server() {
    port=$1 log=$2
    shift 2
    command -v coap-server-notls >/dev/null 2>&1 || {
        echo "coap-server-notls is not installed (Debian package libcoap3-bin)" >"$log"
        exit 1
    }
    exec coap-server-notls -A 127.0.0.1 -p "$port" -v 7 "$@" >"$log" 2>&1
}

coap_port=""
if start_peer coap-server 'created UDP +endpoint 127\.0\.0\.1' launch_coap_server; then
    coap_pid=$peer_pid coap_port=$peer_port
    pass "coap-server started on 127.0.0.1:$coap_port"
else
    fail "coap-server started on 127.0.0.1"
fi

# coap LABEL RC STREAM REGEX ARG...: coap_get ARG... against that server.
coap() {
    label=$1 want=$2 stream=$3 regex=$4
    shift 4
    if [ -z "$coap_port" ]; then
        fail "$label: not run, coap-server is not running"
        return
    fi
    run coap "$bin/coap_get" --server 127.0.0.1 --port "$coap_port" "$@"
    expect "$label" coap "$want" "$stream" "$regex"
}

coap "coap_get: /.well-known/core lists </time>" 0 out \
    '</time>;if="clock";rt="ticks"' .well-known/core
coap "coap_get: / is libcoap's test server text" 0 out \
    '^This is a test server made with libcoap' ""
coap "coap_get: /time is a clock reading (Mon DD HH:MM:SS)" 0 out \
    '^[A-Z][a-z]{2} [ 0-9]?[0-9] [0-9]{2}:[0-9]{2}:[0-9]{2}$' time
coap "coap_get: reports 4.04 Not Found for a missing resource" 1 err \
    '4\.04 Not Found' udprr/no/such/resource
coap "coap_get: reports an empty ACK (separate response) as unsupported" 1 err \
    'separate response' async

if [ -n "$coap_port" ]; then
    stop "$coap_pid"
    run coap timeout 10 "$bin/coap_get" --server 127.0.0.1 --port "$coap_port" time
    expect "coap_get: coap-server stopped, says nothing listens (UDPRR_EREFUSED)" \
        coap 1 err "nothing listens at 127\.0\.0\.1 port $coap_port"
else
    fail "coap_get: says nothing listens once coap-server stops: not run"
fi

# A lost response: coap-server -l 1 drops the first datagram it sends. The
# library must retransmit the request with the same Message ID (RFC 7252
# 4.2), and the retransmission get the answer.
label="coap_get: a lost ACK is retransmitted for, with the same Message ID"
if start_peer coap-server-lossy 'created UDP +endpoint 127\.0\.0\.1' \
    launch_coap_server -l 1; then
    run coap "$bin/coap_get" --server 127.0.0.1 --port "$peer_port" \
        --verbose time
    ids=$(sed -n 's/.*attempt [0-9]*: sent .* Message ID \(0x[0-9a-f]*\).*/\1/p' \
        "$tmp/coap.err" | sort -u)
    attempts=$(grep -c 'attempt [0-9]*: sent' "$tmp/coap.err")
    if [ "$rc" = 0 ] && [ "$attempts" -ge 2 ] && [ "$(echo "$ids" | wc -l)" = 1 ] &&
        grep -qE '^[A-Z][a-z]{2} ' "$tmp/coap.out"; then
        pass "$label ($attempts attempts, ID $ids)"
    else
        fail "$label: exit $rc, $attempts attempts, IDs: $ids"
        sed 's/^/    out| /' "$tmp/coap.out"
        sed 's/^/    err| /' "$tmp/coap.err"
    fi
    stop "$peer_pid"
else
    fail "$label: not run, coap-server -l 1 did not start"
fi

tally_finish
