#!/bin/sh
# SPDX-License-Identifier: MIT
# A flood at a server with a small reply cache (issue 14): build/tests/flood
# (tests/flood.c) runs a libudprr server in a child process with
# cache_entries 1024 and cache_bytes 1 MiB, fires 1,000,000 distinct valid
# native requests at it from 4 sockets as fast as the kernel takes them
# (on 127.0.0.1; stopped after 60 s whatever happens), while a libudprr
# client makes requests one after another until the flood is over. The
# first half of the flood are small requests asking for 16-byte answers
# (the cache fills its entry bound), the second half 1000-byte requests
# answered with their own bytes (its byte bound).
#
# Checks: every request sent; the server's resident memory, at its peak
# (VmHWM) and after the flood (VmRSS), under the idle figure plus the
# cache's bound plus a fixed margin (below); the cache's counters, read
# by the server's process every millisecond during the flood and after
# it, never above their bounds, and both bounds reached (so the bounds
# were what held the memory); the server handled many times its cache's
# worth; every request of the client answered with the right bytes, at
# least one of them made during the flood.
#
# Run once by make check, not under valgrind or the sanitizers (it is a
# load, not a unit). About 2 s here; bounded by the program's 60 s for the
# flood, the client's 30 s deadline, and `timeout` around it all.
#
#   sh tests/flood-test.sh [FLOOD_PROGRAM]
set -u
flood=${1:-build/tests/flood}
tmp=$(mktemp -d)

tally_name=flood-test
. tests/tally.sh

. tests/procs.sh

if [ ! -x "$flood" ]; then
    fail "$flood is built (make $flood)"
    tally_finish
    exit
fi

start=$(date +%s)
timeout 150 "$flood" -n 1000000 -t 60 >"$tmp/out" 2>"$tmp/err"
rc=$?
took=$(($(date +%s) - start))
cat "$tmp/out" "$tmp/err"
check "the flood ran and measured (exit status)" "$rc" 0
echo "flood-test: the whole run took about $took s"

line() { grep "^$1" "$tmp/out" | head -n 1; }
limits=$(line "flood: limits")
idle=$(line "flood: idle")
sent=$(line "flood: sent")
client=$(line "flood: client")
after=$(line "flood: after")
server=$(line "server:")

limit_entries=$(num_after "$limits" cache_entries)
limit_bytes=$(num_after "$limits" cache_bytes)
check "the cache's bounds are the small ones asked for" \
    "$limit_entries $limit_bytes" "1024 1048576"

check "every request of the flood sent" "$(num_after "$sent" sent)" 1000000

# The memory bound, over the idle figure measured after a few requests
# (so it includes what serving touches once: the receive batch's first
# buffer, the send arena's first pages, the handler's path):
#   the cache: cache_bytes plus three eighths (lib/dedup.h: the real
#     memory of a cache stays within max_bytes plus three eighths: the
#     hash table, the rounding of blocks to size classes, the spare
#     blocks kept for reuse), 1408 KiB here;
#   a fixed margin of 4096 KiB: the pages a flood touches that the idle
#     run did not (the first page of each of the 64 receive buffers,
#     256 KiB, and the 4-datagram send arena, 256 KiB, at most 512 KiB
#     together), the allocator's free chunks left by the entries evicted
#     when the answers grow from 16 to 1000 bytes (1024 blocks of 144
#     bytes, under 160 KiB), and 3 MiB of slack for the allocator's own
#     bookkeeping and the kernel's page accounting.
# What it catches: a cache that ignores its bounds grows by at least 144
# bytes per handled request (over 20 MB at the 150,000 or so requests a
# loopback server takes of the flood); a leak of 32 bytes per request
# crosses the margin as well.
idle_kb=$(num_after "$idle" rss_kb)
peak_kb=$(num_after "$after" peak_rss_kb)
rss_kb=$(num_after "$after" rss_kb)
cache_kb=$((limit_bytes * 11 / 8 / 1024))
margin_kb=4096
bound_kb=$((idle_kb + cache_kb + margin_kb))
echo "flood-test: RSS idle $idle_kb kB, peak $peak_kb kB, after $rss_kb kB;" \
    "bound $bound_kb kB (idle + $cache_kb cache + $margin_kb margin)"
check "the idle RSS was measured" "$(yes_if "[ $idle_kb -gt 0 ]")" yes
check "the server's peak RSS (VmHWM) under the bound" \
    "$(yes_if "[ $peak_kb -gt 0 ] && [ $peak_kb -le $bound_kb ]")" yes
check "the server's RSS after the flood under the bound" \
    "$(yes_if "[ $rss_kb -gt 0 ] && [ $rss_kb -le $bound_kb ]")" yes

max_entries=$(num_after "$server" max_entries)
max_bytes=$(num_after "$server" max_bytes)
entries=$(num_after "$server" entries)
bytes=$(num_after "$server" bytes)
handled=$(num_after "$server" handled)
evicted=$(num_after "$server" evicted)
samples=$(num_after "$server" samples)
check "the cache read during the flood" "$(yes_if "[ $samples -gt 0 ]")" yes
check "cache_entries never above its bound, during and after" \
    "$(yes_if "[ $max_entries -ge 0 ] && [ $max_entries -le $limit_entries ] && [ $entries -ge 0 ] && [ $entries -le $limit_entries ]")" yes
check "cache_bytes never above its bound, during and after" \
    "$(yes_if "[ $max_bytes -ge 0 ] && [ $max_bytes -le $limit_bytes ] && [ $bytes -ge 0 ] && [ $bytes -le $limit_bytes ]")" yes
# Reached: every entry of the first half costs 16 + 128 bytes, so 1024
# fit; one of the second half costs 1000 + 128, so 929 fit and the bytes
# come within one entry of the bound.
check "the entry bound was reached" "$max_entries" "$limit_entries"
check "the byte bound was reached (within one 1128-byte entry)" \
    "$(yes_if "[ $max_bytes -gt $((limit_bytes - 1128)) ]")" yes
check "the server handled 16 caches' worth of the flood, evicting" \
    "$(yes_if "[ $handled -ge $((16 * limit_entries)) ] && [ $evicted -gt 0 ]")" yes
check "the server's run ended well" "$(num_after "$server" run_status)" 0

requests=$(num_after "$client" requests)
check "the client's requests made during the flood" \
    "$(yes_if "[ $(num_after "$client" during_flood) -ge 1 ]")" yes
check "every request of the client answered with the right bytes" \
    "$(num_after "$client" answered) $(num_after "$client" wrong)" \
    "$requests 0"
echo "flood-test: $(num_after "$sent" sent) requests sent in" \
    "$(num_after "$sent" in_ms) ms; the server handled $handled;" \
    "the client made $requests requests"

tally_finish
