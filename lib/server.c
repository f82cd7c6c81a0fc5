/* SPDX-License-Identifier: MIT */
/*
 * server.c - the public server loop: a bound socket, the application's
 * handler, and the reply cache (dedup) that makes execution at-most-once.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

#include "alloc.h"
#include "dedup.h"
#include "framing.h"
#include "opts.h"
#include "sock.h"
#include "udprr.h"
#include "wire.h"

/* What UDPRR_NO_REPLY was in 0.1's header. */
#define NO_REPLY_0_1 1

/* Datagrams taken per receive step before waiting again. */
#define RECV_BATCH 64

/* stop() is async-signal-safe only if this flag needs no lock. */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "atomic_int must be lock-free");

/* The server's own counters, each named as the field of struct
 * udprr_server_stats (udprr.h) that reports it. The cache's figures
 * (cache_hits, cache_entries, ...) are the reply cache's own
 * (udprr__dedup_stats); udprr_server_stats puts the two together. */
struct server_counters {
    uint64_t received;
    uint64_t handled;
    uint64_t answered;
    uint64_t declined;
    uint64_t not_answered;
    uint64_t dropped_malformed;
    uint64_t dropped_unexpected;
    uint64_t send_errors;
    uint64_t uncached;
};

struct udprr_server {
    int fd;
    int wake_fd; /* eventfd: udprr_server_stop wakes run through it */
    atomic_int stopping;
    udprr__dedup *cache; /* NULL when the reply cache is off */
    struct udprr__framing framing;
    struct server_counters stats;
    /* Set while run was entered through the 0.1 symbol: its handler was
     * built against 0.1's header, where UDPRR_NO_REPLY was 1. */
    int results_0_1;
    /* Last: open zeroes only what comes before them (see there). */
    uint8_t rxbuf[UDPRR__RECV_BUFFER_BYTES];
    uint8_t reply[UDPRR_MAX_DATAGRAM];
};

int udprr_server_open(udprr_server **out, const char *host,
                      const char *service, const udprr_server_opts *opts)
{
    udprr_server_opts o;
    if (out == NULL || service == NULL ||
        udprr__server_opts_take(&o, opts) != UDPRR_OK)
        return UDPRR_EINVAL;

    udprr_server *s = udprr__malloc(sizeof *s);
    if (s == NULL)
        return UDPRR_ENOMEM;
    /* Everything but the two 64 KiB buffers starts zeroed. rxbuf is only
     * read after a receive wrote it, reply only after the handler wrote
     * it (up to the *reply_len it set), so zeroing them would touch (and
     * make resident) every one of their pages for nothing. */
    memset(s, 0, offsetof(udprr_server, rxbuf));
    s->fd = s->wake_fd = -1;
    atomic_init(&s->stopping, 0);

    s->framing.kind = o.framing;
    s->framing.id_offset = o.id_offset;
    s->framing.id_len = o.id_len;
    int rc = udprr__framing_check(&s->framing);
    /* Raw datagrams carry no request identity to remember answers by. */
    if (rc == UDPRR_OK && o.reply_cache &&
        udprr__framing_has_id(&s->framing)) {
        struct udprr__dedup_limits lim = {o.cache_entries, o.cache_bytes,
                                          (uint64_t)o.cache_lifetime_ms * 1000,
                                          {0, 0}};
        rc = udprr__random_bytes(lim.hash_key, sizeof lim.hash_key);
        if (rc == UDPRR_OK)
            rc = udprr__dedup_new(&s->cache, &lim);
    }
    if (rc == UDPRR_OK)
        rc = udprr__wake_open(&s->wake_fd);
    if (rc == UDPRR_OK)
        rc = udprr__sock_bind(host, service, &s->fd);
    if (rc != UDPRR_OK) {
        int saved = errno;
        udprr_server_close(s);
        errno = saved;
        return rc;
    }
    *out = s;
    return UDPRR_OK;
}

void udprr_server_close(udprr_server *s)
{
    if (s == NULL)
        return;
    udprr__sock_close(s->fd);
    udprr__sock_close(s->wake_fd);
    udprr__dedup_free(s->cache);
    udprr__free(s);
}

int udprr_server_sockname(const udprr_server *s, struct sockaddr *addr,
                          socklen_t *len)
{
    if (s == NULL || addr == NULL || len == NULL)
        return UDPRR_EINVAL;
    return udprr__sock_name(s->fd, addr, len);
}

void udprr_server_stop(udprr_server *s)
{
    if (s == NULL)
        return;
    /* Only an atomic store and udprr__wake_signal: both
     * async-signal-safe. */
    atomic_store(&s->stopping, 1);
    udprr__wake_signal(s->wake_fd);
}

/* Sends the framing's header (if any) and body to peer in one datagram.
 * An id-at-offset body already carries the request's ID. */
static void answer(udprr_server *s, const struct sockaddr *peer,
                   socklen_t peer_len, enum udprr__wire_kind kind,
                   const struct udprr__framed *req, const uint8_t *body,
                   size_t body_len)
{
    uint8_t header[UDPRR__WIRE_HEADER_BYTES];
    size_t header_len;
    if (!udprr__framing_reply(&s->framing, kind, req->id, req->attempt, body,
                              body_len, header, &header_len))
        return; /* a decline this framing cannot express */
    if (udprr__sock_send_to(s->fd, peer, peer_len, header, header_len, body,
                            body_len) != UDPRR_OK)
        s->stats.send_errors++; /* the client's retry asks again */
    else
        s->stats.answered++;
}

