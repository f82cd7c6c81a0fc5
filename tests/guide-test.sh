#!/bin/sh
# SPDX-License-Identifier: MIT
# Every C snippet of docs/guide.md, compiled as a reader compiles it: cut
# from the page, built with -std=c11 and the examples' warnings as errors
# against the staged install (build/stage, pkg-config's flags alone, and
# libuv's for the snippet that includes <uv.h>), and, where it runs alone
# on loopback, run.
#
# The page's convention, which this script enforces: every ```c block
# begins with one of
#   /* guide: runs */       a whole program: compiled, run (at most 10 s),
#                           and it must exit 0; exit 77 means "this build
#                           lacks a feature" (the sealed mode) and is
#                           reported as not run, never as passed
#   /* guide: compiles */   needs root, another host or a network: a whole
#                           program, compiled and linked, not run
# A runnable block may be followed, before the next ```c block, by one
# ```text block: what the program prints. Its stdout must have exactly
# those lines, where "..." in a line stands for any text.
#
# About 5 s. Honours CC (CC=clang sh tests/guide-test.sh) and CFLAGS
# (default -O2, as the examples are built). Records its result in
# build/tally.
#
#   sh tests/guide-test.sh [PAGE]
set -u
page=${1:-docs/guide.md}
CC=${CC:-cc}
CFLAGS=${CFLAGS:--O2}
out=build/guide
stage=$(pwd)/build/stage

tally_name=guide-test
. tests/tally.sh

# Under make check the staged install is fresh (check builds the examples
# from it first); run alone, bring it up to date.
if [ -z "${MAKELEVEL:-}" ] || [ ! -f build/stage/.stamp ]; then
    if ! make -s --no-print-directory build/stage/.stamp; then
        fail "the staged install (make build/stage/.stamp)"
        tally_finish
        exit
    fi
fi
udprr_flags=$(PKG_CONFIG_SYSROOT_DIR=$stage \
    PKG_CONFIG_PATH=$stage/usr/lib/pkgconfig pkg-config --cflags --libs udprr)
warnings="-Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
-Wmissing-prototypes -Wpointer-arith -Wformat=2 -Wvla"

rm -rf "$out"
mkdir -p "$out"

# Cuts the page: $out/NN.c for the NNth ```c block, $out/NN.text for the
# ```text block after it, and one line "NN LINE KIND" per C block in
# $out/blocks (KIND: runs, compiles, or the first line when it is neither).
awk -v out="$out" '
    function name(n) { return sprintf("%s/%02d", out, n) }
    in_block && /^```[ \t]*$/ { close(file); in_block = 0; next }
    in_block {
        if (first) {
            kind = $0
            if ($0 ~ /^\/\* guide: runs \*\/$/) kind = "runs"
            if ($0 ~ /^\/\* guide: compiles \*\/$/) kind = "compiles"
            printf "%02d %d %s\n", n, NR, kind > (out "/blocks")
            first = 0
        }
        print > file
        next
    }
    in_other { if ($0 ~ /^```[ \t]*$/) in_other = 0; next }
    /^```c[ \t]*$/ {
        n++; file = name(n) ".c"; in_block = 1; first = 1; text_taken = 0
        next
    }
    /^```text[ \t]*$/ && n > 0 && !text_taken {
        file = name(n) ".text"; in_block = 1; first = 0; text_taken = 1
        next
    }
    /^```/ { in_other = 1 } # another kind of block: nothing to take
' "$page"

if [ ! -s "$out/blocks" ]; then
    fail "$page has C blocks"
    tally_finish
    exit
fi
echo "    $(wc -l <"$out/blocks") C blocks in $page, compiled with $CC"

# matches EXPECTED ACTUAL: every line of ACTUAL matches the same line of
# EXPECTED, "..." matching any text; prints "yes" or where it differs.
matches() {
    awk '
        NR == FNR { want[++n] = $0; next }
        {
            got[++m] = $0
        }
        function fits(pattern, line,    parts, k, i, pos, rest) {
            k = split(pattern, parts, /\.\.\./)
            if (k == 1) return pattern == line
            if (substr(line, 1, length(parts[1])) != parts[1]) return 0
            rest = substr(line, length(parts[1]) + 1)
            for (i = 2; i < k; i++) {
                pos = index(rest, parts[i])
                if (parts[i] == "") continue
                if (pos == 0) return 0
                rest = substr(rest, pos + length(parts[i]))
            }
            return length(rest) >= length(parts[k]) &&
                substr(rest, length(rest) - length(parts[k]) + 1) == parts[k]
        }
        END {
            for (i = 1; i <= n || i <= m; i++) {
                if (i > n) { print "line " i " not on the page: " got[i]; exit }
                if (i > m) { print "line " i " missing: " want[i]; exit }
                if (!fits(want[i], got[i])) {
                    print "line " i ": page says \"" want[i] "\", printed \"" got[i] "\""
                    exit
                }
            }
            print "yes"
        }
    ' "$1" "$2"
}

while read -r n line kind; do
    src=$out/$n.c
    what="block $n (line $line)"
    case $kind in
    runs | compiles) ;;
    *)
        fail "$what begins with /* guide: runs */ or /* guide: compiles */, not '$kind'"
        continue
        ;;
    esac
    extra=
    if grep -q '^#include <uv.h>' "$src"; then
        if ! extra=$(pkg-config --cflags --libs libuv); then
            fail "$what: libuv's pkg-config flags (Debian libuv1-dev)"
            continue
        fi
    fi
    if ! $CC -std=c11 $warnings $CFLAGS -pthread "$src" $udprr_flags $extra \
        -Wl,-rpath,"$stage/usr/lib" -o "$out/$n" 2>"$out/$n.cc"; then
        fail "$what compiles with $CC"
        sed 's/^/    | /' "$out/$n.cc"
        continue
    fi
    if [ "$kind" = compiles ]; then
        pass "$what compiles and links (not run: the page says why)"
        continue
    fi
    timeout 10 "$out/$n" </dev/null >"$out/$n.out" 2>"$out/$n.err"
    rc=$?
    if [ "$rc" -eq 77 ]; then
        echo "    $what: not run, this build lacks what it needs: $(head -n 1 "$out/$n.err")"
        continue
    fi
    if [ "$rc" -ne 0 ]; then
        fail "$what runs and exits 0: exit status $rc"
        sed 's/^/    | /' "$out/$n.out" "$out/$n.err"
        continue
    fi
    if [ -f "$out/$n.text" ]; then
        check "$what runs and prints what the page shows" \
            "$(matches "$out/$n.text" "$out/$n.out")" yes
    else
        pass "$what runs and exits 0"
    fi
done <"$out/blocks"
tally_finish
