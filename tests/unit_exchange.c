/* SPDX-License-Identifier: MIT */
/*
 * unit_exchange.c - the client engine driven by a scripted clock, a fake
 * send step and a seeded random source: exact retransmission times, reply
 * matching, deadlines, errors, and reentrancy. No sockets, no sleeps.
 */
#include <string.h>

#include "alloc.h"
#include "exchange.h"
#include "testutil.h"
#include "udprr.h"
#include "wire.h"

#define MS 1000ull
#define SEC 1000000ull
#define MAX_SENT 256

/* --- the fake world ------------------------------------------------------ */

struct sent {
    unsigned endpoint; /* where it went */
    uint64_t clock_ms; /* the request's clock it was sent with */
    struct udprr__wire_header hdr;
    uint8_t body[64];
    size_t body_len;
};

struct world {
    struct udprr__exchange x;
    struct sent sent[MAX_SENT];
    size_t nsent;
    int send_status; /* what the next send returns */
    uint32_t refusing; /* endpoints whose sends are refused (not recorded) */
    uint64_t seed;
    uint64_t constant_id; /* nonzero: random64 always returns it */
    int random_fails;     /* nonzero: random64 fails */
    unsigned attempts_seen;
    uint64_t last_wait_us;
    uint64_t last_id; /* the ID of the latest transmission */
    uint64_t *first_ids; /* optional: the ID of every first transmission */
    size_t nfirst, first_cap;
    uint64_t clock_ms;      /* what the wall clock says next */
    unsigned clock_reads;
};

struct outcome {
    int calls;
    int status;
    uint8_t reply[64];
    size_t reply_len;
};

static int fake_send(void *ctx, unsigned endpoint, const void *buf,
                     size_t len, uint64_t clock_ms)
{
    struct world *w = ctx;
    if (w->refusing & (1u << endpoint))
        return UDPRR_EREFUSED;
    ck_assert_uint_lt(w->nsent, MAX_SENT);
    struct sent *s = &w->sent[w->nsent++];
    const uint8_t *body = buf;
    s->endpoint = endpoint;
    s->clock_ms = clock_ms;
    s->body_len = len;
    if (w->x.framing.kind == UDPRR_FRAMING_NATIVE)
        ck_assert_int_eq(udprr__wire_decode(buf, len, &s->hdr, &body,
                                            &s->body_len),
                         UDPRR__WIRE_VALID);
    /* Keep the first bytes only: enough to tell requests apart. */
    memcpy(s->body, body,
           s->body_len < sizeof s->body ? s->body_len : sizeof s->body);
    return w->send_status;
}

/* A wall clock that moves on by a second at each read. */
static uint64_t fake_clock_ms(void *ctx)
{
    struct world *w = ctx;
    w->clock_reads++;
    w->clock_ms += 1000;
    return w->clock_ms;
}

static int fake_random64(void *ctx, uint64_t *out)
{
    struct world *w = ctx;
    if (w->random_fails)
        return UDPRR_ESYS;
    if (w->constant_id)
        *out = w->constant_id;
    else
        *out = (uint64_t)seeded_rand(&w->seed) << 32 |
               seeded_rand(&w->seed);
    return UDPRR_OK;
}

static void fake_on_attempt(void *ctx, uint64_t id, unsigned attempt,
                            uint64_t wait_us, uint64_t rto_us, size_t len)
{
    struct world *w = ctx;
    w->last_id = id;
    if (attempt == 1 && w->first_ids != NULL) {
        ck_assert_uint_lt(w->nfirst, w->first_cap);
        w->first_ids[w->nfirst++] = id;
    }
    (void)rto_us;
    (void)len;
    w->attempts_seen = attempt;
    w->last_wait_us = wait_us;
}

static void record(void *user, int status, const void *reply, size_t len)
{
    struct outcome *o = user;
    o->calls++;
    o->status = status;
    o->reply_len = len;
    if (len <= sizeof o->reply && len > 0)
        memcpy(o->reply, reply, len);
}

/* A world with a jitter-free policy so every time is exact. */
static void world_init_framed(struct world *w, unsigned max_attempts,
                              uint64_t deadline_us,
                              const struct udprr__framing *framing);

static void world_init(struct world *w, unsigned max_attempts,
                       uint64_t deadline_us)
{
    world_init_framed(w, max_attempts, deadline_us, NULL);
}

static void world_init_framed(struct world *w, unsigned max_attempts,
                              uint64_t deadline_us,
                              const struct udprr__framing *framing)
{
    memset(w, 0, sizeof *w);
    w->seed = 42;
    struct udprr__rtt_policy p;
    udprr__rtt_policy_default(&p);
    p.jitter_pct = 0;
    /* A window as large as it gets from the start: these tests are about
     * one request's schedule; the window has tests of its own. */
    struct udprr__exchange_limits lim = {max_attempts, deadline_us, 0, 0,
                                         UDPRR__WINDOW_MAX, UDPRR__WINDOW_MAX,
                                         1, 0, 0};
    struct udprr__exchange_io io = {w, fake_send, fake_random64,
                                    fake_on_attempt, fake_clock_ms};
    ck_assert_int_eq(udprr__exchange_init(&w->x, framing, &p, &lim, &io), UDPRR_OK);
}

/* The peer's answer to sent datagram i, as bytes on the wire. */
static size_t make_reply(const struct world *w, size_t i,
                         enum udprr__wire_kind kind, const char *body,
                         uint8_t *out)
{
    struct udprr__wire_header h = {kind, w->sent[i].hdr.attempt,
                                   w->sent[i].hdr.id};
    size_t n = body ? strlen(body) : 0;
    if (n > 0)
        memcpy(out + UDPRR__WIRE_HEADER_BYTES, body, n);
    ck_assert_int_eq(udprr__wire_encode(&h, out + UDPRR__WIRE_HEADER_BYTES, n,
                                        out),
                     UDPRR_OK);
    return UDPRR__WIRE_HEADER_BYTES + n;
}

/* The reply to sent datagram i, from the endpoint it went to. */
static void deliver(struct world *w, size_t i, const char *body, uint64_t now)
{
    uint8_t buf[128];
    size_t n = make_reply(w, i, UDPRR__KIND_REPLY, body, buf);
    udprr__exchange_datagram(&w->x, w->sent[i].endpoint, buf, n, now);
}

/* The same, arriving from endpoint (which may not be where it went). */
static void deliver_from(struct world *w, unsigned endpoint, size_t i,
                         const char *body, uint64_t now)
{
    uint8_t buf[128];
    size_t n = make_reply(w, i, UDPRR__KIND_REPLY, body, buf);
    udprr__exchange_datagram(&w->x, endpoint, buf, n, now);
}

/* A world of n endpoints, jitter-free, a 10 s deadline; retry_us: the
 * failed endpoints' first back-off. */
static void world_init_endpoints(struct world *w, unsigned n,
                                 int refused_only, uint64_t retry_us)
{
    memset(w, 0, sizeof *w);
    w->seed = 42;
    struct udprr__rtt_policy p;
    udprr__rtt_policy_default(&p);
    p.jitter_pct = 0;
    struct udprr__exchange_limits lim = {
        0, 10 * SEC, 0, 0, UDPRR__WINDOW_MAX, UDPRR__WINDOW_MAX,
        n, refused_only, retry_us};
    struct udprr__exchange_io io = {w, fake_send, fake_random64,
                                    fake_on_attempt, fake_clock_ms};
    ck_assert_int_eq(udprr__exchange_init(&w->x, NULL, &p, &lim, &io),
                     UDPRR_OK);
}

static uint64_t next_timer(const struct world *w)
{
    uint64_t t = 0;
    ck_assert_int_eq(udprr__exchange_next_timer(&w->x, &t), 1);
    return t;
}

/* --- tests --------------------------------------------------------------- */

START_TEST(test_submit_sends_attempt_one)
{
    struct world w;
    struct outcome o = {0};
    uint64_t id = 0;
    world_init(&w, 0, 10 * SEC);
    ck_assert_int_eq(udprr__exchange_submit(&w.x, "ping", 4, 5 * SEC, 0, record,
                                            &o, &id),
                     UDPRR_OK);
    ck_assert_uint_eq(w.nsent, 1);
    ck_assert_int_eq(w.sent[0].hdr.kind, UDPRR__KIND_REQUEST);
    ck_assert_uint_eq(w.sent[0].hdr.attempt, 1);
    ck_assert(id == 1); /* the engine's first ticket */
    ck_assert_mem_eq(w.sent[0].body, "ping", 4);
    ck_assert_uint_eq(next_timer(&w), 6 * SEC); /* initial RTO 1 s */
    ck_assert_uint_eq(w.last_wait_us, 1 * SEC);
    ck_assert_int_eq(o.calls, 0); /* never called back from submit */
    udprr__exchange_destroy(&w.x);
    ck_assert_int_eq(o.calls, 1);
    ck_assert_int_eq(o.status, UDPRR_ECANCELED);
}
END_TEST

START_TEST(test_reply_completes_and_samples)
{
    struct world w;
    struct outcome o = {0};
    world_init(&w, 0, 10 * SEC);
    udprr__exchange_submit(&w.x, "q", 1, 0, 0, record, &o, NULL);
    deliver(&w, 0, "answer", 40 * MS);
    ck_assert_int_eq(o.calls, 1);
    ck_assert_int_eq(o.status, UDPRR_OK);
    ck_assert_uint_eq(o.reply_len, 6);
    ck_assert_mem_eq(o.reply, "answer", 6);
    ck_assert_uint_eq(w.x.ep[0].rtt.srtt_us, 40000);
    ck_assert_uint_eq(w.x.ep[0].rtt.rto_us, 120000); /* 40 + 4 * 20 ms */
    ck_assert_uint_eq(w.x.ep[0].rtt.samples, 1);
    ck_assert_uint_eq(w.x.stats.completed, 1);
    ck_assert_int_eq(udprr__exchange_next_timer(&w.x, &(uint64_t){0}), 0);
    udprr__exchange_destroy(&w.x);
    ck_assert_int_eq(o.calls, 1); /* nothing left to cancel */
}
END_TEST

