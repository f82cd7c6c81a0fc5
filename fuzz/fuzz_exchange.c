/* SPDX-License-Identifier: MIT */
/*
 * fuzz_exchange.c - a libFuzzer target for the client's engine
 * (lib/exchange.c). Build with `make fuzz` (clang's -fsanitize=fuzzer);
 * without a fuzzing engine, tests/unit_fuzz_replay.c replays the saved
 * inputs in fuzz/corpus/exchange in `make check`.
 *
 * The input is a program run on one engine, with a fake send step (it
 * records every transmission, and fails as the program says), a random
 * source fed from the input and a clock that only moves forward by the
 * amounts the input gives.
 *
 *   setup     8 bytes (see setup()): framing (native, raw, id-at-offset
 *             with id_len 1..8 and offset 0..16), 1..4 endpoints, failover
 *             mode, jitter, the start time, max_attempts, deadline, windows,
 *             max_pending and max_pending_bytes, the RTO, the endpoints'
 *             retry back-off, where random numbers come from
 *   then ops  one byte each, modulo OP_COUNT, then its operands: submit,
 *             cancel, time passes (timers), a datagram (input bytes, or a
 *             well-formed reply or decline to a recorded transmission,
 *             which can be duplicated or stale), refused, fail_all,
 *             shutdown, faults for the send step, the random source and
 *             the allocator
 *
 * A submit also says what its done callback does: nothing, submit, cancel
 * or shut the engine down.
 *
 * What it checks beyond "no crash, no leak" (the sanitizers see those),
 * after every operation and inside every callback, aborting on a
 * violation: each request's done is called once at most, never from
 * inside submit, and for every accepted request by the end (destroy); the
 * counters add up (udprr.h, udprr_client_stats) and match what the fake
 * saw (transmissions, send errors, statuses reported to done); the
 * endpoints' in_flight sum to the engine's; a first transmission goes to an
 * endpoint with room in its window; raw framing never has two in flight;
 * max_pending and max_pending_bytes hold; nothing goes to an endpoint that
 * does not exist; cancel and submit return what their contract says.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "exchange.h"
#include "framing.h"
#include "udprr.h"
#include "wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FX_MAX_EP 4         /* endpoints, at most */
#define FX_MAX_REQS 512     /* requests submitted per run, at most */
#define FX_MAX_OPS 2048     /* operations per run, at most */
#define FX_SENT_RING 64     /* transmissions remembered */
#define FX_SENT_KEEP 32     /* bytes kept of each */
#define FX_MAX_DEPTH 4      /* callbacks inside callbacks */
#define FX_MAX_GEN 3        /* requests submitted by callbacks in a chain */
#define FX_PERSISTENT 0xffffu /* a fault that lasts until changed */

#define FX_CHECK(cond)                                                         \
    do {                                                                       \
        if (!(cond))                                                           \
            abort();                                                           \
    } while (0)

enum { ACT_NONE, ACT_SUBMIT, ACT_CANCEL, ACT_CANCEL_NEWEST, ACT_SHUTDOWN,
       ACT_COUNT };

enum { OP_SUBMIT, OP_CANCEL, OP_TIMERS, OP_DATAGRAM, OP_REPLY, OP_REFUSED,
       OP_FAIL_ALL, OP_SHUTDOWN, OP_SEND_FAULT, OP_RANDOM_FAIL,
       OP_ALLOC_FAIL, OP_COUNT };

struct fx_req {
    int submitted;   /* submit returned UDPRR_OK */
    uint64_t ticket; /* then: its ticket */
    int done_calls;
    int status;      /* what done was told */
    unsigned action; /* what done does (ACT_*) */
    unsigned arg;
    unsigned gen;    /* 0: submitted by an operation */
};

struct fx_sent {
    unsigned endpoint;
    size_t len;
    uint8_t head[FX_SENT_KEEP];
    struct udprr__wire_header hdr; /* native framing */
};

