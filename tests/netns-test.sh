#!/bin/sh
# SPDX-License-Identifier: MIT
# The network features between real hosts, made of network namespaces this
# test creates and deletes again (issue 12): addresses from 198.18.0.0/15
# only, the multicast group 239.255.18.1 with TTL 1, nothing in the root
# namespace touched.
#
#   bridge namespace:  br0, one port per host below (multicast snooping
#                      off: the bridge floods multicast)
#   client:  eth0 198.18.0.1/24 on the bridge (route 224.0.0.0/4 on it);
#            mtu0 198.18.1.1/24, a link of MTU 1280 to server 3
#   server 1: eth0 198.18.0.11/24, and 198.18.0.21/24 beside it
#   server 2: eth0 198.18.0.12/24
#   server 3: eth0 198.18.0.13/24; mtu0 198.18.1.13/24 (MTU 1280)
#
# a) broadcast gather: udp_broadcast servers on the three server hosts,
#    the client to 198.18.0.255: three servers listed, each once, each
#    from its own address with its own name; each server ran its handler
#    once although the client's 100 ms RTO within a 1000 ms window made it
#    retransmit (the rest answered from the reply cache).
# b) multicast gather: the same, the servers joined to 239.255.18.1 and
#    the client sending to the group.
# c) multi-homed: udp_remote's server on the wildcard of server 1; its
#    client to the second address, 198.18.0.21, gets the reply (it leaves
#    from .21). Control: a plain UDP server (plain_peer.py, no PKTINFO) on
#    0.0.0.0 there answers a raw libudprr client at .11 but not at .21:
#    its answer leaves from .11, and the connected client drops it.
# d) path MTU: big_sender to udp_remote's server over the 1280 link: with
#    Don't Fragment, 1400 bytes fail with UDPRR_ETOOBIG and an MTU of
#    1280, 1232 bytes (the largest body it reports) get through and 1233
#    do not; with --fragment, 1400 bytes are delivered and answered.
# e) SO_BINDTODEVICE: a server on server 3 bound to eth0 refuses a request
#    that arrives on mtu0 (never receiving it) and answers one on eth0.
#
# Needs root and ip(8) with netns. Where it cannot make a namespace it
# says why and records a skip, not a pass (CI runs as root, where it
# runs). Every process
# it starts is stopped on exit and every namespace deleted, whatever
# happens; every wait is bounded. About 5 s.
#
#   sh tests/netns-test.sh [EXAMPLES_DIR [DRIVER]]
set -u
bin=${1:-build/examples}
driver=${2:-build/tests/netns_driver}
peer=${UDPRR_PLAIN_PEER:-../shared/peers/plain_peer.py}
tmp=$(mktemp -d)

tally_name=netns-test
. tests/tally.sh

. tests/procs.sh

tag=udprr$$
br=$tag-br cli=$tag-c s1=$tag-s1 s2=$tag-s2 s3=$tag-s3
namespaces=""

netns_cleanup() {
    procs_cleanup
    for ns in $namespaces; do ip netns del "$ns" 2>/dev/null; done
    namespaces=""
}
trap netns_cleanup EXIT
# A reader that goes away (| head) must not leave the namespaces behind.
trap 'exit 1' INT TERM HUP PIPE

# cannot_run WHY: a skip, said plainly and recorded as one (never as a
# pass; make check's summary counts it).
cannot_run() {
    tally_skip "$1"
    exit
}

for prog in "$bin/udp_broadcast" "$bin/big_sender" "$bin/udp_remote" \
    "$driver"; do
    if [ ! -x "$prog" ]; then
        fail "$prog is built (make examples $driver)"
        tally_finish
        exit
    fi
done
[ "$(id -u)" -eq 0 ] || cannot_run "needs root to create network namespaces"
command -v ip >/dev/null 2>&1 || sh tests/ensure-deps.sh iproute2 ||
    cannot_run "needs ip(8) from iproute2 to create network namespaces"

# --- the topology -----------------------------------------------------------

add_ns() {
    ip netns add "$1" 2>"$tmp/netns.err" || return 1
    namespaces="$namespaces $1"
    ip -n "$1" link set lo up
}