START_TEST(test_backoff_schedule_then_deadline)
{
    /* RTO 1 s, doubling, deadline 10 s: sends at 0, 1, 3, 7 s; the wait
     * after the fourth (8 s) is clipped to the deadline at 10 s. */
    struct world w;
    struct outcome o = {0};
    world_init(&w, 0, 10 * SEC);
    udprr__exchange_submit(&w.x, "q", 1, 0, 0, record, &o, NULL);
    const uint64_t sends[] = {1 * SEC, 3 * SEC, 7 * SEC};
    for (size_t i = 0; i < 3; i++) {
        ck_assert_uint_eq(next_timer(&w), sends[i]);
        udprr__exchange_timers(&w.x, sends[i] - 1);
        ck_assert_uint_eq(w.nsent, i + 1); /* not one microsecond early */
        udprr__exchange_timers(&w.x, sends[i]);
        ck_assert_uint_eq(w.nsent, i + 2);
        ck_assert_uint_eq(w.sent[i + 1].hdr.attempt, i + 2);
        ck_assert(w.sent[i + 1].hdr.id == w.sent[0].hdr.id);
    }
    ck_assert_uint_eq(next_timer(&w), 10 * SEC);
    ck_assert_uint_eq(w.last_wait_us, 3 * SEC); /* clipped from 8 s */
    udprr__exchange_timers(&w.x, 10 * SEC);
    ck_assert_int_eq(o.calls, 1);
    ck_assert_int_eq(o.status, UDPRR_ETIMEDOUT);
    ck_assert_uint_eq(w.nsent, 4);
    ck_assert_uint_eq(w.x.stats.attempts, 4);
    ck_assert_uint_eq(w.x.stats.retransmissions, 3);
    ck_assert_uint_eq(w.x.stats.timeouts, 1);
    udprr__exchange_destroy(&w.x);
}
END_TEST

START_TEST(test_max_attempts_without_deadline)
{
    struct world w;
    struct outcome o = {0};
    world_init(&w, 3, 0);
    udprr__exchange_submit(&w.x, "q", 1, 0, 0, record, &o, NULL);
    udprr__exchange_timers(&w.x, 1 * SEC);
    udprr__exchange_timers(&w.x, 3 * SEC);
    ck_assert_uint_eq(w.nsent, 3);
    ck_assert_uint_eq(next_timer(&w), 7 * SEC); /* waits out the last one */
    udprr__exchange_timers(&w.x, 7 * SEC - 1);
    ck_assert_int_eq(o.calls, 0);
    udprr__exchange_timers(&w.x, 7 * SEC);
    ck_assert_int_eq(o.status, UDPRR_ETIMEDOUT);
    ck_assert_uint_eq(w.nsent, 3);
    udprr__exchange_destroy(&w.x);
}
END_TEST

/* The wall clock is read once per request, at its first transmission,
 * and every transmission of it carries that reading (the sealed mode's
 * replay window ages a request, not a transmission). */
START_TEST(test_a_request_keeps_its_first_clock)
{
    struct world w;
    struct outcome a = {0}, b = {0};
    world_init(&w, 3, 0);
    udprr__exchange_submit(&w.x, "a", 1, 0, 0, record, &a, NULL);
    udprr__exchange_submit(&w.x, "b", 1, 0, 0, record, &b, NULL);
    udprr__exchange_timers(&w.x, 1 * SEC);
    udprr__exchange_timers(&w.x, 3 * SEC);
    ck_assert_uint_eq(w.nsent, 6);
    ck_assert_uint_eq(w.clock_reads, 2);
    for (size_t i = 0; i < w.nsent; i++)
        ck_assert_uint_eq(w.sent[i].clock_ms,
                          w.sent[i].body[0] == 'a' ? 1000 : 2000);
    udprr__exchange_destroy(&w.x);
}
END_TEST

START_TEST(test_late_timers_fire_once_per_step)
{
    /* A process step that comes late resends once, not once per missed
     * interval, and the next wait counts from the real send time. */
    struct world w;
    struct outcome o = {0};
    world_init(&w, 0, 0);
    udprr__exchange_submit(&w.x, "q", 1, 0, 0, record, &o, NULL);
    udprr__exchange_timers(&w.x, 5 * SEC);
    ck_assert_uint_eq(w.nsent, 2);
    ck_assert_uint_eq(next_timer(&w), 7 * SEC);
    udprr__exchange_destroy(&w.x);
}
END_TEST

START_TEST(test_reply_to_earlier_attempt_completes_with_its_sample)
{
    struct world w;
    struct outcome o = {0};
    world_init(&w, 0, 10 * SEC);
    udprr__exchange_submit(&w.x, "q", 1, 0, 0, record, &o, NULL);
    udprr__exchange_timers(&w.x, 1 * SEC); /* attempt 2 at 1 s */
    deliver(&w, 0, "late", 1200 * MS);     /* answers attempt 1 */
    ck_assert_int_eq(o.status, UDPRR_OK);
    ck_assert_uint_eq(w.x.stats.spurious_retransmissions, 1); /* attempt 2 was not needed */
    ck_assert_uint_eq(w.x.ep[0].rtt.srtt_us, 1200 * MS); /* not 200 ms */
    udprr__exchange_destroy(&w.x);

    world_init(&w, 0, 10 * SEC);
    memset(&o, 0, sizeof o);
    udprr__exchange_submit(&w.x, "q", 1, 0, 0, record, &o, NULL);
    udprr__exchange_timers(&w.x, 1 * SEC);
    deliver(&w, 1, "fresh", 1030 * MS); /* answers attempt 2 */
    ck_assert_uint_eq(w.x.ep[0].rtt.srtt_us, 30 * MS);
    ck_assert_uint_eq(w.x.stats.spurious_retransmissions, 0); /* attempt 1 was lost */
    udprr__exchange_destroy(&w.x);
}
END_TEST

START_TEST(test_forged_and_stray_datagrams_never_complete)
{
    struct world w;
    struct outcome o = {0};
    uint8_t buf[128];
    world_init(&w, 0, 10 * SEC);
    udprr__exchange_submit(&w.x, "q", 1, 0, 0, record, &o, NULL);

    /* wrong ID (a well-formed datagram, checksum right) */
    w.sent[0].hdr.id ^= 1;
    size_t n = make_reply(&w, 0, UDPRR__KIND_REPLY, "forged", buf);
    w.sent[0].hdr.id ^= 1;
    udprr__exchange_datagram(&w.x, 0, buf, n, 1);
    ck_assert_uint_eq(w.x.stats.dropped_stale, 1);
    /* right ID, an attempt never sent */
    w.sent[0].hdr.attempt = 2;
    n = make_reply(&w, 0, UDPRR__KIND_REPLY, "forged", buf);
    w.sent[0].hdr.attempt = 1;
    udprr__exchange_datagram(&w.x, 0, buf, n, 1);
    ck_assert_uint_eq(w.x.stats.dropped_unexpected, 1);
    /* the right reply, damaged: one flipped byte, or one byte cut off */
    n = make_reply(&w, 0, UDPRR__KIND_REPLY, "damaged", buf);
    buf[n - 1] ^= 0x20;
    udprr__exchange_datagram(&w.x, 0, buf, n, 1);
    buf[n - 1] ^= 0x20;
    udprr__exchange_datagram(&w.x, 0, buf, n - 1, 1);
    ck_assert_uint_eq(w.x.stats.dropped_malformed, 2);
    /* a request, not a reply */
    n = make_reply(&w, 0, UDPRR__KIND_REQUEST, "x", buf);
    udprr__exchange_datagram(&w.x, 0, buf, n, 1);
    ck_assert_uint_eq(w.x.stats.dropped_unexpected, 2);
    /* malformed: short, and bad magic */
    udprr__exchange_datagram(&w.x, 0, buf, 15, 1);
    n = make_reply(&w, 0, UDPRR__KIND_REPLY, "x", buf);
    buf[0] = 'X';
    udprr__exchange_datagram(&w.x, 0, buf, n, 1);
    ck_assert_uint_eq(w.x.stats.dropped_malformed, 4);

    ck_assert_int_eq(o.calls, 0);
    ck_assert_uint_eq(w.x.ep[0].rtt.samples, 0);
    deliver(&w, 0, "real", 2);
    ck_assert_int_eq(o.status, UDPRR_OK);
    ck_assert_mem_eq(o.reply, "real", 4);
    udprr__exchange_destroy(&w.x);
}
END_TEST

START_TEST(test_duplicate_and_stale_replies_are_counted_apart)
{
    struct world w;
    struct outcome o = {0};
    world_init(&w, 0, 10 * SEC);
    udprr__exchange_submit(&w.x, "q", 1, 0, 0, record, &o, NULL);
    deliver(&w, 0, "a", 10);
    deliver(&w, 0, "a", 11); /* the same reply again */
    ck_assert_int_eq(o.calls, 1);
    ck_assert_uint_eq(w.x.stats.dropped_duplicate, 1);
    ck_assert_uint_eq(w.x.stats.dropped_stale, 0);
    udprr__exchange_destroy(&w.x);
}
END_TEST

START_TEST(test_decline_ends_with_eremote)
{
    struct world w;
    struct outcome o = {0};
    uint8_t buf[64];
    world_init(&w, 0, 10 * SEC);
    udprr__exchange_submit(&w.x, "q", 1, 0, 0, record, &o, NULL);
    size_t n = make_reply(&w, 0, UDPRR__KIND_DECLINE, NULL, buf);
    udprr__exchange_datagram(&w.x, 0, buf, n, 5);
    ck_assert_int_eq(o.status, UDPRR_EREMOTE);
    ck_assert_uint_eq(w.x.stats.declined, 1);
    udprr__exchange_destroy(&w.x);
}
END_TEST

START_TEST(test_refused_send_fails_everything)
{
    struct world w;
    struct outcome a = {0}, b = {0};
    world_init(&w, 0, 10 * SEC);
    udprr__exchange_submit(&w.x, "a", 1, 0, 0, record, &a, NULL);
    udprr__exchange_submit(&w.x, "b", 1, 100 * MS, 0, record, &b, NULL);
    w.send_status = UDPRR_EREFUSED;
    udprr__exchange_timers(&w.x, 1 * SEC); /* a's retransmission is refused */
    ck_assert_int_eq(a.status, UDPRR_EREFUSED);
    ck_assert_int_eq(b.status, UDPRR_EREFUSED);
    ck_assert_uint_eq(w.x.stats.refused, 2);

    struct outcome c = {0};
    ck_assert_int_eq(udprr__exchange_submit(&w.x, "c", 1, 2 * SEC, 0, record, &c,
                                            NULL),
                     UDPRR_EREFUSED);
    ck_assert_int_eq(c.calls, 0); /* a failed call never calls back */
    ck_assert_uint_eq(w.x.stats.requests, 2);
    udprr__exchange_destroy(&w.x);
}
END_TEST