struct fx_world {
    struct udprr__exchange x;
    const uint8_t *in;
    size_t pos, end;   /* operations read in[pos..), random bytes in[..end) */
    int random_from_input;
    uint64_t rng;      /* else an xorshift seeded by the setup */
    uint64_t now;

    struct fx_req reqs[FX_MAX_REQS];
    size_t nreqs;
    uint64_t last_ticket;
    uint64_t accepted; /* submits that returned UDPRR_OK */

    struct fx_sent sent[FX_SENT_RING];
    uint64_t nsent;    /* recorded transmissions (attempts) */
    uint64_t send_errors;
    uint64_t ep_attempts[FX_MAX_EP];
    int last_send_ep;
    int refused_since_attempt; /* a send was refused since on_attempt */

    unsigned fault_kind[FX_MAX_EP];
    unsigned fault_left[FX_MAX_EP];
    unsigned random_fail_left;
    unsigned alloc_fail_left;

    uint64_t ends[6]; /* done statuses, by the counter each belongs in */
    int in_submit;
    int in_fail_all;
    int depth;
};

static struct fx_world W;

/* --- the input ----------------------------------------------------------- */

static int more(void)
{
    return W.pos < W.end;
}

static uint8_t take(void)
{
    return W.pos < W.end ? W.in[W.pos++] : 0;
}

static uint64_t xorshift(void)
{
    W.rng ^= W.rng << 13;
    W.rng ^= W.rng >> 7;
    W.rng ^= W.rng << 17;
    return W.rng;
}

/* --- the fakes ----------------------------------------------------------- */

static size_t ep_count(void)
{
    return W.x.n_ep;
}

static int fake_send(void *ctx, unsigned endpoint, const void *buf, size_t len,
                     uint64_t clock_ms)
{
    (void)ctx;
    FX_CHECK(clock_ms == 0); /* no clock given: none read */
    const struct udprr__framing *f = &W.x.framing;
    FX_CHECK(endpoint < ep_count());
    FX_CHECK(len >= udprr__framing_overhead(f) && len <= UDPRR_MAX_DATAGRAM);
    /* At a send, raw framing has at most the lone request in flight. */
    FX_CHECK(f->kind != UDPRR_FRAMING_RAW || W.x.in_flight <= 1);
    /* Read every byte: ASan sees a datagram longer than its buffer. */
    const uint8_t *p = buf;
    uint8_t sum = 0;
    for (size_t i = 0; i < len; i++)
        sum ^= p[i];
    (void)sum;
    struct udprr__framed fr;
    FX_CHECK(udprr__framing_parse(f, buf, len, 0, &fr) == UDPRR__WIRE_VALID);
    FX_CHECK(fr.kind == UDPRR__KIND_REQUEST);
    FX_CHECK(f->kind != UDPRR_FRAMING_NATIVE || fr.attempt >= 1);

    int rc = UDPRR_OK;
    if (W.fault_left[endpoint] > 0) {
        static const int faults[] = {UDPRR_OK, UDPRR_EREFUSED, UDPRR_ETOOBIG,
                                     UDPRR_ESYS};
        rc = faults[W.fault_kind[endpoint] % 4];
        if (W.fault_left[endpoint] != FX_PERSISTENT)
            W.fault_left[endpoint]--;
    }
    if (rc == UDPRR_EREFUSED || rc == UDPRR_ETOOBIG) {
        W.refused_since_attempt = 1;
        return rc; /* never went out */
    }
    struct fx_sent *s = &W.sent[W.nsent % FX_SENT_RING];
    W.nsent++;
    if (rc != UDPRR_OK)
        W.send_errors++;
    W.ep_attempts[endpoint]++;
    W.last_send_ep = (int)endpoint;
    s->endpoint = endpoint;
    s->len = len;
    memset(s->head, 0, sizeof s->head);
    memcpy(s->head, buf, len < FX_SENT_KEEP ? len : FX_SENT_KEEP);
    s->hdr.kind = fr.kind;
    s->hdr.id = fr.id;
    s->hdr.attempt = (uint16_t)fr.attempt;
    return rc;
}