static void handle_datagram(udprr_server *s, size_t len,
                            const struct sockaddr *peer, socklen_t peer_len,
                            udprr_handler h, void *user, uint64_t now_us)
{
    struct udprr__framed in;

    if (udprr__framing_parse(&s->framing, s->rxbuf, len, 0, &in) !=
        UDPRR__WIRE_VALID) {
        s->stats.dropped_malformed++;
        return;
    }
    if (in.kind != UDPRR__KIND_REQUEST) {
        s->stats.dropped_unexpected++;
        return;
    }

    struct udprr__dedup_key key;
    memset(&key, 0, sizeof key);
    key.id = in.id;
    key.addr_len = (uint8_t)udprr__sock_addr_key(peer, peer_len, key.addr);
    if (s->cache != NULL && key.addr_len > 0) {
        int kind;
        const uint8_t *cached;
        size_t cached_len;
        if (udprr__dedup_lookup(s->cache, &key, now_us, &kind, &cached,
                                &cached_len)) {
            answer(s, peer, peer_len, (enum udprr__wire_kind)kind, &in,
                   cached, cached_len);
            return;
        }
    }

    size_t cap = udprr__framing_max_body(&s->framing);
    udprr_request req = {in.body, in.body_len, peer, peer_len, in.id,
                         in.attempt};
    size_t reply_len = 0;
    int rc = h(user, &req, s->reply, cap, &reply_len);
    s->stats.handled++;
    if (s->results_0_1 && rc == NO_REPLY_0_1)
        rc = UDPRR_NO_REPLY;
    if (rc == UDPRR_NO_REPLY) {
        s->stats.not_answered++;
        return;
    }
    enum udprr__wire_kind kind = UDPRR__KIND_REPLY;
    /* Anything but UDPRR_REPLY and UDPRR_NO_REPLY declines, so that a
     * handler's error path (return 1, -1, -EIO) tells the client at once. */
    if (rc != UDPRR_REPLY || reply_len > cap) {
        kind = UDPRR__KIND_DECLINE;
        reply_len = 0;
        s->stats.declined++;
    }
    /* The ID goes into the reply before it is cached, so a cached reply is
     * sent again exactly as it was. */
    udprr__framing_reply_id(&s->framing, in.id, s->reply, reply_len);
    /* Cache first, then send: once the handler has run, a retransmission
     * must find its answer even if this send is lost. A reply the cache
     * cannot take (larger than its whole budget, or no memory) is still
     * sent; only its retransmissions would run the handler again. */
    if (s->cache != NULL && key.addr_len > 0 &&
        udprr__dedup_insert(s->cache, &key, now_us, kind, s->reply,
                            reply_len) != UDPRR_OK)
        s->stats.uncached++;
    answer(s, peer, peer_len, kind, &in, s->reply, reply_len);
}

/* Takes up to a batch of datagrams from the socket; never blocks. */
static void receive_step(udprr_server *s, udprr_handler h, void *user)
{
    for (int i = 0; i < RECV_BATCH && !atomic_load(&s->stopping); i++) {
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof peer;
        ssize_t n = udprr__sock_recv_from(s->fd, s->rxbuf, sizeof s->rxbuf,
                                          &peer, &peer_len);
        if (n < 0)
            return; /* EAGAIN: drained; other errors: nothing to take */
        s->stats.received++;
        handle_datagram(s, (size_t)n, (struct sockaddr *)&peer, peer_len, h,
                        user, udprr__now_us());
    }
}

static int run(udprr_server *s, udprr_handler h, void *user)
{
    while (!atomic_load(&s->stopping)) {
        int readable = udprr__sock_wait(s->fd, s->wake_fd, UINT64_MAX);
        if (readable < 0) {
            if (errno == EINTR)
                continue;
            return UDPRR_ESYS;
        }
        if (readable)
            receive_step(s, h, user);
    }
    return UDPRR_OK;
}

int udprr_server_run_v2(udprr_server *s, udprr_handler h, void *user)
{
    if (s == NULL || h == NULL)
        return UDPRR_EINVAL;
    s->results_0_1 = 0;
    return run(s, h, user);
}

/* The symbol programs built against 0.1's header call: their handlers'
 * results are 0.1's. */
int(udprr_server_run)(udprr_server *s, udprr_handler h, void *user)
{
    if (s == NULL || h == NULL)
        return UDPRR_EINVAL;
    s->results_0_1 = 1;
    return run(s, h, user);
}

int udprr_server_stats(const udprr_server *s, struct udprr_server_stats *out)
{
    if (s == NULL || out == NULL || out->size < sizeof out->size)
        return UDPRR_EINVAL;
    const struct server_counters *c = &s->stats;
    struct udprr__dedup_stats d; /* all zeros without a cache */
    udprr__dedup_stats(s->cache, &d);
    struct udprr_server_stats full = {
        .size = sizeof full,
        .received = c->received,
        .handled = c->handled,
        .answered = c->answered,
        .cache_hits = d.hits,
        .declined = c->declined,
        .not_answered = c->not_answered,
        .dropped_malformed = c->dropped_malformed,
        .dropped_unexpected = c->dropped_unexpected,
        .send_errors = c->send_errors,
        .uncached = c->uncached,
        .cache_entries = d.entries,
        .cache_bytes = d.bytes,
        .cache_evicted = d.evicted,
        .cache_expired = d.expired,
    };
    size_t n = out->size < sizeof full ? out->size : sizeof full;
    memcpy(out, &full, n);
    out->size = n;
    return UDPRR_OK;
}
