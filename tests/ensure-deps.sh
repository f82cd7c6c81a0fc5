#!/bin/sh
# Makes sure what the tests need is installed: pkg-config, Check, valgrind
# (or only those named as arguments: `ensure-deps.sh pkg-config` for the
# examples). On Debian/Ubuntu it installs what is missing with apt-get
# (through sudo when not root); elsewhere it names what is missing and fails.
wanted=${*:-pkg-config check valgrind}
missing=""
for dep in $wanted; do
    case $dep in
    pkg-config | valgrind)
        command -v "$dep" >/dev/null 2>&1 || missing="$missing $dep" ;;
    check)
        # Debian's package "check" ships the library and its check.pc.
        pkg-config --exists check 2>/dev/null || missing="$missing check" ;;
    esac
done
[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "make check needs:$missing (no apt-get here: install them and run make check again)" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo="sudo"
    else
        echo "make check needs:$missing (not root and no sudo: install them and run make check again)" >&2
        exit 1
    fi
fi
echo "make check: installing$missing"
$sudo apt-get update -qq || { echo "apt-get update failed; needed:$missing" >&2; exit 1; }
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null ||
    { echo "apt-get install failed; needed:$missing" >&2; exit 1; }