static int fake_random64(void *ctx, uint64_t *out)
{
    (void)ctx;
    if (W.random_fail_left > 0) {
        W.random_fail_left--;
        return UDPRR_ESYS;
    }
    if (W.random_from_input && W.end >= W.pos + 8) {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
            v = v << 8 | W.in[--W.end];
        *out = v;
    } else {
        *out = xorshift();
    }
    return UDPRR_OK;
}

static void fake_on_attempt(void *ctx, uint64_t id, unsigned attempt,
                            uint64_t wait_us, uint64_t rto_us, size_t len)
{
    (void)ctx;
    (void)wait_us;
    (void)rto_us;
    (void)len;
    const struct udprr__framing *f = &W.x.framing;
    FX_CHECK(attempt >= 1 && W.nsent > 0 && W.last_send_ep >= 0);
    /* Told after the transmission it names: the latest one recorded. */
    const struct fx_sent *s = &W.sent[(W.nsent - 1) % FX_SENT_RING];
    if (f->kind == UDPRR_FRAMING_NATIVE)
        FX_CHECK(s->hdr.id == id && s->hdr.attempt == attempt);
    else if (f->kind == UDPRR_FRAMING_ID_AT_OFFSET)
        FX_CHECK(s->hdr.id == id);
    const struct udprr__xendpoint *e = &W.x.ep[W.last_send_ep];
    /* A first transmission goes where the window had room (unless a
     * refusal moved it on: failover does not wait for a window). */
    if (attempt == 1 && !W.refused_since_attempt)
        FX_CHECK(e->in_flight <= e->window.size);
    if (attempt == 1 && udprr__framing_has_id(f) &&
        udprr__framing_id_mask(f) != UINT64_MAX)
        FX_CHECK(W.x.in_flight <= udprr__framing_id_mask(f) + 1);
    W.refused_since_attempt = 0;
}

static void *fx_malloc(size_t n)
{
    if (W.alloc_fail_left > 0) {
        W.alloc_fail_left--;
        return NULL;
    }
    return malloc(n);
}

static void *fx_calloc(size_t c, size_t n)
{
    if (W.alloc_fail_left > 0) {
        W.alloc_fail_left--;
        return NULL;
    }
    return calloc(c, n);
}

static void *fx_realloc(void *p, size_t n)
{
    if (W.alloc_fail_left > 0) {
        W.alloc_fail_left--;
        return NULL;
    }
    return realloc(p, n);
}

/* --- the invariants ------------------------------------------------------ */

static int end_index(int status)
{
    switch (status) {
    case UDPRR_OK: return 0;
    case UDPRR_ETIMEDOUT: return 1;
    case UDPRR_EREFUSED: return 2;
    case UDPRR_EREMOTE: return 3;
    case UDPRR_ECANCELED: return 4;
    default: return 5;
    }
}

