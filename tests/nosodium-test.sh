#!/bin/sh
# SPDX-License-Identifier: MIT
# The library without libsodium (make SODIUM=no; include/udprr.h, "Sealed
# mode"): copies what `make all` reads (the Makefile, include/, lib/'s
# sources, udprr.pc.in, tests/ensure-deps.sh, docs/man/aliases) into a
# temporary tree and builds it there with SODIUM=no, with a pkg-config
# that finds no package at all, so nothing of libsodium can come in by
# accident. Then checks: udprr.pc does not require libsodium; neither
# library needs a sodium symbol, nor the shared one libsodium itself; and
# tests/nosodium_program.c, linked against that static library with no
# libsodium, runs: the sealed mode is refused with UDPRR_ENOTSUP, the
# plain mode answers on 127.0.0.1.
#
# Run by make check, from the project's top directory. A few seconds
# (one library build); the program stops itself after 5 s, `timeout`
# after 20.
#
#   sh tests/nosodium-test.sh
set -u
tally_name=nosodium-test
. tests/tally.sh

cc=${CC:-cc}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM
tree=$tmp/tree

mkdir -p "$tree/lib" "$tree/tests" "$tree/docs/man" "$tmp/nopc"
cp Makefile udprr.pc.in "$tree/" &&
    cp -R include "$tree/" &&
    cp lib/*.c lib/*.h "$tree/lib/" &&
    cp tests/ensure-deps.sh "$tree/tests/" &&
    cp docs/man/aliases "$tree/docs/man/"
check "the build's sources copied" "$?" 0

# SODIUM=no on the command line beats one in the environment.
(cd "$tree" && PKG_CONFIG_LIBDIR="$tmp/nopc" PKG_CONFIG_PATH= \
    timeout 300 make -s -j2 CC="$cc" SODIUM=no all) >"$tmp/build" 2>&1
rc=$?
check "make SODIUM=no all builds with CC=$cc" "$rc" 0
if [ "$rc" -ne 0 ]; then
    sed -n '1,40p' "$tmp/build"
    tally_finish
    exit
fi

requires=$(sed -n 's/^Requires.private:[[:space:]]*//p' "$tree/udprr.pc")
check "udprr.pc has a Requires.private line" \
    "$(grep -c '^Requires.private:' "$tree/udprr.pc")" 1
check "udprr.pc requires no libsodium" \
    "$(echo "$requires" | grep -c sodium)" 0

so=$(ls "$tree"/lib/libudprr.so.*.*.* 2>/dev/null | head -n 1)
check "the shared library is there" "$(yes_if "[ -f '$so' ]")" yes
check "the shared library needs no sodium symbol" \
    "$(nm -D --undefined-only "$so" | grep -c sodium)" 0
check "the shared library does not need libsodium" \
    "$(readelf -d "$so" | grep NEEDED | grep -c sodium)" 0
check "the static library needs no sodium symbol" \
    "$(nm --undefined-only "$tree/lib/libudprr.a" 2>/dev/null | grep -c sodium)" 0

# The program, linked without libsodium: it links only if nothing in the
# static library calls it.
if "$cc" -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -I"$tree/include" \
    tests/nosodium_program.c "$tree/lib/libudprr.a" -pthread \
    -o "$tmp/program" >"$tmp/cc" 2>&1; then
    pass "tests/nosodium_program.c links without libsodium"
else
    cat "$tmp/cc"
    fail "tests/nosodium_program.c links without libsodium"
    tally_finish
    exit
fi

timeout 20 "$tmp/program" >"$tmp/out" 2>"$tmp/err"
rc=$?
cat "$tmp/err"
while read -r verdict text; do
    case $verdict in
    yes) pass "$text" ;;
    no) fail "$text" ;;
    *) fail "the program printed: $verdict $text" ;;
    esac
done <"$tmp/out"
check "the program's checks all held (exit status)" "$rc" 0
check "the program made all its checks" "$(($(wc -l <"$tmp/out")))" 13

tally_finish
