/* SPDX-License-Identifier: MIT */
/*
 * fuzz_server.c - a libFuzzer target for the server's datagram path:
 * decode, reply-cache lookup and insert with time moving on, the handler,
 * deferred answers given at once, later or never, and the answers' encode,
 * through server_hooks.h (no datagram goes to a socket). Built by `make
 * fuzz`; tests/unit_fuzz_replay replays fuzz/corpus/server in make check.
 *
 * The input is a program. Its first byte picks the framing (native,
 * id-at-offset, raw, or native sealed with keys 1 and 2) and the
 * handler's habits; then each operation is a byte and its operands:
 *   feed     a datagram from one of four peers: fuzz bytes, or a request
 *            well formed from a small set of IDs and bodies (so that
 *            retransmissions, reused IDs and cache hits happen); sealed,
 *            either of those sealed with key 1 or 2, a key the server
 *            lacks, a wrong secret, a clock inside or outside the replay
 *            window, then maybe a byte flipped, or left plain
 *   advance  the clock moves on (up to ~2 s), deferred lifetimes end;
 *            sealed, the server's keys may change between {1, 2} and {2}
 *   answer   a deferred request is answered or declined through its token
 * It checks what must hold, not only that nothing crashes:
 *   - every datagram received is counted in exactly one way: received ==
 *     handled + cache_hits + deferred_retransmissions + dropped_malformed
 *     + dropped_unexpected + dropped_auth + dropped_clock;
 *   - sealed, every answer opens with the server's keys, and a datagram
 *     that does not open is never answered;
 *   - the cache never holds more than its bounds; no more than
 *     max_deferred requests wait;
 *   - every answer is well formed in the framing, goes to a peer that sent
 *     a request with its ID, and is counted in answered;
 *   - an answer sent while a datagram is handled answers that very
 *     datagram: its body is that request's bytes (the handler echoes
 *     them) or "later" (an answer given through a token, then cached), so
 *     a cached answer never goes to a request with other bytes; nothing
 *     answers a datagram that is not a request;
 *   - no answer sent while a datagram is handled is over 3 times that
 *     datagram (native framing: the amplification guard), but an echo;
 *   - at close, every deferred request is declined (native framing).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "framing.h"
#include "seal.h"
#include "server_hooks.h"
#include "udprr.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define PEERS 4
#define MAX_OPS 64
#define CACHE_ENTRIES 6
#define CACHE_BYTES (6 * UDPRR_CACHE_ENTRY_OVERHEAD + 256)
#define MAX_DEFERRED 3
#define LIFETIME_MS 500
/* The sealed server's cache lifetime, and so its replay window (half of
 * it), are long: the window is checked against the wall clock, which
 * moves on between a datagram's sealing and its check, by much more than
 * usual under valgrind on a loaded machine. Every clock the run seals
 * with is at least 10 s from the window's edge. */
#define SEALED_LIFETIME_MS 60000
#define WINDOW_MS (SEALED_LIFETIME_MS / 2)

#define CHECK(cond)                                                            \
    do {                                                                       \
        if (!(cond))                                                           \
            abort();                                                           \
    } while (0)

/* The input, read from the front. */
struct input {
    const uint8_t *p;
    size_t left;
};

static unsigned take(struct input *in)
{
    if (in->left == 0)
        return 0;
    in->left--;
    return *in->p++;
}

/* What one run knows. */
struct run {
    udprr_server *s;
    struct udprr__framing framing;
    unsigned habits;          /* the handler's: from the first byte */
    struct input *in;
    uint64_t tokens[8];       /* deferred tokens not yet answered */
    size_t n_tokens;
    uint64_t sent_ids[PEERS][16]; /* IDs each peer sent (ring) */
    unsigned n_sent[PEERS];
    uint64_t answers;         /* answers the hook saw */
    int in_handler;
    int feeding;              /* a datagram is being handled: */
    const uint8_t *fed;       /* ... its request's bytes, as the */
    size_t fed_len;           /*     handler sees them, */
    size_t fed_datagram_len;  /*     and its whole size */
    int sealed;               /* the server holds keys 1 and 2 */
    struct udprr__keyring ring; /* ... and the answers open with them */
    int key1_live;            /* the server holds key 1 now */
};

/* The sealed server's keys, and one it never holds. */
static const udprr_key key1 = {1, {0x11, 0x22}}, key2 = {2, {0x33}},
                       key1_forged = {1, {0x11, 0x23}},
                       key_unknown = {7, {0x44}};

static struct sockaddr_in peer_addr(unsigned i)
{
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)(40000 + i));
    a.sin_addr.s_addr = htonl(0x7f000001u + (i & 1)); /* 127.0.0.1, .2 */
    return a;
}

