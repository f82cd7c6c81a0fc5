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
#include "gather.h"
#include "opts.h"
#include "seal.h"
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
    int fd;         /* what udprr_client_fd gives: the one socket, or an
                       epoll over the endpoints' sockets */
    int fds[UDPRR__XCHG_MAX_ENDPOINTS]; /* endpoint i's connected socket */
    size_t n_fds;
    struct udprr__exchange x;
    struct udprr__sock_setup setup; /* its strings point into setup_strings */
    char *setup_strings;
    udprr_attempt_fn on_attempt;
    void *on_attempt_user;
    uint8_t random_pool[RANDOM_POOL_BYTES];
    size_t random_used;
    unsigned depth; /* calls on the stack that may run done callbacks */
    int closing;    /* close was called; freed when depth returns to 0 */
    /* The sealed mode (seal.h): the key, and where each datagram is
     * sealed before it is sent; sealed NULL: plain datagrams. */
    uint8_t *sealed;
    struct udprr__keyring ring;
    uint64_t dropped_auth;
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
    lim->refused_only = o->failover == UDPRR_FAILOVER_REFUSED;
    lim->endpoint_retry_us = (uint64_t)o->endpoint_retry_ms * 1000;
    if (o->max_attempts > 65535 || o->max_window > UDPRR__WINDOW_MAX ||
        o->max_pending > MAX_PENDING_LIMIT ||
        o->max_pending_bytes < UDPRR_PENDING_OVERHEAD + UDPRR_MAX_DATAGRAM ||
        (o->failover != UDPRR_FAILOVER_ANY &&
         o->failover != UDPRR_FAILOVER_REFUSED) ||
        o->endpoint_retry_ms < 1 || o->endpoint_retry_ms > 3600000 ||
        o->multicast_ttl < 1 || o->multicast_ttl > 255)
        return UDPRR_EINVAL;
    return udprr__rtt_policy_check(p);
}

/* --- the engine's outside world ----------------------------------------- */

/* The datagram as it goes out: buf itself, or (sealed) buf sealed into
 * c->sealed with clock_ms, the request's clock (exchange.h). NULL when it
 * would not fit: the engine's max body leaves room, so only a bug
 * would get there, and it gets no further. */
static const void *outgoing(udprr_client *c, const void *buf, size_t *len,
                            uint64_t clock_ms)
{
    if (c->sealed == NULL)
        return buf;
    if (*len > UDPRR_MAX_DATAGRAM - UDPRR_SEAL_OVERHEAD)
        return NULL;
    *len = udprr__seal(&c->ring.keys[0], clock_ms, buf, *len, c->sealed);
    return c->sealed;
}

/* The datagram data[0..*len) as the engine takes it: itself, or (sealed)
 * what it opens to, in place; NULL when it does not open (counted). */
static uint8_t *incoming(udprr_client *c, uint8_t *data, size_t *len)
{
    uint32_t key_id;
    uint64_t clock_ms; /* the server's: not checked (udprr.h) */
    if (c->sealed == NULL)
        return data;
    if (udprr__seal_open(&c->ring, data, *len, &key_id, &clock_ms, len) !=
        UDPRR__SEAL_OPENED) {
        c->dropped_auth++;
        return NULL;
    }
    return data + UDPRR__SEAL_HEAD_BYTES;
}

static int client_send(void *ctx, unsigned endpoint, const void *buf,
                       size_t len, uint64_t clock_ms)
{
    udprr_client *c = ctx;
    const void *out = outgoing(c, buf, &len, clock_ms);
    if (out == NULL)
        return UDPRR_ETOOBIG;
    return udprr__sock_send(c->fds[endpoint], out, len);
}

