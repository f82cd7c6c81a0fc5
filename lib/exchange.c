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

enum xreq_state { XREQ_QUEUED, XREQ_STARTING, XREQ_IN_FLIGHT };

/* The two keys a request is hashed on. */
enum { BY_ID, BY_TICKET };

struct udprr__xreq {
    uint64_t key[2];                 /* [BY_ID] its ID (once sent),
                                        [BY_TICKET] its ticket */
    struct udprr__xreq *chain[2];    /* next in each hash's bucket */
    struct udprr__link queue;        /* the queue, while queued */
    enum xreq_state state;
    unsigned attempts;    /* transmissions so far */
    unsigned ep;          /* the endpoint of its last transmission */
    unsigned ep_since;    /* the attempt number of its first transmission
                             there */
    uint32_t sent_to;     /* endpoints it was sent to (bit i: endpoint i) */
    uint32_t refused_by;  /* endpoints that refused it */
    unsigned echoes;      /* echoes it answered (a few at most) */
    int with_cookie;      /* native: the datagram carries a cookie after
                             its header (and the body after that) */
    int clipped;          /* the timer is the deadline, not a whole wait */
    uint64_t seq;         /* sent as the seq-th request; 0: not yet */
    uint64_t deadline_us; /* UINT64_MAX: none */
    uint64_t timer_us;
    uint64_t clock_ms;    /* io.clock_ms at its first transmission */
    size_t heap_index;
    size_t body_len;
    udprr__xdone_fn done;
    void *user;
    uint64_t sent_us[UDPRR__XCHG_SENT_HISTORY]; /* by (attempt - 1) % N */
    size_t len;                                 /* of datagram */
    uint8_t datagram[];                         /* header + body */
};

/* What udprr.h promises a pending request costs beyond its bytes: the
 * request, its native header, its heap slot, and its share of two hashes
 * (each at most twice as many buckets as entries), with room for the
 * allocator's own overhead. */
_Static_assert(sizeof(struct udprr__xreq) + UDPRR__WIRE_HEADER_BYTES +
                       UDPRR__WIRE_COOKIE_BYTES + 5 * sizeof(void *) +
                       4 * sizeof(void *) <=
                   UDPRR_PENDING_OVERHEAD,
               "UDPRR_PENDING_OVERHEAD no longer covers a pending request");

#define INITIAL_SLOTS 16

_Static_assert(UDPRR__XCHG_MAX_ENDPOINTS <= 32,
               "a request's endpoint masks are 32 bits");

static uint32_t bit(unsigned endpoint)
{
    return (uint32_t)1 << endpoint;
}

static uint64_t xreq_id(const struct udprr__xreq *r)
{
    return r->key[BY_ID];
}

/* --- the hashes of pending requests, by ID and by ticket ----------------- */

/* IDs are random or a keyed permutation, tickets count up: either way
 * their low bits spread over the buckets. */
static struct udprr__xreq **bucket_of(const struct udprr__xhash *h,
                                      uint64_t key)
{
    return &h->buckets[key & (h->nbuckets - 1)];
}

static struct udprr__xreq *hash_find(const struct udprr__xhash *h, int which,
                                     uint64_t key)
{
    struct udprr__xreq *r = *bucket_of(h, key);
    while (r != NULL && r->key[which] != key)
        r = r->chain[which];
    return r;
}

static void hash_unlink(struct udprr__xhash *h, int which,
                        struct udprr__xreq *r)
{
    struct udprr__xreq **p = bucket_of(h, r->key[which]);
    while (*p != r)
        p = &(*p)->chain[which];
    *p = r->chain[which];
    h->count--;
}

static void hash_put(struct udprr__xhash *h, int which, struct udprr__xreq *r)
{
    struct udprr__xreq **p = bucket_of(h, r->key[which]);
    r->chain[which] = *p;
    *p = r;
}

/* Doubles the buckets when the table gets full. A failed allocation keeps
 * the old table: chains get longer, lookups stay correct. */
static void hash_link(struct udprr__xhash *h, int which, struct udprr__xreq *r)
{
    hash_put(h, which, r);
    h->count++;
    if (h->count < h->nbuckets ||
        h->nbuckets > (SIZE_MAX / 2) / sizeof(void *))
        return;
    size_t n = h->nbuckets * 2;
    struct udprr__xreq **b = udprr__calloc(n, sizeof *b);
    if (b == NULL)
        return;
    struct udprr__xreq **old = h->buckets;
    size_t old_n = h->nbuckets;
    h->buckets = b;
    h->nbuckets = n;
    for (size_t i = 0; i < old_n; i++) {
        struct udprr__xreq *e = old[i];
        while (e != NULL) {
            struct udprr__xreq *next = e->chain[which];
            hash_put(h, which, e);
            e = next;
        }
    }
    udprr__free(old);
}