static int peer_index(const struct sockaddr *sa)
{
    const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
    if (sa->sa_family != AF_INET)
        return -1;
    for (unsigned i = 0; i < PEERS; i++) {
        struct sockaddr_in b = peer_addr(i);
        if (a->sin_port == b.sin_port && a->sin_addr.s_addr == b.sin_addr.s_addr)
            return (int)i;
    }
    return -1;
}

/* Whether peer sent a request with that ID (a peer that sent more than
 * 16 is not checked). */
static int was_sent(const struct run *r, unsigned peer, uint64_t id)
{
    if (r->n_sent[peer] >= 16)
        return 1;
    for (unsigned i = 0; i < r->n_sent[peer]; i++)
        if (r->sent_ids[peer][i] == id)
            return 1;
    return 0;
}


static void on_answer(void *ctx, const struct sockaddr *peer,
                      socklen_t peer_len, const void *header,
                      size_t header_len, const void *body, size_t body_len)
{
    struct run *r = ctx;
    CHECK(peer_len == sizeof(struct sockaddr_in));
    int p = peer_index(peer);
    CHECK(p >= 0);
    r->answers++;
    /* The datagram as it would leave, decoded as a client would. */
    static uint8_t dgram[UDPRR_MAX_DATAGRAM];
    CHECK(header_len + body_len <= sizeof dgram);
    if (header_len > 0)
        memcpy(dgram, header, header_len);
    if (body_len > 0)
        memcpy(dgram + header_len, body, body_len);
    uint8_t *inner = dgram;
    size_t inner_len = header_len + body_len;
    if (r->sealed) {
        /* Sealed whole, with a key the server holds. */
        uint32_t key_id;
        uint64_t clock_ms;
        CHECK(header_len == 0);
        CHECK(udprr__seal_open(&r->ring, dgram, body_len, &key_id, &clock_ms,
                               &inner_len) == UDPRR__SEAL_OPENED);
        inner += UDPRR__SEAL_HEAD_BYTES;
    }
    struct udprr__framed f;
    enum udprr__wire_result wr =
        udprr__framing_parse(&r->framing, inner, inner_len, 1, &f);
    if (r->framing.kind == UDPRR_FRAMING_ID_AT_OFFSET &&
        body_len < r->framing.id_offset + r->framing.id_len) {
        /* An answer too short to hold the ID goes out as the handler
         * wrote it (udprr.h says so); nothing to match. */
        return;
    }
    CHECK(wr == UDPRR__WIRE_VALID);
    CHECK(f.kind == UDPRR__KIND_REPLY || f.kind == UDPRR__KIND_DECLINE ||
          f.kind == UDPRR__KIND_ECHO);
    /* The amplification guard: no answer over 3 times its request to a
     * peer that showed no cookie (no fed datagram here carries a good
     * one), only an echo of 36 bytes instead. */
    if (r->feeding && r->framing.kind == UDPRR_FRAMING_NATIVE)
        CHECK(header_len + body_len <= 3 * r->fed_datagram_len ||
              f.kind == UDPRR__KIND_ECHO);
    if (udprr__framing_has_id(&r->framing))
        CHECK(was_sent(r, (unsigned)p, f.id));
    if (r->feeding && f.kind == UDPRR__KIND_REPLY) {
        /* "later" as the server sends it: in id-at-offset framing with
         * the request's ID written over its first bytes. */
        uint8_t later[5];
        memcpy(later, "later", 5);
        udprr__framing_reply_id(&r->framing, f.id, later, sizeof later);
        CHECK((f.body_len == r->fed_len &&
               memcmp(f.body, r->fed, f.body_len) == 0) ||
              (f.body_len == 5 && memcmp(f.body, later, 5) == 0));
    }
}

/* The handler: its answer depends on the request's bytes alone (so a
 * cached answer can be checked against it), its result on the habits. */
static int handler(void *user, const udprr_request *req, void *reply,
                   size_t cap, size_t *reply_len)
{
    struct run *r = user;
    CHECK(!r->in_handler);
    r->in_handler = 1;
    unsigned pick = take(r->in);
    int rc = UDPRR_REPLY;
    switch ((pick + r->habits) % 6) {
    case 0:
        rc = UDPRR_DECLINE;
        break;
    case 1:
        rc = UDPRR_NO_REPLY;
        break;
    case 2:
    case 3:
        if (req->token != 0) {
            rc = UDPRR_DEFER;
            if (pick & 0x40) /* answered at once, from inside */
                CHECK(udprr_server_reply(r->s, req->token, req->data,
                                         req->len) == UDPRR_OK);
            else if (r->n_tokens < 8)
                r->tokens[r->n_tokens++] = req->token;
        }
        break;
    default:
        break;
    }
    size_t n = req->len < cap ? req->len : cap;
    if (n > 0)
        memcpy(reply, req->data, n);
    *reply_len = n;
    r->in_handler = 0;
    return rc;
}

