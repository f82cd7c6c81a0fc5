#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs Check suite binaries and keeps a tally across calls in build/tally.
#
#   run-suites.sh BIN...             run each; a failing suite fails the call
#   run-suites.sh --valgrind BIN...  the same under valgrind (CK_FORK=no, so
#                                    the tests themselves run under it); any
#                                    error or leak fails
#   run-suites.sh --summary          print "N passed, N failed" (and
#                                    ", N skipped" for the tests that could
#                                    not run here) and fail if anything
#                                    failed
tally=build/tally
mode=plain
case "$1" in
--summary)
    passed=0 failed=0 skipped=0
    if [ -f "$tally" ]; then
        passed=$(awk '{p += $1} END {print p + 0}' "$tally")
        failed=$(awk '{f += $2} END {print f + 0}' "$tally")
        skipped=$(awk '{s += $3} END {print s + 0}' "$tally")
    fi
    rm -f "$tally"
    if [ "$skipped" -gt 0 ]; then
        echo "check: $passed passed, $failed failed, $skipped skipped"
    else
        echo "check: $passed passed, $failed failed"
    fi
    [ "$passed" -gt 0 ] && [ "$failed" -eq 0 ]
    exit $?
    ;;
--valgrind)
    mode=valgrind
    shift
    ;;
esac

mkdir -p build
status=0
for bin in "$@"; do
    log="$bin.$mode.log"
    if [ "$mode" = valgrind ]; then
        echo "== valgrind $bin"
        CK_FORK=no UDPRR_TEST_VALGRIND=1 \
            valgrind -q --error-exitcode=99 --leak-check=full \
            --show-leak-kinds=all --errors-for-leak-kinds=all \
            "$bin" >"$log" 2>&1
    else
        echo "== $bin"
        "$bin" >"$log" 2>&1
    fi
    rc=$?
    # Check closes with "NN%: Checks: C, Failures: F, Errors: E".
    line=$(grep -E '^[0-9]+%: Checks: ' "$log" | tail -n 1)
    checks=$(echo "$line" | sed -n 's/.*Checks: \([0-9]*\).*/\1/p')
    failures=$(echo "$line" | sed -n 's/.*Failures: \([0-9]*\).*/\1/p')
    errors=$(echo "$line" | sed -n 's/.*Errors: \([0-9]*\).*/\1/p')
    if [ -z "$checks" ]; then
        checks=0 failures=0 errors=1 # no closing line: it crashed
    fi
    bad=$((failures + errors))
    if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
        bad=1 # valgrind or a sanitizer failed a run whose checks passed
    fi
    echo "$((checks - failures - errors)) $bad" >>"$tally"
    if [ "$rc" -ne 0 ] || [ "$bad" -ne 0 ]; then
        status=1
        cat "$log"
    else
        echo "$line"
    fi
done
exit $status
