# SPDX-License-Identifier: MIT
# procs.sh - sourced by the shell tests that start background processes
# (servers, relays, peers): each is recorded in $procs and stopped, for
# sure and within seconds, when the test exits however it exits.
#
#   procs="$procs $!"   after starting one in the background
#   exited PID          true once it is gone, or a zombie waiting to be
#                       reaped
#   stop PID            SIGTERM, at most 5 s to exit, then SIGKILL; reaps
#                       it and forgets it, so the cleanup never signals a
#                       PID the system may have reused
#   wait_for PID FILE SED   at most 5 s until sed's SED finds something in
#                       FILE (while PID runs); prints what it found
# Sourcing it sets traps: on exit every recorded process is stopped and
# $tmp (if set) removed; INT, TERM and HUP exit.
procs=""

exited() {
    [ -r "/proc/$1/stat" ] || return 0
    [ "$(sed 's/.*) //' "/proc/$1/stat" | cut -c1)" = Z ]
}

stop() {
    kill -TERM "$1" 2>/dev/null
    for _ in $(seq 50); do
        exited "$1" && break
        sleep 0.1
    done
    exited "$1" || kill -KILL "$1" 2>/dev/null
    wait "$1" 2>/dev/null
    procs=$(echo " $procs " | sed "s/ $1 / /g")
}

wait_for() {
    for _ in $(seq 50); do
        found=$(sed -n "$3" "$2")
        if [ -n "$found" ]; then
            echo "$found"
            return 0
        fi
        exited "$1" && return 1
        sleep 0.1
    done
    return 1
}

procs_cleanup() {
    for pid in $procs; do stop "$pid"; done
    [ -n "${tmp:-}" ] && rm -rf "$tmp"
}
trap procs_cleanup EXIT
trap 'exit 1' INT TERM HUP
