/* SPDX-License-Identifier: MIT */
/*
 * exchange.c - outstanding requests, their timers, and how datagrams and
 * time move them along. See exchange.h.
 */
#include "exchange.h"

#include <string.h>

#include "alloc.h"
#include "udprr.h"
#include "wire.h"

struct udprr__xreq {
    uint64_t id;
    unsigned attempts; /* transmissions so far */
    uint64_t deadline_us; /* UINT64_MAX: none */
    uint64_t timer_us;
    size_t heap_index;
    struct udprr__xreq *hash_next;
    udprr__xdone_fn done;
    void *user;
    uint64_t sent_us[UDPRR__XCHG_SENT_HISTORY]; /* by (attempt - 1) % N */
    size_t len;                                 /* of datagram */
    uint8_t datagram[];                         /* header + body */
};

#define INITIAL_SLOTS 16

/* --- the hash of outstanding requests, keyed by ID ----------------------- */

/* IDs are drawn at random by us, so their low bits are already uniform. */
static struct udprr__xreq **bucket_of(const struct udprr__exchange *x,
                                      uint64_t id)
{
    return &x->buckets[id & (x->nbuckets - 1)];
}

static struct udprr__xreq *find(const struct udprr__exchange *x, uint64_t id)
{
    struct udprr__xreq *r = *bucket_of(x, id);
    while (r != NULL && r->id != id)
        r = r->hash_next;
    return r;
}

static void hash_unlink(struct udprr__exchange *x, struct udprr__xreq *r)
{
    struct udprr__xreq **p = bucket_of(x, r->id);
    while (*p != r)
        p = &(*p)->hash_next;
    *p = r->hash_next;
}

static void hash_link(struct udprr__exchange *x, struct udprr__xreq *r)
{
    struct udprr__xreq **p = bucket_of(x, r->id);
    r->hash_next = *p;
    *p = r;
}

/* Doubles the buckets when the table gets full. A failed allocation keeps
 * the old table: chains get longer, lookups stay correct. */
static void hash_maybe_grow(struct udprr__exchange *x)
{
    if (x->pending < x->nbuckets || x->nbuckets > (SIZE_MAX / 2) / sizeof(void *))
        return;
    size_t n = x->nbuckets * 2;
    struct udprr__xreq **b = udprr__calloc(n, sizeof *b);
    if (b == NULL)
        return;
    struct udprr__xreq **old = x->buckets;
    size_t old_n = x->nbuckets;
    x->buckets = b;
    x->nbuckets = n;
    for (size_t i = 0; i < old_n; i++) {
        struct udprr__xreq *r = old[i];
        while (r != NULL) {
            struct udprr__xreq *next = r->hash_next;
            hash_link(x, r);
            r = next;
        }
    }
    udprr__free(old);
}

/* --- the timer heap ------------------------------------------------------ */

static void heap_set(struct udprr__exchange *x, size_t i, struct udprr__xreq *r)
{
    x->heap[i] = r;
    r->heap_index = i;
}

static void heap_up(struct udprr__exchange *x, size_t i)
{
    struct udprr__xreq *r = x->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (x->heap[parent]->timer_us <= r->timer_us)
            break;
        heap_set(x, i, x->heap[parent]);
        i = parent;
    }
    heap_set(x, i, r);
}

static void heap_down(struct udprr__exchange *x, size_t i)
{
    struct udprr__xreq *r = x->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= x->pending)
            break;
        if (child + 1 < x->pending &&
            x->heap[child + 1]->timer_us < x->heap[child]->timer_us)
            child++;
        if (r->timer_us <= x->heap[child]->timer_us)
            break;
        heap_set(x, i, x->heap[child]);
        i = child;
    }
    heap_set(x, i, r);
}

/* The caller made room (heap_reserve) before. */
static void heap_push(struct udprr__exchange *x, struct udprr__xreq *r)
{
    heap_set(x, x->pending, r);
    x->pending++;
    heap_up(x, x->pending - 1);
}

