#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""udprr_peer.py - a libudprr native-framing peer written from
docs/protocol.md alone (no line of lib/ read), to show that the page is
enough to interoperate with the library both ways, plain and sealed.

Standard library only, plus PyNaCl (Debian's python3-nacl) for the sealed
mode's XChaCha20-Poly1305.

    udprr_peer.py selftest
        reproduces the page's two worked examples byte for byte.
    udprr_peer.py server --port P [--host H] [--key FILE --key-id N]
                         [--count N] [--seconds S] [--decline-on TEXT]
                         [--guard FACTOR]
        answers each request with b"peer:" + body (a request whose body is
        TEXT is declined; b"big:N" gets N bytes, byte i being
        (i * 13 + 1) & 0xff, as tests/peer_driver.c answers); a reply cache answers retransmissions. With
        --guard, answers larger than FACTOR times their request are held
        back behind an echo (the page's "Amplification"). One line per
        datagram; "peer server stats: ..." at exit. Stops after N handler
        calls, S seconds (default 20), or SIGTERM.
    udprr_peer.py client HOST PORT MESSAGE [--key FILE --key-id N] [--out F]
                         [--attempts N] [--rto-ms M] [--size N] [--again]
        one request (MESSAGE, or --size N bytes of a pattern); prints the
        reply (--out F also writes it to F). --again sends the same request once more after its reply
        (same ID, same body, next attempt number) and requires the same
        reply. Exit 0 on a reply, 1 on a timeout, 3 on a decline, 2 for
        usage errors.
"""

import argparse
import hashlib
import hmac
import os
import select
import signal
import socket
import struct
import sys
import time

MAGIC = b"UR"
V_PLAIN, V_SEALED = 1, 2
REQUEST, REPLY, DECLINE, ECHO = 1, 2, 3, 4
KIND_NAMES = {REQUEST: "request", REPLY: "reply", DECLINE: "decline", ECHO: "echo"}
F_COOKIE = 0x0001
HEADER = 20
COOKIE = 16
SEAL_FRONT, TAG = 40, 16
SEALED_MIN = SEAL_FRONT + HEADER + TAG  # 76
MAX_DATAGRAM = 65507
RECV_BUF = 65535  # the largest UDP payload of any family we use
CACHE_LIFETIME = 30.0  # seconds the server remembers an answer
REPLAY_WINDOW = CACHE_LIFETIME / 2  # the page: W is half the lifetime
COOKIE_PERIOD = 30  # seconds; a cookie is good for 30 to 60 s

# --- CRC-32C (Castagnoli, reflected 0x82F63B78), by table ----------------------

_CRC_TABLE = []
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    table = _CRC_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# --- plain (version 1) datagrams -------------------------------------------------


def encode(kind, attempt, rid, body=b"", flags=0):
    head = MAGIC + struct.pack(">BBHHQ", V_PLAIN, kind, attempt, flags, rid)
    return head + struct.pack(">I", crc32c(head + body)) + body


class Malformed(Exception):
    pass


def decode(d):
    """(kind, attempt, flags, id, body) or Malformed, checked in the page's
    order ("Malformed datagrams")."""
    if len(d) < HEADER:
        raise Malformed("shorter than 20 bytes")
    if d[0:2] != MAGIC:
        raise Malformed("magic")
    if d[2] != V_PLAIN:
        raise Malformed("version %d" % d[2])
    kind = d[3]
    if kind not in KIND_NAMES:
        raise Malformed("kind %d" % kind)
    attempt, flags, rid, crc = struct.unpack(">HHQI", d[4:20])
    if attempt == 0:
        raise Malformed("attempt 0")
    if flags & ~F_COOKIE or (flags & F_COOKIE and kind != REQUEST):
        raise Malformed("flags 0x%04x" % flags)
    body = d[HEADER:]
    if flags & F_COOKIE and len(body) < COOKIE:
        raise Malformed("cookie flag, body of %d bytes" % len(body))
    if kind == DECLINE and body:
        raise Malformed("decline with a body")
    if kind == ECHO and len(body) != COOKIE:
        raise Malformed("echo body of %d bytes" % len(body))
    if crc32c(d[0:16] + body) != crc:
        raise Malformed("crc")
    return kind, attempt, flags, rid, body


# --- sealed (version 2) datagrams ------------------------------------------------


def _nacl():
    try:
        import nacl.bindings as b
    except ImportError:
        sys.exit("udprr_peer: the sealed mode needs PyNaCl (python3-nacl)")
    return b


def now_ms():
    return time.time_ns() // 1000000


def seal(inner, key, key_id, clock, nonce=None):
    b = _nacl()
    if nonce is None:
        nonce = os.urandom(24)  # the page allows 24 random bytes per datagram
    ad = MAGIC + struct.pack(">BBIQ", V_SEALED, 0, key_id, clock)
    ct = b.crypto_aead_xchacha20poly1305_ietf_encrypt(inner, ad, nonce, key)
    return ad + nonce + ct


class NotOpened(Exception):
    pass


def open_sealed(d, keys):
    """(key_id, clock, inner) or NotOpened, in the page's order
    ("Receiving a sealed datagram"). keys: {key_id: 32 bytes}."""
    if len(d) < SEALED_MIN:
        raise NotOpened("shorter than 76 bytes")
    if d[0:2] != MAGIC or d[2] != V_SEALED:
        raise NotOpened("not a sealed datagram (version %d)" % d[2])
    if d[3] != 0:
        raise NotOpened("reserved byte")
    key_id, clock = struct.unpack(">IQ", d[4:16])
    if key_id not in keys:
        raise NotOpened("key ID %d unknown" % key_id)
    b = _nacl()
    try:
        inner = b.crypto_aead_xchacha20poly1305_ietf_decrypt(
            bytes(d[SEAL_FRONT:]), bytes(d[0:16]), bytes(d[16:40]), keys[key_id])
    except Exception:
        raise NotOpened("tag") from None
    return key_id, clock, inner


def read_key(path):
    with open(path, "rb") as f:
        k = f.read()
    if len(k) != 32:
        sys.exit("udprr_peer: %s holds %d bytes; a key is exactly 32" % (path, len(k)))
    return k


# --- selftest: the page's worked examples ------------------------------------------


def selftest():
    ok = True

    def expect(what, got, want):
        nonlocal ok
        if got == want:
            print("selftest ok: %s" % what)
        else:
            ok = False
            print("selftest FAIL: %s:\n  got  %s\n  want %s" % (what, got.hex(" ") if isinstance(got, bytes) else got,
                                                             want.hex(" ") if isinstance(want, bytes) else want))

    expect("CRC-32C of '123456789'", crc32c(b"123456789"), 0xE3069283)
    want = bytes.fromhex("55 52 01 02 01 02 00 00 01 23 45 67 89 ab cd ef d6 8b f4 f8 61 62 63")
    expect("the plain reply example", encode(REPLY, 258, 0x0123456789ABCDEF, b"abc"), want)
    expect("the plain reply example decodes",
           decode(want), (REPLY, 258, 0, 0x0123456789ABCDEF, b"abc"))
    # The echo and the request with its cookie (the page's "Example", as
    # rewritten for issue 16 on main after this peer was written).
    cookie = bytes(range(0xA0, 0xB0))
    echo = bytes.fromhex("55 52 01 04 00 01 00 00 01 23 45 67 89 ab cd ef"
                         "07 77 2a 8b a0 a1 a2 a3 a4 a5 a6 a7 a8 a9 aa ab ac ad ae af")
    expect("the echo example", encode(ECHO, 1, 0x0123456789ABCDEF, cookie), echo)
    again = bytes.fromhex("55 52 01 01 00 02 00 01 01 23 45 67 89 ab cd ef"
                          "58 7e 4d 3f a0 a1 a2 a3 a4 a5 a6 a7 a8 a9 aa ab ac ad ae af 61 62 63")
    expect("the example of a request with its cookie",
           encode(REQUEST, 2, 0x0123456789ABCDEF, cookie + b"abc", F_COOKIE), again)
    inner = bytes.fromhex("55 52 01 01 00 01 00 00 01 23 45 67 89 ab cd ef 5e f4 96 c0 61 62 63")
    expect("the sealed example's inner request", encode(REQUEST, 1, 0x0123456789ABCDEF, b"abc"), inner)
    key = bytes(range(32))
    nonce = bytes(range(0x40, 0x58))
    expect("2026-01-01T00:00:00Z in ms", 1767225600000, 0x0000019B76DAA800)
    sealed = bytes.fromhex(
        "55 52 02 00 00 00 00 07 00 00 01 9b 76 da a8 00"
        "40 41 42 43 44 45 46 47 48 49 4a 4b 4c 4d 4e 4f"
        "50 51 52 53 54 55 56 57 81 6b 04 71 d0 e1 79 16"
        "8e d7 c2 d9 26 37 a8 7d cc 4e 3b 04 72 3b 30 28"
        "6f 7e 81 d9 7a 6e 10 1b 79 99 75 c7 34 c6 5c")
    expect("the sealed example is 79 bytes", len(sealed), 79)
    expect("the sealed example", seal(inner, key, 7, 1767225600000, nonce), sealed)
    expect("the sealed example opens", open_sealed(sealed, {7: key}), (7, 1767225600000, inner))
    bad = bytearray(sealed)
    bad[10] ^= 1  # the clock: associated data
    try:
        open_sealed(bytes(bad), {7: key})
        expect("a changed clock does not open", "opened", "NotOpened")
    except NotOpened as e:
        expect("a changed clock does not open", str(e), "tag")
    return 0 if ok else 1


# --- transport ------------------------------------------------------------------


class Endpoint:
    """A socket, and the seal when keys are given (all datagrams sealed)."""

    def __init__(self, sock, keys=None, key_id=None):
        self.sock = sock
        self.keys = keys or {}
        self.key_id = key_id

    @property
    def sealed(self):
        return bool(self.keys)

    def wrap(self, inner, key_id=None, clock=None):
        if not self.sealed:
            return inner
        kid = self.key_id if key_id is None else key_id
        return seal(inner, self.keys[kid], kid, now_ms() if clock is None else clock)

    def unwrap(self, d):
        """(key_id, clock, decoded) or raises NotOpened / Malformed."""
        if self.sealed:
            kid, clock, inner = open_sealed(d, self.keys)
            return kid, clock, decode(inner)
        return None, None, decode(d)


def fmt_addr(a):
    return "%s:%d" % (a[0], a[1])


def pattern(n):
    """n bytes, byte i being (i * 13 + 1) & 0xff (a large answer)."""
    return bytes((i * 13 + 1) & 0xFF for i in range(n))


# --- server ---------------------------------------------------------------------


class Server:
    def __init__(self, ep, decline_on, guard, count, seconds):
        self.ep = ep
        self.decline_on = decline_on
        self.guard = guard
        self.count = count
        self.deadline = time.monotonic() + seconds
        self.cache = {}  # (who, id, body) -> (kind, body, expiry)
        self.cookie_secret = os.urandom(32)
        self.n = dict(received=0, handled=0, replies=0, declines=0, from_cache=0,
                      echoes=0, malformed=0, not_opened=0, unexpected=0,
                      outside_window=0, cookies_bad=0)
        self.stop = False

    def cookie(self, addr, period):
        m = ("%s|%d|%d" % (addr[0], addr[1], period)).encode()
        return hmac.new(self.cookie_secret, m, hashlib.sha256).digest()[:COOKIE]

    def cookie_good(self, addr, c):
        p = int(time.time()) // COOKIE_PERIOD
        return any(hmac.compare_digest(self.cookie(addr, q), c) for q in (p, p - 1))

    def handler(self, body):
        self.n["handled"] += 1
        if self.decline_on is not None and body == self.decline_on:
            return DECLINE, b""
        if body.startswith(b"big:") and body[4:].isdigit() and int(body[4:]) <= 65000:
            return REPLY, pattern(int(body[4:]))
        return REPLY, b"peer:" + body

    def expire(self):
        t = time.monotonic()
        for k in [k for k, v in self.cache.items() if v[2] <= t]:
            del self.cache[k]

    def serve_one(self, d, addr):
        self.n["received"] += 1
        try:
            kid, clock, (kind, attempt, flags, rid, body) = self.ep.unwrap(d)
        except NotOpened as e:
            self.n["not_opened"] += 1
            print("drop from %s: does not open: %s" % (fmt_addr(addr), e))
            return
        except Malformed as e:
            self.n["malformed"] += 1
            print("drop from %s: malformed: %s" % (fmt_addr(addr), e))
            return
        if kind != REQUEST:
            self.n["unexpected"] += 1
            print("drop from %s: a %s sent to a server" % (fmt_addr(addr), KIND_NAMES[kind]))
            return
        if self.ep.sealed and abs(clock - now_ms()) > REPLAY_WINDOW * 1000:
            self.n["outside_window"] += 1
            print("drop from %s: clock %d outside the replay window" % (fmt_addr(addr), clock))
            return
        cookie_ok = False
        if flags & F_COOKIE:
            cookie_ok = self.cookie_good(addr, body[:COOKIE])
            if not cookie_ok:
                self.n["cookies_bad"] += 1
            body = body[COOKIE:]
        who = ("key", kid) if self.ep.sealed else addr
        key = (who, rid, body)
        self.expire()
        what = "request %016x attempt %d from %s, %d bytes%s" % (
            rid, attempt, fmt_addr(addr), len(body), ", with a cookie" if flags & F_COOKIE else "")
        hit = self.cache.get(key)
        if hit:
            akind, abody = hit[0], hit[1]
            self.n["from_cache"] += 1
            how = "from the cache"
        else:
            akind, abody = self.handler(body)
            self.cache[key] = (akind, abody, time.monotonic() + CACHE_LIFETIME)
            how = "handler ran"
        answer = self.ep.wrap(encode(akind, attempt, rid, abody), kid)
        if self.guard and len(answer) > self.guard * len(d) and not cookie_ok:
            c = self.cookie(addr, int(time.time()) // COOKIE_PERIOD)
            self.ep.sock.sendto(self.ep.wrap(encode(ECHO, attempt, rid, c), kid), addr)
            self.n["echoes"] += 1
            print("%s: %s; echo (a %d-byte answer to a %d-byte request)" % (what, how, len(answer), len(d)))
        else:
            self.ep.sock.sendto(answer, addr)
            self.n["replies" if akind == REPLY else "declines"] += 1
            print("%s: %s; %s of %d bytes" % (what, how, KIND_NAMES[akind], len(abody)))
        if not hit and self.count and self.n["handled"] >= self.count:
            self.stop = True

    def run(self):
        while not self.stop:
            left = self.deadline - time.monotonic()
            if left <= 0:
                break
            try:
                r, _, _ = select.select([self.ep.sock], [], [], min(left, 0.5))
            except InterruptedError:
                continue
            if r:
                d, addr = self.ep.sock.recvfrom(RECV_BUF)
                self.serve_one(d, addr)
        print("peer server stats: " + ", ".join("%s %d" % kv for kv in self.n.items()))
        return 0


def cmd_server(a):
    keys, kid = load_keys(a)
    fam = socket.AF_INET6 if ":" in a.host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_DGRAM)
    s.bind((a.host, a.port))
    srv = Server(Endpoint(s, keys, kid), a.decline_on.encode() if a.decline_on is not None else None,
                 a.guard, a.count, a.seconds)

    def on_term(signum, frame):
        srv.stop = True
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    print("Listening at %s%s" % (fmt_addr(s.getsockname()),
                                 ", sealed with key ID %d" % kid if keys else ""), flush=True)
    return srv.run()


# --- client ---------------------------------------------------------------------


def cmd_client(a):
    keys, kid = load_keys(a)
    if a.size is not None:
        body = bytes((i * 7 + 3) & 0xFF for i in range(a.size))
    else:
        body = a.message.encode()
    info = socket.getaddrinfo(a.host, a.port, 0, socket.SOCK_DGRAM)[0]
    s = socket.socket(info[0], socket.SOCK_DGRAM)
    s.connect(info[4])  # answers only from the address we send to
    ep = Endpoint(s, keys, kid)
    rid = struct.unpack(">Q", os.urandom(8))[0]
    clock = now_ms()  # the request's first transmission; every one carries it
    st = dict(attempt=0, cookie=None, sent=set(), echoes=0)
    rto = a.rto_ms / 1000.0

    def send():
        st["attempt"] += 1
        if st["attempt"] > 65535:
            return False
        flags, b = (F_COOKIE, st["cookie"] + body) if st["cookie"] else (0, body)
        s.send(ep.wrap(encode(REQUEST, st["attempt"], rid, b, flags), clock=clock))
        st["sent"].add(st["attempt"])
        print("client: sent request %016x attempt %d (%d bytes%s)" % (
            rid, st["attempt"], len(body), ", with a cookie" if flags else ""), flush=True)
        return True

    def exchange(limit):
        """Sends until an answer; (kind, body) or None on timeout."""
        tries = 0
        while tries < limit:
            if not send():
                return None
            tries += 1
            wait_until = time.monotonic() + rto
            while True:
                left = wait_until - time.monotonic()
                if left <= 0:
                    break
                r, _, _ = select.select([s], [], [], left)
                if not r:
                    break
                try:
                    d = s.recv(RECV_BUF)
                except ConnectionRefusedError:
                    print("client: refused (ICMP port unreachable)")
                    continue
                try:
                    _, _, (kind, attempt, flags, xid, b) = ep.unwrap(d)
                except (NotOpened, Malformed) as e:
                    print("client: drop: %s" % e)
                    continue
                if kind == REQUEST or xid != rid or attempt not in st["sent"]:
                    print("client: drop: %s %016x attempt %d not ours" % (KIND_NAMES[kind], xid, attempt))
                    continue
                if kind == ECHO:
                    st["echoes"] += 1
                    if st["echoes"] > 4:  # a server that never takes our cookie
                        print("client: drop: echo number %d" % st["echoes"])
                        continue
                    print("client: echo for attempt %d: sending again with the cookie" % attempt)
                    st["cookie"] = b
                    wait_until = 0  # resend at once (does not use up --attempts)
                    tries -= 1
                    break
                return kind, b
        return None

    rc = 0
    rounds = 2 if a.again else 1
    answers = []
    for _ in range(rounds):
        got = exchange(a.attempts)
        if got is None:
            print("client: timeout after attempt %d" % st["attempt"])
            return 1
        answers.append(got)
        kind, b = got
        if kind == DECLINE:
            print("client: declined (attempt %d)" % st["attempt"])
            rc = 3
        else:
            print("client: reply of %d bytes, sha256 %s" % (len(b), hashlib.sha256(b).hexdigest()))
            if len(b) <= 200:
                print("client: reply %r" % b)
    if a.out:
        with open(a.out, "wb") as f:
            f.write(answers[-1][1])
    if a.again:
        if answers[0] != answers[1]:
            print("client: the same request got another answer the second time")
            return 4
        print("client: the same request got the same answer twice")
    return rc


def load_keys(a):
    if a.key is None:
        return None, None
    return {a.key_id: read_key(a.key)}, a.key_id


def main():
    p = argparse.ArgumentParser(prog="udprr_peer.py")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("selftest")
    sp = sub.add_parser("server")
    sp.add_argument("--port", type=int, required=True)
    sp.add_argument("--host", default="127.0.0.1")
    sp.add_argument("--count", type=int, default=0)
    sp.add_argument("--seconds", type=float, default=20.0)
    sp.add_argument("--decline-on")
    sp.add_argument("--guard", type=int, default=0)
    cp = sub.add_parser("client")
    cp.add_argument("host")
    cp.add_argument("port", type=int)
    cp.add_argument("message", help="the body (\"\" for none; ignored with --size)")
    cp.add_argument("--attempts", type=int, default=5)
    cp.add_argument("--rto-ms", type=int, default=300)
    cp.add_argument("--size", type=int)
    cp.add_argument("--again", action="store_true")
    cp.add_argument("--out")
    for x in (sp, cp):
        x.add_argument("--key")
        x.add_argument("--key-id", type=int, default=1)
    a = p.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    if a.cmd == "selftest":
        return selftest()
    if a.cmd == "server":
        return cmd_server(a)
    return cmd_client(a)


if __name__ == "__main__":
    sys.exit(main())
