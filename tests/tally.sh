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
#   tally_finish  records the counts; returns 0 only when nothing failed.
#                 Call it last, or as `tally_finish; exit` to stop early.
: "${tally_name:?set tally_name before sourcing tests/tally.sh}"
tally_file=$(pwd)/build/tally
passed=0 failed=0

pass() { echo "ok: $1"; passed=$((passed + 1)); }
fail() { echo "FAIL: $1"; failed=$((failed + 1)); }

tally_finish() {
    mkdir -p "$(dirname "$tally_file")"
    echo "$passed $failed" >>"$tally_file"
    echo "$tally_name: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