static void heap_remove(struct udprr__exchange *x, struct udprr__xreq *r)
{
    size_t i = r->heap_index;
    x->pending--;
    if (i == x->pending)
        return;
    struct udprr__xreq *moved = x->heap[x->pending];
    heap_set(x, i, moved);
    heap_up(x, i);
    heap_down(x, moved->heap_index);
}

static int heap_reserve(struct udprr__exchange *x)
{
    if (x->pending < x->heap_cap)
        return UDPRR_OK;
    if (x->heap_cap > (SIZE_MAX / 2) / sizeof(void *))
        return UDPRR_ENOMEM;
    size_t cap = x->heap_cap * 2;
    struct udprr__xreq **h = udprr__realloc(x->heap, cap * sizeof *h);
    if (h == NULL)
        return UDPRR_ENOMEM;
    x->heap = h;
    x->heap_cap = cap;
    return UDPRR_OK;
}

/* --- request IDs --------------------------------------------------------- */

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* A keyed permutation of the w-bit values (w = 8 * id_len, even): four
 * Feistel rounds over its two halves. Being a permutation, consecutive
 * counters never give the same ID until the counter wraps, so a short ID
 * is not reused before 2^w requests (a server's reply cache would take a
 * reused ID for a retransmission, as a random draw among 65536 two-byte
 * IDs would do within a few hundred requests); being keyed, the next ID
 * cannot be guessed from earlier ones without the handle's secret key. */
static uint64_t permute_id(const struct udprr__exchange *x, uint64_t v)
{
    unsigned half = 4 * x->framing.id_len;
    uint64_t half_mask = (UINT64_C(1) << half) - 1;
    uint64_t left = v >> half, right = v & half_mask;
    for (int round = 0; round < 4; round++) {
        uint64_t f = mix64(right ^ x->id_key[round]) & half_mask;
        uint64_t next_right = left ^ f;
        left = right;
        right = next_right;
    }
    return left << half | right;
}

/* A fresh ID not used by an outstanding request. *rc gets UDPRR_OK, the
 * random source's failure, or UDPRR_EINVAL when no free ID is found (a
 * broken random source, or a short ID space full of outstanding
 * requests). */
static uint64_t next_id(struct udprr__exchange *x, int *rc)
{
    uint64_t mask = udprr__framing_id_mask(&x->framing);
    /* 64-bit IDs are drawn at random: a repeat is as likely as a guess. */
    int full = mask == UINT64_MAX;
    uint64_t limit = full ? 64 : mask;
    for (uint64_t tries = 0; tries <= limit; tries++) {
        uint64_t id;
        if (!full)
            id = permute_id(x, x->id_counter++ & mask);
        else if ((*rc = x->io.random64(x->io.ctx, &id)) != UDPRR_OK)
            return 0;
        if (find(x, id) == NULL) {
            *rc = UDPRR_OK;
            return id;
        }
    }
    *rc = UDPRR_EINVAL;
    return 0;
}

/* --- requests ------------------------------------------------------------ */

static void remember_finished(struct udprr__exchange *x, uint64_t id)
{
    x->recent_ids[x->recent_next] = id;
    x->recent_next = (x->recent_next + 1) % UDPRR__XCHG_RECENT_IDS;
    if (x->recent_count < UDPRR__XCHG_RECENT_IDS)
        x->recent_count++;
}

static int recently_finished(const struct udprr__exchange *x, uint64_t id)
{
    for (size_t i = 0; i < x->recent_count; i++)
        if (x->recent_ids[i] == id)
            return 1;
    return 0;
}

/* The one counter that takes a request ended with status. */
static uint64_t *end_counter(struct udprr__exchange_counters *s, int status)
{
    switch (status) {
    case UDPRR_OK: return &s->completed;
    case UDPRR_ETIMEDOUT: return &s->timeouts;
    case UDPRR_EREFUSED: return &s->refused;
    case UDPRR_EREMOTE: return &s->declined;
    case UDPRR_ECANCELED: return &s->canceled;
    default: return &s->failed;
    }
}