/* What holds at any time, inside callbacks too. */
static void check_counters(void)
{
    const struct udprr__exchange *x = &W.x;
    const struct udprr__exchange_counters *s = &x->stats;
    uint64_t ended = s->completed + s->timeouts + s->refused + s->declined +
                     s->canceled + s->failed;
    FX_CHECK(s->attempts + s->unsent + x->queued ==
             s->requests + s->retransmissions);
    FX_CHECK(s->requests == x->in_flight + x->queued + ended);
    FX_CHECK(s->requests == W.accepted);
    FX_CHECK(s->completed == W.ends[0] && s->timeouts == W.ends[1] &&
             s->refused == W.ends[2] && s->declined == W.ends[3] &&
             s->canceled == W.ends[4] && s->failed == W.ends[5]);
    FX_CHECK(s->attempts == W.nsent && s->send_errors == W.send_errors);
    FX_CHECK(s->retransmissions <= s->attempts);
    size_t sum = 0;
    for (unsigned i = 0; i < UDPRR__XCHG_MAX_ENDPOINTS; i++) {
        if (i >= x->n_ep) {
            FX_CHECK(x->ep[i].in_flight == 0 && x->ep[i].stats.attempts == 0);
            continue;
        }
        sum += x->ep[i].in_flight;
        FX_CHECK(x->ep[i].stats.attempts == W.ep_attempts[i]);
    }
    FX_CHECK(sum == x->in_flight);
    if (x->framing.kind == UDPRR_FRAMING_RAW)
        FX_CHECK(x->in_flight <= 1);
    if (x->limits.max_pending > 0)
        FX_CHECK(x->in_flight + x->queued <= x->limits.max_pending);
    if (x->limits.max_pending_bytes > 0)
        FX_CHECK(x->pending_bytes <= x->limits.max_pending_bytes);
    FX_CHECK(x->refused_pending < (UINT32_C(1) << x->n_ep));
}

/* What holds between operations. */
static void check_between(void)
{
    const struct udprr__exchange *x = &W.x;
    check_counters();
    FX_CHECK(x->pending == x->in_flight + x->queued);
    FX_CHECK(x->by_ticket.count == x->pending);
    if (udprr__framing_has_id(&x->framing))
        FX_CHECK(x->by_id.count == x->in_flight);
    uint64_t when = 0;
    FX_CHECK(udprr__exchange_next_timer(x, &when) == (x->pending > 0));
    FX_CHECK(udprr__exchange_best(x, W.now) < x->n_ep);
    if (x->shut)
        FX_CHECK(x->pending == 0 && x->pending_bytes == 0);
    if (x->pending == 0)
        FX_CHECK(x->pending_bytes == 0);
    size_t pending = 0;
    for (size_t i = 0; i < W.nreqs; i++) {
        const struct fx_req *q = &W.reqs[i];
        FX_CHECK(q->done_calls <= (q->submitted ? 1 : 0));
        pending += q->submitted && q->done_calls == 0;
    }
    FX_CHECK(pending == x->pending);
}

/* --- the operations ------------------------------------------------------ */

static void submit(const void *body, size_t len, uint64_t deadline,
                   unsigned action, unsigned arg, unsigned gen);

static int cancel(size_t which, int status);

static void fx_shutdown(void)
{
    W.in_fail_all++;
    udprr__exchange_shutdown(&W.x);
    W.in_fail_all--;
}

static void on_done(void *user, int status, const void *reply, size_t len)
{
    struct fx_req *q = user;
    FX_CHECK(W.in_submit == 0);
    FX_CHECK(q->submitted && q->done_calls == 0);
    q->done_calls = 1;
    q->status = status;
    W.ends[end_index(status)]++;
    if (status == UDPRR_OK) {
        FX_CHECK(reply != NULL || len == 0);
        const uint8_t *p = reply;
        uint8_t sum = 0;
        for (size_t i = 0; i < len; i++)
            sum ^= p[i];
        (void)sum;
    } else {
        FX_CHECK(reply == NULL && len == 0);
    }
    check_counters();

    if (W.depth >= FX_MAX_DEPTH)
        return;
    W.depth++;
    switch (q->action) {
    case ACT_SUBMIT: {
        /* Long enough to hold any id-at-offset ID. */
        uint8_t body[32];
        memset(body, (int)q->arg, sizeof body);
        size_t n = W.x.framing.id_offset + W.x.framing.id_len + q->arg % 8;
        unsigned act = q->gen + 1 < FX_MAX_GEN ? q->action : ACT_NONE;
        submit(body, n < sizeof body ? n : sizeof body, q->arg % 3 * 1000,
               act, q->arg + 1, q->gen + 1);
        break;
    }
    case ACT_CANCEL:
        if (W.nreqs > 0)
            cancel(q->arg % W.nreqs, UDPRR_ECANCELED);
        break;
    case ACT_CANCEL_NEWEST:
        if (W.nreqs > 0)
            cancel(W.nreqs - 1, q->arg & 1 ? UDPRR_ESYS : UDPRR_ECANCELED);
        break;
    case ACT_SHUTDOWN:
        fx_shutdown();
        break;
    default:
        break;
    }
    W.depth--;
}