/* ticked: right after a tick, when no answer given through a token is
 * still waiting to be sent (until then its request counts as pending,
 * though its place in the table is free again). */
static void check_counters(const struct run *r, int ticked)
{
    struct udprr_server_stats st = {.size = sizeof st};
    CHECK(udprr_server_stats(r->s, &st) == UDPRR_OK);
    CHECK(st.received == st.handled + st.cache_hits +
                             st.deferred_retransmissions +
                             st.dropped_malformed + st.dropped_unexpected +
                             st.dropped_auth + st.dropped_clock);
    if (!r->sealed)
        CHECK(st.dropped_auth == 0 && st.dropped_clock == 0);
    CHECK(st.cache_entries <= CACHE_ENTRIES);
    CHECK(st.cache_bytes <= CACHE_BYTES);
    if (ticked)
        CHECK(st.deferred_pending <= MAX_DEFERRED);
    CHECK(st.answered == r->answers);
}

/* A datagram to feed: fuzz bytes, or a well-formed request. */
static size_t make_datagram(struct run *r, unsigned peer, uint8_t *out,
                            size_t cap)
{
    unsigned how = take(r->in);
    if (how & 1) {
        size_t n = take(r->in) % 64;
        if (n > r->in->left)
            n = r->in->left;
        memcpy(out, r->in->p, n);
        r->in->p += n;
        r->in->left -= n;
        return n;
    }
    /* IDs from a set of four, bodies from a set of three: retransmissions
     * and reused IDs are common. */
    uint64_t id = 0x1000 + ((how >> 1) & 3);
    unsigned attempt = 1 + ((how >> 3) & 3);
    static const char *bodies[3] = {"alpha", "beta", "alpha?"};
    const char *body = bodies[(how >> 5) % 3];
    uint8_t tmp[64];
    memset(tmp, 0, sizeof tmp);
    memcpy(tmp + 8, body, strlen(body));
    size_t body_len = 8 + strlen(body);
    size_t len = 0;
    if (r->framing.kind == UDPRR_FRAMING_ID_AT_OFFSET)
        id &= 0xffff;
    if (udprr__framing_request(&r->framing, id, attempt, tmp, body_len, out,
                               &len) != UDPRR_OK ||
        len > cap)
        return 0;
    (void)peer;
    return len;
}

/* Seals datagram[0..len) (room for UDPRR_SEAL_OVERHEAD more) as the
 * input says: with either key, a key the server lacks or a wrong secret,
 * a clock inside or well outside the window, maybe a byte flipped after;
 * or leaves it plain. Returns its length now; *opens: whether the server
 * can open it and take it in its window. */