static void count_end(struct udprr__exchange_counters *s, int status)
{
    (*end_counter(s, status))++;
}

/* Takes r out of the engine, frees it, then reports: by the time done runs
 * the engine is consistent again, so done may submit. */
static void finish(struct udprr__exchange *x, struct udprr__xreq *r,
                   int status, const uint8_t *reply, size_t reply_len)
{
    udprr__xdone_fn done = r->done;
    void *user = r->user;

    hash_unlink(x, r);
    heap_remove(x, r);
    remember_finished(x, r->id);
    count_end(&x->stats, status);
    udprr__free(r);
    done(user, status, reply, reply_len);
}

/* Arms r's timer after transmission r->attempts went out at now_us and
 * tells the on_attempt hook. */
static void arm(struct udprr__exchange *x, struct udprr__xreq *r,
                uint64_t now_us)
{
    /* Only waits after a retransmission are jittered (see rtt.h), so only
     * those cost a random number. */
    uint64_t draw = 0;
    if (r->attempts > 1 && x->rtt.policy.jitter_pct > 0 &&
        x->io.random64(x->io.ctx, &draw) != UDPRR_OK)
        draw = 0; /* unjittered: still a correct wait */
    uint64_t wait = udprr__rtt_wait_us(&x->rtt, r->attempts,
                                       (uint32_t)(draw >> 32));
    uint64_t when = now_us + wait;
    if (when < now_us || when > r->deadline_us)
        when = r->deadline_us;
    r->timer_us = when;
    if (x->io.on_attempt != NULL)
        x->io.on_attempt(x->io.ctx, r->id, r->attempts, when - now_us,
                         x->rtt.rto_us,
                         r->len - udprr__framing_overhead(&x->framing));
}

/* Sends transmission number r->attempts. Returns the send step's status. */
static int transmit(struct udprr__exchange *x, struct udprr__xreq *r,
                    uint64_t now_us)
{
    udprr__framing_set_attempt(&x->framing, r->id, r->attempts, r->datagram,
                               r->len);
    r->sent_us[(r->attempts - 1) % UDPRR__XCHG_SENT_HISTORY] = now_us;
    x->stats.attempts++;
    if (r->attempts > 1)
        x->stats.retransmissions++;
    int rc = x->io.send(x->io.ctx, r->datagram, r->len);
    if (rc != UDPRR_OK && rc != UDPRR_EREFUSED && rc != UDPRR_ETOOBIG)
        x->stats.send_errors++;
    return rc;
}

int udprr__exchange_init(struct udprr__exchange *x,
                         const struct udprr__framing *framing,
                         const struct udprr__rtt_policy *policy,
                         const struct udprr__exchange_limits *limits,
                         const struct udprr__exchange_io *io)
{
    static const struct udprr__framing native = {UDPRR_FRAMING_NATIVE, 0, 0};
    if (framing == NULL)
        framing = &native;
    if (x == NULL || limits == NULL || io == NULL || io->send == NULL ||
        io->random64 == NULL || udprr__rtt_policy_check(policy) != UDPRR_OK ||
        udprr__framing_check(framing) != UDPRR_OK)
        return UDPRR_EINVAL;
    memset(x, 0, sizeof *x);
    x->framing = *framing;
    x->buckets = udprr__calloc(INITIAL_SLOTS, sizeof *x->buckets);
    x->heap = udprr__malloc(INITIAL_SLOTS * sizeof *x->heap);
    if (x->buckets == NULL || x->heap == NULL) {
        udprr__free(x->buckets);
        udprr__free(x->heap);
        return UDPRR_ENOMEM;
    }
    x->nbuckets = INITIAL_SLOTS;
    x->heap_cap = INITIAL_SLOTS;
    udprr__rtt_init(&x->rtt, policy);
    x->limits = *limits;
    x->io = *io;
    if (udprr__framing_id_mask(framing) != UINT64_MAX) {
        int rc = UDPRR_OK;
        for (int i = 0; i < 4 && rc == UDPRR_OK; i++)
            rc = io->random64(io->ctx, &x->id_key[i]);
        if (rc == UDPRR_OK)
            rc = io->random64(io->ctx, &x->id_counter);
        if (rc != UDPRR_OK) {
            udprr__free(x->buckets);
            udprr__free(x->heap);
            x->buckets = NULL;
            x->heap = NULL;
            return rc;
        }
    }
    return UDPRR_OK;
}

