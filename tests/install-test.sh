#!/bin/sh
# SPDX-License-Identifier: MIT
# Packaging test: install into temporary trees, build a program from the
# installed files with nothing but pkg-config's flags, run it, and check that
# uninstall leaves nothing behind. Records its result in build/tally.
set -u
CC=${CC:-cc}
top=$(pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tally_name=install-test
. tests/tally.sh

# consumer LABEL LIBDIR FLAGS: build tests/pkg/consumer.c with FLAGS alone
# and run it against the shared library in LIBDIR.
consumer() {
    # shellcheck disable=SC2086
    if $CC tests/pkg/consumer.c $3 -o "$tmp/consumer" &&
        LD_LIBRARY_PATH=$2 "$tmp/consumer"; then
        pass "$1: consumer built with [$3] runs"
    else
        fail "$1: consumer with [$3]"
    fi
    rm -f "$tmp/consumer"
}

# 1. A staged install (DESTDIR), as a distribution package is built: the
#    .pc names the real prefix and the directories under it relative to
#    ${prefix}; pkg-config finds the staged tree through its sysroot
#    variable, or through a prefix redefined on its command line.
stage=$tmp/stage
if make -s install DESTDIR="$stage" PREFIX=/usr >"$tmp/install.log" 2>&1; then
    pc=$stage/usr/lib/pkgconfig/udprr.pc
    if grep -qx 'prefix=/usr' "$pc" && grep -q "^Version: $(sed -n 's/^#define UDPRR_VERSION_MAJOR \([0-9]*\)/\1/p' include/udprr.h)\." "$pc"; then
        pass "staged udprr.pc names prefix /usr and the header's version"
    else
        fail "staged udprr.pc: $(cat "$pc")"
    fi
    # shellcheck disable=SC2016
    if grep -qxF 'libdir=${prefix}/lib' "$pc" &&
        grep -qxF 'includedir=${prefix}/include' "$pc"; then
        pass "staged udprr.pc: libdir and includedir relative to \${prefix}"
    else
        fail "staged udprr.pc, want libdir=\${prefix}/lib: $(cat "$pc")"
    fi
    flags=$(PKG_CONFIG_SYSROOT_DIR=$stage PKG_CONFIG_PATH=$stage/usr/lib/pkgconfig \
        pkg-config --cflags --libs udprr)
    consumer "staged install" "$stage/usr/lib" "$flags"
    flags=$(PKG_CONFIG_PATH=$stage/usr/lib/pkgconfig \
        pkg-config --define-variable=prefix="$stage/usr" --cflags --libs udprr)
    consumer "staged install, prefix redefined" "$stage/usr/lib" "$flags"
    soname=$(readelf -d "$stage/usr/lib/libudprr.so" | sed -n 's/.*SONAME.*\[\(.*\)\].*/\1/p')
    [ "$soname" = libudprr.so.0 ] && pass "soname $soname" || fail "soname '$soname'"
    make -s uninstall DESTDIR="$stage" PREFIX=/usr >/dev/null 2>&1
    left=$(find "$stage" -type f -o -type l)
    [ -z "$left" ] && pass "uninstall leaves no file behind" ||
        fail "uninstall left: $left"
else
    cat "$tmp/install.log"
    fail "make install DESTDIR=... PREFIX=/usr"
fi

# 2. A real install under a prefix of its own, custom LIBDIR/INCLUDEDIR/
#    PKGCONFIGDIR, the headers outside the prefix: plain PKG_CONFIG_PATH
#    must be enough. The .pc writes LIBDIR (under the prefix) relative to
#    ${prefix} and INCLUDEDIR (elsewhere) in full.
prefix=$tmp/prefix
incdir=$tmp/elsewhere/include
if make -s install PREFIX="$prefix" LIBDIR="$prefix/lib64" \
    INCLUDEDIR="$incdir" PKGCONFIGDIR="$prefix/pc" >"$tmp/install2.log" 2>&1; then
    pc=$prefix/pc/udprr.pc
    # shellcheck disable=SC2016
    if grep -qxF 'libdir=${prefix}/lib64' "$pc" &&
        grep -qxF "includedir=$incdir" "$pc"; then
        pass "custom udprr.pc: libdir relative, includedir in full"
    else
        fail "custom udprr.pc: $(cat "$pc")"
    fi
    flags=$(PKG_CONFIG_PATH=$prefix/pc pkg-config --cflags --libs udprr)
    consumer "prefix install" "$prefix/lib64" "$flags"
    make -s uninstall PREFIX="$prefix" LIBDIR="$prefix/lib64" \
        INCLUDEDIR="$incdir" PKGCONFIGDIR="$prefix/pc" >/dev/null 2>&1
    left=$(find "$prefix" "$incdir" -type f -o -type l)
    [ -z "$left" ] && pass "uninstall (custom dirs) leaves no file behind" ||
        fail "uninstall (custom dirs) left: $left"
else
    cat "$tmp/install2.log"
    fail "make install PREFIX=... LIBDIR=... INCLUDEDIR=... PKGCONFIGDIR=..."
fi
# Put the working tree's udprr.pc back to the default prefix.
make -s udprr.pc >/dev/null 2>&1

# 3. Only udprr_* symbols leave the shared library.
extra=$(nm -D --defined-only "$top/lib/libudprr.so" | awk '{print $3}' | grep -v '^udprr_[a-z]')
[ -z "$extra" ] && pass "exported symbols are all udprr_*" ||
    fail "symbols exported beyond udprr_*: $extra"

tally_finish