static uint64_t client_clock_ms(void *ctx)
{
    (void)ctx;
    return udprr__seal_clock_ms();
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

/* Copies the socket options of o into c->setup, its strings into one
 * block that c owns. UDPRR_OK or UDPRR_ENOMEM. */
static int keep_setup(udprr_client *c, const udprr_client_opts *o)
{
    const char *from[3] = {o->local_host, o->local_service, o->interface};
    const char **to[3] = {&c->setup.local_host, &c->setup.local_service,
                          &c->setup.interface};
    size_t total = 0;
    for (int i = 0; i < 3; i++)
        total += from[i] != NULL ? strlen(from[i]) + 1 : 0;
    if (total > 0 && (c->setup_strings = udprr__malloc(total)) == NULL)
        return UDPRR_ENOMEM;
    char *p = c->setup_strings;
    for (int i = 0; i < 3; i++) {
        if (from[i] == NULL)
            continue;
        size_t n = strlen(from[i]) + 1;
        memcpy(p, from[i], n);
        *to[i] = p;
        p += n;
    }
    c->setup.broadcast = o->broadcast;
    c->setup.multicast_ttl = o->multicast_ttl;
    c->setup.dont_fragment = o->dont_fragment;
    return UDPRR_OK;
}

/* Connects one socket per address of each entry of list[0..n). The most
 * telling failure when none connects (sock.h's order), its errno kept. */
static int connect_all(udprr_client *c, const udprr_endpoint *list, size_t n)
{
    int rc = UDPRR_ERESOLVE, saved = 0;
    for (size_t i = 0; i < n && c->n_fds < UDPRR__XCHG_MAX_ENDPOINTS; i++) {
        if (list[i].host == NULL || list[i].service == NULL)
            return UDPRR_EINVAL;
        int now = udprr__sock_connect_each(list[i].host, list[i].service,
                                           &c->setup, c->fds,
                                           UDPRR__XCHG_MAX_ENDPOINTS,
                                           &c->n_fds);
        /* ESYS (a socket got somewhere) tells more than ERESOLVE. */
        if (now != UDPRR_OK && (rc == UDPRR_ERESOLVE || now == UDPRR_ESYS)) {
            rc = now;
            saved = errno;
        }
    }
    if (c->n_fds > 0)
        return UDPRR_OK;
    errno = saved;
    return rc;
}

static void close_sockets(udprr_client *c)
{
    for (size_t i = 0; i < c->n_fds; i++)
        udprr__sock_close(c->fds[i]);
    if (c->n_fds > 1)
        udprr__sock_close(c->fd);
}

/* Frees the handle and what it holds but the engine; the key is wiped. */
static void free_handle(udprr_client *c)
{
    close_sockets(c);
    udprr__free(c->setup_strings);
    udprr__free(c->sealed);
    udprr__keyring_wipe(&c->ring);
    udprr__free(c);
}

/* Frees what open made before it failed with rc, keeping errno. */
static int open_failed(udprr_client *c, int rc, int exchange_made)
{
    int saved = errno;
    if (exchange_made)
        udprr__exchange_destroy(&c->x);
    free_handle(c);
    errno = saved;
    return rc;
}

/* The sealed mode, when o asks for it: the key kept, a buffer to seal
 * into. */
static int keep_key(udprr_client *c, const udprr_client_opts *o)
{
    if (o->key == NULL)
        return UDPRR_OK;
    int rc = udprr__keyring_set(&c->ring, o->key, 1);
    if (rc == UDPRR_OK &&
        (c->sealed = udprr__malloc(UDPRR_MAX_DATAGRAM)) == NULL)
        rc = UDPRR_ENOMEM;
    return rc;
}

int udprr_client_open_list(udprr_client **out, const udprr_endpoint *list,
                           size_t n, const udprr_client_opts *opts)
{
    udprr_client_opts o;
    struct udprr__rtt_policy policy;
    struct udprr__exchange_limits limits;

    if (out == NULL || list == NULL || n == 0 ||
        n > UDPRR__XCHG_MAX_ENDPOINTS ||
        udprr__client_opts_take(&o, opts) != UDPRR_OK ||
        make_policy(&o, &policy, &limits) != UDPRR_OK ||
        (o.key != NULL && o.framing != UDPRR_FRAMING_NATIVE))
        return UDPRR_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (list[i].host == NULL || list[i].service == NULL)
            return UDPRR_EINVAL;
    int rc;
    if (o.key != NULL && (rc = udprr__seal_init()) != UDPRR_OK)
        return rc;

    udprr_client *c = udprr__malloc(sizeof *c);
    if (c == NULL)
        return UDPRR_ENOMEM;
    /* Everything but the 64 KiB receive buffer starts zeroed. The buffer
     * is only ever read after a receive wrote it, and zeroing it would
     * touch (and make resident) every one of its pages for nothing. */
    memset(c, 0, offsetof(udprr_client, rxbuf));
    c->fd = -1;
    c->on_attempt = o.on_attempt;
    c->on_attempt_user = o.on_attempt_user;
    /* The random pool is filled here rather than at the first request, so
     * that the kernel's random source is known to work before the handle
     * is returned: open fails with UDPRR_ESYS if it does not (getrandom
     * filtered out by a sandbox, say), and the wait for the kernel's
     * entropy pool early in boot, if any, happens here, not inside a
     * request's deadline. */
    if (udprr__random_bytes(c->random_pool, sizeof c->random_pool) !=
        UDPRR_OK)
        return open_failed(c, UDPRR_ESYS, 0);
    rc = keep_setup(c, &o);
    if (rc == UDPRR_OK)
        rc = keep_key(c, &o);
    if (rc == UDPRR_OK)
        rc = connect_all(c, list, n);
    if (rc != UDPRR_OK)
        return open_failed(c, rc, 0);
    /* Several endpoints' sockets share a chosen source port (sock.c); a
     * lone socket keeps it to itself, as any bound socket does. */
    if (c->n_fds == 1 && c->setup.local_service != NULL &&
        udprr__sock_share_port(c->fds[0], 0) != UDPRR_OK)
        return open_failed(c, UDPRR_ESYS, 0);
    /* One descriptor for the application to wait on: the socket itself,
     * or an epoll over every endpoint's. */
    if (c->n_fds == 1)
        c->fd = c->fds[0];
    else if ((rc = udprr__poller_open(c->fds, c->n_fds, &c->fd)) != UDPRR_OK)
        return open_failed(c, rc, 0);

    struct udprr__exchange_io io = {c, client_send, client_random64,
                                    client_on_attempt, client_clock_ms};
    struct udprr__framing framing = {o.framing, o.id_offset, o.id_len,
                                     c->sealed != NULL};
    limits.endpoints = (unsigned)c->n_fds;
    rc = udprr__exchange_init(&c->x, &framing, &policy, &limits, &io);
    if (rc != UDPRR_OK)
        return open_failed(c, rc, 0);
    *out = c;
    return UDPRR_OK;
}

int udprr_client_open(udprr_client **out, const char *host,
                      const char *service, const udprr_client_opts *opts)
{
    if (host == NULL || service == NULL)
        return UDPRR_EINVAL;
    udprr_endpoint one = {host, service};
    return udprr_client_open_list(out, &one, 1, opts);
}

size_t udprr_client_endpoints(const udprr_client *c)
{
    return c == NULL ? 0 : c->n_fds;
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
    free_handle(c);
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
/* Takes what endpoint's socket has, up to *budget datagrams, into the
 * engine. Returns 1 when the socket reported a refusal; 0 else. */
static int receive_from(udprr_client *c, unsigned endpoint, size_t *budget)
{
    int refused = 0;
    while (*budget > 0) {
        int refused_now;
        size_t n = udprr__sock_recv_many(c->fds[endpoint], &c->rxbuf[0][0],
                                         sizeof c->rxbuf[0],
                                         UDPRR__RECV_BATCH, c->rxlen,
                                         &refused_now);
        uint64_t now = udprr__now_us();
        for (size_t i = 0; i < n; i++) {
            size_t len = c->rxlen[i];
            uint8_t *data = incoming(c, c->rxbuf[i], &len);
            if (data != NULL)
                udprr__exchange_datagram(&c->x, endpoint, data, len, now);
            if (c->closing)
                return 0;
        }
        *budget -= n < *budget ? n : *budget;
        if (refused_now) {
            /* An ICMP error takes a place in the budget as a datagram
             * does, so a stream of them cannot hold the call. */
            if (*budget > 0)
                (*budget)--;
            refused = 1;
            continue;
        }
        /* Drained, or an error other than "refused" (an ICMP host or
         * network unreachable): left to the retries and the deadline. */
        if (n < UDPRR__RECV_BATCH)
            break;
    }
    return refused;
}

/* Takes what the sockets have (up to a budget in all) into the engine,
 * in batches. Stops early when a done callback closed the handle. */
static void receive_step(udprr_client *c)
{
    size_t budget = RECV_BUDGET;
    uint32_t refused = 0;
    for (unsigned i = 0; i < c->n_fds && !c->closing; i++)
        if (receive_from(c, i, &budget))
            refused |= (uint32_t)1 << i;
    /* Nothing listens at those endpoints now, so no retry there can be
     * answered: their requests move on, or end. Read after every
     * datagram queued before the error, so a reply that arrived before
     * the server went away still completes its request. */
    if (refused != 0 && !c->closing)
        udprr__exchange_refused(&c->x, refused, udprr__now_us());
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

/* --- gathers, the path MTU ------------------------------------------------ */

/* The longest window a gather takes (udprr.h). */
#define GATHER_MAX_WINDOW_MS 3600000u
/* Datagrams one receive of a gather takes. */
#define GATHER_BATCH 8

/* What a gather works with, freed by gather_end. */
struct gathering {
    struct udprr__gather g;
    int fd;
    udprr__recv_batch *rx;
    uint8_t *datagram;
    size_t datagram_len;
    uint8_t *with_cookie; /* native: room for the datagram and a cookie */
    struct sockaddr_storage to;
    socklen_t to_len;
    uint64_t clock_ms; /* sealed: when it began, for every transmission */
};

/* Sends transmission `attempt` of the gather's request. */
static int gather_send(udprr_client *c, struct gathering *w, unsigned attempt)
{
    udprr__framing_stamp(&c->x.framing, w->g.id, attempt, w->datagram,
                         w->datagram_len);
    size_t len = w->datagram_len;
    const void *datagram = outgoing(c, w->datagram, &len, w->clock_ms);
    if (datagram == NULL)
        return UDPRR_ETOOBIG;
    struct udprr__sock_out out = {(const struct sockaddr *)&w->to, w->to_len,
                                  NULL, NULL, 0, datagram, len};
    int status;
    udprr__sock_send_many_to(w->fd, &out, 1, &status);
    return status;
}

/* Sends the request again to the one server at from, as transmission
 * `attempt`, with the cookie its echo gave (docs/protocol.md,
 * "Amplification"). A request with no room left for a cookie is not
 * sent: that server's answer is not heard. */
static void gather_echo(udprr_client *c, struct gathering *w,
                        unsigned attempt, const uint8_t *cookie,
                        const struct sockaddr *from, socklen_t from_len)
{
    size_t len = w->datagram_len + UDPRR__WIRE_COOKIE_BYTES;
    if (w->with_cookie == NULL ||
        len > UDPRR__WIRE_HEADER_BYTES + udprr__framing_max_body(&c->x.framing))
        return;
    memcpy(w->with_cookie, w->datagram, UDPRR__WIRE_HEADER_BYTES);
    memcpy(w->with_cookie + UDPRR__WIRE_HEADER_BYTES, cookie,
           UDPRR__WIRE_COOKIE_BYTES);
    memcpy(w->with_cookie + UDPRR__WIRE_HEADER_BYTES + UDPRR__WIRE_COOKIE_BYTES,
           w->datagram + UDPRR__WIRE_HEADER_BYTES,
           w->datagram_len - UDPRR__WIRE_HEADER_BYTES);
    udprr__framing_stamp_cookie(w->g.id, attempt, w->with_cookie, len);
    const void *datagram = outgoing(c, w->with_cookie, &len, w->clock_ms);
    if (datagram == NULL)
        return;
    struct udprr__sock_out out = {from, from_len, NULL, NULL, 0, datagram, len};
    int status;
    udprr__sock_send_many_to(w->fd, &out, 1, &status); /* a loss, if not */
}

/* Hands each new server's answer among the datagrams waiting to fn, until
 * fn asks to stop or closes the handle; answers echoes. */
static int gather_receive(udprr_client *c, struct gathering *w,
                          udprr_gather_fn fn, void *user)
{
    size_t n = udprr__sock_recv_many_from(w->fd, w->rx);
    for (size_t i = 0; i < n; i++) {
        size_t len, body_len;
        socklen_t from_len;
        const uint8_t *body;
        int status;
        struct udprr__gather_key key;
        uint8_t *data = udprr__recv_batch_data(w->rx, i, &len);
        const struct sockaddr *from =
            udprr__recv_batch_peer(w->rx, i, &from_len);
        if ((data = incoming(c, data, &len)) == NULL)
            continue;
        key.len = (uint8_t)udprr__sock_addr_key(from, from_len, key.addr);
        int rc = udprr__gather_datagram(&w->g, data, len, &key, &status,
                                        &body, &body_len);
        if (rc < 0)
            return rc;
        if (rc == UDPRR__GATHER_ECHO)
            gather_echo(c, w, (unsigned)status, body, from, from_len);
        if (rc == 1 && fn(user, from, from_len, status, body, body_len) != 0)
            udprr__gather_stop(&w->g);
        if (c->closing)
            udprr__gather_stop(&w->g);
    }
    return UDPRR_OK;
}

/* Sets the gather up: its ID, its datagram, its socket. */
static int gather_begin(udprr_client *c, struct gathering *w, const void *req,
                        size_t req_len, unsigned window_ms,
                        size_t max_replies)
{
    const struct udprr__framing *f = &c->x.framing;
    uint64_t id;
    int rc = client_random64(c, &id);
    if (rc != UDPRR_OK)
        return rc;
    id &= udprr__framing_id_mask(f);
    w->clock_ms = udprr__seal_clock_ms();
    w->to_len = sizeof w->to;
    if (udprr__sock_peer(c->fds[0], (struct sockaddr *)&w->to, &w->to_len) !=
        UDPRR_OK)
        return UDPRR_ESYS;
    w->datagram = udprr__malloc(udprr__framing_overhead(f) + req_len + 1);
    if (w->datagram == NULL)
        return UDPRR_ENOMEM;
    if (f->kind == UDPRR_FRAMING_NATIVE &&
        (w->with_cookie = udprr__malloc(UDPRR__WIRE_HEADER_BYTES +
                                        UDPRR__WIRE_COOKIE_BYTES + req_len)) ==
            NULL)
        return UDPRR_ENOMEM;
    rc = udprr__framing_request(f, id, 1, req, req_len, w->datagram,
                                &w->datagram_len);
    if (rc == UDPRR_OK)
        rc = udprr__gather_init(&w->g, f, id, udprr__now_us(),
                                (uint64_t)window_ms * 1000,
                                max_replies == 0 ? UDPRR_GATHER_MAX
                                                 : max_replies,
                                c->x.limits.max_attempts);
    if (rc == UDPRR_OK)
        rc = udprr__recv_batch_new(&w->rx, GATHER_BATCH);
    if (rc == UDPRR_OK)
        rc = udprr__sock_open_unconnected(w->to.ss_family, &c->setup, &w->fd);
    return rc;
}

static void gather_end(struct gathering *w)
{
    int saved = errno;
    udprr__sock_close(w->fd);
    udprr__recv_batch_free(w->rx);
    udprr__free(w->datagram);
    udprr__free(w->with_cookie);
    udprr__gather_free(&w->g);
    errno = saved;
}

int udprr_client_gather(udprr_client *c, const void *req, size_t req_len,
                        unsigned window_ms, size_t max_replies,
                        udprr_gather_fn fn, void *user)
{
    if (c == NULL || fn == NULL || (req == NULL && req_len > 0) ||
        window_ms == 0 || window_ms > GATHER_MAX_WINDOW_MS ||
        max_replies > UDPRR_GATHER_MAX || c->depth > 0 || c->closing)
        return UDPRR_EINVAL;
    if (req_len > udprr__framing_max_body(&c->x.framing))
        return UDPRR_ETOOBIG;
    struct gathering w;
    memset(&w, 0, sizeof w);
    w.fd = -1;
    c->depth++; /* fn may close the handle: leave frees it */
    int rc = gather_begin(c, &w, req, req_len, window_ms, max_replies);
    while (rc == UDPRR_OK && !c->closing) {
        uint64_t now = udprr__now_us(), random = 0;
        unsigned attempt;
        /* Random bytes only when a transmission is due (its jitter). */
        if (now >= w.g.next_us && (rc = client_random64(c, &random)) != UDPRR_OK)
            break;
        while ((attempt = udprr__gather_due(&w.g, &c->x.ep[0].rtt, now,
                                            (uint32_t)random)) != 0) {
            int sent = gather_send(c, &w, attempt);
            /* The first transmission's failure is the call's (too big
             * for the path, say); a later one is as if lost. */
            if (sent != UDPRR_OK && attempt == 1)
                rc = sent;
        }
        if (rc != UDPRR_OK || udprr__gather_over(&w.g, now))
            break;
        uint64_t next = udprr__gather_next_us(&w.g);
        if (udprr__sock_wait(w.fd, -1, next > now ? next - now : 0) < 0 &&
            errno != EINTR) {
            rc = UDPRR_ESYS;
            break;
        }
        rc = gather_receive(c, &w, fn, user);
    }
    if (rc == UDPRR_OK && c->closing)
        rc = UDPRR_ECANCELED;
    else if (rc == UDPRR_OK && w.g.replies == 0)
        rc = UDPRR_ETIMEDOUT;
    gather_end(&w);
    leave(c);
    return rc;
}

int udprr_client_mtu(const udprr_client *c, unsigned *mtu)
{
    if (c == NULL || mtu == NULL)
        return UDPRR_EINVAL;
    return udprr__sock_mtu(c->fds[0], mtu);
}

int udprr_client_stats(const udprr_client *c, struct udprr_client_stats *out)
{
    if (c == NULL || out == NULL || out->size < sizeof out->size)
        return UDPRR_EINVAL;
    const struct udprr__exchange_counters *s = &c->x.stats;
    const struct udprr__xendpoint *best =
        &c->x.ep[udprr__exchange_best(&c->x, udprr__now_us())];
    uint64_t samples = 0;
    for (unsigned i = 0; i < c->x.n_ep; i++)
        samples += c->x.ep[i].rtt.samples;
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
        .rtt_samples = samples,
        .send_errors = s->send_errors,
        .spurious_retransmissions = s->spurious_retransmissions,
        .srtt_us = best->rtt.srtt_us,
        .rttvar_us = best->rtt.rttvar_us,
        .rto_us = best->rtt.rto_us,
        .window = best->window.size,
        .in_flight = c->x.in_flight,
        .queued = c->x.queued,
        .unsent = s->unsent,
        .window_reductions = 0,
        .echoes = s->echoes,
        .dropped_auth = c->dropped_auth,
    };
    for (unsigned i = 0; i < c->x.n_ep; i++)
        full.window_reductions += c->x.ep[i].window.reductions;
    size_t n = out->size < sizeof full ? out->size : sizeof full;
    memcpy(out, &full, n);
    out->size = n;
    return UDPRR_OK;
}

int udprr_client_endpoint_stats(const udprr_client *c, size_t i,
                                struct udprr_endpoint_stats *out)
{
    if (c == NULL || out == NULL || out->size < sizeof out->size ||
        i >= c->n_fds)
        return UDPRR_EINVAL;
    const struct udprr__xendpoint *e = &c->x.ep[i];
    uint64_t now = udprr__now_us();
    struct udprr_endpoint_stats full;
    memset(&full, 0, sizeof full);
    full.size = sizeof full;
    full.addr_len = sizeof full.addr;
    if (udprr__sock_peer(c->fds[i], (struct sockaddr *)&full.addr,
                         &full.addr_len) != UDPRR_OK)
        full.addr_len = 0;
    full.attempts = e->stats.attempts;
    full.answers = e->stats.answers;
    full.timeouts = e->stats.timeouts;
    full.refusals = e->stats.refusals;
    full.failovers = e->stats.failovers;
    full.failures = e->failures;
    full.retry_in_ms = e->failures > 0 && e->retry_at_us > now
                           ? (e->retry_at_us - now + 999) / 1000
                           : 0;
    full.srtt_us = e->rtt.srtt_us;
    full.rttvar_us = e->rtt.rttvar_us;
    full.rto_us = e->rtt.rto_us;
    full.window = e->window.size;
    full.in_flight = e->in_flight;
    size_t n = out->size < sizeof full ? out->size : sizeof full;
    memcpy(out, &full, n);
    out->size = n;
    return UDPRR_OK;
}