void udprr__exchange_destroy(struct udprr__exchange *x)
{
    if (x == NULL || x->heap == NULL)
        return;
    x->destroying = 1;
    udprr__exchange_fail_all(x, UDPRR_ECANCELED);
    udprr__free(x->buckets);
    udprr__free(x->heap);
    x->buckets = NULL;
    x->heap = NULL;
}

int udprr__exchange_submit(struct udprr__exchange *x, const void *body,
                           size_t body_len, uint64_t now_us,
                           udprr__xdone_fn done, void *user, uint64_t *id_out)
{
    if (x == NULL || done == NULL || (body == NULL && body_len > 0) ||
        x->destroying)
        return UDPRR_EINVAL;
    if (body_len > udprr__framing_max_body(&x->framing))
        return UDPRR_ETOOBIG;
    /* Without an ID a reply cannot say which request it answers. */
    if (!udprr__framing_has_id(&x->framing) && x->pending > 0)
        return UDPRR_EINVAL;
    if (heap_reserve(x) != UDPRR_OK)
        return UDPRR_ENOMEM;
    struct udprr__xreq *r = udprr__malloc(
        sizeof *r + udprr__framing_overhead(&x->framing) + body_len);
    if (r == NULL)
        return UDPRR_ENOMEM;
    memset(r, 0, sizeof *r);

    int rc = UDPRR_OK;
    r->id = next_id(x, &rc);
    if (rc != UDPRR_OK) {
        udprr__free(r);
        return rc;
    }

    r->done = done;
    r->user = user;
    r->attempts = 1;
    if (udprr__framing_request(&x->framing, r->id, 1, body, body_len,
                               r->datagram, &r->len) != UDPRR_OK) {
        udprr__free(r);
        return UDPRR_EINVAL;
    }
    r->deadline_us = UINT64_MAX;
    if (x->limits.deadline_us > 0 &&
        now_us <= UINT64_MAX - x->limits.deadline_us)
        r->deadline_us = now_us + x->limits.deadline_us;

    rc = transmit(x, r, now_us);
    if (rc == UDPRR_EREFUSED || rc == UDPRR_ETOOBIG) {
        /* Never became outstanding: undo the count, call nothing back. */
        x->stats.attempts--;
        udprr__free(r);
        return rc;
    }
    x->stats.requests++;
    arm(x, r, now_us);
    hash_link(x, r);
    heap_push(x, r);
    hash_maybe_grow(x);
    if (id_out != NULL)
        *id_out = r->id;
    return UDPRR_OK;
}