START_TEST(test_fail_all_and_cancel)
{
    struct world w;
    struct outcome a = {0}, b = {0};
    uint64_t id_a;
    world_init(&w, 0, 10 * SEC);
    udprr__exchange_submit(&w.x, "a", 1, 0, 0, record, &a, &id_a);
    udprr__exchange_submit(&w.x, "b", 1, 0, 0, record, &b, NULL);
    ck_assert_int_eq(udprr__exchange_cancel(&w.x, id_a, UDPRR_ECANCELED, 0),
                     UDPRR_OK);
    ck_assert_int_eq(a.status, UDPRR_ECANCELED);
    ck_assert_int_eq(udprr__exchange_cancel(&w.x, id_a, UDPRR_ECANCELED, 0),
                     UDPRR_ENOTPENDING);
    udprr__exchange_fail_all(&w.x, UDPRR_EREFUSED, 0);
    ck_assert_int_eq(b.status, UDPRR_EREFUSED);
    ck_assert_int_eq(a.calls + b.calls, 2);
    udprr__exchange_destroy(&w.x);
}
END_TEST

/* Each end is counted under the status it ended with: a request given up
 * because waiting on the socket failed (UDPRR_ESYS) is a failure, not a
 * cancel; UDPRR_OK is no failure and ends nothing. */
START_TEST(test_each_end_is_counted_under_its_status)
{
    struct world w;
    struct outcome a = {0}, b = {0};
    uint64_t id_a, id_b;
    world_init(&w, 0, 10 * SEC);
    udprr__exchange_submit(&w.x, "a", 1, 0, 0, record, &a, &id_a);
    udprr__exchange_submit(&w.x, "b", 1, 0, 0, record, &b, &id_b);
    ck_assert_int_eq(udprr__exchange_cancel(&w.x, id_a, UDPRR_OK, 0), UDPRR_EINVAL);
    ck_assert_int_eq(a.calls, 0);
    ck_assert_int_eq(udprr__exchange_cancel(&w.x, id_a, UDPRR_ESYS, 0), UDPRR_OK);
    ck_assert_int_eq(a.status, UDPRR_ESYS);
    ck_assert_int_eq(udprr__exchange_cancel(&w.x, id_b, UDPRR_ECANCELED, 0),
                     UDPRR_OK);
    ck_assert_uint_eq(w.x.stats.failed, 1);
    ck_assert_uint_eq(w.x.stats.canceled, 1);
    udprr__exchange_destroy(&w.x);
}
END_TEST

START_TEST(test_invalid_and_too_big)
{
    struct world w;
    struct outcome o = {0};
    static uint8_t big[UDPRR_MAX_PAYLOAD + 1];
    world_init(&w, 0, 10 * SEC);
    ck_assert_int_eq(udprr__exchange_submit(&w.x, big, sizeof big, 0, 0, record,
                                            &o, NULL),
                     UDPRR_ETOOBIG);
    ck_assert_int_eq(udprr__exchange_submit(&w.x, big, sizeof big - 1, 0, 0,
                                            record, &o, NULL),
                     UDPRR_OK);
    ck_assert_int_eq(udprr__exchange_submit(&w.x, NULL, 1, 0, 0, record, &o,
                                            NULL),
                     UDPRR_EINVAL);
    ck_assert_int_eq(udprr__exchange_submit(&w.x, "x", 1, 0, 0, NULL, &o, NULL),
                     UDPRR_EINVAL);
    ck_assert_int_eq(udprr__exchange_submit(&w.x, NULL, 0, 0, 0, record, &o,
                                            NULL),
                     UDPRR_OK); /* an empty request is fine */
    w.send_status = UDPRR_ETOOBIG; /* the path says: too big */
    ck_assert_int_eq(udprr__exchange_submit(&w.x, "x", 1, 0, 0, record, &o,
                                            NULL),
                     UDPRR_ETOOBIG);
    ck_assert_int_eq(o.calls, 0);
    udprr__exchange_destroy(&w.x);
    ck_assert_int_eq(o.calls, 2);
}
END_TEST

START_TEST(test_transient_send_errors_are_retried)
{
    struct world w;
    struct outcome o = {0};
    world_init(&w, 0, 10 * SEC);
    w.send_status = UDPRR_ESYS; /* e.g. ENOBUFS: as if lost */
    ck_assert_int_eq(udprr__exchange_submit(&w.x, "q", 1, 0, 0, record, &o,
                                            NULL),
                     UDPRR_OK);
    w.send_status = UDPRR_OK;
    udprr__exchange_timers(&w.x, 1 * SEC);
    deliver(&w, 1, "ok", 1 * SEC + 5);
    ck_assert_int_eq(o.status, UDPRR_OK);
    ck_assert_uint_eq(w.x.stats.send_errors, 1);
    udprr__exchange_destroy(&w.x);
}
END_TEST

START_TEST(test_rtt_state_carries_over_requests)
{
    struct world w;
    struct outcome o = {0};
    world_init(&w, 0, 10 * SEC);
    udprr__exchange_submit(&w.x, "1", 1, 0, 0, record, &o, NULL);
    deliver(&w, 0, "r", 100 * MS);
    udprr__exchange_submit(&w.x, "2", 1, 1 * SEC, 0, record, &o, NULL);
    ck_assert_uint_eq(next_timer(&w), 1 * SEC + 300 * MS);
    udprr__exchange_destroy(&w.x);
}
END_TEST

START_TEST(test_many_outstanding_fire_in_order)
{
    /* 1000 requests submitted at seeded times: the timers fire in
     * non-decreasing order, each exactly once per attempt, and every
     * request ends exactly once. */
    enum { N = 1000 };
    static struct outcome o[N];
    static uint64_t ids[N];
    struct world w;
    uint64_t seed = 5, now = 0;
    memset(o, 0, sizeof o);
    world_init(&w, 2, 0);
    for (int i = 0; i < N; i++) {
        now += seeded_rand(&seed) % 5000;
        ck_assert_int_eq(udprr__exchange_submit(&w.x, "x", 1, now, 0, record,
                                                &o[i], &ids[i]),
                         UDPRR_OK);
        w.nsent = 0;
    }
    /* Take every seventh out of the middle of the heap first. */
    for (int i = 0; i < N; i += 7)
        ck_assert_int_eq(udprr__exchange_cancel(&w.x, ids[i], UDPRR_ECANCELED, 0),
                         UDPRR_OK);
    uint64_t last = 0, t;
    int fired = 0;
    while (udprr__exchange_next_timer(&w.x, &t)) {
        ck_assert_uint_ge(t, last);
        last = t;
        udprr__exchange_timers(&w.x, t);
        w.nsent = 0;
        fired++;
    }
    int canceled = 0;
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(o[i].calls, 1);
        ck_assert_int_eq(o[i].status,
                         i % 7 == 0 ? UDPRR_ECANCELED : UDPRR_ETIMEDOUT);
        canceled += i % 7 == 0;
    }
    ck_assert_uint_eq(w.x.stats.attempts, 2 * (N - canceled) + canceled);
    ck_assert_uint_eq(w.x.stats.timeouts, N - canceled);
    ck_assert_int_le(fired, 2 * N);
    udprr__exchange_destroy(&w.x);
}
END_TEST

START_TEST(test_broken_random_cannot_reuse_an_id)
{
    struct world w;
    struct outcome a = {0}, b = {0};
    world_init(&w, 0, 10 * SEC);
    w.constant_id = 7;
    ck_assert_int_eq(udprr__exchange_submit(&w.x, "a", 1, 0, 0, record, &a,
                                            NULL),
                     UDPRR_OK);
    ck_assert_int_eq(udprr__exchange_submit(&w.x, "b", 1, 0, 0, record, &b,
                                            NULL),
                     UDPRR_EINVAL);
    ck_assert_uint_eq(w.nsent, 1);
    udprr__exchange_destroy(&w.x);
}
END_TEST

/* Reentrancy: a callback that submits. */
struct chain {
    struct world *w;
    struct outcome first, second;
};

static void submit_again(void *user, int status, const void *r, size_t n)
{
    struct chain *c = user;
    record(&c->first, status, r, n);
    ck_assert_int_eq(udprr__exchange_submit(&c->w->x, "next", 4, 1 * SEC, 0, record,
                                            &c->second, NULL),
                     UDPRR_OK);
}

START_TEST(test_callback_may_submit)
{
    struct world w;
    struct chain c = {&w, {0}, {0}};
    world_init(&w, 1, 0);
    udprr__exchange_submit(&w.x, "a", 1, 0, 0, submit_again, &c, NULL);
    udprr__exchange_timers(&w.x, 1 * SEC);
    ck_assert_int_eq(c.first.status, UDPRR_ETIMEDOUT);
    ck_assert_uint_eq(w.nsent, 2);
    ck_assert_mem_eq(w.sent[1].body, "next", 4);
    ck_assert_int_eq(c.second.calls, 0);
    udprr__exchange_destroy(&w.x);
    ck_assert_int_eq(c.second.status, UDPRR_ECANCELED);
}
END_TEST



/* --- foreign framings ---------------------------------------------------- */