if ! add_ns "$br"; then
    cannot_run "ip netns add failed: $(head -n 1 "$tmp/netns.err")"
fi

setup_ok=1
# setup CMD...: one step of the topology; a failing step is reported and
# fails the test.
setup() {
    if ! "$@" 2>>"$tmp/setup.err"; then
        setup_ok=0
        echo "    setup failed: $*"
        sed 's/^/    | /' "$tmp/setup.err"
        : >"$tmp/setup.err"
    fi
}

setup ip -n "$br" link add br0 type bridge forward_delay 0 mcast_snooping 0
setup ip -n "$br" link set br0 up
# attach NAMESPACE ADDRESS: the host's eth0 on a port of the bridge.
attach() {
    setup add_ns "$1"
    setup ip -n "$br" link add "p$2" type veth peer name eth0 netns "$1"
    setup ip -n "$br" link set "p$2" master br0 up
    setup ip -n "$1" addr add "198.18.0.$2/24" brd + dev eth0
    setup ip -n "$1" link set eth0 up
}
attach "$cli" 1
attach "$s1" 11
attach "$s2" 12
attach "$s3" 13
setup ip -n "$cli" route add 224.0.0.0/4 dev eth0
setup ip -n "$s1" addr add 198.18.0.21/24 dev eth0
setup ip -n "$cli" link add mtu0 mtu 1280 type veth peer name mtu0 mtu 1280 \
    netns "$s3"
setup ip -n "$cli" addr add 198.18.1.1/24 dev mtu0
setup ip -n "$s3" addr add 198.18.1.13/24 dev mtu0
setup ip -n "$cli" link set mtu0 up
setup ip -n "$s3" link set mtu0 up

# Every link up and every bridge port forwarding, within 5 s.
links_ready() {
    for ns in "$cli" "$s1" "$s2" "$s3"; do
        ip -n "$ns" -o link show eth0 | grep -q 'state UP' || return 1
    done
    ip -n "$s3" -o link show mtu0 | grep -q 'state UP' || return 1
    for port in p1 p11 p12 p13; do
        ip -n "$br" -d -o link show "$port" | grep -q 'state forwarding' ||
            return 1
    done
}
ready=no
if [ $setup_ok -eq 1 ]; then
    for _ in $(seq 50); do
        if links_ready; then
            ready=yes
            break
        fi
        sleep 0.1
    done
fi
check "the namespaces, the bridge and the links are up" \
    "$setup_ok/$ready" 1/yes
if [ "$ready" != yes ]; then
    tally_finish
    exit
fi

# start KEY NS CMD...: starts CMD in namespace NS (ip netns exec execs
# it, so $! is its own PID), output in $tmp/KEY.out; waits at most 5 s
# until it says where it listens. Sets $started_pid.
start() {
    key=$1 ns=$2
    shift 2
    ip netns exec "$ns" "$@" >"$tmp/$key.out" 2>&1 &
    started_pid=$!
    procs="$procs $started_pid"
    if wait_for "$started_pid" "$tmp/$key.out" '/^Listening at/p' \
        >/dev/null; then
        pass "$key started: $(grep -m 1 '^Listening at' "$tmp/$key.out")"
        return 0
    fi
    started_pid=""
    fail "$key started"
    sed 's/^/    | /' "$tmp/$key.out"
    return 1
}

# has FILE LINE: how many lines of FILE are exactly LINE.
has() {
    grep -c -x -F "$2" "$1"
}

# --- a) and b): broadcast and multicast gathers ------------------------------