static int hash_init(struct udprr__xhash *h)
{
    h->buckets = udprr__calloc(INITIAL_SLOTS, sizeof *h->buckets);
    h->nbuckets = INITIAL_SLOTS;
    h->count = 0;
    return h->buckets != NULL ? UDPRR_OK : UDPRR_ENOMEM;
}

static void hash_clear(struct udprr__xhash *h)
{
    memset(h->buckets, 0, h->nbuckets * sizeof *h->buckets);
    h->count = 0;
}

static void hash_free(struct udprr__xhash *h)
{
    udprr__free(h->buckets);
    h->buckets = NULL;
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

/* r's timer changed: moves it to its place. */
static void heap_update(struct udprr__exchange *x, struct udprr__xreq *r)
{
    heap_up(x, r->heap_index);
    heap_down(x, r->heap_index);
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

/* A fresh ID not used by a request in flight. *rc gets UDPRR_OK, the
 * random source's failure, or UDPRR_EINVAL when no free ID is found (a
 * broken random source: a short ID space always has a free one when
 * may_send let the request go). */
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
        if (hash_find(&x->by_id, BY_ID, id) == NULL) {
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

/* What max_pending_bytes counts for a request. */
static size_t charge(const struct udprr__xreq *r)
{
    return r->body_len + UDPRR_PENDING_OVERHEAD;
}

static void queue_append(struct udprr__exchange *x, struct udprr__xreq *r)
{
    udprr__list_append(&x->queue, &r->queue);
    x->queued++;
}

static void queue_unlink(struct udprr__exchange *x, struct udprr__xreq *r)
{
    udprr__list_unlink(&x->queue, &r->queue);
    x->queued--;
}

/* Counts r's end and frees it; r is already out of every structure. */
static void count_and_free(struct udprr__exchange *x, struct udprr__xreq *r,
                           int status)
{
    if (r->state == XREQ_IN_FLIGHT) {
        if (udprr__framing_has_id(&x->framing))
            remember_finished(x, xreq_id(r));
    } else {
        x->stats.unsent++;
    }
    (*end_counter(&x->stats, status))++;
    udprr__free(r);
}

/* Takes r out of the engine, frees it, then reports: by the time done runs
 * the engine is consistent again, so done may submit and cancel. */
static void finish(struct udprr__exchange *x, struct udprr__xreq *r,
                   int status, const uint8_t *reply, size_t reply_len)
{
    udprr__xdone_fn done = r->done;
    void *user = r->user;

    if (r->state == XREQ_IN_FLIGHT) {
        if (udprr__framing_has_id(&x->framing))
            hash_unlink(&x->by_id, BY_ID, r);
        if (x->lone == r)
            x->lone = NULL;
        x->in_flight--;
        x->ep[r->ep].in_flight--;
    } else if (r->state == XREQ_QUEUED) {
        queue_unlink(x, r);
    }
    hash_unlink(&x->by_ticket, BY_TICKET, r);
    heap_remove(x, r);
    x->pending_bytes -= charge(r);
    count_and_free(x, r, status);
    done(user, status, reply, reply_len);
}

/* Arms r's timer after transmission r->attempts went out at now_us and
 * tells the on_attempt hook. */
static void arm(struct udprr__exchange *x, struct udprr__xreq *r,
                uint64_t now_us)
{
    /* The current endpoint's RTO, backed off by the request's attempt
     * number: moving to another server does not restart the schedule, so
     * a request among servers that are all silent still backs off. */
    const struct udprr__rtt *rtt = &x->ep[r->ep].rtt;
    /* Only waits after a retransmission are jittered (see rtt.h), so only
     * those cost a random number. */
    uint64_t draw = 0;
    if (r->attempts > 1 && rtt->policy.jitter_pct > 0 &&
        x->io.random64(x->io.ctx, &draw) != UDPRR_OK)
        draw = 0; /* unjittered: still a correct wait */
    uint64_t wait = udprr__rtt_wait_us(rtt, r->attempts,
                                       (uint32_t)(draw >> 32));
    uint64_t when = now_us + wait;
    r->clipped = 0;
    if (when < now_us || when > r->deadline_us) {
        /* start() and the timers never send past the deadline, so it is
         * still ahead; the guard keeps the hook's wait from wrapping. */
        when = r->deadline_us > now_us ? r->deadline_us : now_us;
        r->clipped = 1;
    }
    r->timer_us = when;
    if (x->io.on_attempt != NULL)
        x->io.on_attempt(x->io.ctx, xreq_id(r), r->attempts, when - now_us,
                         rtt->rto_us, r->body_len);
}

/* --- endpoints ----------------------------------------------------------- */

/* How long a failed endpoint is left alone after its failures-th failure
 * in a row. */
static uint64_t backoff_us(const struct udprr__exchange *x, unsigned failures)
{
    unsigned doublings = failures - 1 < UDPRR__XCHG_RETRY_DOUBLINGS
                             ? failures - 1
                             : UDPRR__XCHG_RETRY_DOUBLINGS;
    return x->limits.endpoint_retry_us << doublings;
}

/* One more failure in a row: a refusal, or a whole wait unanswered. */
static void endpoint_failed(struct udprr__exchange *x, unsigned endpoint,
                            int refusal, uint64_t now_us)
{
    struct udprr__xendpoint *e = &x->ep[endpoint];
    if (e->failures < UINT32_MAX)
        e->failures++;
    e->refused_last |= refusal;
    e->retry_at_us = now_us + backoff_us(x, e->failures);
    if (refusal) {
        e->stats.refusals++;
        x->refused_pending |= bit(endpoint);
    }
}

/* The endpoints known to refuse at now_us: refused since their last
 * answer, and still left alone. A request moving away from a refusal
 * does not go there. */
static uint32_t refusing(const struct udprr__exchange *x, uint64_t now_us)
{
    uint32_t mask = 0;
    for (unsigned i = 0; i < x->n_ep; i++)
        if (x->ep[i].failures > 0 && x->ep[i].refused_last &&
            now_us < x->ep[i].retry_at_us)
            mask |= bit(i);
    return mask;
}

/* How an endpoint ranks at now_us, best first: a failed one whose
 * back-off has run out (due to be tried again), a healthy one, a failed
 * one still left alone. */
enum { DUE, HEALTHY, BACKING_OFF };

static int rank(const struct udprr__xendpoint *e, uint64_t now_us)
{
    if (e->failures == 0)
        return HEALTHY;
    return now_us >= e->retry_at_us ? DUE : BACKING_OFF;
}

/* Whether endpoint a is a better choice than b at now_us (udprr.h's rule;
 * ties go to the earlier in the list, a < b being the caller's order). */
static int better(const struct udprr__exchange *x, unsigned a, unsigned b,
                  uint64_t now_us)
{
    const struct udprr__xendpoint *ea = &x->ep[a], *eb = &x->ep[b];
    int ra = rank(ea, now_us), rb = rank(eb, now_us);
    if (ra != rb)
        return ra < rb;
    if (ra == DUE)
        return ea->retry_at_us < eb->retry_at_us;
    if (ra == HEALTHY)
        return ea->rtt.srtt_us < eb->rtt.srtt_us;
    if (ea->failures != eb->failures)
        return ea->failures < eb->failures;
    return ea->retry_at_us < eb->retry_at_us;
}

/* The best endpoint outside the exclude mask at now_us; -1 when every
 * one is excluded. */
static int choose(const struct udprr__exchange *x, uint32_t exclude,
                  uint64_t now_us)
{
    int best = -1;
    for (unsigned i = 0; i < x->n_ep; i++)
        if (!(exclude & bit(i)) &&
            (best < 0 || better(x, i, (unsigned)best, now_us)))
            best = (int)i;
    return best;
}

unsigned udprr__exchange_best(const struct udprr__exchange *x,
                              uint64_t now_us)
{
    int best = choose(x, 0, now_us);
    return best < 0 ? 0 : (unsigned)best;
}

/* Makes endpoint the one r's next transmission goes to (r is in flight
 * elsewhere, or about to be sent for the first time). */
static void aim(struct udprr__exchange *x, struct udprr__xreq *r,
                unsigned endpoint, unsigned next_attempt)
{
    if (r->state == XREQ_IN_FLIGHT) {
        x->ep[r->ep].in_flight--;
        x->ep[r->ep].stats.failovers++;
        x->ep[endpoint].in_flight++;
    }
    r->ep = endpoint;
    r->ep_since = next_attempt;
    r->seq = ++x->ep[endpoint].last_seq;
}

/* --- transmissions ------------------------------------------------------- */

/* Sends transmission number r->attempts to r's endpoint. Returns the send
 * step's status; a refusal is the caller's to handle. */
/* Writes r's datagram for transmission r->attempts to its endpoint: with
 * the endpoint's cookie when it has one (and the request has room for
 * it), so that a server that wants proof of this client's address gets
 * it at once. */
static void stamp(struct udprr__exchange *x, struct udprr__xreq *r)
{
    const struct udprr__xendpoint *e = &x->ep[r->ep];
    if (e->has_cookie && !r->with_cookie &&
        r->body_len <= udprr__framing_max_body(&x->framing) -
                           UDPRR__WIRE_COOKIE_BYTES) {
        /* Room was left for it at submit. */
        memmove(r->datagram + UDPRR__WIRE_HEADER_BYTES +
                    UDPRR__WIRE_COOKIE_BYTES,
                r->datagram + UDPRR__WIRE_HEADER_BYTES, r->body_len);
        r->len += UDPRR__WIRE_COOKIE_BYTES;
        r->with_cookie = 1;
    }
    if (!r->with_cookie) {
        udprr__framing_stamp(&x->framing, xreq_id(r), r->attempts,
                             r->datagram, r->len);
        return;
    }
    /* An endpoint without a cookie gets the one the request has: a
     * server takes a cookie it did not make as no cookie at all. */
    if (e->has_cookie)
        memcpy(r->datagram + UDPRR__WIRE_HEADER_BYTES, e->cookie,
               UDPRR__WIRE_COOKIE_BYTES);
    udprr__framing_stamp_cookie(xreq_id(r), r->attempts, r->datagram, r->len);
}

static int transmit(struct udprr__exchange *x, struct udprr__xreq *r,
                    uint64_t now_us)
{
    struct udprr__xendpoint *e = &x->ep[r->ep];
    stamp(x, r);
    r->sent_us[(r->attempts - 1) % UDPRR__XCHG_SENT_HISTORY] = now_us;
    x->stats.attempts++;
    if (r->attempts > 1)
        x->stats.retransmissions++;
    if (r->attempts == 1 && x->io.clock_ms != NULL)
        r->clock_ms = x->io.clock_ms(x->io.ctx);
    int rc = x->io.send(x->io.ctx, r->ep, r->datagram, r->len, r->clock_ms);
    if (rc == UDPRR_EREFUSED || rc == UDPRR_ETOOBIG) {
        x->stats.attempts--; /* never went out */
        if (r->attempts > 1)
            x->stats.retransmissions--;
        return rc;
    }
    if (rc != UDPRR_OK)
        x->stats.send_errors++;
    e->stats.attempts++;
    r->sent_to |= bit(r->ep);
    /* A failed endpoint being tried again: one request at a time, until
     * it answers or fails once more. */
    if (e->failures > 0 && now_us >= e->retry_at_us)
        e->retry_at_us = now_us + backoff_us(x, e->failures);
    return rc;
}

/* Sends r's transmission r->attempts, moving it past every endpoint that
 * refuses (each marked so, its other requests to be moved later: see
 * settle_refusals). UDPRR_OK (sent, or lost on the way), UDPRR_ETOOBIG, or
 * UDPRR_EREFUSED when every endpoint refused r. */
static int transmit_somewhere(struct udprr__exchange *x, struct udprr__xreq *r,
                              uint64_t now_us)
{
    for (;;) {
        int rc = transmit(x, r, now_us);
        if (rc != UDPRR_EREFUSED)
            return rc;
        endpoint_failed(x, r->ep, 1, now_us);
        r->refused_by |= bit(r->ep);
        int next = choose(x, r->refused_by | refusing(x, now_us), now_us);
        if (next < 0)
            return UDPRR_EREFUSED;
        aim(x, r, (unsigned)next, r->attempts);
    }
}

/* The endpoint one more request may go to now: the best one with room
 * in its window (in raw framing only while none is in flight, with short
 * IDs only while a free ID exists); -1 when none may. */
static int may_send(const struct udprr__exchange *x, uint64_t now_us)
{
    if (x->shut)
        return -1;
    if (!udprr__framing_has_id(&x->framing) ? x->in_flight > 0
        : x->in_flight > udprr__framing_id_mask(&x->framing))
        return -1;
    uint32_t full = 0;
    for (unsigned i = 0; i < x->n_ep; i++)
        if (x->ep[i].in_flight >= x->ep[i].window.size)
            full |= bit(i);
    return choose(x, full, now_us);
}

/* Sends r's first transmission to endpoint (or, when it refuses, to the
 * next best): a fresh ID, attempt 1, a timer; r joins the requests in
 * flight. On failure (the status returned) r is left as it was, neither
 * in flight nor counted as sent. */
static int start(struct udprr__exchange *x, struct udprr__xreq *r,
                 unsigned endpoint, uint64_t now_us)
{
    int rc = UDPRR_OK;
    r->key[BY_ID] = next_id(x, &rc);
    if (rc != UDPRR_OK)
        return rc;
    r->attempts = 1;
    aim(x, r, endpoint, 1);
    rc = transmit_somewhere(x, r, now_us);
    if (rc == UDPRR_EREFUSED || rc == UDPRR_ETOOBIG) {
        r->attempts = 0;
        r->refused_by = 0;
        return rc;
    }
    r->state = XREQ_IN_FLIGHT;
    x->in_flight++;
    x->ep[r->ep].in_flight++;
    if (udprr__framing_has_id(&x->framing))
        hash_link(&x->by_id, BY_ID, r);
    else
        x->lone = r;
    arm(x, r, now_us);
    return UDPRR_OK;
}

/* Sends queued requests, in order, while they may go. */
static void settle_refusals(struct udprr__exchange *x, uint64_t now_us);

static void pump(struct udprr__exchange *x, uint64_t now_us)
{
    int endpoint;
again:
    settle_refusals(x, now_us);
    while (x->queue.oldest != NULL && (endpoint = may_send(x, now_us)) >= 0) {
        struct udprr__xreq *r =
            udprr__container_of(x->queue.oldest, struct udprr__xreq, queue);
        if (now_us >= r->deadline_us) {
            /* Its turn came too late (the loop woke after its deadline):
             * it ends as its timer would have ended it, unsent. */
            finish(x, r, UDPRR_ETIMEDOUT, NULL, 0);
            continue;
        }
        queue_unlink(x, r);
        r->state = XREQ_STARTING;
        int rc = start(x, r, (unsigned)endpoint, now_us);
        if (rc == UDPRR_OK) {
            heap_update(x, r);
            continue;
        }
        finish(x, r, rc, NULL, 0);
    }
    /* A send above found an endpoint refusing: its other requests move
     * now, not a whole RTO later (the socket told it once, to the send). */
    if (x->refused_pending != 0 && !x->settling)
        goto again;
}

/* The next in-flight request whose endpoint is in mask, or NULL. */
static struct udprr__xreq *in_flight_to(const struct udprr__exchange *x,
                                        uint32_t mask)
{
    for (size_t i = 0; i < x->pending; i++) {
        struct udprr__xreq *r = x->heap[i];
        if (r->state == XREQ_IN_FLIGHT && (mask & bit(r->ep)))
            return r;
    }
    return NULL;
}

/* Ends the queued requests accepted up to ticket `last` with status. */
static void fail_queued(struct udprr__exchange *x, uint64_t last, int status)
{
    while (x->queue.oldest != NULL) {
        struct udprr__xreq *r =
            udprr__container_of(x->queue.oldest, struct udprr__xreq, queue);
        if (r->key[BY_TICKET] > last)
            break; /* submitted by a callback meanwhile */
        finish(x, r, status, NULL, 0);
    }
}

/* Moves the requests in flight to the endpoints found refusing
 * (refused_pending) to the best endpoint each has not been refused by,
 * at once, as their next attempt; ends those left with none. When every
 * endpoint refused, nothing listens anywhere: the queued requests end
 * too. Callbacks run from here may submit, cancel and refuse more: the
 * loop looks again after each request (a scan of the pending requests
 * per request moved, so a refusal costs O(in flight there * pending)). */
static void settle_refusals(struct udprr__exchange *x, uint64_t now_us)
{
    if (x->settling || x->refused_pending == 0)
        return;
    x->settling = 1;
    uint32_t all = (uint32_t)((UINT64_C(1) << x->n_ep) - 1);
    uint64_t last = x->last_ticket;
    while (x->refused_pending != 0) {
        uint32_t mask = x->refused_pending;
        x->refused_pending = 0;
        struct udprr__xreq *r;
        while ((r = in_flight_to(x, mask)) != NULL) {
            r->refused_by |= bit(r->ep);
            int next = choose(x, r->refused_by | mask | refusing(x, now_us),
                              now_us);
            int rc = UDPRR_EREFUSED;
            if (now_us >= r->deadline_us)
                rc = UDPRR_ETIMEDOUT; /* its time is up anyway */
            else if (next >= 0 && r->attempts < UDPRR__WIRE_MAX_ATTEMPT &&
                (x->limits.max_attempts == 0 ||
                 r->attempts < x->limits.max_attempts)) {
                r->attempts++;
                aim(x, r, (unsigned)next, r->attempts);
                rc = transmit_somewhere(x, r, now_us);
            }
            if (rc == UDPRR_OK) {
                arm(x, r, now_us);
                heap_update(x, r);
            } else {
                finish(x, r, rc, NULL, 0);
            }
        }
    }
    if (refusing(x, now_us) == all)
        fail_queued(x, last, UDPRR_EREFUSED);
    x->settling = 0;
}

void udprr__exchange_refused(struct udprr__exchange *x, uint32_t endpoints,
                             uint64_t now_us)
{
    for (unsigned i = 0; i < x->n_ep; i++)
        if (endpoints & bit(i))
            endpoint_failed(x, i, 1, now_us);
    pump(x, now_us);
}

int udprr__exchange_init(struct udprr__exchange *x,
                         const struct udprr__framing *framing,
                         const struct udprr__rtt_policy *policy,
                         const struct udprr__exchange_limits *limits,
                         const struct udprr__exchange_io *io)
{
    static const struct udprr__framing native = {UDPRR_FRAMING_NATIVE, 0, 0, 0};
    if (framing == NULL)
        framing = &native;
    if (x == NULL || limits == NULL || io == NULL || io->send == NULL ||
        io->random64 == NULL || udprr__rtt_policy_check(policy) != UDPRR_OK ||
        udprr__framing_check(framing) != UDPRR_OK ||
        limits->endpoints > UDPRR__XCHG_MAX_ENDPOINTS ||
        limits->endpoint_retry_us > UDPRR__RTT_LIMIT_US)
        return UDPRR_EINVAL;
    memset(x, 0, sizeof *x);
    x->framing = *framing;
    int rc = hash_init(&x->by_id);
    if (rc == UDPRR_OK)
        rc = hash_init(&x->by_ticket);
    x->heap = udprr__malloc(INITIAL_SLOTS * sizeof *x->heap);
    x->heap_cap = INITIAL_SLOTS;
    if (x->heap == NULL)
        rc = UDPRR_ENOMEM;
    x->limits = *limits;
    x->io = *io;
    x->n_ep = limits->endpoints ? limits->endpoints : 1;
    if (x->limits.endpoint_retry_us == 0)
        x->limits.endpoint_retry_us = UDPRR__XCHG_RETRY_DEFAULT_US;
    for (unsigned i = 0; i < x->n_ep; i++) {
        udprr__rtt_init(&x->ep[i].rtt, policy);
        udprr__window_init(&x->ep[i].window, limits->initial_window,
                           limits->max_window ? limits->max_window
                                              : UDPRR__WINDOW_MAX);
    }
    if (rc == UDPRR_OK && udprr__framing_id_mask(framing) != UINT64_MAX) {
        for (int i = 0; i < 4 && rc == UDPRR_OK; i++)
            rc = io->random64(io->ctx, &x->id_key[i]);
        if (rc == UDPRR_OK)
            rc = io->random64(io->ctx, &x->id_counter);
    }
    if (rc != UDPRR_OK) {
        hash_free(&x->by_id);
        hash_free(&x->by_ticket);
        udprr__free(x->heap);
        x->heap = NULL;
    }
    return rc;
}

void udprr__exchange_shutdown(struct udprr__exchange *x)
{
    if (x == NULL || x->heap == NULL)
        return;
    x->shut = 1;
    udprr__exchange_fail_all(x, UDPRR_ECANCELED, 0);
}

void udprr__exchange_destroy(struct udprr__exchange *x)
{
    if (x == NULL || x->heap == NULL)
        return;
    udprr__exchange_shutdown(x);
    hash_free(&x->by_id);
    hash_free(&x->by_ticket);
    udprr__free(x->heap);
    x->heap = NULL;
}

int udprr__exchange_submit(struct udprr__exchange *x, const void *body,
                           size_t body_len, uint64_t now_us,
                           uint64_t deadline_us, udprr__xdone_fn done,
                           void *user, uint64_t *ticket_out)
{
    if (x == NULL || done == NULL || (body == NULL && body_len > 0) ||
        x->shut)
        return UDPRR_EINVAL;
    if (body_len > udprr__framing_max_body(&x->framing))
        return UDPRR_ETOOBIG;
    if ((x->limits.max_pending > 0 &&
         x->in_flight + x->queued >= x->limits.max_pending) ||
        (x->limits.max_pending_bytes > 0 &&
         (body_len + UDPRR_PENDING_OVERHEAD >
          x->limits.max_pending_bytes - x->pending_bytes)))
        return UDPRR_EBUSY;
    if (heap_reserve(x) != UDPRR_OK)
        return UDPRR_ENOMEM;
    /* Native requests keep room for a cookie (see stamp). */
    size_t room = x->framing.kind == UDPRR_FRAMING_NATIVE
                      ? UDPRR__WIRE_COOKIE_BYTES
                      : 0;
    struct udprr__xreq *r = udprr__malloc(
        sizeof *r + udprr__framing_overhead(&x->framing) + body_len + room);
    if (r == NULL)
        return UDPRR_ENOMEM;
    memset(r, 0, sizeof *r);
    /* Made once with a placeholder ID; start() stamps the real one. */
    if (udprr__framing_request(&x->framing, 0, 1, body, body_len,
                               r->datagram, &r->len) != UDPRR_OK) {
        udprr__free(r);
        return UDPRR_EINVAL;
    }
    r->body_len = body_len;
    r->done = done;
    r->user = user;
    if (deadline_us == 0)
        deadline_us = x->limits.deadline_us;
    r->deadline_us = UINT64_MAX;
    if (deadline_us > 0 && now_us <= UINT64_MAX - deadline_us)
        r->deadline_us = now_us + deadline_us;

    int endpoint = x->queue.oldest == NULL ? may_send(x, now_us) : -1;
    if (endpoint >= 0) {
        r->state = XREQ_STARTING;
        int rc = start(x, r, (unsigned)endpoint, now_us);
        if (rc != UDPRR_OK) {
            udprr__free(r);
            return rc;
        }
    } else {
        r->state = XREQ_QUEUED;
        r->timer_us = r->deadline_us;
        queue_append(x, r);
    }
    r->key[BY_TICKET] = ++x->last_ticket;
    hash_link(&x->by_ticket, BY_TICKET, r);
    heap_push(x, r);
    x->pending_bytes += charge(r);
    x->stats.requests++;
    if (ticket_out != NULL)
        *ticket_out = r->key[BY_TICKET];
    return UDPRR_OK;
}

/* An echo from endpoint for r: the server holds r's answer back until
 * this client proves its address. The endpoint keeps the cookie for every
 * later request, and r goes again at once, to it, with the cookie (a few
 * times at most: a server that keeps asking is left to the timers). */
static void echo(struct udprr__exchange *x, struct udprr__xreq *r,
                 unsigned endpoint, const uint8_t *cookie, uint64_t now_us)
{
    struct udprr__xendpoint *e = &x->ep[endpoint];
    memcpy(e->cookie, cookie, UDPRR__WIRE_COOKIE_BYTES);
    e->has_cookie = 1;
    e->failures = 0; /* it answered, if not yet with the answer */
    e->refused_last = 0;
    x->stats.echoes++;
    if (r->echoes >= 2 || now_us >= r->deadline_us ||
        r->attempts >= UDPRR__WIRE_MAX_ATTEMPT ||
        (x->limits.max_attempts > 0 && r->attempts >= x->limits.max_attempts))
        return;
    r->echoes++;
    r->attempts++;
    if (r->ep != endpoint)
        aim(x, r, endpoint, r->attempts);
    int rc = transmit_somewhere(x, r, now_us);
    if (rc != UDPRR_OK) {
        finish(x, r, rc, NULL, 0);
        return;
    }
    arm(x, r, now_us);
    heap_update(x, r);
}

void udprr__exchange_datagram(struct udprr__exchange *x, unsigned endpoint,
                              const void *buf, size_t len, uint64_t now_us)
{
    struct udprr__framed in;

    if (endpoint >= x->n_ep)
        return;
    if (udprr__framing_parse(&x->framing, buf, len, 1, &in) !=
        UDPRR__WIRE_VALID) {
        x->stats.dropped_malformed++;
        return;
    }
    if (in.kind == UDPRR__KIND_REQUEST) {
        x->stats.dropped_unexpected++;
        return;
    }
    /* Raw framing has at most one request in flight, and any datagram
     * from the peer answers it. */
    int has_id = udprr__framing_has_id(&x->framing);
    struct udprr__xreq *r =
        has_id ? hash_find(&x->by_id, BY_ID, in.id) : x->lone;
    if (r == NULL) {
        if (has_id && recently_finished(x, in.id))
            x->stats.dropped_duplicate++;
        else
            x->stats.dropped_stale++;
        return;
    }
    if (in.attempt > r->attempts || !(r->sent_to & bit(endpoint))) {
        /* Names a transmission we never made, or comes from an endpoint
         * it was never sent to: not an answer of ours. */
        x->stats.dropped_unexpected++;
        return;
    }
    struct udprr__xendpoint *e = &x->ep[endpoint];
    if (in.kind == UDPRR__KIND_ECHO) {
        echo(x, r, endpoint, in.body, now_us);
        pump(x, now_us);
        return;
    }
    /* A reply that names its transmission is unambiguous even after
     * retransmissions, as long as we still hold that transmission's send
     * time; one that does not (foreign framings) only when the request was
     * sent once. Either way it must be one sent to this endpoint. */
    unsigned which = in.attempt ? in.attempt : 1;
    if (udprr__rtt_unambiguous(in.attempt, r->attempts) &&
        r->attempts - which < UDPRR__XCHG_SENT_HISTORY &&
        endpoint == r->ep && which >= r->ep_since) {
        uint64_t sent = r->sent_us[(which - 1u) % UDPRR__XCHG_SENT_HISTORY];
        udprr__rtt_sample(&e->rtt, now_us >= sent ? now_us - sent : 0);
    }
    /* Transmissions made after the one that was answered were not needed:
     * its reply was on its way (only native replies say which it was). */
    if (in.attempt > 0)
        x->stats.spurious_retransmissions += r->attempts - in.attempt;
    /* A reply or a decline: either way the path carried both, and the
     * endpoint is alive. */
    udprr__window_reply(&e->window, e->in_flight);
    e->stats.answers++;
    e->failures = 0;
    e->refused_last = 0;
    e->retry_at_us = 0;
    if (in.kind == UDPRR__KIND_REPLY)
        finish(x, r, UDPRR_OK, in.body, in.body_len);
    else
        finish(x, r, UDPRR_EREMOTE, NULL, 0);
    pump(x, now_us);
}

void udprr__exchange_timers(struct udprr__exchange *x, uint64_t now_us)
{
    while (x->pending > 0 && x->heap[0]->timer_us <= now_us) {
        struct udprr__xreq *r = x->heap[0];
        if (r->state != XREQ_IN_FLIGHT) {
            finish(x, r, UDPRR_ETIMEDOUT, NULL, 0); /* its deadline, queued */
            continue;
        }
        /* A whole wait without a reply: a loss, for the window, and a
         * failure of the endpoint. */
        if (!r->clipped) {
            struct udprr__xendpoint *e = &x->ep[r->ep];
            udprr__window_loss(&e->window, r->seq, e->last_seq);
            e->stats.timeouts++;
            endpoint_failed(x, r->ep, 0, now_us);
        }
        if (now_us >= r->deadline_us ||
            (x->limits.max_attempts > 0 &&
             r->attempts >= x->limits.max_attempts) ||
            r->attempts >= UDPRR__WIRE_MAX_ATTEMPT) {
            finish(x, r, UDPRR_ETIMEDOUT, NULL, 0);
            continue;
        }
        r->attempts++;
        /* The retransmission goes to the best other endpoint, unless only
         * refusals may move a request. */
        if (!x->limits.refused_only) {
            int next = choose(x,
                              r->refused_by | bit(r->ep) | refusing(x, now_us),
                              now_us);
            if (next >= 0)
                aim(x, r, (unsigned)next, r->attempts);
        }
        int rc = transmit_somewhere(x, r, now_us);
        if (rc != UDPRR_OK) {
            finish(x, r, rc, NULL, 0);
            continue;
        }
        arm(x, r, now_us);
        heap_update(x, r);
    }
    pump(x, now_us);
}

void udprr__exchange_fail_all(struct udprr__exchange *x, int status,
                              uint64_t now_us)
{
    /* Detach everything first, chained through the ticket hash's links
     * (the hashes are emptied here, so those are free): a callback that
     * submits adds to the now empty engine, not to this list, so the loop
     * ends whatever the callbacks do. The counts (in flight, queued,
     * bytes) go down one request at a time, as each ends, so that the
     * stats add up inside every callback. */
    struct udprr__xreq *list = NULL;
    for (size_t i = 0; i < x->pending; i++) {
        x->heap[i]->chain[BY_TICKET] = list;
        list = x->heap[i];
    }
    hash_clear(&x->by_id);
    hash_clear(&x->by_ticket);
    x->pending = 0;
    x->queue.oldest = x->queue.newest = NULL;
    x->lone = NULL;
    while (list != NULL) {
        struct udprr__xreq *r = list;
        udprr__xdone_fn done = r->done;
        void *user = r->user;
        list = r->chain[BY_TICKET];
        if (r->state == XREQ_IN_FLIGHT) {
            x->in_flight--;
            x->ep[r->ep].in_flight--;
        } else {
            x->queued--;
        }
        x->pending_bytes -= charge(r);
        count_and_free(x, r, status);
        done(user, status, NULL, 0);
    }
    /* Requests the callbacks submitted while ended ones still counted as
     * in flight may have been queued: they go now. */
    pump(x, now_us);
}

int udprr__exchange_cancel(struct udprr__exchange *x, uint64_t ticket,
                           int status, uint64_t now_us)
{
    if (status == UDPRR_OK)
        return UDPRR_EINVAL;
    struct udprr__xreq *r = hash_find(&x->by_ticket, BY_TICKET, ticket);
    if (r == NULL)
        return UDPRR_ENOTPENDING;
    finish(x, r, status, NULL, 0);
    pump(x, now_us);
    return UDPRR_OK;
}

int udprr__exchange_next_timer(const struct udprr__exchange *x,
                               uint64_t *when_us)
{
    if (x->pending == 0)
        return 0;
    /* A refusal a submit found is settled by the next step: at once. */
    *when_us = x->refused_pending != 0 ? 0 : x->heap[0]->timer_us;
    return 1;
}