static size_t seal_datagram(struct run *r, uint8_t *datagram, size_t len,
                            int *opens)
{
    static const int64_t offsets_ms[4] = {0, WINDOW_MS / 2, -WINDOW_MS / 2,
                                          0};
    unsigned how = take(r->in);
    const udprr_key *keys[4] = {&key1, &key2, &key_unknown, &key1_forged};
    *opens = 0;
    if ((how & 7) == 7)
        return len; /* plain */
    int64_t skew = (how & 0x20) ? ((how & 0x40) ? 1 : -1) *
                                      (int64_t)(WINDOW_MS + 10000)
                                : offsets_ms[(how >> 6) & 3];
    const udprr_key *key = keys[(how >> 3) & 3];
    uint8_t inner[256];
    memcpy(inner, datagram, len);
    len = udprr__seal(key, udprr__seal_clock_ms() + (uint64_t)skew, inner, len,
                      datagram);
    *opens = ((key == &key1 && r->key1_live) || key == &key2) &&
             !(how & 0x20);
    if (how & 4) {
        unsigned at = take(r->in);
        datagram[at % len] ^= (uint8_t)(1u << (how & 3));
        *opens = 0;
    }
    return len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct input in = {data, size};
    struct run r;
    memset(&r, 0, sizeof r);
    r.in = &in;
    unsigned first = take(&in);
    r.habits = first >> 2;
    static const struct udprr__framing framings[4] = {
        {UDPRR_FRAMING_NATIVE, 0, 0, 0},
        {UDPRR_FRAMING_ID_AT_OFFSET, 0, 2, 0},
        {UDPRR_FRAMING_RAW, 0, 0, 0},
        {UDPRR_FRAMING_NATIVE, 0, 0, 1}};
    r.framing = framings[first & 3];
    r.sealed = r.framing.sealed;
    r.key1_live = 1;
    const udprr_key both[2] = {key1, key2};
    CHECK(udprr__keyring_set(&r.ring, both, 2) == UDPRR_OK);

    udprr_server_opts o;
    udprr_server_opts_init(&o);
    o.framing = r.framing.kind;
    o.id_offset = r.framing.id_offset;
    o.id_len = r.framing.id_len ? r.framing.id_len : 2;
    o.cache_entries = CACHE_ENTRIES;
    o.cache_bytes = CACHE_BYTES;
    o.cache_lifetime_ms = r.sealed ? SEALED_LIFETIME_MS : LIFETIME_MS;
    o.max_deferred = MAX_DEFERRED;
    o.deferred_lifetime_ms = LIFETIME_MS / 2;
    if (r.sealed) {
        o.keys = both;
        o.n_keys = 2;
    }
    if (udprr_server_open(&r.s, "127.0.0.1", "0", &o) != UDPRR_OK)
        return 0; /* no socket to be had: nothing to test */
    udprr__server_set_tx_hook(r.s, on_answer, &r);

    uint64_t now = 1000000;
    for (int op = 0; op < MAX_OPS && in.left > 0; op++) {
        unsigned what = take(&in) % 4;
        int ticked = 0;
        if (what <= 1) {
            unsigned peer = take(&in) % PEERS;
            static uint8_t dgram[256 + UDPRR_SEAL_OVERHEAD];
            size_t len = make_datagram(&r, peer, dgram, 256);
            struct sockaddr_in a = peer_addr(peer);
            /* What the answer must echo, before the server may write to
             * the datagram. */
            struct udprr__framed f;
            static uint8_t body[256];
            int is_request =
                udprr__framing_parse(&r.framing, dgram, len, 0, &f) ==
                    UDPRR__WIRE_VALID &&
                f.kind == UDPRR__KIND_REQUEST;
            if (is_request) {
                memcpy(body, f.body, f.body_len);
                r.fed = body;
                r.fed_len = f.body_len;
                if (r.n_sent[peer] < 16)
                    r.sent_ids[peer][r.n_sent[peer]++] = f.id;
            }
            /* Sealed after its body is copied: sealing overwrites it. */
            int opens = 1;
            if (r.sealed)
                len = seal_datagram(&r, dgram, len, &opens);
            uint64_t answers_before = r.answers;
            r.fed_datagram_len = len;
            r.feeding = 1;
            udprr__server_feed(r.s, dgram, len, (struct sockaddr *)&a,
                               sizeof a, handler, &r, now);
            r.feeding = 0;
            if (!is_request || !opens)
                CHECK(r.answers == answers_before);
        } else if (what == 2) {
            unsigned step = take(&in);
            now += (uint64_t)step * 8000; /* up to ~2 s */
            if (r.sealed && (step & 1)) {
                r.key1_live = (step & 2) != 0;
                CHECK(udprr_server_set_keys(r.s, r.key1_live ? both : &key2,
                                            r.key1_live ? 2 : 1) == UDPRR_OK);
            }
            udprr__server_tick(r.s, now);
            ticked = 1;
        } else if (r.n_tokens > 0) {
            unsigned i = take(&in) % r.n_tokens;
            uint64_t token = r.tokens[i];
            r.tokens[i] = r.tokens[--r.n_tokens];
            int rc = (take(&in) & 1)
                         ? udprr_server_decline(r.s, token)
                         : udprr_server_reply(r.s, token, "later", 5);
            /* Its lifetime may have ended already. */
            CHECK(rc == UDPRR_OK || rc == UDPRR_ENOTPENDING);
            udprr__server_tick(r.s, now);
            ticked = 1;
        }
        check_counters(&r, ticked);
    }
    /* Every key back, so that every deferred request can be declined. */
    if (r.sealed) {
        CHECK(udprr_server_set_keys(r.s, both, 2) == UDPRR_OK);
        udprr__server_tick(r.s, now);
    }
    struct udprr_server_stats st = {.size = sizeof st};
    CHECK(udprr_server_stats(r.s, &st) == UDPRR_OK);
    uint64_t waiting = st.deferred_pending, before = r.answers;
    udprr_server_close(r.s);
    /* The close answered (declined, in native framing) every request
     * still deferred; in the others a decline is not sent. */
    if (r.framing.kind == UDPRR_FRAMING_NATIVE)
        CHECK(r.answers == before + waiting);
    return 0;
}