static void submit(const void *body, size_t len, uint64_t deadline,
                   unsigned action, unsigned arg, unsigned gen)
{
    if (W.nreqs == FX_MAX_REQS)
        return;
    struct fx_req *q = &W.reqs[W.nreqs++];
    memset(q, 0, sizeof *q);
    q->action = action;
    q->arg = arg;
    q->gen = gen;
    /* A block of its own size: ASan sees a read past the body. */
    uint8_t *copy = malloc(len ? len : 1);
    FX_CHECK(copy != NULL);
    if (len > 0)
        memcpy(copy, body, len);
    uint64_t before = W.x.stats.requests;
    uint64_t ticket = 0;
    W.in_submit++;
    int rc = udprr__exchange_submit(&W.x, copy, len, W.now, deadline, on_done,
                                    q, &ticket);
    W.in_submit--;
    free(copy);
    if (rc == UDPRR_OK) {
        FX_CHECK(ticket == W.last_ticket + 1);
        FX_CHECK(W.x.stats.requests == before + 1);
        W.last_ticket = ticket;
        q->ticket = ticket;
        q->submitted = 1;
        W.accepted++;
    } else {
        FX_CHECK(W.x.stats.requests == before);
        FX_CHECK(rc == UDPRR_ETOOBIG || rc == UDPRR_EREFUSED ||
                 rc == UDPRR_EBUSY || rc == UDPRR_EINVAL ||
                 rc == UDPRR_ENOMEM || rc == UDPRR_ESYS);
        /* The contract's order: shut down, then too big. */
        if (W.x.shut)
            FX_CHECK(rc == UDPRR_EINVAL);
        else if (len > udprr__framing_max_body(&W.x.framing))
            FX_CHECK(rc == UDPRR_ETOOBIG);
    }
    check_counters();
}

/* Cancels request `which` (W.nreqs: a ticket never given) with status. */
static int cancel(size_t which, int status)
{
    uint64_t ticket = which < W.nreqs ? W.reqs[which].ticket
                                      : W.last_ticket + 1;
    struct fx_req *q = which < W.nreqs ? &W.reqs[which] : NULL;
    int was_pending = q != NULL && q->submitted && q->done_calls == 0;
    int rc = udprr__exchange_cancel(&W.x, ticket, status, W.now);
    if (status == UDPRR_OK) {
        FX_CHECK(rc == UDPRR_EINVAL);
    } else if (rc == UDPRR_OK) {
        FX_CHECK(was_pending && q->done_calls == 1 && q->status == status);
    } else {
        FX_CHECK(rc == UDPRR_ENOTPENDING);
        /* While fail_all runs, the requests it has yet to end are no
         * longer found by ticket. */
        FX_CHECK(!was_pending || W.in_fail_all > 0);
    }
    check_counters();
    return rc;
}

static const int fail_statuses[] = {UDPRR_ECANCELED, UDPRR_ESYS,
                                    UDPRR_ETIMEDOUT, UDPRR_EREFUSED,
                                    UDPRR_EREMOTE,   UDPRR_ETOOBIG};