START_TEST(test_raw_keeps_one_request_in_flight)
{
    /* Raw datagrams cannot say which request they answer: one is in
     * flight, the others wait their turn, in order. */
    static const struct udprr__framing raw = {UDPRR_FRAMING_RAW, 0, 0, 0};
    struct world w;
    struct outcome a = {0}, b = {0}, c = {0};
    world_init_framed(&w, 0, 10 * SEC, &raw);
    ck_assert_int_eq(udprr__exchange_submit(&w.x, "one", 3, 0, 0, record, &a,
                                            NULL),
                     UDPRR_OK);
    ck_assert_mem_eq(w.sent[0].body, "one", 3); /* no header at all */
    ck_assert_uint_eq(w.sent[0].body_len, 3);
    ck_assert_int_eq(udprr__exchange_submit(&w.x, "two", 3, 0, 0, record, &b,
                                            NULL),
                     UDPRR_OK);
    ck_assert_int_eq(udprr__exchange_submit(&w.x, "three", 5, 0, 0, record,
                                            &c, NULL),
                     UDPRR_OK);
    ck_assert_uint_eq(w.nsent, 1); /* the others wait */
    ck_assert_uint_eq(w.x.in_flight, 1);
    ck_assert_uint_eq(w.x.queued, 2);
    /* any datagram from the peer is the reply, to the one in flight */
    udprr__exchange_datagram(&w.x, 0, "whatever", 8, 30 * MS);
    ck_assert_int_eq(a.status, UDPRR_OK);
    ck_assert_mem_eq(a.reply, "whatever", 8);
    ck_assert_uint_eq(w.x.ep[0].rtt.samples, 1); /* first transmission: clean */
    ck_assert_uint_eq(w.nsent, 2);         /* then the next goes */
    ck_assert_mem_eq(w.sent[1].body, "two", 3);
    ck_assert_int_eq(b.calls, 0);
    udprr__exchange_datagram(&w.x, 0, "r2", 2, 40 * MS);
    ck_assert_int_eq(b.status, UDPRR_OK);
    ck_assert_mem_eq(b.reply, "r2", 2);
    ck_assert_mem_eq(w.sent[2].body, "three", 5);
    udprr__exchange_datagram(&w.x, 0, "r3", 2, 50 * MS);
    ck_assert_int_eq(c.status, UDPRR_OK);
    ck_assert_uint_eq(w.x.pending, 0);
    udprr__exchange_datagram(&w.x, 0, "late", 4, 51 * MS);
    ck_assert_uint_eq(w.x.stats.dropped_stale, 1);
    ck_assert_int_eq(a.calls + b.calls + c.calls, 3);
    udprr__exchange_destroy(&w.x);
}
END_TEST

START_TEST(test_raw_retransmitted_reply_is_no_sample)
{
    /* Karn: after a retransmission, a reply without an attempt number
     * could answer either transmission, so it must not move the RTO. */
    static const struct udprr__framing raw = {UDPRR_FRAMING_RAW, 0, 0, 0};
    struct world w;
    struct outcome a = {0};
    world_init_framed(&w, 0, 10 * SEC, &raw);
    udprr__exchange_submit(&w.x, "q", 1, 0, 0, record, &a, NULL);
    udprr__exchange_timers(&w.x, 1 * SEC);
    ck_assert_uint_eq(w.nsent, 2);
    ck_assert_mem_eq(w.sent[1].body, "q", 1); /* resent unchanged */
    udprr__exchange_datagram(&w.x, 0, "r", 1, 1 * SEC + 5 * MS);
    ck_assert_int_eq(a.status, UDPRR_OK);
    ck_assert_uint_eq(w.x.ep[0].rtt.samples, 0);
    ck_assert_uint_eq(w.x.ep[0].rtt.rto_us, 1 * SEC);
    udprr__exchange_destroy(&w.x);
}
END_TEST

START_TEST(test_id_at_offset_matches_on_the_id)
{
    static const struct udprr__framing dns = {UDPRR_FRAMING_ID_AT_OFFSET, 0, 2, 0};
    struct world w;
    struct outcome a = {0}, b = {0};
    uint64_t id_a, id_b;
    world_init_framed(&w, 0, 10 * SEC, &dns);
    ck_assert_int_eq(udprr__exchange_submit(&w.x, "\0\0qa", 4, 0, 0, record, &a,
                                            NULL),
                     UDPRR_OK);
    id_a = w.last_id;
    ck_assert_int_eq(udprr__exchange_submit(&w.x, "\0\0qb", 4, 0, 0, record, &b,
                                            NULL),
                     UDPRR_OK);
    id_b = w.last_id;
    ck_assert_uint_le(id_a, 0xffff);
    ck_assert_uint_ne(id_a, id_b);
    ck_assert_uint_eq(w.sent[0].body[0], id_a >> 8);
    ck_assert_uint_eq(w.sent[0].body[1], id_a & 0xff);
    ck_assert_int_eq(udprr__exchange_submit(&w.x, "\0", 1, 0, 0, record, &b,
                                            NULL),
                     UDPRR_EINVAL); /* no room for the ID */

    uint8_t reply[4] = {(uint8_t)(id_b >> 8), (uint8_t)id_b, 'r', 'b'};
    udprr__exchange_datagram(&w.x, 0, reply, 4, 10 * MS);
    ck_assert_int_eq(b.status, UDPRR_OK);
    ck_assert_int_eq(a.calls, 0);
    ck_assert_mem_eq(b.reply, reply, 4); /* the whole datagram */
    udprr__exchange_datagram(&w.x, 0, "\x01", 1, 11 * MS); /* too short */
    ck_assert_uint_eq(w.x.stats.dropped_malformed, 1);
    udprr__exchange_destroy(&w.x);
    ck_assert_int_eq(a.status, UDPRR_ECANCELED);
}
END_TEST

START_TEST(test_one_byte_ids_stay_distinct)
{
    /* With a 1-byte ID only 256 requests can be told apart: the engine
     * never gives two requests in flight the same one. The 257th and later
     * wait until an ID is free. */
    static const struct udprr__framing tiny = {UDPRR_FRAMING_ID_AT_OFFSET, 0, 1, 0};
    static struct outcome o[300];
    struct world w;
    int in_flight_with[256] = {0};
    world_init_framed(&w, 0, 10 * SEC, &tiny);
    for (int i = 0; i < 300; i++)
        ck_assert_int_eq(udprr__exchange_submit(&w.x, "x", 1, 0, 0, record,
                                                &o[i], NULL),
                         UDPRR_OK);
    ck_assert_uint_eq(w.nsent, 256);
    ck_assert_uint_eq(w.x.in_flight, 256);
    ck_assert_uint_eq(w.x.queued, 44);
    for (size_t i = 0; i < w.nsent; i++) {
        ck_assert_int_eq(in_flight_with[w.sent[i].body[0]], 0);
        in_flight_with[w.sent[i].body[0]] = 1;
    }
    /* An answer frees its ID: exactly one queued request goes, and it
     * takes the one ID free, the one just answered. */
    uint8_t answered = w.sent[17].body[0];
    w.nsent = 0;
    udprr__exchange_datagram(&w.x, 0, &answered, 1, 5 * MS);
    ck_assert_int_eq(o[17].status, UDPRR_OK);
    ck_assert_uint_eq(w.nsent, 1);
    ck_assert_uint_eq(w.sent[0].body[0], answered);
    ck_assert_uint_eq(w.x.in_flight, 256);
    ck_assert_uint_eq(w.x.queued, 43);
    udprr__exchange_destroy(&w.x);
    for (int i = 0; i < 300; i++)
        ck_assert_int_eq(o[i].calls, 1);
    ck_assert_uint_eq(w.x.stats.unsent, 43);
}
END_TEST

START_TEST(test_short_ids_do_not_repeat_within_their_space)
{
    /* A server keys its reply cache on the ID, so a 2-byte ID must not
     * come back before all 65536 have been used: a random draw would
     * repeat one within a few hundred requests. */
    static const struct udprr__framing coap = {UDPRR_FRAMING_ID_AT_OFFSET, 2, 2, 0};
    static uint8_t used[65536];
    struct world w;
    struct outcome o = {0};
    memset(used, 0, sizeof used);
    world_init_framed(&w, 0, 10 * SEC, &coap);
    uint64_t first = 0, id = 0;
    for (unsigned i = 0; i < 65536; i++) {
        if (udprr__exchange_submit(&w.x, "\x40\x01\0\0", 4, 0, 0, record, &o,
                                   NULL) != UDPRR_OK)
            ck_abort_msg("submit %u failed", i);
        id = (uint64_t)w.sent[0].body[2] << 8 | w.sent[0].body[3];
        if (id > 0xffff || used[id])
            ck_abort_msg("request %u reused ID %llu", i, (unsigned long long)id);
        used[id] = 1;
        if (i == 0)
            first = id;
        else if (i < 4 && id == first + i)
            ck_abort_msg("IDs count up in the open: %llu", (unsigned long long)id);
        udprr__exchange_fail_all(&w.x, UDPRR_ECANCELED, 0);
        w.nsent = 0;
    }
    udprr__exchange_destroy(&w.x);
}
END_TEST

START_TEST(test_random_failure_starts_nothing)
{
    struct world w;
    struct outcome o = {0};
    world_init(&w, 0, 10 * SEC);
    w.random_fails = 1;
    ck_assert_int_eq(udprr__exchange_submit(&w.x, "q", 1, 0, 0, record, &o,
                                            NULL),
                     UDPRR_ESYS);
    ck_assert_uint_eq(w.nsent, 0);
    ck_assert_uint_eq(w.x.pending, 0);
    /* an outstanding request's retransmission goes out unjittered */
    w.random_fails = 0;
    udprr__exchange_submit(&w.x, "q", 1, 0, 0, record, &o, NULL);
    w.x.ep[0].rtt.policy.jitter_pct = 50;
    w.random_fails = 1;
    udprr__exchange_timers(&w.x, 1 * SEC);
    ck_assert_uint_eq(w.nsent, 2);
    ck_assert_uint_eq(next_timer(&w), 3 * SEC);
    udprr__exchange_destroy(&w.x);
    ck_assert_int_eq(o.calls, 1);
}
END_TEST

/* A callback that submits again whenever it is called. */
struct resubmitter {
    struct udprr__exchange *x;
    int calls;
    int submitted;
};

static void resubmit(void *user, int status, const void *r, size_t n)
{
    struct resubmitter *rs = user;
    (void)status, (void)r, (void)n;
    rs->calls++;
    if (udprr__exchange_submit(rs->x, "again", 5, 0, 0, resubmit, rs, NULL) ==
        UDPRR_OK)
        rs->submitted++;
}

START_TEST(test_fail_all_ends_even_when_callbacks_resubmit)
{
    struct world w;
    struct resubmitter rs = {&w.x, 0, 0};
    world_init(&w, 0, 10 * SEC);
    for (int i = 0; i < 3; i++)
        udprr__exchange_submit(&w.x, "q", 1, 0, 0, resubmit, &rs, NULL);
    udprr__exchange_fail_all(&w.x, UDPRR_EREFUSED, 0);
    ck_assert_int_eq(rs.calls, 3);          /* the three outstanding */
    ck_assert_int_eq(rs.submitted, 3);      /* their resubmissions */
    ck_assert_uint_eq(w.x.pending, 3);      /* still outstanding */
    udprr__exchange_destroy(&w.x);          /* ends: no resubmit in destroy */
    ck_assert_int_eq(rs.calls, 6);
    ck_assert_int_eq(rs.submitted, 3);
}
END_TEST