void udprr__exchange_datagram(struct udprr__exchange *x, const void *buf,
                              size_t len, uint64_t now_us)
{
    struct udprr__framed in;

    if (udprr__framing_parse(&x->framing, buf, len, 1, &in) !=
        UDPRR__WIRE_VALID) {
        x->stats.dropped_malformed++;
        return;
    }
    if (in.kind == UDPRR__KIND_REQUEST) {
        x->stats.dropped_unexpected++;
        return;
    }
    /* Raw framing has at most one request outstanding, and any datagram
     * from the peer answers it. */
    struct udprr__xreq *r;
    if (udprr__framing_has_id(&x->framing))
        r = find(x, in.id);
    else
        r = x->pending > 0 ? x->heap[0] : NULL;
    if (r == NULL) {
        if (udprr__framing_has_id(&x->framing) && recently_finished(x, in.id))
            x->stats.dropped_duplicate++;
        else
            x->stats.dropped_stale++;
        return;
    }
    if (in.attempt > r->attempts) {
        /* Names a transmission we never made: not an answer of ours. */
        x->stats.dropped_unexpected++;
        return;
    }
    /* A reply that names its transmission is unambiguous even after
     * retransmissions, as long as we still hold that transmission's send
     * time; one that does not (foreign framings) only when the request was
     * sent once. */
    if (udprr__rtt_unambiguous(in.attempt, r->attempts) &&
        r->attempts - (in.attempt ? in.attempt : 1) <
            UDPRR__XCHG_SENT_HISTORY) {
        unsigned which = in.attempt ? in.attempt : 1;
        uint64_t sent = r->sent_us[(which - 1u) % UDPRR__XCHG_SENT_HISTORY];
        udprr__rtt_sample(&x->rtt, now_us >= sent ? now_us - sent : 0);
    }
    /* Transmissions made after the one that was answered were not needed:
     * its reply was on its way (only native replies say which it was). */
    if (in.attempt > 0)
        x->stats.spurious_retransmissions += r->attempts - in.attempt;
    if (in.kind == UDPRR__KIND_REPLY)
        finish(x, r, UDPRR_OK, in.body, in.body_len);
    else
        finish(x, r, UDPRR_EREMOTE, NULL, 0);
}

void udprr__exchange_timers(struct udprr__exchange *x, uint64_t now_us)
{
    while (x->pending > 0 && x->heap[0]->timer_us <= now_us) {
        struct udprr__xreq *r = x->heap[0];
        if (now_us >= r->deadline_us ||
            (x->limits.max_attempts > 0 &&
             r->attempts >= x->limits.max_attempts) ||
            r->attempts >= UDPRR__WIRE_MAX_ATTEMPT) {
            finish(x, r, UDPRR_ETIMEDOUT, NULL, 0);
            continue;
        }
        r->attempts++;
        int rc = transmit(x, r, now_us);
        if (rc == UDPRR_EREFUSED) {
            udprr__exchange_fail_all(x, UDPRR_EREFUSED);
            return;
        }
        if (rc == UDPRR_ETOOBIG) {
            finish(x, r, UDPRR_ETOOBIG, NULL, 0);
            continue;
        }
        arm(x, r, now_us);
        heap_down(x, 0);
    }
}

void udprr__exchange_fail_all(struct udprr__exchange *x, int status)
{
    /* Detach everything first, chained through hash_next: a callback that
     * submits adds to the now empty table, not to this list, so the loop
     * ends whatever the callbacks do. */
    struct udprr__xreq *list = NULL;
    for (size_t i = 0; i < x->pending; i++) {
        x->heap[i]->hash_next = list;
        list = x->heap[i];
    }
    memset(x->buckets, 0, x->nbuckets * sizeof *x->buckets);
    x->pending = 0;
    while (list != NULL) {
        struct udprr__xreq *r = list;
        udprr__xdone_fn done = r->done;
        void *user = r->user;
        list = r->hash_next;
        remember_finished(x, r->id);
        count_end(&x->stats, status);
        udprr__free(r);
        done(user, status, NULL, 0);
    }
}

int udprr__exchange_fail(struct udprr__exchange *x, uint64_t id, int status)
{
    struct udprr__xreq *r = find(x, id);
    if (r == NULL || status == UDPRR_OK)
        return UDPRR_EINVAL;
    finish(x, r, status, NULL, 0);
    return UDPRR_OK;
}

int udprr__exchange_next_timer(const struct udprr__exchange *x,
                               uint64_t *when_us)
{
    if (x->pending == 0)
        return 0;
    *when_us = x->heap[0]->timer_us;
    return 1;
}
