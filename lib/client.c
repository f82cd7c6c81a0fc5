/* SPDX-License-Identifier: MIT */
/*
 * client.c - the public client handle: a connected socket around the
 * exchange engine. The asynchronous calls are the engine's steps with the
 * socket's I/O around them; the blocking request is a loop over the same
 * steps (submit, then wait/receive/fire timers until done): there is no
 * second engine.
 *
 * Done callbacks may send, cancel and close. Every call that can run them
 * (process, request, cancel, close) counts itself in `depth` while it
 * runs; a close from inside one ends every request and marks the handle
 * closing, and the outermost of those calls frees it as it returns (the
 * guard hiredis puts around its async callbacks).
 */
#include <errno.h>
#include <limits.h>
#include <stddef.h>
#include <string.h>

#include "alloc.h"
#include "exchange.h"
#include "opts.h"
#include "sock.h"
#include "udprr.h"

/* How many datagrams one receive step takes before it lets the timers run,
 * so a flood of junk cannot starve retransmissions. */
#define RECV_BUDGET 256
/* The largest max_pending (udprr.h). */
#define MAX_PENDING_LIMIT ((size_t)1 << 20)
/* Random bytes fetched from the kernel at once. */
#define RANDOM_POOL_BYTES 256

struct udprr_client {
    int fd;
    struct udprr__exchange x;
    udprr_attempt_fn on_attempt;
    void *on_attempt_user;
    uint8_t random_pool[RANDOM_POOL_BYTES];
    size_t random_used;
    unsigned depth; /* calls on the stack that may run done callbacks */
    int closing;    /* close was called; freed when depth returns to 0 */
    size_t rxlen[UDPRR__RECV_BATCH];
    /* Last: open zeroes only what comes before it (see there). */
    uint8_t rxbuf[UDPRR__RECV_BATCH][UDPRR__RECV_BUFFER_BYTES];
};

static int make_policy(const udprr_client_opts *o,
                       struct udprr__rtt_policy *p,
                       struct udprr__exchange_limits *lim)
{
    p->initial_rto_us = (uint64_t)o->initial_rto_ms * 1000;
    p->min_rto_us = (uint64_t)o->min_rto_ms * 1000;
    p->max_rto_us = (uint64_t)o->max_rto_ms * 1000;
    p->granularity_us = UDPRR__RTT_GRANULARITY_US;
    p->backoff_pct = o->backoff_pct;
    p->jitter_pct = o->jitter_pct;
    p->adaptive = !o->fixed_rto;
    lim->max_attempts = o->max_attempts;
    lim->deadline_us = (uint64_t)o->deadline_ms * 1000;
    lim->max_pending = o->max_pending;
    lim->max_pending_bytes = o->max_pending_bytes;
    lim->initial_window = 0; /* the window core's */
    lim->max_window = o->max_window;
    if (o->max_attempts > 65535 || o->max_window > UDPRR__WINDOW_MAX ||
        o->max_pending > MAX_PENDING_LIMIT ||
        o->max_pending_bytes < UDPRR_PENDING_OVERHEAD + UDPRR_MAX_DATAGRAM)
        return UDPRR_EINVAL;
    return udprr__rtt_policy_check(p);
}

/* --- the engine's outside world ----------------------------------------- */

static int client_send(void *ctx, const void *buf, size_t len)
{
    udprr_client *c = ctx;
    return udprr__sock_send(c->fd, buf, len);
}

static int client_random64(void *ctx, uint64_t *out)
{
    udprr_client *c = ctx;
    if (c->random_used + sizeof *out > sizeof c->random_pool) {
        int rc = udprr__random_bytes(c->random_pool, sizeof c->random_pool);
        if (rc != UDPRR_OK)
            return rc; /* no request starts without a real random ID */
        c->random_used = 0;
    }
    memcpy(out, c->random_pool + c->random_used, sizeof *out);
    c->random_used += sizeof *out;
    return UDPRR_OK;
}

static void client_on_attempt(void *ctx, uint64_t id, unsigned attempt,
                              uint64_t wait_us, uint64_t rto_us, size_t len)
{
    udprr_client *c = ctx;
    if (c->on_attempt == NULL)
        return;
    udprr_attempt_info info = {id, attempt, wait_us, rto_us, len};
    c->on_attempt(c->on_attempt_user, &info);
}

/* --- open, close --------------------------------------------------------- */