/* --- allocation failure -------------------------------------------------- */

static int allocs_left;
static void *failing_malloc(size_t n)
{
    return allocs_left-- > 0 ? malloc(n) : NULL;
}
static void *failing_calloc(size_t c, size_t n)
{
    return allocs_left-- > 0 ? calloc(c, n) : NULL;
}
static void *failing_realloc(void *p, size_t n)
{
    return allocs_left-- > 0 ? realloc(p, n) : NULL;
}

START_TEST(test_allocation_failures_leave_state_intact)
{
    static const struct udprr__allocator failing = {
        failing_malloc, failing_calloc, failing_realloc, free};
    struct world w;
    struct outcome o[40];
    memset(o, 0, sizeof o);
    world_init(&w, 0, 10 * SEC);
    udprr__set_allocator(&failing);
    int ok = 0, accepted[40];
    /* Each submit gets a budget of 0, 1 or 2 allocations in turn (a submit
     * makes one, plus one when the heap or the hash grows), and the table
     * grows past 16 entries on the way, so every allocation site fails at
     * least once. */
    for (int i = 0; i < 40; i++) {
        allocs_left = i % 3;
        int rc = udprr__exchange_submit(&w.x, "x", 1, 0, 0, record, &o[i], NULL);
        ck_assert(rc == UDPRR_OK || rc == UDPRR_ENOMEM);
        accepted[i] = rc == UDPRR_OK;
        ok += accepted[i];
    }
    udprr__set_allocator(NULL);
    ck_assert_uint_eq(w.x.pending, (size_t)ok);
    ck_assert_uint_eq(w.x.stats.requests, (uint64_t)ok);
    ck_assert_int_gt(ok, 16);
    udprr__exchange_fail_all(&w.x, UDPRR_ECANCELED, 0);
    /* Accepted requests end exactly once; refused ones never call back. */
    for (int i = 0; i < 40; i++)
        ck_assert_int_eq(o[i].calls, accepted[i]);
    udprr__exchange_destroy(&w.x);

    struct udprr__exchange x;
    struct udprr__rtt_policy p;
    struct udprr__exchange_limits lim = {.max_attempts = 0};
    struct udprr__exchange_io io = {&w, fake_send, fake_random64, NULL,
                                    fake_clock_ms};
    udprr__rtt_policy_default(&p);
    for (int budget = 0; budget < 3; budget++) {
        udprr__set_allocator(&failing);
        allocs_left = budget;
        ck_assert_int_eq(udprr__exchange_init(&x, NULL, &p, &lim, &io),
                         UDPRR_ENOMEM);
        udprr__set_allocator(NULL);
    }
}
END_TEST


/* --- the window and the queue -------------------------------------------- */

/* A world whose window starts at `initial` under a ceiling of `max`,
 * logging the ID of every first transmission into ids. */
static void world_init_window(struct world *w, unsigned initial, unsigned max,
                              uint64_t *ids, size_t cap)
{
    world_init(w, 0, 0);
    udprr__exchange_destroy(&w->x);
    struct udprr__rtt_policy p;
    udprr__rtt_policy_default(&p);
    p.jitter_pct = 0;
    struct udprr__exchange_limits lim = {0, 0, 0, 0, initial, max, 1, 0, 0};
    struct udprr__exchange_io io = {w, fake_send, fake_random64,
                                    fake_on_attempt, fake_clock_ms};
    ck_assert_int_eq(udprr__exchange_init(&w->x, NULL, &p, &lim, &io),
                     UDPRR_OK);
    w->first_ids = ids;
    w->first_cap = cap;
    w->nfirst = 0;
}

static void reply_to(struct world *w, uint64_t id, uint64_t now)
{
    uint8_t buf[UDPRR__WIRE_HEADER_BYTES] = {0};
    struct udprr__wire_header h = {UDPRR__KIND_REPLY, 1, id};
    ck_assert_int_eq(udprr__wire_encode(&h, buf, 0, buf), UDPRR_OK);
    udprr__exchange_datagram(&w->x, 0, buf, sizeof buf, now);
}

/* Answers, in the order they were sent, every request in flight when it
 * is called (requests go out in order and rounds answer all of them, so
 * those are the IDs logged since the last round). */
static void answer_round(struct world *w, size_t *answered, uint64_t now)
{
    size_t upto = w->nfirst;
    for (; *answered < upto; (*answered)++)
        reply_to(w, w->first_ids[*answered], now);
    w->nsent = 0;
}

static void count_calls(void *user, int status, const void *r, size_t n)
{
    (void)status, (void)r, (void)n;
    (*(int *)user)++;
}

/* The window through the engine: slow start doubles it each round trip up
 * to its ceiling; one lost window halves it once; avoidance grows it back
 * by one per round trip. Exact, under the scripted clock. */
START_TEST(test_window_grows_halves_and_grows_back)
{
    enum { N = 400 };
    static uint64_t ids[N];
    struct world w;
    int calls = 0;
    size_t answered = 0;
    world_init_window(&w, 0, 16, ids, N);
    for (int i = 0; i < N; i++)
        ck_assert_int_eq(udprr__exchange_submit(&w.x, "x", 1, 0, 0,
                                                count_calls, &calls, NULL),
                         UDPRR_OK);
    ck_assert_uint_eq(w.x.ep[0].window.size, 4);
    ck_assert_uint_eq(w.x.in_flight, 4);
    ck_assert_uint_eq(w.x.queued, N - 4);
    ck_assert_uint_eq(w.nsent, 4);

    const unsigned slow_start[] = {8, 16, 16};
    uint64_t now = 0;
    for (size_t r = 0; r < 3; r++) {
        now += 10 * MS;
        answer_round(&w, &answered, now);
        ck_assert_uint_eq(w.x.ep[0].window.size, slow_start[r]);
        ck_assert_uint_eq(w.x.in_flight, slow_start[r]);
    }
    ck_assert_uint_eq(answered, 4 + 8 + 16);

    /* The 16 in flight all go unanswered: their timers run out together.
     * One halving for the whole window, every one retransmitted. */
    uint64_t t = next_timer(&w);
    ck_assert_uint_gt(t, now);
    udprr__exchange_timers(&w.x, t);
    ck_assert_uint_eq(w.x.stats.retransmissions, 16);
    ck_assert_uint_eq(w.x.ep[0].window.size, 8);
    ck_assert_uint_eq(w.x.ep[0].window.ssthresh, 8);
    ck_assert_uint_eq(w.x.ep[0].window.reductions, 1);
    ck_assert_uint_eq(w.x.in_flight, 16); /* nothing new goes out */
    now = t;

    /* Congestion avoidance: one more per round trip. */
    const unsigned avoidance[] = {9, 10, 11, 12, 13};
    for (size_t r = 0; r < 5; r++) {
        now += 10 * MS;
        answer_round(&w, &answered, now);
        ck_assert_uint_eq(w.x.ep[0].window.size, avoidance[r]);
        ck_assert_uint_eq(w.x.in_flight, avoidance[r]);
    }
    ck_assert_uint_eq(w.x.ep[0].window.reductions, 1);
    ck_assert_int_eq(calls, (int)answered);
    udprr__exchange_destroy(&w.x);
    ck_assert_int_eq(calls, N);
}
END_TEST

/* A timer cut short by the deadline is no loss: the deadline is the
 * application's, not the path's. */
START_TEST(test_deadline_is_no_loss)
{
    struct world w;
    struct outcome o = {0};
    world_init(&w, 0, 100 * MS); /* the RTO is 1 s */
    udprr__exchange_submit(&w.x, "q", 1, 0, 0, record, &o, NULL);
    udprr__exchange_timers(&w.x, 100 * MS);
    ck_assert_int_eq(o.status, UDPRR_ETIMEDOUT);
    ck_assert_uint_eq(w.x.ep[0].window.reductions, 0);
    /* whereas a whole wait run out is one */
    udprr__exchange_submit(&w.x, "q", 1, 1 * SEC, 5 * SEC, record, &o, NULL);
    udprr__exchange_timers(&w.x, 2 * SEC);
    ck_assert_uint_eq(w.x.ep[0].window.reductions, 1);
    udprr__exchange_destroy(&w.x);
}
END_TEST

START_TEST(test_cancel_queued_and_in_flight)
{
    enum { N = 8 };
    static uint64_t ids[N];
    struct world w;
    struct outcome o[3] = {{0}};
    uint64_t ticket[3];
    world_init_window(&w, 1, 1, ids, N);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(udprr__exchange_submit(&w.x, &"abc"[i], 1, 0, 0,
                                                record, &o[i], &ticket[i]),
                         UDPRR_OK);
    ck_assert_uint_eq(ticket[0], 1);
    ck_assert_uint_eq(ticket[1], 2);
    ck_assert_uint_eq(ticket[2], 3);
    ck_assert_uint_eq(w.nsent, 1);
    /* A queued request: it ends, never sent. */
    ck_assert_int_eq(udprr__exchange_cancel(&w.x, ticket[1], UDPRR_ECANCELED,
                                            5 * MS),
                     UDPRR_OK);
    ck_assert_int_eq(o[1].calls, 1);
    ck_assert_int_eq(o[1].status, UDPRR_ECANCELED);
    ck_assert_uint_eq(w.nsent, 1);
    ck_assert_uint_eq(w.x.stats.unsent, 1);
    /* The one in flight: its slot goes to the next in the queue. */
    ck_assert_int_eq(udprr__exchange_cancel(&w.x, ticket[0], UDPRR_ECANCELED,
                                            6 * MS),
                     UDPRR_OK);
    ck_assert_int_eq(o[0].status, UDPRR_ECANCELED);
    ck_assert_uint_eq(w.nsent, 2);
    ck_assert_mem_eq(w.sent[1].body, "c", 1);
    /* Its late reply is a duplicate, delivered to no one. */
    reply_to(&w, ids[0], 7 * MS);
    ck_assert_uint_eq(w.x.stats.dropped_duplicate, 1);
    ck_assert_int_eq(o[0].calls, 1);
    /* Canceling again, or a ticket never given, is a no-op that says so. */
    ck_assert_int_eq(udprr__exchange_cancel(&w.x, ticket[0], UDPRR_ECANCELED,
                                            8 * MS),
                     UDPRR_ENOTPENDING);
    ck_assert_int_eq(udprr__exchange_cancel(&w.x, 99, UDPRR_ECANCELED, 8 * MS),
                     UDPRR_ENOTPENDING);
    ck_assert_int_eq(o[0].calls + o[1].calls + o[2].calls, 2);
    ck_assert_uint_eq(w.x.stats.canceled, 2);
    udprr__exchange_destroy(&w.x);
    ck_assert_int_eq(o[2].calls, 1);
}
END_TEST