# gather LABEL ADDRESS [SERVER_ARGS...]: three udp_broadcast servers, one
# client gather to ADDRESS, the checks.
gather() {
    label=$1 address=$2
    shift 2
    for i in 1 2 3; do
        eval "ns=\$s$i"
        start "$label-server-$i" "$ns" "$bin/udp_broadcast" server \
            --name "server $i" --seconds 30 "$@"
        eval "server_pid_$i=\$started_pid"
    done
    timeout 10 ip netns exec "$cli" "$bin/udp_broadcast" client "$address" \
        --window 1000 --rto 100 >"$tmp/gather.out" 2>"$tmp/gather.err"
    rc=$?
    sed 's/^/    client| /' "$tmp/gather.out" "$tmp/gather.err"
    check "$label: the client's exit status" "$rc" 0
    check "$label: every server listed once, from its own address" \
        "$(sed -n "s/ says '.*//p" "$tmp/gather.out" | sort | tr '\n' ' ')" \
        "198.18.0.11:1060 198.18.0.12:1060 198.18.0.13:1060 "
    for i in 1 2 3; do
        check "$label: 198.18.0.1$i answered with its own name" \
            "$(has "$tmp/gather.out" "198.18.0.1$i:1060 says 'server $i'")" 1
    done
    check "$label: the summary" "$(tail -n 1 "$tmp/gather.out")" \
        "3 servers answered within 1000 ms"
    check "$label: nothing on the client's stderr" \
        "$(wc -c <"$tmp/gather.err")" 0
    for i in 1 2 3; do
        eval "pid=\$server_pid_$i"
        [ -n "$pid" ] || continue
        stop "$pid"
        stats=$(grep '^Server stats:' "$tmp/$label-server-$i.out")
        echo "    server $i| $stats"
        received=$(num_after "$stats" received)
        check "$label: server $i ran its handler once" \
            "$(num_after "$stats" handled)" 1
        check "$label: server $i received retransmissions" \
            "$(yes_if "[ $received -ge 2 ]")" yes
        check "$label: server $i answered them from its reply cache" \
            "$(num_after "$stats" cache_hits)" $((received - 1))
    done
}

gather broadcast 198.18.0.255
gather multicast 239.255.18.1 --join 239.255.18.1 --interface eth0

# --- c) multi-homed ----------------------------------------------------------

label="multi-homed"
if start multihomed-server "$s1" "$bin/udp_remote" server -p 1070 \
    --seconds 30; then
    timeout 10 ip netns exec "$cli" "$bin/udp_remote" client 198.18.0.21 \
        -p 1070 --deadline 1500 >"$tmp/remote.out" 2>&1
    rc=$?
    sed 's/^/    client| /' "$tmp/remote.out"
    check "$label: the client of 198.18.0.21 got its reply" \
        "$rc/$(has "$tmp/remote.out" \
            "  The server says 'Your data was 18 bytes long'")" 0/1
    check "$label: the request reached the server's wildcard socket" \
        "$(grep -c '^The client at \(::ffff:\)\{0,1\}198\.18\.0\.1:' \
            "$tmp/multihomed-server.out")" 1
fi

python=$(command -v python3 2>/dev/null)
if [ ! -f "$peer" ]; then
    skip_part "$label control: the textbook's plain peer is not at $peer (shared/ beside the project, or UDPRR_PLAIN_PEER)"
elif [ -z "$python" ]; then
    fail "$label control: needs python3 for $peer"
elif start multihomed-plain-peer "$s1" "$python" "$peer" server \
    --host 0.0.0.0 -p 1071 --seconds 30; then
    timeout 10 ip netns exec "$cli" "$driver" client 198.18.0.11 1071 --raw \
        --deadline 1500 >"$tmp/primary.out" 2>&1
    rc=$?
    sed 's/^/    raw client to .11| /' "$tmp/primary.out"
    check "$label control: the plain server answers at its primary address" \
        "$rc/$(cat "$tmp/primary.out")" \
        "0/client: UDPRR_OK 'Your data was 4 bytes long'"
    timeout 10 ip netns exec "$cli" "$driver" client 198.18.0.21 1071 --raw \
        --deadline 1500 >"$tmp/second.out" 2>&1
    rc=$?
    sed 's/^/    raw client to .21| /' "$tmp/second.out"
    check "$label control: its answer to 198.18.0.21 never reaches the client" \
        "$rc/$(cat "$tmp/second.out")" "1/client: UDPRR_ETIMEDOUT"
    # It did answer (from .11): the control times out for the reason it is
    # there for, not because the requests were lost on the way.
    answered=$(grep -c '^The client at' "$tmp/multihomed-plain-peer.out")
    check "$label control: the plain server answered every request" \
        "$(yes_if "[ $answered -ge 2 ]")" yes