int udprr_client_open(udprr_client **out, const char *host,
                      const char *service, const udprr_client_opts *opts)
{
    udprr_client_opts o;
    struct udprr__rtt_policy policy;
    struct udprr__exchange_limits limits;

    if (out == NULL || host == NULL || service == NULL ||
        udprr__client_opts_take(&o, opts) != UDPRR_OK ||
        make_policy(&o, &policy, &limits) != UDPRR_OK)
        return UDPRR_EINVAL;

    udprr_client *c = udprr__malloc(sizeof *c);
    if (c == NULL)
        return UDPRR_ENOMEM;
    /* Everything but the 64 KiB receive buffer starts zeroed. The buffer
     * is only ever read after a receive wrote it, and zeroing it would
     * touch (and make resident) every one of its pages for nothing. */
    memset(c, 0, offsetof(udprr_client, rxbuf));
    c->on_attempt = o.on_attempt;
    c->on_attempt_user = o.on_attempt_user;
    /* The random pool is filled here rather than at the first request, so
     * that the kernel's random source is known to work before the handle
     * is returned: open fails with UDPRR_ESYS if it does not (getrandom
     * filtered out by a sandbox, say), and the wait for the kernel's
     * entropy pool early in boot, if any, happens here, not inside a
     * request's deadline. */
    if (udprr__random_bytes(c->random_pool, sizeof c->random_pool) !=
        UDPRR_OK) {
        int saved = errno;
        udprr__free(c);
        errno = saved;
        return UDPRR_ESYS;
    }

    struct udprr__exchange_io io = {c, client_send, client_random64,
                                    client_on_attempt};
    struct udprr__framing framing = {o.framing, o.id_offset, o.id_len};
    int rc = udprr__exchange_init(&c->x, &framing, &policy, &limits, &io);
    if (rc != UDPRR_OK) {
        udprr__free(c);
        return rc;
    }
    rc = udprr__sock_connect(host, service, &c->fd);
    if (rc != UDPRR_OK) {
        int saved = errno;
        udprr__exchange_destroy(&c->x);
        udprr__free(c);
        errno = saved;
        return rc;
    }
    *out = c;
    return UDPRR_OK;
}

int udprr_client_fd(const udprr_client *c)
{
    return c == NULL ? -1 : c->fd;
}

/* Frees the handle once no call that runs done callbacks is on the stack;
 * returns 1 when it did (the caller must not touch c again). */
static int leave(udprr_client *c)
{
    if (--c->depth > 0 || !c->closing)
        return 0;
    udprr__exchange_destroy(&c->x);
    udprr__sock_close(c->fd);
    udprr__free(c);
    return 1;
}

void udprr_client_close(udprr_client *c)
{
    if (c == NULL || c->closing)
        return; /* a done callback run by this close closing again */
    c->closing = 1;
    c->depth++;
    udprr__exchange_shutdown(&c->x); /* every request: UDPRR_ECANCELED */
    leave(c);
}

/* --- the steps ----------------------------------------------------------- */

/* Takes what the socket has (up to a budget) into the engine, in batches.
 * Stops early when a done callback closed the handle. */
static void receive_step(udprr_client *c)
{
    int refused = 0;
    for (size_t taken = 0; taken < RECV_BUDGET;) {
        int refused_now;
        size_t n = udprr__sock_recv_many(c->fd, &c->rxbuf[0][0],
                                         sizeof c->rxbuf[0],
                                         UDPRR__RECV_BATCH, c->rxlen,
                                         &refused_now);
        uint64_t now = udprr__now_us();
        for (size_t i = 0; i < n; i++) {
            udprr__exchange_datagram(&c->x, c->rxbuf[i], c->rxlen[i], now);
            if (c->closing)
                return;
        }
        taken += n;
        if (refused_now) {
            /* An ICMP error takes a place in the budget as a datagram
             * does, so a stream of them cannot hold the call. */
            taken++;
            refused = 1;
            continue;
        }
        /* Drained, or an error other than "refused" (an ICMP host or
         * network unreachable): left to the retries and the deadline. */
        if (n < UDPRR__RECV_BATCH)
            break;
    }
    /* Nothing listens at the server's port now, so no retry of what is
     * still outstanding can be answered. */
    if (refused)
        udprr__exchange_fail_all(&c->x, UDPRR_EREFUSED, udprr__now_us());
}

/* One step of the engine that never blocks: receive, then fire timers
 * (which also sends what the queue may now send). */
static void process_step(udprr_client *c)
{
    receive_step(c);
    if (!c->closing)
        udprr__exchange_timers(&c->x, udprr__now_us());
}

/* --- the asynchronous face ----------------------------------------------- */

int udprr_client_send_ex(udprr_client *c, const void *req, size_t len,
                         const udprr_send_opts *opts, udprr_done_fn done,
                         void *user, uint64_t *ticket)
{
    udprr_send_opts o;
    if (c == NULL || c->closing || udprr__send_opts_take(&o, opts) != UDPRR_OK)
        return UDPRR_EINVAL;
    return udprr__exchange_submit(&c->x, req, len, udprr__now_us(),
                                  (uint64_t)o.deadline_ms * 1000, done, user,
                                  ticket);
}

int udprr_client_send(udprr_client *c, const void *req, size_t len,
                      udprr_done_fn done, void *user)
{
    return udprr_client_send_ex(c, req, len, NULL, done, user, NULL);
}

