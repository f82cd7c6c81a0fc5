/* SPDX-License-Identifier: MIT */
/*
 * server.c - the public server: a bound socket, the application's handler,
 * the reply cache (dedup) that makes execution at-most-once, and the table
 * of deferred requests (defer) whose answers come later, from any thread.
 *
 * One step (udprr_server_process) does everything the server does; run is
 * a loop of waits and steps. Answers given through a token are queued
 * under the mutex, with the token's entry taken out of the table in the
 * same breath (so a token is answered once), and the eventfd wakes the
 * server's thread, which sends them at its next step. The counters are
 * written by the server's thread alone, as relaxed atomics, so any thread
 * may read them while it runs.
 *
 * Workers (udprr.h): with workers N > 1 the handle is worker 0 and owns
 * N - 1 more, each a udprr_server of its own (its socket in the same
 * SO_REUSEPORT group, its eventfd, reply cache, deferred table, mutex and
 * counters) that the program never sees. The kernel keeps each client on
 * one socket, so each worker's cache and deferred table see all of that
 * client's datagrams and nothing has to be shared between workers but the
 * stop. A token names its worker in its low WORKER_BITS bits, so that an
 * answer goes to the table (and the cache, and the thread) of the worker
 * that handed the token out.
 */
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>

#include "alloc.h"
#include "dedup.h"
#include "defer.h"
#include "framing.h"
#include "opts.h"
#include "server_hooks.h"
#include "siphash.h"
#include "sock.h"
#include "seal.h"
#include "udprr.h"
#include "wire.h"

/* What UDPRR_NO_REPLY was in 0.1's header. */
#define NO_REPLY_0_1 1

/* A token's low bits that name its worker (only with workers > 1). */
#define WORKER_BITS 6
_Static_assert(UDPRR_MAX_WORKERS <= 1u << WORKER_BITS,
               "a token's worker bits must name every worker");

/* Datagrams taken per receive step (one recvmmsg) before waiting again,
 * and answers sent per sendmmsg. */
#define BATCH UDPRR__SOCK_BATCH

/* The answers of one step are gathered here and sent together. The room
 * a handler writes its reply into is taken from it, so that an answer is
 * copied only when it comes from elsewhere (the reply cache, a token):
 * four of the largest answers always fit, and a batch of small ones
 * touches a page or two. */
#define TX_ARENA_BYTES (4 * (size_t)UDPRR_MAX_DATAGRAM)

/* stop() is async-signal-safe only if this flag needs no lock. */
_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "atomic_int must be lock-free");
/* Counters are read from any thread without a lock. */
_Static_assert(ATOMIC_LLONG_LOCK_FREE == 2, "64-bit atomics must be lock-free");

typedef _Atomic uint64_t counter;

/* The server's counters, each named as the field of struct
 * udprr_server_stats (udprr.h) that reports it. The cache's figures are
 * the reply cache's own (udprr__dedup_stats), copied here after each
 * change (publish_cache) so that other threads can read them. */
struct server_counters {
    counter received, handled, answered, declined, not_answered;
    counter dropped_malformed, dropped_unexpected, send_errors, uncached;
    counter cache_hits, cache_entries, cache_bytes, cache_evicted,
        cache_expired;
    counter deferred, deferred_pending, deferred_answered, deferred_expired,
        deferred_refused, deferred_retransmissions;
    counter reused_ids, kernel_drops, amplification_echoes;
    counter dropped_auth, dropped_clock;
};

/* Only the server's thread writes a counter: a relaxed load and store,
 * not a read-modify-write, is enough, and costs a plain move. */