static void op_submit(void)
{
    static const uint64_t deadlines[] = {0, 0, 1, 1000, 50000, 1000000,
                                         10000000, UINT64_MAX};
    static uint8_t body[UDPRR_MAX_DATAGRAM + 1];
    const struct udprr__framing *f = &W.x.framing;
    uint8_t flags = take();
    uint8_t lb = take();
    size_t need = f->kind == UDPRR_FRAMING_ID_AT_OFFSET
                      ? f->id_offset + f->id_len : 0;
    size_t len;
    switch (lb) {
    case 255: len = udprr__framing_max_body(f) + 1; break;
    case 254: len = udprr__framing_max_body(f); break;
    case 253: len = need > 0 ? need - 1 : 0; break;
    default: len = lb % 64; break;
    }
    if ((flags & 1) && len < need)
        len = need;
    size_t fill = len < 64 ? len : 64;
    for (size_t i = 0; i < fill; i++)
        body[i] = take();
    if (len > fill)
        memset(body + fill, 0x5a, len - fill);
    unsigned action = (flags >> 4) % ACT_COUNT;
    unsigned arg = action != ACT_NONE ? take() : 0;
    submit(body, len, deadlines[(flags >> 1) & 7], action, arg, 0);
}

static void op_cancel(void)
{
    static const int statuses[] = {UDPRR_ECANCELED, UDPRR_ESYS, UDPRR_OK,
                                   UDPRR_ETIMEDOUT};
    uint8_t b = take();
    size_t which = W.nreqs > 0 ? take() % (W.nreqs + 1) : 0;
    cancel(which, statuses[b % 4]);
}

static void op_timers(void)
{
    static const uint64_t scale[] = {1, 100, 1000, 10000, 100000, 1000000,
                                     60000000, 3600000000ull};
    uint8_t b = take();
    uint64_t step;
    if (b < 96) {
        /* To the next timer (or just before or after it). */
        uint64_t when = 0;
        step = 0;
        if (udprr__exchange_next_timer(&W.x, &when) && when > W.now &&
            when != UINT64_MAX) {
            step = when - W.now;
            if (b % 3 == 1 && step > 1)
                step--;
            else if (b % 3 == 2)
                step++;
        }
    } else {
        step = (uint64_t)take() * scale[b % 8];
    }
    /* The clock stops one short of UINT64_MAX, the engine's "no deadline":
     * a clock that reached it would time out requests that have none. */
    W.now = W.now >= UINT64_MAX - 1 - step ? UINT64_MAX - 1 : W.now + step;
    udprr__exchange_timers(&W.x, W.now);
    /* Everything due has fired: what is left fires later, unless a
     * refusal waits to be settled (then the next timer is 0). */
    uint64_t when = 0;
    if (udprr__exchange_next_timer(&W.x, &when) && W.x.refused_pending == 0)
        FX_CHECK(when > W.now);
}

/* Hands buf[0..len) to the engine in a block of its own size. */
static void deliver(unsigned endpoint, const uint8_t *buf, size_t len)
{
    uint8_t *copy = malloc(len ? len : 1);
    FX_CHECK(copy != NULL);
    if (len > 0)
        memcpy(copy, buf, len);
    udprr__exchange_datagram(&W.x, endpoint, copy, len, W.now);
    free(copy);
}

static void op_datagram(void)
{
    uint8_t buf[128];
    unsigned endpoint = take() % (ep_count() + 1); /* one past: ignored */
    size_t len = take() % sizeof buf;
    for (size_t i = 0; i < len; i++)
        buf[i] = take();
    deliver(endpoint, buf, len);
}

/* A well-formed answer to one of the latest transmissions: a reply or a
 * decline, with its ID and attempt (or another attempt), from its
 * endpoint (or another). */