int udprr_client_cancel(udprr_client *c, uint64_t ticket)
{
    if (c == NULL)
        return UDPRR_EINVAL;
    if (c->closing)
        return UDPRR_ENOTPENDING; /* close ended every request */
    c->depth++;
    int rc = udprr__exchange_cancel(&c->x, ticket, UDPRR_ECANCELED,
                                    udprr__now_us());
    leave(c);
    return rc;
}

int udprr_client_timeout_ms(const udprr_client *c)
{
    uint64_t when;
    if (c == NULL || !udprr__exchange_next_timer(&c->x, &when))
        return -1;
    uint64_t now = udprr__now_us();
    if (when <= now)
        return 0;
    /* Rounded up: a loop that waits this long finds the timer due. */
    uint64_t ms = (when - now + 999) / 1000;
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

int udprr_client_process(udprr_client *c)
{
    if (c == NULL || c->depth > 0)
        return UDPRR_EINVAL; /* NULL, or from a done callback */
    c->depth++;
    process_step(c);
    leave(c);
    return UDPRR_OK;
}

/* --- the blocking request ------------------------------------------------ */

struct blocking {
    int done;
    int status;
    void *reply;
    size_t reply_cap;
    size_t *reply_len;
};

static void blocking_done(void *user, int status, const void *reply,
                          size_t reply_len)
{
    struct blocking *b = user;
    b->done = 1;
    b->status = status;
    if (status != UDPRR_OK)
        return;
    size_t n = reply_len < b->reply_cap ? reply_len : b->reply_cap;
    if (n > 0)
        memcpy(b->reply, reply, n);
    *b->reply_len = reply_len;
    if (reply_len > b->reply_cap)
        b->status = UDPRR_ETRUNC;
}

int udprr_client_request(udprr_client *c, const void *req, size_t req_len,
                         void *reply, size_t reply_cap, size_t *reply_len)
{
    if (c == NULL || reply_len == NULL || (req == NULL && req_len > 0) ||
        (reply == NULL && reply_cap > 0) || c->depth > 0)
        return UDPRR_EINVAL;
    struct blocking b = {0, UDPRR_OK, reply, reply_cap, reply_len};
    uint64_t ticket;
    int rc = udprr__exchange_submit(&c->x, req, req_len, udprr__now_us(), 0,
                                    blocking_done, &b, &ticket);
    if (rc != UDPRR_OK)
        return rc;

    int saved_errno = 0;
    c->depth++;
    while (!b.done) {
        uint64_t when, now = udprr__now_us(), timeout = UINT64_MAX;
        if (udprr__exchange_next_timer(&c->x, &when))
            timeout = when > now ? when - now : 0;
        if (udprr__sock_wait(c->fd, -1, timeout) < 0 && errno != EINTR) {
            /* The request ends here, with UDPRR_ESYS: counted in failed,
             * as the stats promise, not as a cancel. */
            saved_errno = errno;
            udprr__exchange_cancel(&c->x, ticket, UDPRR_ESYS,
                                   udprr__now_us());
            break;
        }
        process_step(c);
    }
    /* A done callback of another request may have closed the handle: the
     * close ended this request too (b.done), and leave frees it. */
    leave(c);
    if (saved_errno != 0)
        errno = saved_errno;
    return b.status;
}
int udprr_client_stats(const udprr_client *c, struct udprr_client_stats *out)
{
    if (c == NULL || out == NULL || out->size < sizeof out->size)
        return UDPRR_EINVAL;
    const struct udprr__exchange_counters *s = &c->x.stats;
    struct udprr_client_stats full = {
        .size = sizeof full,
        .requests = s->requests,
        .completed = s->completed,
        .attempts = s->attempts,
        .retransmissions = s->retransmissions,
        .timeouts = s->timeouts,
        .refused = s->refused,
        .declined = s->declined,
        .canceled = s->canceled,
        .failed = s->failed,
        .dropped_stale = s->dropped_stale,
        .dropped_duplicate = s->dropped_duplicate,
        .dropped_malformed = s->dropped_malformed,
        .dropped_unexpected = s->dropped_unexpected,
        .rtt_samples = c->x.rtt.samples,
        .send_errors = s->send_errors,
        .spurious_retransmissions = s->spurious_retransmissions,
        .srtt_us = c->x.rtt.srtt_us,
        .rttvar_us = c->x.rtt.rttvar_us,
        .rto_us = c->x.rtt.rto_us,
        .window = c->x.window.size,
        .in_flight = c->x.in_flight,
        .queued = c->x.queued,
        .unsent = s->unsent,
        .window_reductions = c->x.window.reductions,
    };
    size_t n = out->size < sizeof full ? out->size : sizeof full;
    memcpy(out, &full, n);
    out->size = n;
    return UDPRR_OK;
}