/* A queued request's own deadline ends it unsent, while the one in flight
 * goes on; requests queued behind keep their order. */
START_TEST(test_queued_request_meets_its_deadline)
{
    enum { N = 8 };
    static uint64_t ids[N];
    struct world w;
    struct outcome a = {0}, b = {0}, c = {0};
    world_init_window(&w, 1, 1, ids, N);
    udprr__exchange_submit(&w.x, "a", 1, 0, 0, record, &a, NULL);
    udprr__exchange_submit(&w.x, "b", 1, 0, 50 * MS, record, &b, NULL);
    udprr__exchange_submit(&w.x, "c", 1, 10 * MS, 0, record, &c, NULL);
    ck_assert_uint_eq(next_timer(&w), 50 * MS);
    udprr__exchange_timers(&w.x, 50 * MS);
    ck_assert_int_eq(b.status, UDPRR_ETIMEDOUT);
    ck_assert_int_eq(a.calls + c.calls, 0);
    ck_assert_uint_eq(w.nsent, 1); /* b was never sent */
    ck_assert_uint_eq(w.x.stats.unsent, 1);
    ck_assert_uint_eq(w.x.stats.timeouts, 1);
    reply_to(&w, ids[0], 60 * MS);
    ck_assert_int_eq(a.status, UDPRR_OK);
    ck_assert_uint_eq(w.nsent, 2);
    ck_assert_mem_eq(w.sent[1].body, "c", 1);
    /* Every accepted request in exactly one end counter, and the
     * transmissions add up. */
    udprr__exchange_destroy(&w.x);
    const struct udprr__exchange_counters *s = &w.x.stats;
    ck_assert_uint_eq(s->requests, 3);
    ck_assert_uint_eq(s->completed + s->timeouts + s->canceled, 3);
    ck_assert_uint_eq(s->attempts + s->unsent,
                      s->requests + s->retransmissions);
}
END_TEST

START_TEST(test_pending_bounds)
{
    struct world w;
    int calls = 0;
    world_init(&w, 0, 0);
    udprr__exchange_destroy(&w.x);
    struct udprr__rtt_policy p;
    udprr__rtt_policy_default(&p);
    struct udprr__exchange_limits lim = {0, 0, 3, 0, 1, 1, 1, 0, 0};
    struct udprr__exchange_io io = {&w, fake_send, fake_random64, NULL,
                                    fake_clock_ms};
    ck_assert_int_eq(udprr__exchange_init(&w.x, NULL, &p, &lim, &io),
                     UDPRR_OK);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(udprr__exchange_submit(&w.x, "x", 1, 0, 0,
                                                count_calls, &calls, NULL),
                         UDPRR_OK);
    ck_assert_int_eq(udprr__exchange_submit(&w.x, "x", 1, 0, 0, count_calls,
                                            &calls, NULL),
                     UDPRR_EBUSY);
    ck_assert_uint_eq(w.x.stats.requests, 3);
    udprr__exchange_destroy(&w.x);
    ck_assert_int_eq(calls, 3); /* never for the one refused */

    /* In bytes: each request counts its body and the fixed overhead. */
    lim.max_pending = 0;
    lim.max_pending_bytes = 2 * (UDPRR_PENDING_OVERHEAD + 100);
    ck_assert_int_eq(udprr__exchange_init(&w.x, NULL, &p, &lim, &io),
                     UDPRR_OK);
    static const uint8_t body[101];
    const size_t lens[] = {100, 101, 100, 0};
    const int want[] = {UDPRR_OK, UDPRR_EBUSY, UDPRR_OK, UDPRR_EBUSY};
    for (size_t i = 0; i < 4; i++)
        ck_assert_int_eq(udprr__exchange_submit(&w.x, body, lens[i], 0, 0,
                                                count_calls, &calls, NULL),
                         want[i]);
    /* Room comes back as requests end. */
    ck_assert_int_eq(udprr__exchange_cancel(&w.x, 1, UDPRR_ECANCELED, 0),
                     UDPRR_OK);
    ck_assert_int_eq(udprr__exchange_submit(&w.x, body, 100, 0, 0,
                                            count_calls, &calls, NULL),
                     UDPRR_OK);
    udprr__exchange_destroy(&w.x);
}
END_TEST


/* The loop woke late: by the time a queued request's turn comes its
 * deadline has passed. It ends timed out, never sent. */
START_TEST(test_turn_after_deadline_is_no_send)
{
    enum { N = 8 };
    static uint64_t ids[N];
    struct world w;
    struct outcome a = {0}, b = {0};
    world_init_window(&w, 1, 1, ids, N);
    udprr__exchange_submit(&w.x, "a", 1, 0, 0, record, &a, NULL);
    udprr__exchange_submit(&w.x, "b", 1, 0, 100 * MS, record, &b, NULL);
    reply_to(&w, ids[0], 500 * MS); /* before any timer step ran */
    ck_assert_int_eq(a.status, UDPRR_OK);
    ck_assert_int_eq(b.calls, 1);
    ck_assert_int_eq(b.status, UDPRR_ETIMEDOUT);
    ck_assert_uint_eq(w.nsent, 1);
    ck_assert_uint_eq(w.x.stats.unsent, 1);
    ck_assert_uint_eq(w.x.stats.attempts, 1);
    udprr__exchange_destroy(&w.x);
}
END_TEST

/* A callback run by fail_all submits while another ended request still
 * counts as in flight (raw framing: one at a time), so its request is
 * queued; fail_all must send it before it returns, not strand it. */
static void submit_follow_up(void *user, int status, const void *r, size_t n)
{
    struct chain *c = user;
    record(&c->first, status, r, n);
    ck_assert_int_eq(udprr__exchange_submit(&c->w->x, "next", 4, 0, 0,
                                            record, &c->second, NULL),
                     UDPRR_OK);
}

START_TEST(test_fail_all_sends_what_its_callbacks_queued)
{
    static const struct udprr__framing raw = {UDPRR_FRAMING_RAW, 0, 0, 0};
    struct world w;
    struct outcome a = {0};
    struct chain c = {&w, {0}, {0}};
    world_init_framed(&w, 0, 10 * SEC, &raw);
    udprr__exchange_submit(&w.x, "a", 1, 0, 0, record, &a, NULL);
    udprr__exchange_submit(&w.x, "q", 1, 0, 0, submit_follow_up, &c, NULL);
    ck_assert_uint_eq(w.x.queued, 1);
    udprr__exchange_fail_all(&w.x, UDPRR_EREFUSED, 5 * MS);
    ck_assert_int_eq(a.status, UDPRR_EREFUSED);
    ck_assert_int_eq(c.first.status, UDPRR_EREFUSED);
    ck_assert_uint_eq(w.nsent, 2); /* "next" went out */
    ck_assert_mem_eq(w.sent[1].body, "next", 4);
    ck_assert_uint_eq(w.x.in_flight, 1);
    ck_assert_uint_eq(w.x.queued, 0);
    udprr__exchange_destroy(&w.x);
    ck_assert_int_eq(c.second.calls, 1);
}
END_TEST

/* --- 10,000 in flight ---------------------------------------------------- */

static size_t live_bytes, peak_bytes;

/* An allocator that knows how many bytes are live: each block carries its
 * size in front. */
static void *counting_malloc(size_t n)
{
    size_t *p = malloc(sizeof(max_align_t) + n);
    if (p == NULL)
        return NULL;
    *p = n;
    live_bytes += n;
    if (live_bytes > peak_bytes)
        peak_bytes = live_bytes;
    return (uint8_t *)p + sizeof(max_align_t);
}

static void counting_free(void *q)
{
    if (q == NULL)
        return;
    size_t *p = (size_t *)(void *)((uint8_t *)q - sizeof(max_align_t));
    live_bytes -= *p;
    free(p);
}

static void *counting_calloc(size_t c, size_t n)
{
    void *q = counting_malloc(c * n);
    if (q != NULL)
        memset(q, 0, c * n);
    return q;
}

static void *counting_realloc(void *q, size_t n)
{
    void *r = counting_malloc(n);
    if (r == NULL || q == NULL)
        return r;
    size_t old = *(size_t *)(void *)((uint8_t *)q - sizeof(max_align_t));
    memcpy(r, q, old < n ? old : n);
    counting_free(q);
    return r;
}

struct timed {
    const struct world *w;
    uint64_t *now;
    uint64_t ended_at;
    int status;
    int calls;
};

static void timed_done(void *user, int status, const void *r, size_t n)
{
    struct timed *t = user;
    (void)r, (void)n;
    t->calls++;
    t->status = status;
    t->ended_at = *t->now;
}

/* 10,000 requests in flight at once: memory within what udprr.h promises
 * (UDPRR_PENDING_OVERHEAD plus the bytes, each), and every timer exact:
 * request i, sent at i * 100 us, is resent at exactly +1 s and times out
 * at exactly +3 s (two attempts, no jitter, backoff x2). */
