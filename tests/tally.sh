# SPDX-License-Identifier: MIT
# tally.sh - sourced by the shell tests from the project's top directory
# (`tally_name=NAME; . tests/tally.sh`: a sourced file takes no arguments
# in POSIX sh): one "ok:"/"FAIL:" line per check, and one
# closing line "NAME: N passed, N failed" whose counts are added to
# build/tally, where `run-suites.sh --summary` adds up every stage of
# make check.
#
#   pass TEXT     a check that held
#   fail TEXT     a check that did not
#   check TEXT GOT WANT   pass when GOT is WANT, else fail saying both
#   yes_if EXPR   prints "yes" when the shell expression holds, else
#                 "no: EXPR" (for `check TEXT "$(yes_if ...)" yes`)
#   num_after LINE NAME    the number after "NAME " in LINE (a stats line
#                 prints "name N"); -1 when absent, so that checks fail
#   num_before LINE NAME   the number before " NAME" (a summary's "N name")
#   tally_finish  records the counts; returns 0 only when nothing failed.
#                 Call it last, or as `tally_finish; exit` to stop early.
#   skip_part WHY  one part of the test cannot run here (a peer missing,
#                 say): prints "SKIP: WHY"; tally_end then records the
#                 whole test as skipped, with what passed and failed.
#   tally_end     tally_finish, or tally_skip with the skipped parts'
#                 reasons when there were any. Call it last.
#   tally_skip WHY  the test cannot run here (no root, say): prints
#                 "SKIP: NAME: WHY" and records the test as skipped, with
#                 whatever passed or failed before; a skip is never counted
#                 as a pass. Returns 0 unless something failed. Call it
#                 instead of tally_finish, as `tally_skip "..."; exit`.
: "${tally_name:?set tally_name before sourcing tests/tally.sh}"
tally_file=$(pwd)/build/tally
passed=0 failed=0

pass() { echo "ok: $1"; passed=$((passed + 1)); }
fail() { echo "FAIL: $1"; failed=$((failed + 1)); }
check() {
    if [ "$2" = "$3" ]; then
        pass "$1 ($2)"
    else
        fail "$1: got '$2', want '$3'"
    fi
}
yes_if() { if eval "$1"; then echo yes; else echo "no: $1"; fi; }
num_after() {
    n=$(echo "$1" | sed -n "s/.*[ :,;(]$2 \([0-9][0-9]*\).*/\1/p")
    echo "${n:--1}"
}
num_before() {
    n=$(echo "$1" | sed -n "s/.*[ (,;:]\([0-9][0-9]*\) $2.*/\1/p")
    echo "${n:--1}"
}

tally_finish() {
    mkdir -p "$(dirname "$tally_file")"
    echo "$passed $failed" >>"$tally_file"
    echo "$tally_name: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}

tally_skipped=""
skip_part() {
    echo "SKIP: $1"
    tally_skipped="${tally_skipped:+$tally_skipped; }$1"
}

tally_end() {
    if [ -n "$tally_skipped" ]; then
        tally_skip "$tally_skipped"
    else
        tally_finish
    fi
}

tally_skip() {
    mkdir -p "$(dirname "$tally_file")"
    echo "$passed $failed 1" >>"$tally_file"
    if [ $((passed + failed)) -eq 0 ]; then
        echo "SKIP: $tally_name: $1 (not run: nothing counted as passed)"
    else
        echo "SKIP: $tally_name: $1 (only partly run: $passed passed, $failed failed; what did not run is not counted)"
    fi
    [ "$failed" -eq 0 ]
}
