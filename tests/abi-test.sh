#!/bin/sh
# SPDX-License-Identifier: MIT
# ABI test, the hard way: build the library a second time with fields
# appended to every options and stats struct (as a later version will
# append them), the grown fields given a default that open insists on, and
# run tests/abi_program.c, compiled against include/udprr.h as it is, against
# both libraries. The program checks that guard bytes after each struct it
# hands over stay intact, that open succeeds (so the grown fields took
# their defaults), and that a request works. Records its result in
# build/tally.
set -u
CC=${CC:-cc}
top=$(pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tally_name=abi-test
. tests/tally.sh

# --- the grown library: header and sources patched in a copy ---------------
# The appended 4-byte field lands in the padding after the struct's last
# field (id_len for the server, max_window for the client), where the
# program's struct has junk: the hard case. (lib/opts.h has later versions start
# their fields past the old size; the library must not rely on it for
# structs it reads.) abi_program scrambles that padding before open.
grown=$tmp/grown
mkdir -p "$grown/include" "$grown/lib"
cp lib/*.c lib/*.h "$grown/lib/"
sed -e 's|^} udprr_client_opts;|    unsigned abi_grown;\n    uint64_t abi_grown_wide[2];\n} udprr_client_opts;|' \
    -e 's|^} udprr_server_opts;|    unsigned abi_grown;\n    uint64_t abi_grown_wide[2];\n} udprr_server_opts;|' \
    include/udprr.h >"$grown/include/udprr.h"
# Stats: one field appended at the end of each struct.
awk '
    /^struct udprr_(client|server)_stats \{/ { in_stats = 1 }
    in_stats && /^\};/ { print "    uint64_t abi_grown_counter;"; in_stats = 0 }
    { print }
' "$grown/include/udprr.h" >"$grown/include/h" &&
    mv "$grown/include/h" "$grown/include/udprr.h"
# The grown field defaults to 7, and open refuses anything else: open
# succeeds for an older program only if the field it lacks took its default.
sed -i -e 's|^\(        \.framing = UDPRR_FRAMING_NATIVE,\)$|\1\n        .abi_grown = 7,|' \
    "$grown/lib/opts.c"
sed -i -e 's|^\(    lim->deadline_us = (uint64_t)o->deadline_ms \* 1000;\)$|\1\n    if (o->abi_grown != 7)\n        return UDPRR_EINVAL;|' \
    "$grown/lib/client.c"
sed -i -e 's|^\(    udprr_server \*s = udprr__malloc(sizeof \*s);\)$|    if (o.abi_grown != 7)\n        return UDPRR_EINVAL;\n\1|' \
    "$grown/lib/server.c"
n_fields=$(grep -c 'abi_grown' "$grown/include/udprr.h")
n_checks=$(grep -c 'abi_grown != 7' "$grown/lib/client.c" "$grown/lib/server.c" |
    awk -F: '{n += $2} END {print n}')
n_defaults=$(grep -c 'abi_grown = 7' "$grown/lib/opts.c")
if [ "$n_fields" -eq 6 ] && [ "$n_checks" -eq 2 ] && [ "$n_defaults" -eq 2 ]; then
    pass "grown copy: 6 fields appended, 2 defaults, 2 checks"
else
    fail "grown copy: the patch did not apply ($n_fields fields, $n_defaults defaults, $n_checks checks): update tests/abi-test.sh"
fi

# shellcheck disable=SC2086
if $CC -std=c11 -D_GNU_SOURCE -O1 -fPIC -fvisibility=hidden -shared \
    -Wl,-soname,libudprr.so.0 -I"$grown/include" -I"$grown/lib" \
    "$grown"/lib/*.c -o "$grown/libudprr.so.0" 2>"$tmp/build.log"; then
    ln -s libudprr.so.0 "$grown/libudprr.so"
    pass "library built with grown structs"
else
    cat "$tmp/build.log"
    fail "library built with grown structs"
fi

# Sizes, as each side sees them: the grown library's structs are larger.
cat >"$tmp/sizes.c" <<'C'
#include <stdio.h>
#include <udprr.h>
int main(void)
{
    printf("%zu %zu %zu %zu\n", sizeof(udprr_client_opts),
           sizeof(udprr_server_opts), sizeof(struct udprr_client_stats),
           sizeof(struct udprr_server_stats));
    return 0;
}
C
$CC -Iinclude "$tmp/sizes.c" -o "$tmp/sizes_now" && now=$("$tmp/sizes_now")
$CC -I"$grown/include" "$tmp/sizes.c" -o "$tmp/sizes_grown" && later=$("$tmp/sizes_grown")
echo "struct sizes (client opts, server opts, client stats, server stats): program $now, grown library $later"
set -- $now
c0=$1 s0=$2 cs0=$3 ss0=$4
set -- $later
if [ "$1" -gt "$c0" ] && [ "$2" -gt "$s0" ] && [ "$3" -gt "$cs0" ] && [ "$4" -gt "$ss0" ]; then
    pass "every struct of the grown library is larger than the program's"
else
    fail "the grown library's structs did not grow"
fi

# --- the program, built once against the header as it is ---------------------
if $CC -std=c11 -Wall -Wextra -Werror -Iinclude tests/abi_program.c -pthread \
    -L"$grown" -ludprr -o "$tmp/abi_program" 2>"$tmp/prog.log"; then
    pass "abi_program built against include/udprr.h"
else
    cat "$tmp/prog.log"
    fail "abi_program built against include/udprr.h"
fi

run() { # LABEL LIBDIR
    if timeout 60 env LD_LIBRARY_PATH="$2" "$tmp/abi_program" >"$tmp/run.log" 2>&1; then
        pass "$1: $(grep -c '^ok:' "$tmp/run.log") checks"
    else
        sed 's/^/    /' "$tmp/run.log"
        fail "$1"
    fi
}
run "against the grown library" "$grown"
run "against the library as built" "$top/lib"

tally_finish