START_TEST(test_ten_thousand_in_flight)
{
    enum { N = 10000, LEN = 32 };
    static struct timed t[N];
    static uint64_t ids[N];
    static const struct udprr__allocator counting = {
        counting_malloc, counting_calloc, counting_realloc, counting_free};
    struct world w;
    uint64_t now = 0;
    uint8_t body[LEN] = {0};

    udprr__set_allocator(&counting);
    live_bytes = peak_bytes = 0;
    world_init(&w, 0, 0);
    udprr__exchange_destroy(&w.x);
    struct udprr__rtt_policy p;
    udprr__rtt_policy_default(&p);
    p.jitter_pct = 0;
    struct udprr__exchange_limits lim = {2, 0, 0, 0, N, N, 1, 0, 0};
    struct udprr__exchange_io io = {&w, fake_send, fake_random64,
                                    fake_on_attempt, fake_clock_ms};
    ck_assert_int_eq(udprr__exchange_init(&w.x, NULL, &p, &lim, &io),
                     UDPRR_OK);
    w.first_ids = ids;
    w.first_cap = N;
    size_t base = live_bytes;
    for (int i = 0; i < N; i++) {
        now = (uint64_t)i * 100;
        t[i] = (struct timed){&w, &now, 0, 0, 0};
        ck_assert_int_eq(udprr__exchange_submit(&w.x, body, LEN, now, 0,
                                                timed_done, &t[i], NULL),
                         UDPRR_OK);
        w.nsent = 0;
    }
    ck_assert_uint_eq(w.x.in_flight, N);
    ck_assert_uint_eq(w.x.queued, 0);
    size_t bound = base + (size_t)N * (UDPRR_PENDING_OVERHEAD + LEN);
    ck_assert_msg(live_bytes - base <= bound - base,
                  "%zu bytes for %d pending, over the bound of %zu",
                  live_bytes - base, N, bound - base);

    /* Drive every timer at its exact time. */
    uint64_t when;
    size_t steps = 0;
    while (udprr__exchange_next_timer(&w.x, &when)) {
        ck_assert_uint_ge(when, now);
        now = when;
        udprr__exchange_timers(&w.x, now);
        w.nsent = 0;
        ck_assert_uint_lt(++steps, 3 * (size_t)N);
    }
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(t[i].calls, 1);
        ck_assert_int_eq(t[i].status, UDPRR_ETIMEDOUT);
        ck_assert_uint_eq(t[i].ended_at, (uint64_t)i * 100 + 3 * SEC);
    }
    ck_assert_uint_eq(w.x.stats.retransmissions, N);
    ck_assert_uint_eq(w.x.stats.timeouts, N);
    udprr__exchange_destroy(&w.x);
    udprr__set_allocator(NULL);
    ck_assert_uint_eq(live_bytes, 0);
    ck_assert_uint_le(peak_bytes - base, bound - base);
}
END_TEST

/* --- several endpoints ------------------------------------------------- */

START_TEST(test_endpoints_first_refused_at_send)
{
    struct world w;
    struct outcome o = {0};
    world_init_endpoints(&w, 3, 0, 1 * SEC);
    w.refusing = 1u << 0;
    ck_assert_int_eq(udprr__exchange_submit(&w.x, "q", 1, 0, 0, record, &o,
                                            NULL),
                     UDPRR_OK);
    /* Endpoint 0 refused at once: the first transmission went to 1. */
    ck_assert_uint_eq(w.nsent, 1);
    ck_assert_uint_eq(w.sent[0].endpoint, 1);
    ck_assert_uint_eq(w.sent[0].hdr.attempt, 1);
    ck_assert_uint_eq(w.x.ep[0].stats.refusals, 1);
    ck_assert_uint_eq(w.x.ep[0].failures, 1);
    ck_assert_uint_eq(w.x.stats.attempts, 1);
    deliver(&w, 0, "from 1", 10 * MS);
    ck_assert_int_eq(o.status, UDPRR_OK);
    ck_assert_uint_eq(w.x.ep[1].stats.answers, 1);
    ck_assert_uint_eq(w.x.ep[1].rtt.samples, 1);
    /* Every endpoint refusing: the submit fails, nothing counted. */
    w.refusing = 7;
    struct outcome o2 = {0};
    ck_assert_int_eq(udprr__exchange_submit(&w.x, "q", 1, 20 * MS, 0, record,
                                            &o2, NULL),
                     UDPRR_EREFUSED);
    ck_assert_uint_eq(w.x.stats.requests, 1);
    ck_assert_int_eq(o2.calls, 0);
    udprr__exchange_destroy(&w.x);
}
END_TEST

START_TEST(test_endpoints_timeout_moves_then_back_after_backoff)
{
    struct world w;
    struct outcome o[3] = {{0}, {0}, {0}};
    world_init_endpoints(&w, 2, 0, 1 * SEC);
    udprr__exchange_submit(&w.x, "a", 1, 0, 0, record, &o[0], NULL);
    ck_assert_uint_eq(w.sent[0].endpoint, 0); /* the first in the list */
    /* 0 is a blackhole: after its RTO (1 s) the retransmission goes to 1,
     * which waits 1's RTO backed off for attempt 2: the schedule goes on
     * across endpoints. */
    udprr__exchange_timers(&w.x, 1 * SEC);
    ck_assert_uint_eq(w.nsent, 2);
    ck_assert_uint_eq(w.sent[1].endpoint, 1);
    ck_assert_uint_eq(w.sent[1].hdr.attempt, 2);
    ck_assert_uint_eq(w.last_wait_us, 2 * SEC);
    ck_assert_uint_eq(w.x.ep[0].stats.timeouts, 1);
    ck_assert_uint_eq(w.x.ep[0].stats.failovers, 1);
    ck_assert_uint_eq(w.x.ep[0].failures, 1);
    ck_assert_uint_eq(w.x.ep[0].retry_at_us, 2 * SEC);
    deliver(&w, 1, "b", 1 * SEC + 30 * MS);
    ck_assert_int_eq(o[0].status, UDPRR_OK);
    /* Its reply is a sample for 1 (attempt 2 went there). */
    ck_assert_uint_eq(w.x.ep[1].rtt.samples, 1);
    ck_assert_uint_eq(w.x.ep[1].rtt.srtt_us, 30 * MS);
    ck_assert_uint_eq(w.x.ep[0].rtt.samples, 0);
    /* While 0 backs off, requests go to 1. */
    udprr__exchange_submit(&w.x, "b", 1, 1500 * MS, 0, record, &o[1], NULL);
    ck_assert_uint_eq(w.sent[2].endpoint, 1);
    deliver(&w, 2, "b", 1510 * MS);
    /* Its back-off over, 0 is tried again by the next request, and is
     * healthy once it answers. */
    udprr__exchange_submit(&w.x, "c", 1, 2 * SEC, 0, record, &o[2], NULL);
    ck_assert_uint_eq(w.sent[3].endpoint, 0);
    /* Tried once: left alone again until that one is decided. */
    ck_assert_uint_eq(w.x.ep[0].retry_at_us, 3 * SEC);
    deliver(&w, 3, "c", 2 * SEC + 5 * MS);
    ck_assert_int_eq(o[2].status, UDPRR_OK);
    ck_assert_uint_eq(w.x.ep[0].failures, 0);
    ck_assert_uint_eq(w.x.ep[0].stats.answers, 1);
    /* Both healthy: the lower SRTT (0's 5 ms, 1's 30 and 10 ms). */
    ck_assert_uint_eq(udprr__exchange_best(&w.x, 3 * SEC), 0);
    udprr__exchange_destroy(&w.x);
}
END_TEST

START_TEST(test_endpoints_backoff_doubles)
{
    struct world w;
    struct outcome o = {0};
    world_init_endpoints(&w, 2, 0, 100 * MS);
    w.x.ep[0].failures = 0;
    for (unsigned k = 1; k <= 9; k++) {
        udprr__exchange_refused(&w.x, 1u << 0, 0);
        uint64_t shift = k - 1 < 6 ? k - 1 : 6;
        ck_assert_uint_eq(w.x.ep[0].failures, k);
        ck_assert_uint_eq(w.x.ep[0].retry_at_us, (100 * MS) << shift);
    }
    /* While 0 backs off, the healthy 1; once 0's back-off (6.4 s, the
     * cap) has run out, 0 is due to be tried again, and ranks first. */
    ck_assert_uint_eq(udprr__exchange_best(&w.x, 1 * SEC), 1);
    ck_assert_uint_eq(udprr__exchange_best(&w.x, 6400 * MS), 0);
    (void)o;
    udprr__exchange_destroy(&w.x);
}
END_TEST

START_TEST(test_endpoints_refused_only_stays_on_timeout)
{
    struct world w;
    struct outcome o = {0};
    world_init_endpoints(&w, 2, 1, 1 * SEC);
    udprr__exchange_submit(&w.x, "once", 4, 0, 0, record, &o, NULL);
    udprr__exchange_timers(&w.x, 1 * SEC);
    udprr__exchange_timers(&w.x, 3 * SEC);
    /* Retransmitted to 0 on its backed-off schedule: never to 1. */
    ck_assert_uint_eq(w.nsent, 3);
    for (size_t i = 0; i < w.nsent; i++)
        ck_assert_uint_eq(w.sent[i].endpoint, 0);
    ck_assert_uint_eq(w.sent[2].hdr.attempt, 3);
    ck_assert_uint_eq(w.x.ep[1].stats.attempts, 0);
    /* A refusal (nothing ran) still moves it. */
    udprr__exchange_refused(&w.x, 1u << 0, 3500 * MS);
    ck_assert_uint_eq(w.nsent, 4);
    ck_assert_uint_eq(w.sent[3].endpoint, 1);
    ck_assert_uint_eq(w.sent[3].hdr.attempt, 4);
    udprr__exchange_timers(&w.x, 10 * SEC);
    ck_assert_int_eq(o.status, UDPRR_ETIMEDOUT);
    udprr__exchange_destroy(&w.x);
}
END_TEST