fi

# --- d) path MTU -------------------------------------------------------------

label="MTU 1280"
too_big="UDPRR_ETOOBIG: the datagram is too big for the path, and Don't Fragment forbids splitting it"
fits="the largest request body that fits in one unfragmented datagram: 1232 bytes"
# big ARGS...: big_sender to server 3 over the link of MTU 1280; its
# output in $tmp/big.out, its exit status in $rc.
big() {
    timeout 10 ip netns exec "$cli" "$bin/big_sender" 198.18.1.13 "$@" \
        >"$tmp/big.out" 2>&1
    rc=$?
    sed "s/^/    big_sender $*| /" "$tmp/big.out"
}
if start mtu-server "$s3" "$bin/udp_remote" server -p 1060 --seconds 30; then
    big 1400
    check "$label: 1400 bytes with Don't Fragment: UDPRR_ETOOBIG, exit 2" \
        "$rc/$(has "$tmp/big.out" "$too_big")" 2/1
    check "$label: the path MTU reported before sending" \
        "$(has "$tmp/big.out" "Path MTU to the server: 1280 bytes; $fits")" 1
    check "$label: the MTU the kernel reports after the failure" \
        "$(has "$tmp/big.out" \
            "Path MTU the kernel now reports: 1280 bytes; $fits")" 1
    big 1232
    check "$label: 1232 bytes, the largest said to fit, get through with DF" \
        "$rc/$(has "$tmp/big.out" \
            "The server says 'Your data was 1232 bytes long'")" 0/1
    big 1233
    check "$label: 1233 bytes with Don't Fragment: UDPRR_ETOOBIG" \
        "$rc/$(has "$tmp/big.out" "$too_big")" 2/1
    big 1400 --fragment
    check "$label: 1400 bytes with --fragment: delivered in fragments" \
        "$rc/$(has "$tmp/big.out" \
            "The server says 'Your data was 1400 bytes long'")" 0/1
    check "$label: the too-big requests never reached the server" \
        "$(grep -c "says 'abcdefghijklmnopqrstuvwxyz" "$tmp/mtu-server.out")" 2
fi

# --- e) SO_BINDTODEVICE ------------------------------------------------------

label="bound to eth0"
if start bound-server "$s3" "$driver" server 1080 --interface eth0 \
    --seconds 30; then
    bound_pid=$started_pid
    timeout 10 ip netns exec "$cli" "$driver" client 198.18.1.13 1080 \
        --deadline 1500 >"$tmp/other.out" 2>&1
    rc=$?
    sed 's/^/    client to mtu0| /' "$tmp/other.out"
    case "$rc/$(cat "$tmp/other.out")" in
    "1/client: UDPRR_EREFUSED" | "1/client: UDPRR_ETIMEDOUT") unanswered=yes ;;
    *) unanswered="no: exit $rc" ;;
    esac
    check "$label: a request arriving on mtu0 is not answered" "$unanswered" yes
    timeout 10 ip netns exec "$cli" "$driver" client 198.18.0.13 1080 \
        --deadline 1500 >"$tmp/own.out" 2>&1
    rc=$?
    sed 's/^/    client to eth0| /' "$tmp/own.out"
    check "$label: a request arriving on eth0 is answered" \
        "$rc/$(cat "$tmp/own.out")" \
        "0/client: UDPRR_OK 'netns_driver answers 4 bytes'"
    stop "$bound_pid"
    stats=$(grep '^Server stats:' "$tmp/bound-server.out")
    echo "    server| $stats"
    check "$label: the server received only the request on eth0" \
        "$(num_after "$stats" received)/$(num_after "$stats" handled)" 1/1
fi

# --- cleanup -----------------------------------------------------------------

netns_cleanup
check "every namespace of this test deleted" \
    "$(ip netns list | grep -c "^$tag-")" 0
tally_end
