#!/bin/sh
# SPDX-License-Identifier: MIT
# Makes sure what the tests need is installed: pkg-config, Check, valgrind,
# python3 (for ../shared/peers/plain_peer.py), netbase (/etc/services, for
# service names such as "domain"), the real peers of the interop test,
# dnsmasq and libcoap's coap-server, mandoc (tests/man-test.sh), and
# libuv's headers and pkg-config file (examples/uv_client.c),
# libsodium's (the library's sealed mode), and PyNaCl (python3-nacl: the
# sealed mode of tests/peer/udprr_peer.py, tests/protocol-peer-test.sh)
# (or only those named as arguments: `ensure-deps.sh pkg-config` for the
# examples, `ensure-deps.sh gnuplot-nox` for `make bench`'s plot and
# `ensure-deps.sh iproute2` for tests/netns-test.sh, which are never in the
# default list). On Debian/Ubuntu it installs what is missing
# with apt-get (through sudo when not root); elsewhere it names what is
# missing and fails.
wanted=${*:-pkg-config check valgrind python3 netbase dnsmasq-base libcoap3-bin mandoc libuv1-dev libsodium-dev python3-nacl}
missing=""
for dep in $wanted; do
    case $dep in
    pkg-config | valgrind | python3 | mandoc)
        command -v "$dep" >/dev/null 2>&1 || missing="$missing $dep" ;;
    netbase)
        [ -f /etc/services ] || missing="$missing netbase" ;;
    check)
        # Debian's package "check" ships the library and its check.pc.
        pkg-config --exists check 2>/dev/null || missing="$missing check" ;;
    dnsmasq-base)
        # The bare binary; the package "dnsmasq" would add a system service.
        [ -x /usr/sbin/dnsmasq ] || command -v dnsmasq >/dev/null 2>&1 ||
            missing="$missing dnsmasq-base" ;;
    libcoap3-bin)
        # libcoap's example server, without (D)TLS.
        command -v coap-server-notls >/dev/null 2>&1 ||
            missing="$missing libcoap3-bin" ;;
    libsodium-dev)
        # The headers and libsodium.pc: the sealed mode's cryptography.
        pkg-config --exists libsodium 2>/dev/null || missing="$missing libsodium-dev" ;;
    libuv1-dev)
        # The headers and libuv.pc: what uv_client is built with.
        pkg-config --exists libuv 2>/dev/null || missing="$missing libuv1-dev" ;;
    python3-nacl)
        # PyNaCl's libsodium bindings, for the Python peer's sealed mode;
        # Debian's package is for the system's python3, which may not be
        # the first python3 on PATH (pyenv, a virtualenv).
        python3 -c 'import nacl.bindings' >/dev/null 2>&1 ||
            /usr/bin/python3 -c 'import nacl.bindings' >/dev/null 2>&1 ||
            missing="$missing python3-nacl" ;;
    gnuplot-nox)
        # gnuplot without X11: all `make bench` needs to write an SVG.
        command -v gnuplot >/dev/null 2>&1 || missing="$missing gnuplot-nox" ;;
    iproute2)
        # ip(8), for the namespaces of tests/netns-test.sh, which asks for
        # it when it runs as root (never in the default list).
        command -v ip >/dev/null 2>&1 || missing="$missing iproute2" ;;
    esac
done
[ -z "$missing" ] && exit 0

if ! command -v apt-get >/dev/null 2>&1; then
    echo "libudprr needs:$missing (no apt-get here: install them and run the make again)" >&2
    exit 1
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        sudo="sudo"
    else
        echo "libudprr needs:$missing (not root and no sudo: install them and run the make again)" >&2
        exit 1
    fi
fi
echo "libudprr: installing$missing"
$sudo apt-get update -qq || { echo "apt-get update failed; needed:$missing" >&2; exit 1; }
# shellcheck disable=SC2086
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq $missing >/dev/null ||
    { echo "apt-get install failed; needed:$missing" >&2; exit 1; }