START_TEST(test_endpoints_refusal_moves_in_flight_then_ends_all)
{
    struct world w;
    struct outcome o[4] = {{0}, {0}, {0}, {0}};
    world_init_endpoints(&w, 2, 0, 1 * SEC);
    /* Two fill 0's window, 1's is shut: a third request waits. */
    w.x.ep[0].window.size = 2;
    w.x.ep[1].window.size = 0;
    for (int i = 0; i < 3; i++)
        udprr__exchange_submit(&w.x, "r", 1, 0, 0, record, &o[i], NULL);
    ck_assert_uint_eq(w.nsent, 2);
    ck_assert_uint_eq(w.x.queued, 1);
    w.x.ep[1].window.size = 3;
    /* 0 refuses: its two requests move to 1 at once, attempt 2; the
     * queued one now goes to 1, the best, as its attempt 1. */
    udprr__exchange_refused(&w.x, 1u << 0, 5 * MS);
    ck_assert_uint_eq(w.nsent, 5);
    for (size_t i = 2; i < 5; i++)
        ck_assert_uint_eq(w.sent[i].endpoint, 1);
    ck_assert_uint_eq(w.x.ep[0].in_flight, 0);
    ck_assert_uint_eq(w.x.ep[1].in_flight, 3);
    ck_assert_uint_eq(w.x.queued, 0);
    /* A late reply from 0 (to the first transmission, sent there) still
     * completes its request; one claiming to come from an endpoint a
     * request never went to does not. */
    deliver_from(&w, 0, 0, "late", 6 * MS);
    ck_assert_int_eq(o[0].status, UDPRR_OK);
    ck_assert_int_eq(o[0].calls, 1);
    uint64_t unexpected = w.x.stats.dropped_unexpected;
    deliver_from(&w, 0, 4, "forged", 6 * MS);
    ck_assert_uint_eq(w.x.stats.dropped_unexpected, unexpected + 1);
    ck_assert_int_eq(o[2].calls, 0);
    /* That late reply said 0 was alive; now both refuse: nothing is left
     * to move to, and nothing listens anywhere, so the queued request
     * ends too. */
    ck_assert_uint_eq(w.x.ep[0].failures, 0);
    struct outcome q = {0};
    w.x.ep[0].window.size = 0; /* full: q waits */
    w.x.ep[1].window.size = 2;
    udprr__exchange_submit(&w.x, "s", 1, 7 * MS, 0, record, &q, NULL);
    ck_assert_uint_eq(w.x.queued, 1);
    udprr__exchange_refused(&w.x, 3u, 8 * MS);
    ck_assert_int_eq(o[1].status, UDPRR_EREFUSED);
    ck_assert_int_eq(o[2].status, UDPRR_EREFUSED);
    ck_assert_int_eq(q.status, UDPRR_EREFUSED);
    ck_assert_uint_eq(w.x.pending, 0);
    /* The counters add up. */
    ck_assert_uint_eq(w.x.stats.attempts + w.x.stats.unsent + w.x.queued,
                      w.x.stats.requests + w.x.stats.retransmissions);
    udprr__exchange_destroy(&w.x);
}
END_TEST

START_TEST(test_endpoints_lowest_srtt_and_own_windows)
{
    struct world w;
    struct outcome o[8];
    memset(o, 0, sizeof o);
    world_init_endpoints(&w, 2, 0, 1 * SEC);
    /* Unmeasured endpoints count as 0: the first request goes to 0, the
     * second (0 measured at 50 ms) to 1, then 1 (measured at 10 ms) wins. */
    udprr__exchange_submit(&w.x, "1", 1, 0, 0, record, &o[0], NULL);
    deliver(&w, 0, "x", 50 * MS);
    udprr__exchange_submit(&w.x, "2", 1, 50 * MS, 0, record, &o[1], NULL);
    ck_assert_uint_eq(w.sent[1].endpoint, 1);
    deliver(&w, 1, "x", 60 * MS);
    /* 1's window of 2 fills: the next go to 0, whose window of 1 fills
     * too; the last waits. */
    w.x.ep[1].window.size = 2;
    w.x.ep[0].window.size = 1;
    for (int i = 2; i < 6; i++)
        udprr__exchange_submit(&w.x, "n", 1, 70 * MS, 0, record, &o[i], NULL);
    ck_assert_uint_eq(w.nsent, 5);
    ck_assert_uint_eq(w.sent[2].endpoint, 1);
    ck_assert_uint_eq(w.sent[3].endpoint, 1);
    ck_assert_uint_eq(w.sent[4].endpoint, 0);
    ck_assert_uint_eq(w.x.queued, 1);
    ck_assert_uint_eq(w.x.ep[0].in_flight, 1);
    ck_assert_uint_eq(w.x.ep[1].in_flight, 2);
    /* An answer from 1 makes room there: the waiting one goes to 1. */
    deliver(&w, 2, "x", 80 * MS);
    ck_assert_uint_eq(w.nsent, 6);
    ck_assert_uint_eq(w.sent[5].endpoint, 1);
    udprr__exchange_destroy(&w.x);
}
END_TEST

START_TEST(test_endpoints_all_silent_still_back_off)
{
    struct world w;
    struct outcome o = {0};
    world_init_endpoints(&w, 2, 0, 1 * SEC);
    udprr__exchange_submit(&w.x, "q", 1, 0, 0, record, &o, NULL);
    for (uint64_t t = 0; t <= 10 * SEC && o.calls == 0; t += 1 * MS)
        udprr__exchange_timers(&w.x, t);
    /* 0 at 0 s, 1 at 1 s (waits 2), 0 at 3 s (waits 4), 1 at 7 s (waits
     * 8, cut to the deadline at 10 s): as with one server, alternating. */
    ck_assert_int_eq(o.status, UDPRR_ETIMEDOUT);
    ck_assert_uint_eq(w.nsent, 4);
    const unsigned want[4] = {0, 1, 0, 1};
    for (size_t i = 0; i < 4; i++) {
        ck_assert_uint_eq(w.sent[i].endpoint, want[i]);
        ck_assert_uint_eq(w.sent[i].hdr.attempt, i + 1);
    }
    udprr__exchange_destroy(&w.x);
}
END_TEST

START_TEST(test_one_endpoint_refusal_found_by_pump_ends_everything)
{
    struct world w;
    struct outcome o[4] = {{0}, {0}, {0}, {0}};
    world_init_endpoints(&w, 1, 0, 1 * SEC);
    w.x.ep[0].window.size = 2;
    for (int i = 0; i < 4; i++)
        udprr__exchange_submit(&w.x, "r", 1, 0, 0, record, &o[i], NULL);
    ck_assert_uint_eq(w.x.queued, 2);
    /* The server went away after answering #0: the send of #2 (its turn
     * came with that answer) is refused, so #1, still in flight, and #3,
     * still queued, end at once too, as a refusal always ended them. */
    w.refusing = 1;
    deliver(&w, 0, "ok", 5 * MS);
    ck_assert_int_eq(o[0].status, UDPRR_OK);
    for (int i = 1; i < 4; i++) {
        ck_assert_int_eq(o[i].calls, 1);
        ck_assert_int_eq(o[i].status, UDPRR_EREFUSED);
    }
    ck_assert_uint_eq(w.x.pending, 0);
    udprr__exchange_destroy(&w.x);
}
END_TEST

START_TEST(test_endpoints_refusal_after_the_deadline_sends_nothing)
{
    struct world w;
    struct outcome o = {0};
    world_init_endpoints(&w, 2, 0, 1 * SEC);
    w.x.limits.deadline_us = 500 * MS;
    udprr__exchange_submit(&w.x, "q", 1, 0, 0, record, &o, NULL);
    /* The refusal is read before the timers run, past the deadline. */
    udprr__exchange_refused(&w.x, 1u << 0, 500 * MS + 5);
    ck_assert_uint_eq(w.nsent, 1);
    ck_assert_int_eq(o.status, UDPRR_ETIMEDOUT);
    udprr__exchange_destroy(&w.x);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("exchange");
    TCase *tc = tcase_create("engine");
    tcase_add_test(tc, test_submit_sends_attempt_one);
    tcase_add_test(tc, test_reply_completes_and_samples);
    tcase_add_test(tc, test_backoff_schedule_then_deadline);
    tcase_add_test(tc, test_max_attempts_without_deadline);
    tcase_add_test(tc, test_a_request_keeps_its_first_clock);
    tcase_add_test(tc, test_late_timers_fire_once_per_step);
    tcase_add_test(tc, test_reply_to_earlier_attempt_completes_with_its_sample);
    tcase_add_test(tc, test_forged_and_stray_datagrams_never_complete);
    tcase_add_test(tc, test_duplicate_and_stale_replies_are_counted_apart);
    tcase_add_test(tc, test_decline_ends_with_eremote);
    tcase_add_test(tc, test_refused_send_fails_everything);
    tcase_add_test(tc, test_fail_all_and_cancel);
    tcase_add_test(tc, test_each_end_is_counted_under_its_status);
    tcase_add_test(tc, test_invalid_and_too_big);
    tcase_add_test(tc, test_transient_send_errors_are_retried);
    tcase_add_test(tc, test_rtt_state_carries_over_requests);
    tcase_add_test(tc, test_many_outstanding_fire_in_order);
    tcase_add_test(tc, test_broken_random_cannot_reuse_an_id);
    tcase_add_test(tc, test_callback_may_submit);
    tcase_add_test(tc, test_allocation_failures_leave_state_intact);
    tcase_add_test(tc, test_raw_keeps_one_request_in_flight);
    tcase_add_test(tc, test_raw_retransmitted_reply_is_no_sample);
    tcase_add_test(tc, test_id_at_offset_matches_on_the_id);
    tcase_add_test(tc, test_one_byte_ids_stay_distinct);
    tcase_add_test(tc, test_short_ids_do_not_repeat_within_their_space);
    tcase_add_test(tc, test_random_failure_starts_nothing);
    tcase_add_test(tc, test_fail_all_ends_even_when_callbacks_resubmit);
    suite_add_tcase(s, tc);

    TCase *q = tcase_create("window and queue");
    tcase_set_timeout(q, 60);
    tcase_add_test(q, test_window_grows_halves_and_grows_back);
    tcase_add_test(q, test_deadline_is_no_loss);
    tcase_add_test(q, test_cancel_queued_and_in_flight);
    tcase_add_test(q, test_queued_request_meets_its_deadline);
    tcase_add_test(q, test_pending_bounds);
    tcase_add_test(q, test_turn_after_deadline_is_no_send);
    tcase_add_test(q, test_fail_all_sends_what_its_callbacks_queued);
    tcase_add_test(q, test_ten_thousand_in_flight);
    suite_add_tcase(s, q);

    TCase *e = tcase_create("endpoints");
    tcase_add_test(e, test_endpoints_first_refused_at_send);
    tcase_add_test(e, test_endpoints_timeout_moves_then_back_after_backoff);
    tcase_add_test(e, test_endpoints_backoff_doubles);
    tcase_add_test(e, test_endpoints_refused_only_stays_on_timeout);
    tcase_add_test(e, test_endpoints_refusal_moves_in_flight_then_ends_all);
    tcase_add_test(e, test_endpoints_lowest_srtt_and_own_windows);
    tcase_add_test(e, test_endpoints_all_silent_still_back_off);
    tcase_add_test(e, test_one_endpoint_refusal_found_by_pump_ends_everything);
    tcase_add_test(e, test_endpoints_refusal_after_the_deadline_sends_nothing);
    suite_add_tcase(s, e);
    return udprr_test_run(s);
}