static void bump_by(counter *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static void bump(counter *c)
{
    bump_by(c, 1);
}

static void set(counter *c, uint64_t v)
{
    atomic_store_explicit(c, v, memory_order_relaxed);
}

static uint64_t get(const counter *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* Where a request came from and the local address it was sent to: its
 * answer goes back the same way (from that address: see sock.h). */
struct route {
    const struct sockaddr *peer;
    socklen_t peer_len;
    const struct udprr__sock_local *local;
    size_t request_len; /* the request datagram's size: the amplification
                           guard's yardstick */
    int proven;         /* it carried a good cookie: its peer receives at
                           its address */
    uint64_t now_us;
    int sealed;         /* it came sealed with key key_id (seal.h): the
                           answer goes sealed with that key */
    uint32_t key_id;
};

/* A deferred request's node, as the server's thread sees it. */
enum {
    NODE_IN_HANDLER, /* the handler is running: its result not known yet */
    NODE_DEFERRED,   /* the handler returned UDPRR_DEFER */
    NODE_DISCARD     /* answered through its token though the handler did
                        not defer: the handler's own result stands */
};

/* An answer given through a token, waiting for the server's thread. */
struct answer {
    struct answer *next;
    struct udprr__deferred *node; /* taken out of the table */
    enum udprr__wire_kind kind;
    size_t len;
    uint8_t body[];
};

/* An answer waiting in the send batch. Its body lives in the arena: a
 * cached answer is copied there because a later datagram of the same
 * batch may evict it from the cache before the batch is sent. */
struct outgoing {
    struct sockaddr_storage peer;
    socklen_t peer_len;
    struct udprr__sock_local local; /* where the request went */
    size_t header_len;
    size_t body_offset; /* into tx_arena */
    size_t body_len;
    uint8_t header[UDPRR__WIRE_HEADER_BYTES];
};

struct udprr_server {
    int fd;
    int wake_fd; /* eventfd: stop and answers from other threads wake the
                    server's thread through it */
    int poll_fd; /* epoll on fd and wake_fd: udprr_server_fd */
    atomic_int stopping;
    atomic_int wake_pending; /* set after each wake-up signal: the step
                                reads the eventfd only when it is */
    int in_step; /* run or process is running (the handler may not
                    re-enter) */
    int socket_unwatched; /* stopped: poll_fd watches wake_fd alone */
    udprr__dedup *cache; /* NULL when the reply cache is off */
    struct udprr__framing framing;
    struct server_counters stats;
    /* Set while run was entered through the 0.1 symbol: its handler was
     * built against 0.1's header, where UDPRR_NO_REPLY was 1. */
    int results_0_1;
    pthread_mutex_t lock;    /* guards deferred and the answers */
    int lock_made;
    udprr__defer *deferred;  /* the tokens waiting for their answers */
    struct answer *answers, *answers_tail;
    struct udprr__deferred *spare; /* a node to reuse (server's thread) */
    /* Workers: see the top of this file. */
    unsigned worker_index;   /* this worker's number, 0..n_workers - 1 */
    unsigned n_workers;      /* worker 0's: how many; the others' 1 */
    int tagged_tokens;       /* tokens carry worker_index (workers > 1) */
    udprr_server **others;   /* worker 0's: workers 1..n_workers - 1 */
    udprr_server *first;     /* worker 0 */
    atomic_int running;      /* worker 0's: run is running (workers > 1) */
    pthread_t thread;        /* the others': the thread that runs them */
    udprr_handler handler;   /* ... and what it runs */
    void *user;
    int run_rc, run_errno;   /* ... and how its run ended */
    udprr__recv_batch *rx;   /* the datagrams of the current step */
    uint32_t drops_seen;     /* the kernel's drop count, as last counted */
    unsigned amplification;  /* the factor; UDPRR_AMPLIFICATION_OFF: none */
    uint64_t cookie_key[4];  /* the cookies' secret (two SipHash keys) */
    udprr__server_tx_fn tx_hook; /* server_hooks.h: answers go here */
    void *tx_hook_ctx;
    /* The sealed mode (seal.h): each worker opens and seals with its own
     * copy of the keys, and takes worker 0's `keys_next` again when
     * `keys_version` moved on (udprr_server_set_keys). */
    int sealed;              /* opened with keys: sealed for life */
    struct udprr__keyring ring;
    unsigned keys_seen;      /* the keys_version ring holds */
    struct udprr__keyring keys_next; /* worker 0's, under its lock */
    atomic_uint keys_version;        /* worker 0's */
    uint64_t replay_window_ms; /* half the cache's lifetime (udprr.h) */
    int64_t clock_skew_ms;   /* server_hooks.h */
    uint8_t *tx_arena;       /* TX_ARENA_BYTES: the answers' bodies */
    size_t tx_used;          /* bytes of tx_arena taken */
    size_t tx_count;         /* answers in tx */
    struct outgoing tx[BATCH];
};

static void lock(const udprr_server *s)
{
    pthread_mutex_lock((pthread_mutex_t *)&s->lock);
}

static void unlock(const udprr_server *s)
{
    pthread_mutex_unlock((pthread_mutex_t *)&s->lock);
}

/* The handle (worker 0) or worker i of it, for loops over them all. */
static udprr_server *worker_at(const udprr_server *s, unsigned i)
{
    return i == 0 ? (udprr_server *)s : s->others[i - 1];
}

/* What a handle of either kind holds before anything is made. */
static void worker_clear(udprr_server *w)
{
    memset(w, 0, sizeof *w);
    w->fd = w->wake_fd = w->poll_fd = -1;
    w->n_workers = 1;
    atomic_init(&w->stopping, 0);
    atomic_init(&w->running, 0);
    atomic_init(&w->wake_pending, 0);
    atomic_init(&w->keys_version, 0);
}

/* Makes one worker's cache, table, lock, eventfd, socket and poller: the
 * socket bound to host/service for worker 0 (first NULL), else beside
 * first's. */
static int worker_open(udprr_server *w, const udprr_server_opts *o,
                       const char *host, const char *service,
                       const udprr_server *first)
{
    w->framing.kind = o->framing;
    w->framing.id_offset = o->id_offset;
    w->framing.id_len = o->id_len;
    w->framing.sealed = w->sealed = o->n_keys > 0;
    w->tagged_tokens = o->workers > 1;
    w->amplification = o->amplification_factor;
    w->replay_window_ms = o->cache_lifetime_ms / 2;
    int rc = udprr__framing_check(&w->framing);
    if (rc == UDPRR_OK && w->sealed)
        rc = udprr__keyring_set(&w->ring, o->keys, o->n_keys);
    if (rc == UDPRR_OK)
        rc = udprr__random_bytes(w->cookie_key, sizeof w->cookie_key);
    /* The batch buffers are allocated here once, and never zeroed: the
     * receive slots are only read after the kernel wrote them, the arena
     * only after a handler or a copy wrote it (up to the length set), so
     * zeroing would make every page resident for nothing. */
    if (rc == UDPRR_OK)
        rc = udprr__recv_batch_new(&w->rx, BATCH);
    if (rc == UDPRR_OK) {
        w->tx_arena = udprr__malloc(TX_ARENA_BYTES);
        rc = w->tx_arena != NULL ? UDPRR_OK : UDPRR_ENOMEM;
    }
    /* Raw datagrams carry no request identity to remember answers by. */
    if (rc == UDPRR_OK && o->reply_cache &&
        udprr__framing_has_id(&w->framing)) {
        struct udprr__dedup_limits lim = {o->cache_entries, o->cache_bytes,
                                          (uint64_t)o->cache_lifetime_ms * 1000,
                                          {0, 0}};
        rc = udprr__random_bytes(lim.hash_key, sizeof lim.hash_key);
        if (rc == UDPRR_OK)
            rc = udprr__dedup_new(&w->cache, &lim);
    }
    if (rc == UDPRR_OK)
        rc = udprr__defer_new(&w->deferred, o->max_deferred,
                              (uint64_t)o->deferred_lifetime_ms * 1000);
    if (rc == UDPRR_OK) {
        rc = pthread_mutex_init(&w->lock, NULL) == 0 ? UDPRR_OK
                                                      : UDPRR_ENOMEM;
        w->lock_made = rc == UDPRR_OK;
    }
    if (rc == UDPRR_OK)
        rc = udprr__wake_open(&w->wake_fd);
    if (rc == UDPRR_OK)
        rc = first == NULL
                 ? udprr__sock_bind(host, service, o->workers > 1,
                                    o->interface, &w->fd)
                 : udprr__sock_bind_beside(first->fd, o->interface, &w->fd);
    if (rc == UDPRR_OK)
        rc = udprr__sock_tune_server(w->fd, o->rcvbuf_bytes);
    if (rc == UDPRR_OK)
        rc = udprr__poller_open((const int[]){w->fd, w->wake_fd}, 2,
                                &w->poll_fd);
    return rc;
}

/* Makes workers 1..o->workers - 1 of s, counting each in s->n_workers as
 * soon as it exists, so that a failure leaves them all to the close. */
static int others_open(udprr_server *s, const udprr_server_opts *o)
{
    s->others = udprr__malloc((o->workers - 1) * sizeof *s->others);
    if (s->others == NULL)
        return UDPRR_ENOMEM;
    for (unsigned i = 1; i < o->workers; i++) {
        udprr_server *w = udprr__malloc(sizeof *w);
        if (w == NULL)
            return UDPRR_ENOMEM;
        worker_clear(w);
        w->worker_index = i;
        w->first = s;
        s->others[i - 1] = w;
        s->n_workers++;
        int rc = worker_open(w, o, NULL, NULL, s);
        if (rc != UDPRR_OK)
            return rc;
    }
    return UDPRR_OK;
}

int udprr_server_open(udprr_server **out, const char *host,
                      const char *service, const udprr_server_opts *opts)
{
    udprr_server_opts o;
    if (out == NULL || service == NULL ||
        udprr__server_opts_take(&o, opts) != UDPRR_OK ||
        o.max_deferred > UDPRR__DEFER_MAX || o.workers > UDPRR_MAX_WORKERS ||
        o.rcvbuf_bytes > ((size_t)1 << 30) ||
        (o.amplification_factor > 1000 &&
         o.amplification_factor != UDPRR_AMPLIFICATION_OFF) ||
        (o.n_keys > 0 && (o.keys == NULL || o.n_keys > UDPRR_MAX_KEYS ||
                          o.framing != UDPRR_FRAMING_NATIVE)) ||
        (o.keys != NULL && o.n_keys == 0))
        return UDPRR_EINVAL;
    if (o.n_keys > 0) {
        int rc = udprr__seal_init();
        if (rc != UDPRR_OK)
            return rc;
    }

    udprr_server *s = udprr__malloc(sizeof *s);
    if (s == NULL)
        return UDPRR_ENOMEM;
    worker_clear(s);
    s->first = s;
    int rc = worker_open(s, &o, host, service, NULL);
    if (rc == UDPRR_OK)
        s->keys_next = s->ring;
    if (rc == UDPRR_OK && o.workers > 1)
        rc = others_open(s, &o);
    if (rc != UDPRR_OK) {
        int saved = errno;
        udprr_server_close(s);
        errno = saved;
        return rc;
    }
    *out = s;
    return UDPRR_OK;
}

int udprr_server_sockname(const udprr_server *s, struct sockaddr *addr,
                          socklen_t *len)
{
    if (s == NULL || addr == NULL || len == NULL)
        return UDPRR_EINVAL;
    return udprr__sock_name(s->fd, addr, len);
}

int udprr_server_join(udprr_server *s, const char *group,
                      const char *interface)
{
    /* Each worker's socket would take its own copy of every request sent
     * to the group (udprr.h). */
    if (s == NULL || group == NULL || s->n_workers > 1)
        return UDPRR_EINVAL;
    return udprr__sock_join(s->fd, group, interface);
}

int udprr_server_fd(const udprr_server *s)
{
    /* Workers are served by run alone. */
    return s == NULL || s->n_workers > 1 ? -1 : s->poll_fd;
}

/* Wakes the server's thread. The flag is set after the signal, so a step
 * that finds it set drains the eventfd after the write it stands for; a
 * step that finds it clear makes no system call for it. Async-signal-safe:
 * a lock-free atomic store and udprr__wake_signal. */
static void wake(udprr_server *s)
{
    udprr__wake_signal(s->wake_fd);
    atomic_store(&s->wake_pending, 1);
}

void udprr_server_stop(udprr_server *s)
{
    if (s == NULL)
        return;
    /* Only atomic stores and udprr__wake_signal: all async-signal-safe
     * (others and n_workers do not change after open). */
    for (unsigned i = 0; i < s->n_workers; i++) {
        udprr_server *w = worker_at(s, i);
        atomic_store(&w->stopping, 1);
        wake(w);
    }
}

/* The token the program sees for a worker's table entry. Local tokens
 * count up from 1 (defer.h), so a tagged token is never 0 either. */
static uint64_t public_token(const udprr_server *w, uint64_t local)
{
    if (local == 0 || !w->tagged_tokens)
        return local;
    return local << WORKER_BITS | w->worker_index;
}

/* The reply cache's figures, for readers on other threads. */
static void publish_cache(udprr_server *s)
{
    struct udprr__dedup_stats d; /* all zeros without a cache */
    udprr__dedup_stats(s->cache, &d);
    set(&s->stats.cache_hits, d.hits);
    set(&s->stats.cache_entries, d.entries);
    set(&s->stats.cache_bytes, d.bytes);
    set(&s->stats.cache_evicted, d.evicted);
    set(&s->stats.cache_expired, d.expired);
    set(&s->stats.reused_ids, d.reused);
}

/* Sends the answers gathered so far, in one sendmmsg where the kernel
 * takes them all, and counts each. */
static void flush_answers(udprr_server *s)
{
    if (s->tx_count == 0)
        return;
    struct udprr__sock_out out[BATCH];
    int status[BATCH];
    for (size_t i = 0; i < s->tx_count; i++) {
        const struct outgoing *o = &s->tx[i];
        out[i] = (struct udprr__sock_out){
            (const struct sockaddr *)&o->peer, o->peer_len, &o->local,
            o->header, o->header_len, s->tx_arena + o->body_offset,
            o->body_len};
    }
    size_t sent;
    if (s->tx_hook != NULL) {
        for (size_t i = 0; i < s->tx_count; i++)
            s->tx_hook(s->tx_hook_ctx, out[i].peer, out[i].peer_len,
                       out[i].header, out[i].header_len, out[i].body,
                       out[i].body_len);
        sent = s->tx_count;
    } else {
        sent = udprr__sock_send_many_to(s->fd, out, s->tx_count, status);
    }
    bump_by(&s->stats.answered, sent);
    /* the clients' retries ask again */
    bump_by(&s->stats.send_errors, s->tx_count - sent);
    s->tx_count = 0;
    s->tx_used = 0;
}

/* A sealed answer's body sits in the arena after room for the seal's
 * head and the inner header, with room for the tag after it: it is
 * sealed where it lies (seal_answer). */
#define SEALED_BEFORE (UDPRR__SEAL_HEAD_BYTES + UDPRR__WIRE_HEADER_BYTES)
#define SEALED_AROUND (SEALED_BEFORE + UDPRR__SEAL_TAG_BYTES)

/* Where in the arena the body of the next answer goes, with room for at
 * least body_bytes (at most the framing's max body), and for the seal
 * around it on a sealed server; what is gathered is sent first when the
 * batch or the arena is full. */
static uint8_t *answer_room(udprr_server *s, size_t body_bytes)
{
    size_t around = s->sealed ? SEALED_AROUND : 0;
    if (s->tx_count == BATCH ||
        TX_ARENA_BYTES - s->tx_used < body_bytes + around)
        flush_answers(s);
    return s->tx_arena + s->tx_used + (s->sealed ? SEALED_BEFORE : 0);
}

/* The wall clock sealed datagrams carry and requests are checked against
 * (server_hooks.h may skew it). */
static uint64_t server_clock_ms(const udprr_server *s)
{
    return udprr__seal_clock_ms() + (uint64_t)s->clock_skew_ms;
}

/* Seals the answer whose inner header is in o and whose body lies at
 * body[0..*len) as answer_room placed it: the sealed datagram then starts
 * SEALED_BEFORE bytes before body, *len becomes its size, and o has no
 * header apart. Returns 0, counted as a send error, when the request's
 * key has gone meanwhile (udprr_server_set_keys): the answer is not sent. */
static int seal_answer(udprr_server *s, const struct route *route,
                       struct outgoing *o, uint8_t *body, size_t *len)
{
    const udprr_key *key = udprr__keyring_find(&s->ring, route->key_id);
    if (key == NULL) {
        bump(&s->stats.send_errors);
        return 0;
    }
    uint8_t *inner = body - UDPRR__WIRE_HEADER_BYTES;
    memcpy(inner, o->header, o->header_len);
    *len = udprr__seal(key, server_clock_ms(s), inner, o->header_len + *len,
                       inner - UDPRR__SEAL_HEAD_BYTES);
    o->header_len = 0;
    return 1;
}

/* --- the amplification guard (udprr.h, "Amplification") ------------------ */

/* A cookie's lifetime step: a cookie made in one is good in it and the
 * next. */
#define COOKIE_EPOCH_US (30 * (uint64_t)1000000)

/* The cookie for peer in epoch: two SipHashes of its address key and the
 * epoch under the server's secret. */
static void make_cookie(const udprr_server *s, const struct sockaddr *peer,
                        socklen_t peer_len, uint64_t epoch,
                        uint8_t out[UDPRR__WIRE_COOKIE_BYTES])
{
    uint8_t bytes[UDPRR__DEDUP_ADDR_MAX + 8];
    size_t n = udprr__sock_addr_key(peer, peer_len, bytes);
    memcpy(bytes + n, &epoch, sizeof epoch);
    uint64_t a = udprr__siphash24(s->cookie_key[0], s->cookie_key[1], bytes,
                                  n + sizeof epoch);
    uint64_t b = udprr__siphash24(s->cookie_key[2], s->cookie_key[3], bytes,
                                  n + sizeof epoch);
    memcpy(out, &a, sizeof a);
    memcpy(out + sizeof a, &b, sizeof b);
}

/* Whether cookie is one this server made for peer in this epoch or the
 * one before. */
static int cookie_good(const udprr_server *s, const struct sockaddr *peer,
                       socklen_t peer_len, const uint8_t *cookie,
                       uint64_t now_us)
{
    uint64_t epoch = now_us / COOKIE_EPOCH_US;
    for (uint64_t back = 0; back < 2 && back <= epoch; back++) {
        uint8_t want[UDPRR__WIRE_COOKIE_BYTES];
        make_cookie(s, peer, peer_len, epoch - back, want);
        /* Not secret-dependent timing that matters: a forger cannot see
         * the cookie it would have to guess byte by byte. */
        if (memcmp(want, cookie, sizeof want) == 0)
            return 1;
    }
    return 0;
}

/* Whether an answer of body_len bytes may not go along route: native
 * framing, the guard on, the peer unproven, and the answer datagram over
 * the factor times its request's. */
static int held_back(const udprr_server *s, const struct route *route,
                     enum udprr__wire_kind kind, size_t body_len)
{
    size_t seal = route->sealed ? UDPRR_SEAL_OVERHEAD : 0;
    return s->framing.kind == UDPRR_FRAMING_NATIVE &&
           s->amplification != UDPRR_AMPLIFICATION_OFF && !route->proven &&
           kind == UDPRR__KIND_REPLY &&
           UDPRR__WIRE_HEADER_BYTES + body_len + seal >
               (uint64_t)s->amplification * route->request_len;
}

/* Queues the framing's header (if any) and body back along route as one
 * datagram, echoing the request's ID and attempt; the step sends it with
 * the rest of its batch. An id-at-offset body already carries the ID.
 * body may be the room answer_room gave (a handler's reply), else it is
 * copied. */
static void answer(udprr_server *s, const struct route *route,
                   enum udprr__wire_kind kind,
                   uint64_t id, unsigned attempt, const uint8_t *body,
                   size_t body_len)
{
    uint8_t cookie[UDPRR__WIRE_COOKIE_BYTES];
    if (held_back(s, route, kind, body_len)) {
        /* An echo instead: the answer stays in the cache (when there is
         * one) for the request's return with this cookie. */
        make_cookie(s, route->peer, route->peer_len,
                    route->now_us / COOKIE_EPOCH_US, cookie);
        kind = UDPRR__KIND_ECHO;
        body = cookie;
        body_len = sizeof cookie;
        bump(&s->stats.amplification_echoes);
    }
    uint8_t *room = answer_room(s, body_len);
    struct outgoing *o = &s->tx[s->tx_count];
    if (!udprr__framing_reply(&s->framing, kind, id, attempt, body,
                              body_len, o->header, &o->header_len))
        return; /* a decline this framing cannot express */
    if (body_len > 0 && body != room)
        memcpy(room, body, body_len);
    size_t len = body_len;
    if (route->sealed && !seal_answer(s, route, o, room, &len))
        return;
    memcpy(&o->peer, route->peer, route->peer_len);
    o->peer_len = route->peer_len;
    o->local = *route->local;
    o->body_offset = s->tx_used;
    o->body_len = len;
    s->tx_used += len;
    s->tx_count++;
}

/* Remembers an answer, then sends it: once the handler has run, a
 * retransmission must find its answer even if this send is lost. An
 * answer the cache cannot take (larger than its whole budget, or no
 * memory) is still sent; only its retransmissions would run the handler
 * again. body is writable: in id-at-offset framing the request's ID goes
 * into it first, so that a cached answer is sent again exactly as it
 * was. */
static void cache_and_answer(udprr_server *s, const struct udprr__dedup_key *key,
                             const struct route *route,
                             enum udprr__wire_kind kind, uint64_t id,
                             unsigned attempt, uint8_t *body, size_t body_len,
                             uint64_t now_us)
{
    udprr__framing_reply_id(&s->framing, id, body, body_len);
    if (s->cache != NULL && key->addr_len > 0 &&
        udprr__dedup_insert(s->cache, key, now_us, kind, body, body_len) !=
            UDPRR_OK) {
        bump(&s->stats.uncached);
        /* A deferred request's answer that could not take the place of
         * its in-progress entry: drop the entry, or retransmissions would
         * be dropped for ever instead of running the handler again. */
        udprr__dedup_forget(s->cache, key);
    }
    answer(s, route, kind, id, attempt, body, body_len);
}

/* A node for the request about to be handled: the spare, or a new one. */
static struct udprr__deferred *node_get(udprr_server *s)
{
    struct udprr__deferred *n = s->spare;
    s->spare = NULL;
    return n != NULL ? n : udprr__malloc(sizeof *n);
}

static void node_put(udprr_server *s, struct udprr__deferred *n)
{
    if (s->spare == NULL)
        s->spare = n;
    else
        udprr__free(n);
}

/* Enters the request into the table before the handler runs, so that an
 * answer given through its token (from the handler itself, or from a
 * worker faster than the handler's return) finds it. Returns the node,
 * or NULL (token 0: the table is full, or no memory). */
static struct udprr__deferred *defer_begin(udprr_server *s,
                                           const struct udprr__framed *in,
                                           const struct route *route,
                                           const struct udprr__dedup_key *key,
                                           uint64_t now_us)
{
    struct udprr__deferred *n = node_get(s);
    if (n == NULL)
        return NULL;
    memset(n, 0, sizeof *n);
    memcpy(&n->peer, route->peer, route->peer_len);
    n->peer_len = route->peer_len;
    n->local = *route->local;
    n->request_len = route->request_len;
    n->proven = route->proven;
    n->sealed = route->sealed;
    n->key_id = route->key_id;
    n->id = in->id;
    n->attempt = in->attempt;
    n->key = *key;
    n->state = NODE_IN_HANDLER;
    lock(s);
    int rc = udprr__defer_add(s->deferred, n, now_us);
    unlock(s);
    if (rc != UDPRR_OK) {
        node_put(s, n);
        return NULL;
    }
    return n;
}

/* The handler has returned: UDPRR_DEFER keeps the node in the table (or in
 * the answers, if it was answered already); anything else takes it back,
 * and an answer already given through its token is discarded. */
static void defer_end(udprr_server *s, struct udprr__deferred *n,
                      int deferred)
{
    lock(s);
    if (deferred) {
        n->state = NODE_DEFERRED;
        unlock(s);
        return;
    }
    struct udprr__deferred *taken = udprr__defer_take(s->deferred, n->token);
    if (taken == NULL)
        n->state = NODE_DISCARD; /* in the answers; freed with them */
    unlock(s);
    if (taken != NULL)
        node_put(s, taken);
}

/* The reply cache's first byte of a sealed request's key: its key ID
 * follows, where an address would (sock.c's keys begin with 4 or 6). */
#define SEALED_KEY_MARK 'K'

static void handle_datagram(udprr_server *s, uint8_t *data, size_t len,
                            const struct route *arrived, udprr_handler h,
                            void *user, uint64_t now_us)
{
    struct udprr__framed in;
    /* The way back, its key on a sealed server, and (below) whether the
     * request proved its peer's address (a cookie from this server's
     * echo: see held_back). */
    struct route way = *arrived;
    const struct route *route = &way;
    way.request_len = len;
    way.now_us = now_us;
    uint64_t clock_ms = 0;

    /* Before anything else reads a byte of it (udprr.h, "Sealed mode"). */
    if (s->sealed) {
        if (udprr__seal_open(&s->ring, data, len, &way.key_id, &clock_ms,
                             &len) != UDPRR__SEAL_OPENED) {
            bump(&s->stats.dropped_auth);
            return;
        }
        way.sealed = 1;
        data += UDPRR__SEAL_HEAD_BYTES;
    }
    if (udprr__framing_parse(&s->framing, data, len, 0, &in) !=
        UDPRR__WIRE_VALID) {
        bump(&s->stats.dropped_malformed);
        return;
    }
    if (in.kind != UDPRR__KIND_REQUEST) {
        bump(&s->stats.dropped_unexpected);
        return;
    }
    if (way.sealed &&
        !udprr__seal_fresh(clock_ms, server_clock_ms(s), s->replay_window_ms)) {
        bump(&s->stats.dropped_clock);
        return;
    }
    way.proven = in.cookie != NULL &&
                 cookie_good(s, way.peer, way.peer_len, in.cookie, now_us);

    /* A plain request is its peer's; a sealed one its key's, wherever it
     * comes from, so that a replay from elsewhere finds its answer. */
    struct udprr__dedup_key key;
    memset(&key, 0, sizeof key);
    key.id = in.id;
    if (way.sealed) {
        key.addr[0] = SEALED_KEY_MARK;
        for (int i = 0; i < 4; i++)
            key.addr[1 + i] = (uint8_t)(way.key_id >> (24 - 8 * i));
        key.addr_len = 5;
    } else {
        key.addr_len = (uint8_t)udprr__sock_addr_key(
            route->peer, route->peer_len, key.addr);
    }
    /* Only the same bytes are the same request (udprr.h, reply_cache). */
    if (s->cache != NULL)
        key.digest = udprr__dedup_digest(s->cache, in.body, in.body_len);
    if (s->cache != NULL && key.addr_len > 0) {
        int kind;
        const uint8_t *cached;
        size_t cached_len;
        if (udprr__dedup_lookup(s->cache, &key, now_us, &kind, &cached,
                                &cached_len)) {
            if (kind == UDPRR__DEDUP_IN_PROGRESS)
                bump(&s->stats.deferred_retransmissions); /* still working */
            else
                answer(s, route, (enum udprr__wire_kind)kind, in.id,
                       in.attempt, cached, cached_len);
            return;
        }
    }

    size_t cap = udprr__framing_max_body(&s->framing);
    /* The reply is written where it is sent from; nothing is queued
     * before it is (no flush can move it). */
    uint8_t *reply = answer_room(s, cap);
    struct udprr__deferred *node =
        defer_begin(s, &in, route, &key, now_us);
    udprr_request req = {in.body,       in.body_len, route->peer,
                         route->peer_len, in.id,     in.attempt,
                         node != NULL ? public_token(s, node->token) : 0};
    size_t reply_len = 0;
    int rc = h(user, &req, reply, cap, &reply_len);
    bump(&s->stats.handled);
    if (s->results_0_1 && rc == NO_REPLY_0_1)
        rc = UDPRR_NO_REPLY;
    if (node != NULL)
        defer_end(s, node, rc == UDPRR_DEFER);
    if (rc == UDPRR_NO_REPLY) {
        bump(&s->stats.not_answered);
        return;
    }
    if (rc == UDPRR_DEFER && node != NULL) {
        bump(&s->stats.deferred);
        bump(&s->stats.deferred_pending);
        /* Retransmissions find it in progress until the answer replaces
         * it. Without room for it they run the handler again: counted as
         * for any answer the cache cannot take. */
        if (s->cache != NULL && key.addr_len > 0 &&
            udprr__dedup_insert(s->cache, &key, now_us,
                                UDPRR__DEDUP_IN_PROGRESS, NULL, 0) != UDPRR_OK)
            bump(&s->stats.uncached);
        return;
    }
    enum udprr__wire_kind kind = UDPRR__KIND_REPLY;
    /* Anything but UDPRR_REPLY and UDPRR_NO_REPLY declines, so that a
     * handler's error path (return 1, -1, -EIO) tells the client at once;
     * so does a UDPRR_DEFER with no token to answer through. */
    if (rc != UDPRR_REPLY || reply_len > cap) {
        kind = UDPRR__KIND_DECLINE;
        reply_len = 0;
        bump(rc == UDPRR_DEFER ? &s->stats.deferred_refused
                               : &s->stats.declined);
    }
    cache_and_answer(s, &key, route, kind, in.id, in.attempt, reply,
                     reply_len, now_us);
}

/* handle_datagram, then the cache's figures for readers (the handler of
 * the next request included). */
static void handle_and_publish(udprr_server *s, uint8_t *data, size_t len,
                               const struct route *route, udprr_handler h,
                               void *user, uint64_t now_us)
{
    handle_datagram(s, data, len, route, h, user, now_us);
    publish_cache(s);
}

/* Sends (and caches) one deferred request's answer. */
static void answer_deferred(udprr_server *s, struct udprr__deferred *n,
                            enum udprr__wire_kind kind, uint8_t *body,
                            size_t len, uint64_t now_us)
{
    struct route route = {(const struct sockaddr *)&n->peer,
                          n->peer_len,
                          &n->local,
                          n->request_len,
                          n->proven,
                          now_us,
                          n->sealed,
                          n->key_id};
    cache_and_answer(s, &n->key, &route, kind, n->id, n->attempt, body, len,
                     now_us);
    set(&s->stats.deferred_pending, get(&s->stats.deferred_pending) - 1);
}

/* Sends the answers given through tokens since the last step. */
static void deliver_answers(udprr_server *s, uint64_t now_us)
{
    lock(s);
    struct answer *a = s->answers;
    s->answers = s->answers_tail = NULL;
    /* A node still in the handler is the one being handled now: its
     * answer waits for the handler's result (defer_end). Only this
     * thread runs handlers, and it is here, so there is none. */
    unlock(s);
    while (a != NULL) {
        struct answer *next = a->next;
        if (a->node->state == NODE_DEFERRED) {
            answer_deferred(s, a->node, a->kind, a->body, a->len, now_us);
            bump(&s->stats.deferred_answered);
            if (a->kind == UDPRR__KIND_DECLINE)
                bump(&s->stats.declined);
        }
        udprr__free(a->node);
        udprr__free(a);
        a = next;
    }
}

/* Declines the deferred requests whose answer did not come in time
 * (every one, with all_of_them: the close). */
static void expire_deferred(udprr_server *s, uint64_t now_us,
                            int all_of_them)
{
    for (;;) {
        lock(s);
        struct udprr__deferred *n =
            all_of_them ? udprr__defer_take_oldest(s->deferred)
                        : udprr__defer_take_expired(s->deferred, now_us);
        unlock(s);
        if (n == NULL)
            return;
        answer_deferred(s, n, UDPRR__KIND_DECLINE, NULL, 0, now_us);
        bump(&s->stats.deferred_expired);
        udprr__free(n);
    }
}

/* Takes up to a batch of datagrams from the socket in one call, never
 * blocking, and handles them; their answers join the send batch. A batch
 * short of full means the socket was drained: the next step waits
 * instead of asking again. A stop (from a handler, or another thread)
 * ends the batch: what is left of it is dropped uncounted, as datagrams
 * left in the socket would be. */
static void receive_step(udprr_server *s, udprr_handler h, void *user)
{
    if (atomic_load(&s->stopping))
        return;
    size_t got = udprr__sock_recv_many_from(s->fd, s->rx);
    if (got > 0) {
        /* The kernel's count wraps at 2^32: the difference does not. */
        uint32_t drops = udprr__recv_batch_drops(s->rx);
        bump_by(&s->stats.kernel_drops, (uint32_t)(drops - s->drops_seen));
        s->drops_seen = drops;
    }
    for (size_t i = 0; i < got && !atomic_load(&s->stopping); i++) {
        size_t len;
        struct route route = {0};
        uint8_t *data = udprr__recv_batch_data(s->rx, i, &len);
        route.peer = udprr__recv_batch_peer(s->rx, i, &route.peer_len);
        route.local = udprr__recv_batch_local(s->rx, i);
        bump(&s->stats.received);
        handle_and_publish(s, data, len, &route, h, user, udprr__now_us());
    }
}

/* Takes the keys udprr_server_set_keys gave since this worker last
 * looked: one atomic load when there are none. */
static void refresh_keys(udprr_server *w)
{
    udprr_server *first = w->first;
    if (!w->sealed || atomic_load_explicit(&first->keys_version,
                                           memory_order_acquire) ==
                          w->keys_seen)
        return;
    lock(first);
    w->ring = first->keys_next;
    w->keys_seen = atomic_load_explicit(&first->keys_version,
                                        memory_order_relaxed);
    unlock(first);
}

int udprr_server_set_keys(udprr_server *s, const udprr_key *keys, size_t n)
{
    /* s is the handle: worker 0, whose keys_next every worker takes. */
    if (s == NULL || !s->sealed)
        return UDPRR_EINVAL;
    lock(s);
    int rc = udprr__keyring_set(&s->keys_next, keys, n);
    if (rc == UDPRR_OK)
        atomic_fetch_add_explicit(&s->keys_version, 1, memory_order_release);
    unlock(s);
    return rc;
}

/* One step: answers given, lifetimes ended, datagrams waiting. */
static void step(udprr_server *s, udprr_handler h, void *user)
{
    refresh_keys(s);
    /* A stopped server takes no more datagrams: its descriptor stops
     * watching the socket, or a loop waiting on it would spin on
     * datagrams no step will take. */
    if (atomic_load(&s->stopping) && !s->socket_unwatched)
        s->socket_unwatched =
            udprr__poller_remove(s->poll_fd, s->fd) == UDPRR_OK;
    if (atomic_exchange(&s->wake_pending, 0))
        udprr__wake_drain(s->wake_fd);
    uint64_t now = udprr__now_us();
    deliver_answers(s, now);
    expire_deferred(s, now, 0);
    receive_step(s, h, user);
    flush_answers(s);
    publish_cache(s);
}

/* --- server_hooks.h ------------------------------------------------------ */

void udprr__server_set_clock_skew(udprr_server *s, int64_t skew_ms)
{
    s->clock_skew_ms = skew_ms;
}

void udprr__server_set_tx_hook(udprr_server *s, udprr__server_tx_fn fn,
                               void *ctx)
{
    s->tx_hook = fn;
    s->tx_hook_ctx = ctx;
}

void udprr__server_feed(udprr_server *s, uint8_t *data, size_t len,
                        const struct sockaddr *peer, socklen_t peer_len,
                        udprr_handler h, void *user, uint64_t now_us)
{
    static const struct udprr__sock_local nowhere; /* the kernel chooses */
    struct route route = {peer, peer_len, &nowhere, len, 0, now_us, 0, 0};
    refresh_keys(s);
    s->in_step = 1;
    bump(&s->stats.received);
    handle_and_publish(s, data, len, &route, h, user, now_us);
    flush_answers(s);
    s->in_step = 0;
}

void udprr__server_tick(udprr_server *s, uint64_t now_us)
{
    refresh_keys(s);
    if (atomic_exchange(&s->wake_pending, 0))
        udprr__wake_drain(s->wake_fd);
    deliver_answers(s, now_us);
    expire_deferred(s, now_us, 0);
    flush_answers(s);
    publish_cache(s);
}

/* Microseconds until the next deferred lifetime ends; UINT64_MAX: none. */
static uint64_t next_timer_us(const udprr_server *s)
{
    uint64_t when;
    lock(s);
    int any = udprr__defer_next_expiry(s->deferred, &when);
    unlock(s);
    if (!any)
        return UINT64_MAX;
    uint64_t now = udprr__now_us();
    return when > now ? when - now : 0;
}

int udprr_server_timeout_ms(const udprr_server *s)
{
    if (s == NULL || s->n_workers > 1)
        return -1;
    uint64_t us = next_timer_us(s);
    if (us == UINT64_MAX)
        return -1;
    uint64_t ms = (us + 999) / 1000; /* rounded up: no early wake-up */
    return ms > INT_MAX ? INT_MAX : (int)ms;
}

int udprr_server_process(udprr_server *s, udprr_handler h, void *user)
{
    if (s == NULL || h == NULL || s->in_step || s->n_workers > 1)
        return UDPRR_EINVAL;
    s->in_step = 1;
    s->results_0_1 = 0;
    step(s, h, user);
    s->in_step = 0;
    return UDPRR_OK;
}

static int run(udprr_server *s, udprr_handler h, void *user)
{
    if (s->in_step)
        return UDPRR_EINVAL;
    s->in_step = 1;
    int rc = UDPRR_OK;
    while (!atomic_load(&s->stopping)) {
        if (udprr__sock_wait(s->poll_fd, -1, next_timer_us(s)) < 0) {
            if (errno == EINTR)
                continue;
            rc = UDPRR_ESYS;
            break;
        }
        step(s, h, user);
    }
    s->in_step = 0;
    return rc;
}

/* A worker's thread: its run, then, if that failed, a stop of every
 * worker, so that the caller's run returns and reports it. */
static void *worker_main(void *arg)
{
    udprr_server *w = arg;
    w->run_rc = run(w, w->handler, w->user);
    w->run_errno = errno;
    if (w->run_rc != UDPRR_OK)
        udprr_server_stop(w->first);
    return NULL;
}

/* Runs every worker: the others on threads of their own, worker 0 on the
 * caller's; returns when all have returned, with the first failure. */
static int run_workers(udprr_server *s, udprr_handler h, void *user,
                       int results_0_1)
{
    if (s->n_workers == 1) {
        s->results_0_1 = results_0_1;
        return run(s, h, user);
    }
    /* One run at a time, and none from a handler on any worker's thread
     * (in_step would see only worker 0's). */
    if (atomic_exchange(&s->running, 1))
        return UDPRR_EINVAL;
    int rc = UDPRR_OK, err = 0;
    unsigned started = 1;
    for (; started < s->n_workers; started++) {
        udprr_server *w = s->others[started - 1];
        w->results_0_1 = results_0_1;
        w->handler = h;
        w->user = user;
        err = pthread_create(&w->thread, NULL, worker_main, w);
        if (err != 0) {
            rc = UDPRR_ESYS;
            udprr_server_stop(s); /* those started end, and s stays stopped */
            break;
        }
    }
    if (rc == UDPRR_OK) {
        s->results_0_1 = results_0_1;
        rc = run(s, h, user);
        err = errno;
        if (rc != UDPRR_OK)
            udprr_server_stop(s);
    }
    for (unsigned i = 1; i < started; i++) {
        udprr_server *w = s->others[i - 1];
        pthread_join(w->thread, NULL);
        if (rc == UDPRR_OK && w->run_rc != UDPRR_OK) {
            rc = w->run_rc;
            err = w->run_errno;
        }
    }
    atomic_store(&s->running, 0);
    if (rc != UDPRR_OK)
        errno = err;
    return rc;
}

int udprr_server_run_v2(udprr_server *s, udprr_handler h, void *user)
{
    if (s == NULL || h == NULL)
        return UDPRR_EINVAL;
    return run_workers(s, h, user, 0);
}

/* The symbol programs built against 0.1's header call: their handlers'
 * results are 0.1's. */
int(udprr_server_run)(udprr_server *s, udprr_handler h, void *user)
{
    if (s == NULL || h == NULL)
        return UDPRR_EINVAL;
    return run_workers(s, h, user, 1);
}

/* Queues an answer for the token's request, taking its entry out of the
 * table so that the token answers once. */
static int give_answer(udprr_server *s, uint64_t token,
                       enum udprr__wire_kind kind, const void *body,
                       size_t len)
{
    if (s == NULL || (body == NULL && len > 0))
        return UDPRR_EINVAL;
    if (len > udprr__framing_max_body(&s->framing))
        return UDPRR_ETOOBIG;
    if (s->n_workers > 1) {
        /* The worker that handed the token out takes the answer. */
        unsigned i = (unsigned)(token & ((1u << WORKER_BITS) - 1));
        if (i >= s->n_workers)
            return UDPRR_ENOTPENDING;
        s = worker_at(s, i);
        token >>= WORKER_BITS;
    }
    struct answer *a = udprr__malloc(sizeof *a + len);
    if (a == NULL)
        return UDPRR_ENOMEM;
    a->next = NULL;
    a->kind = kind;
    a->len = len;
    if (len > 0)
        memcpy(a->body, body, len);
    lock(s);
    a->node = udprr__defer_take(s->deferred, token);
    /* Decided under the lock: once a is queued and the lock released, the
     * server's thread may send and free it at any moment. */
    int found = a->node != NULL;
    if (found) {
        if (s->answers_tail != NULL)
            s->answers_tail->next = a;
        else
            s->answers = a;
        s->answers_tail = a;
    }
    unlock(s);
    if (!found) {
        udprr__free(a);
        return UDPRR_ENOTPENDING;
    }
    wake(s);
    return UDPRR_OK;
}

int udprr_server_reply(udprr_server *s, uint64_t token, const void *reply,
                       size_t len)
{
    return give_answer(s, token, UDPRR__KIND_REPLY, reply, len);
}

int udprr_server_decline(udprr_server *s, uint64_t token)
{
    return give_answer(s, token, UDPRR__KIND_DECLINE, NULL, 0);
}

/* Closes one worker: its answers and declines go out on its socket. */
static void worker_close(udprr_server *s)
{
    if (s->deferred != NULL && s->lock_made && s->fd >= 0) {
        /* Answers already given go out; what is still deferred is
         * declined, so that no client waits out its deadline. */
        uint64_t now = udprr__now_us();
        deliver_answers(s, now);
        expire_deferred(s, now, 1);
        flush_answers(s);
    }
    udprr__sock_close(s->poll_fd);
    udprr__sock_close(s->fd);
    udprr__sock_close(s->wake_fd);
    udprr__dedup_free(s->cache);
    udprr__defer_free(s->deferred);
    udprr__free(s->spare);
    udprr__recv_batch_free(s->rx);
    udprr__free(s->tx_arena);
    udprr__keyring_wipe(&s->ring);
    udprr__keyring_wipe(&s->keys_next);
    if (s->lock_made)
        pthread_mutex_destroy(&s->lock);
    udprr__free(s);
}

void udprr_server_close(udprr_server *s)
{
    if (s == NULL)
        return;
    for (unsigned i = 1; i < s->n_workers; i++)
        worker_close(s->others[i - 1]);
    udprr__free(s->others);
    worker_close(s);
}

/* Adds one worker's counters to *sum. */
static void add_counters(struct udprr_server_stats *sum,
                         const struct server_counters *c)
{
    sum->received += get(&c->received);
    sum->handled += get(&c->handled);
    sum->answered += get(&c->answered);
    sum->cache_hits += get(&c->cache_hits);
    sum->declined += get(&c->declined);
    sum->not_answered += get(&c->not_answered);
    sum->dropped_malformed += get(&c->dropped_malformed);
    sum->dropped_unexpected += get(&c->dropped_unexpected);
    sum->send_errors += get(&c->send_errors);
    sum->uncached += get(&c->uncached);
    sum->cache_entries += get(&c->cache_entries);
    sum->cache_bytes += get(&c->cache_bytes);
    sum->cache_evicted += get(&c->cache_evicted);
    sum->cache_expired += get(&c->cache_expired);
    sum->deferred += get(&c->deferred);
    sum->deferred_pending += get(&c->deferred_pending);
    sum->deferred_answered += get(&c->deferred_answered);
    sum->deferred_expired += get(&c->deferred_expired);
    sum->deferred_refused += get(&c->deferred_refused);
    sum->deferred_retransmissions += get(&c->deferred_retransmissions);
    sum->reused_ids += get(&c->reused_ids);
    sum->kernel_drops += get(&c->kernel_drops);
    sum->amplification_echoes += get(&c->amplification_echoes);
    sum->dropped_auth += get(&c->dropped_auth);
    sum->dropped_clock += get(&c->dropped_clock);
}

int udprr_server_stats(const udprr_server *s, struct udprr_server_stats *out)
{
    if (s == NULL || out == NULL || out->size < sizeof out->size)
        return UDPRR_EINVAL;
    struct udprr_server_stats full;
    memset(&full, 0, sizeof full);
    full.size = sizeof full;
    for (unsigned i = 0; i < s->n_workers; i++)
        add_counters(&full, &worker_at(s, i)->stats);
    size_t n = out->size < sizeof full ? out->size : sizeof full;
    memcpy(out, &full, n);
    out->size = n;
    return UDPRR_OK;
}
