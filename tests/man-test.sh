#!/bin/sh
# SPDX-License-Identifier: MIT
# Man page test: install into a temporary tree (DESTDIR), then check that
#   - mandoc -Tlint prints nothing for every installed page and alias;
#   - every page carries the same date and version in its .TH line;
#   - man finds udprr, the types, every alias of docs/man/aliases, and every
#     function and type that include/udprr.h declares, each on a page whose
#     NAME or SYNOPSIS names it;
#   - udprr(7)'s SEE ALSO names every page and alias, and every reference
#     to a udprr_ page, in any page, leads to one.
# Without man-db's man it looks names up with mandoc's (installed as mman
# on Debian), else by file name. Records its result in build/tally.
set -u
top=$(pwd)
hdr=include/udprr.h
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
tally_name=man-test
. tests/tally.sh
finish() {
    tally_finish
    exit
}

if ! command -v mandoc >/dev/null 2>&1; then
    fail "mandoc is not installed (sh tests/ensure-deps.sh mandoc)"
    finish
fi

stage=$tmp/stage
mandir=$stage/usr/share/man
if ! make -s install DESTDIR="$stage" PREFIX=/usr >"$tmp/install.log" 2>&1; then
    cat "$tmp/install.log"
    fail "make install DESTDIR=... PREFIX=/usr"
    make -s udprr.pc >/dev/null 2>&1
    finish
fi
# Put the working tree's udprr.pc back to the default prefix.
make -s udprr.pc >/dev/null 2>&1

# 1. Lint every installed page, real or alias, at mandoc's default level.
set -- "$mandir"/man*/*
if [ ! -e "$1" ]; then
    fail "no page installed under $mandir"
    finish
fi
npages=$#
if mandoc -Tlint "$@" >"$tmp/lint" 2>&1 && [ ! -s "$tmp/lint" ]; then
    pass "mandoc -Tlint is silent on all $npages installed pages and aliases"
else
    sed "s|$mandir/||g" "$tmp/lint"
    fail "mandoc -Tlint on the installed pages"
fi

# 2. One date and version on every page.
ths=$(sed -n 's/^\.TH [^ ]* [1-9] //p' docs/man/*.[1-9] | sort -u)
if [ "$(echo "$ths" | wc -l)" -eq 1 ] && [ -n "$ths" ]; then
    pass "every page's .TH says $ths"
else
    fail "pages differ in their .TH date or version:
$ths"
fi

# 3. Names to look up: the overview, the names the issue asks for, the
#    aliases, and every function and type in the public header.
aliases=$(awk '$1 ~ /\.[1-9]$/ && NF == 2 { print $1 }' docs/man/aliases)
api_lines=$(grep -c '^UDPRR_API' "$hdr")
# "UDPRR_API int udprr_x(", also "UDPRR_API void(udprr_x)(" (a function
# that a macro of the same name hides)
funcs=$(sed -n 's/^UDPRR_API[^(]*[ *(]\(udprr_[a-z0-9_]*\)[)]\{0,1\}(.*/\1/p' "$hdr")
if [ "$(echo "$funcs" | grep -c .)" -ne "$api_lines" ]; then
    fail "read $(echo "$funcs" | grep -c .) function names from $api_lines UDPRR_API lines of $hdr"
fi
types=$(
    # function-like macros named like functions (udprr_client_opts_init)
    sed -n 's/^#define \(udprr_[a-z0-9_]*\)(.*/\1/p' "$hdr"
    # typedef names: "} udprr_x;", opaque handles, function pointers
    sed -n 's/^} \(udprr_[a-z0-9_]*\);.*/\1/p' "$hdr"
    sed -n 's/^typedef struct udprr_[a-z0-9_]* \(udprr_[a-z0-9_]*\);.*/\1/p' "$hdr"
    sed -n 's/^typedef [^(]*(\*\(udprr_[a-z0-9_]*\))(.*/\1/p' "$hdr"
    # struct and enum tags
    sed -n 's/^typedef struct \(udprr_[a-z0-9_]*\) {.*/\1/p' "$hdr"
    sed -n 's/^typedef enum \(udprr_[a-z0-9_]*\) {.*/\1/p' "$hdr"
    sed -n 's/^struct \(udprr_[a-z0-9_]*\) {.*/\1/p' "$hdr"
)
api=$(printf '%s\n%s\n' "$funcs" "$types" | grep -v '^udprr__' | grep . | sort -u)
napi=$(echo "$api" | wc -l)
# A header with fewer names than 0.1's 16 functions and 9 types means the
# patterns above no longer read it: fail rather than check nothing.
if [ "$napi" -lt 20 ]; then
    fail "read only $napi function and type names from $hdr"
fi

if command -v man >/dev/null 2>&1; then
    how="man -M DIR -w"
    lookup() { man -M "$mandir" -w "$1" 2>/dev/null | head -n 1; }
elif command -v mman >/dev/null 2>&1; then
    how="mman -M DIR -w"
    lookup() { mman -M "$mandir" -w "$1" 2>/dev/null | head -n 1; }
else
    how="file name"
    lookup() {
        for f in "$mandir"/man*/"$1".[1-9]; do
            [ -e "$f" ] && { echo "$f"; return; }
        done
    }
fi

# check_names LABEL NAMES: each NAME resolves to an installed page whose
# NAME or SYNOPSIS section names it.
check_names() {
    label=$1 bad=0 n=0
    shift
    for name in "$@"; do
        n=$((n + 1))
        page=$(lookup "$name")
        if [ -z "$page" ] || [ ! -f "$page" ]; then
            fail "$label: no page for $name"
            bad=1
        elif ! sed -n '/^\.SH NAME/,/^\.SH DESCRIPTION/p' "$page" |
            grep -qw -- "$name"; then
            fail "$label: $name leads to ${page#"$mandir"/}, which does not name it"
            bad=1
        fi
    done
    [ "$bad" -eq 0 ] && pass "$label: all $n names have a page ($how)"
}

check_names "asked for" udprr udprr_request udprr_handler \
    udprr_client_opts_init_sized
# shellcheck disable=SC2046
check_names "aliases" $(echo "$aliases" | sed 's/\.[1-9]$//')
# shellcheck disable=SC2086
check_names "$hdr" $api

# Every alias is a symlink that resolves, in its section's directory.
bad=0
for a in $aliases; do
    f=$mandir/man${a##*.}/$a
    if [ ! -L "$f" ] || [ ! -e "$f" ]; then
        fail "alias $a is not a link to an installed page"
        bad=1
    fi
done
[ "$bad" -eq 0 ] && pass "every alias of docs/man/aliases is a link to a page"

# 4. The overview's SEE ALSO names every other page and alias.
bad=0
for f in docs/man/*.[1-9] $aliases; do
    name=${f##*/}
    name=${name%.*}
    case $name in udprr | libudprr) continue ;; esac
    if ! sed -n '/^\.SH SEE ALSO/,$p' docs/man/udprr.7 |
        grep -q "^\.BR $name ("; then
        fail "udprr(7) SEE ALSO lacks $name"
        bad=1
    fi
done
[ "$bad" -eq 0 ] && pass "udprr(7) SEE ALSO names every page and alias"

# 5. Every cross-reference to a libudprr page, udprr_x(N), leads to one.
refs=$(sed -n 's/^\.BR \(udprr[a-z0-9_]*\) ([1-9]).*/\1/p' \
    docs/man/*.[1-9] | sort -u)
# shellcheck disable=SC2086
check_names "cross-references" $refs

make -s uninstall DESTDIR="$stage" PREFIX=/usr >/dev/null 2>&1
finish