static void op_reply(void)
{
    uint8_t pick = take(), flags = take(), blen = take();
    if (W.nsent == 0)
        return;
    uint64_t kept = W.nsent < FX_SENT_RING ? W.nsent : FX_SENT_RING;
    const struct fx_sent *s = &W.sent[(W.nsent - 1 - pick % kept) %
                                      FX_SENT_RING];
    const struct udprr__framing *f = &W.x.framing;
    unsigned endpoint = s->endpoint;
    if (flags & 2)
        endpoint = (endpoint + 1 + (flags >> 5)) % (unsigned)ep_count();
    uint8_t buf[UDPRR__WIRE_HEADER_BYTES + 64];
    size_t len = 0;
    if (f->kind == UDPRR_FRAMING_NATIVE) {
        size_t n = blen % 32;
        for (size_t i = 0; i < n; i++)
            buf[UDPRR__WIRE_HEADER_BYTES + i] = take();
        struct udprr__wire_header h = s->hdr;
        h.kind = flags & 1 ? UDPRR__KIND_DECLINE : UDPRR__KIND_REPLY;
        if ((flags & 0x1c) == 0x1c)
            h.kind = UDPRR__KIND_REQUEST; /* a request, sent to a client */
        if ((flags & 0x1c) == 0x18) {
            /* An echo: the server wants proof of the client's address,
             * and sends a cookie (16 bytes) for it. */
            h.kind = UDPRR__KIND_ECHO;
            for (size_t i = n; i < UDPRR__WIRE_COOKIE_BYTES; i++)
                buf[UDPRR__WIRE_HEADER_BYTES + i] = take();
            n = UDPRR__WIRE_COOKIE_BYTES;
        }
        if (h.kind == UDPRR__KIND_DECLINE)
            n = 0; /* a decline has no body */
        switch ((flags >> 2) & 3) {
        case 1: h.attempt++; break;       /* a transmission never made */
        case 2: if (h.attempt > 1) h.attempt--; break; /* an earlier one */
        default: break;
        }
        FX_CHECK(udprr__wire_encode(&h, buf + UDPRR__WIRE_HEADER_BYTES, n,
                                    buf) == UDPRR_OK);
        len = UDPRR__WIRE_HEADER_BYTES + n;
    } else {
        /* The request's first bytes (its ID, at the offset), then the
         * input's; or shorter than the ID when flags say so. */
        size_t need = f->kind == UDPRR_FRAMING_ID_AT_OFFSET
                          ? f->id_offset + f->id_len : 0;
        len = need + blen % 24;
        if ((flags & 0x0c) == 0x0c && need > 0)
            len = blen % need;
        size_t keep = s->len < FX_SENT_KEEP ? s->len : FX_SENT_KEEP;
        for (size_t i = 0; i < len; i++)
            buf[i] = i < need && i < keep ? s->head[i] : take();
    }
    deliver(endpoint, buf, len);
}

static void op_refused(void)
{
    udprr__exchange_refused(&W.x, take(), W.now);
}

static void op_fail_all(void)
{
    W.in_fail_all++;
    udprr__exchange_fail_all(&W.x, fail_statuses[take() % 6], W.now);
    W.in_fail_all--;
}

static void op_shutdown(void)
{
    fx_shutdown();
    FX_CHECK(W.x.shut && W.x.pending == 0);
}

static void op_send_fault(void)
{
    unsigned endpoint = take() % (unsigned)ep_count();
    uint8_t v = take();
    W.fault_kind[endpoint] = v % 4;
    W.fault_left[endpoint] = (v >> 2) % 8;
    if (W.fault_left[endpoint] == 0)
        W.fault_left[endpoint] = v % 4 ? FX_PERSISTENT : 0;
}

/* --- a run --------------------------------------------------------------- */

/* The engine's configuration from the first 8 bytes. Returns 0 when the
 * input is too short to hold them. */
static int setup(void)
{
    static const uint64_t starts[] = {0, 1000000, UINT64_C(1) << 40,
                                      UINT64_MAX - (UINT64_C(1) << 36)};
    static const uint64_t deadlines[] = {0, 1000, 20000, 300000, 1000000,
                                         5000000, 60000000, 3600000000ull};
    static const unsigned windows[] = {0, 1, 2, 3, 4, 8, 16, 65535};
    static const unsigned jitters[] = {0, 20, 50, 100};
    static const uint64_t rtos[] = {1000000, 10000, 100000, 3000000};
    static const uint64_t retries[] = {0, 1000, 50000, 1000000};
    if (W.end - W.pos < 8)
        return 0;
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = take();

    struct udprr__framing f = {b[0] % 3, 0, 0, 0};
    if (f.kind == UDPRR_FRAMING_ID_AT_OFFSET) {
        f.id_len = 1 + (b[0] >> 2) % 8;
        f.id_offset = b[1] % 17;
    }
    struct udprr__exchange_limits lim;
    memset(&lim, 0, sizeof lim);
    lim.endpoints = 1 + b[2] % FX_MAX_EP;
    lim.refused_only = (b[2] >> 2) & 1;
    lim.max_attempts = b[3] % 8;
    lim.deadline_us = deadlines[(b[3] >> 3) % 8];
    lim.initial_window = b[4] % 6;
    lim.max_window = windows[(b[4] >> 3) % 8];
    lim.max_pending = b[5] % 16;
    static const size_t bytes[] = {0, UDPRR_PENDING_OVERHEAD + 64,
                                   3 * UDPRR_PENDING_OVERHEAD + 200,
                                   8 * UDPRR_PENDING_OVERHEAD};
    lim.max_pending_bytes = bytes[(b[5] >> 4) % 4];
    lim.endpoint_retry_us = retries[(b[6] >> 2) % 4];

    struct udprr__rtt_policy p;
    udprr__rtt_policy_default(&p);
    p.jitter_pct = jitters[(b[2] >> 3) % 4];
    p.adaptive = !((b[2] >> 5) & 1);
    p.initial_rto_us = rtos[b[6] % 4];
    if (p.max_rto_us < p.initial_rto_us)
        p.max_rto_us = p.initial_rto_us;
    W.now = starts[(b[2] >> 6) % 4];
    W.random_from_input = b[7] & 1;
    W.rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)b[7] << 32 | b[0]);

    struct udprr__exchange_io io = {NULL, fake_send, fake_random64,
                                    fake_on_attempt, NULL};
    FX_CHECK(udprr__exchange_init(&W.x, &f, &p, &lim, &io) == UDPRR_OK);
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    memset(&W, 0, sizeof W);
    W.in = data;
    W.end = size;
    W.last_send_ep = -1;
    if (!setup())
        return 0;
    struct udprr__allocator hooks = {fx_malloc, fx_calloc, fx_realloc, free};
    udprr__set_allocator(&hooks);
    check_between();

    for (int ops = 0; ops < FX_MAX_OPS && more(); ops++) {
        W.refused_since_attempt = 0;
        switch (take() % OP_COUNT) {
        case OP_SUBMIT: op_submit(); break;
        case OP_CANCEL: op_cancel(); break;
        case OP_TIMERS: op_timers(); break;
        case OP_DATAGRAM: op_datagram(); break;
        case OP_REPLY: op_reply(); break;
        case OP_REFUSED: op_refused(); break;
        case OP_FAIL_ALL: op_fail_all(); break;
        case OP_SHUTDOWN: op_shutdown(); break;
        case OP_SEND_FAULT: op_send_fault(); break;
        case OP_RANDOM_FAIL: W.random_fail_left = take() % 4; break;
        case OP_ALLOC_FAIL: W.alloc_fail_left = take() % 4; break;
        default: break;
        }
        check_between();
    }

    W.alloc_fail_left = 0;
    W.in_fail_all++;
    udprr__exchange_destroy(&W.x);
    W.in_fail_all--;
    udprr__set_allocator(NULL);
    /* Every accepted request ended, each reported once. */
    const struct udprr__exchange_counters *s = &W.x.stats;
    FX_CHECK(s->requests == s->completed + s->timeouts + s->refused +
                                s->declined + s->canceled + s->failed);
    for (size_t i = 0; i < W.nreqs; i++)
        FX_CHECK(W.reqs[i].done_calls == (W.reqs[i].submitted ? 1 : 0));
    return 0;
}
