/* SPDX-License-Identifier: MIT */
/*
 * relay.c - the socket shell around impair.c: two sockets, one thread,
 * poll, and a queue of copies waiting for their send time. What it does and
 * promises is in relay.h.
 */
#include "relay.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The largest UDP payload over IPv6 (65535 minus the UDP header) is below
 * this, so no datagram is ever cut short on its way through. */
#define DATAGRAM_MAX_BYTES 65536

/* Datagrams taken from one socket before looking at the other, so a flood
 * one way cannot starve the other. */
#define BATCH_DATAGRAMS 64

enum direction { TO_SERVER, TO_CLIENT };

static const char *const direction_name[] = {"to_server", "to_client"};

/* A copy waiting for its send time, with its bytes (damaged and cut
 * already) and, to_client, where it goes. */
struct queued_copy {
    uint64_t due_us;
    uint64_t order; /* ties leave in the order they were queued */
    uint64_t datagram_no; /* the direction's count of seen, for the log */
    enum direction dir;
    size_t len_bytes;
    unsigned char *bytes;
    struct sockaddr_storage to;
    socklen_t to_len;
};

/* A binary min-heap on (due_us, order). Only the thread touches it. */
struct send_queue {
    struct queued_copy *items;
    size_t count, capacity;
    size_t max_count;
    size_t bytes; /* over all items, against RELAY_QUEUE_BYTES */
    uint64_t next_order;
};

struct relay {
    int client_fd; /* bound to loopback; clients send here */
    int server_fd; /* connect()ed to the server */
    int wake_rd;   /* stop writes a byte to wake_wr; poll sees it here */
    int wake_wr;
    struct sockaddr_storage addr; /* client_fd's address, for clients */
    socklen_t addr_len;
    pthread_t thread;
    struct timespec started; /* 0 us on the relay's timeline */
    FILE *log;

    /* Only the thread touches these. */
    struct sockaddr_storage client; /* where replies go */
    socklen_t client_len;           /* 0 until a client has sent */
    struct send_queue queue;
    unsigned char datagram[DATAGRAM_MAX_BYTES];

    /* The lock guards the impairment state and the counters; the condition
     * is broadcast whenever a counter moves, for relay_wait. */
    pthread_mutex_t lock;
    pthread_cond_t counted;
    int lock_ready, counted_ready;
    struct impair impair[2];
    struct relay_stats stats;
};

static struct relay_direction_stats *
dir_stats(struct relay *r, enum direction dir)
{
    return dir == TO_SERVER ? &r->stats.to_server : &r->stats.to_client;
}

/* Microseconds since the relay started, rounded down (has a send time come?)
 * or up (when did a datagram arrive?), so a delay is never cut short. */
static uint64_t relay_time_us(const struct relay *r, int round_up)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    int64_t ns = (int64_t)(now.tv_sec - r->started.tv_sec) * 1000000000 +
                 (now.tv_nsec - r->started.tv_nsec);
    if (ns < 0)
        return 0;
    return ((uint64_t)ns + (round_up ? 999 : 0)) / 1000;
}

/* ---- the send queue ------------------------------------------------------ */

static int comes_before(const struct queued_copy *a,
                        const struct queued_copy *b)
{
    return a->due_us < b->due_us ||
           (a->due_us == b->due_us && a->order < b->order);
}

static void swap_copies(struct queued_copy *a, struct queued_copy *b)
{
    struct queued_copy t = *a;
    *a = *b;
    *b = t;
}

/* Takes ownership of c->bytes when it returns 1; 0 when the queue is full
 * or out of memory, and the caller still owns them. */
static int queue_push(struct send_queue *q, struct queued_copy *c)
{
    if (q->count >= q->max_count ||
        c->len_bytes > RELAY_QUEUE_BYTES - q->bytes)
        return 0;
    if (q->count == q->capacity) {
        size_t capacity = q->capacity ? 2 * q->capacity : 64;
        if (capacity > q->max_count)
            capacity = q->max_count;
        struct queued_copy *items =
            realloc(q->items, capacity * sizeof *items);
        if (items == NULL)
            return 0;
        q->items = items;
        q->capacity = capacity;
    }
    c->order = q->next_order++;
    size_t i = q->count++;
    q->items[i] = *c;
    while (i > 0 && comes_before(&q->items[i], &q->items[(i - 1) / 2])) {
        swap_copies(&q->items[i], &q->items[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    q->bytes += c->len_bytes;
    return 1;
}

/* Removes the first copy due into *out; the caller frees out->bytes. */
static void queue_pop(struct send_queue *q, struct queued_copy *out)
{
    *out = q->items[0];
    q->bytes -= out->len_bytes;
    q->items[0] = q->items[--q->count];
    size_t i = 0;
    for (;;) {
        size_t first = i, left = 2 * i + 1, right = left + 1;
        if (left < q->count && comes_before(&q->items[left], &q->items[first]))
            first = left;
        if (right < q->count &&
            comes_before(&q->items[right], &q->items[first]))
            first = right;
        if (first == i)
            return;
        swap_copies(&q->items[i], &q->items[first]);
        i = first;
    }
}

static void queue_free(struct send_queue *q)
{
    for (size_t i = 0; i < q->count; i++)
        free(q->items[i].bytes);
    free(q->items);
}

static int is_loopback(const struct sockaddr *addr, socklen_t len,
                       const char **why)
{
    if (addr == NULL) {
        *why = "no server address";
        return 0;
    }
    if (addr->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
        if (len < (socklen_t)sizeof *in) {
            *why = "server address too short for IPv4";
            return 0;
        }
        if ((ntohl(in->sin_addr.s_addr) >> 24) != 127) {
            *why = "server is not on 127.0.0.0/8: tests stay on loopback";
            return 0;
        }
        if (in->sin_port == 0) {
            *why = "server port is 0";
            return 0;
        }
        return 1;
    }
    if (addr->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
        if (len < (socklen_t)sizeof *in6) {
            *why = "server address too short for IPv6";
            return 0;
        }
        if (!IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) {
            *why = "server is not ::1: tests stay on loopback";
            return 0;
        }
        if (in6->sin6_port == 0) {
            *why = "server port is 0";
            return 0;
        }
        return 1;
    }
    *why = "server address is neither IPv4 nor IPv6";
    return 0;
}

/* A UDP socket bound to the loopback address of `family` and `port` (host
 * order; 0: any free one). */
static int bound_loopback_socket(int family, uint16_t port)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof ss);
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        in->sin_port = htons(port);
        len = sizeof *in;
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_addr = in6addr_loopback;
        in6->sin6_port = htons(port);
        len = sizeof *in6;
    }
    int fd = socket(family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -1;
    if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
        int saved = errno;
        close(fd);
        errno = saved;
        return -1;
    }
    return fd;
}

static void log_line(struct relay *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void log_line(struct relay *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfprintf(r->log, fmt, ap);
    va_end(ap);
    fflush(r->log);
}

/* Sends one copy. Counts under the lock, which is held; returns 0, or the
 * errno of a send that failed for good. */
static int send_copy(struct relay *r, enum direction dir,
                     const unsigned char *bytes, size_t len_bytes,
                     const struct sockaddr_storage *to, socklen_t to_len)
{
    struct relay_direction_stats *st = dir_stats(r, dir);
    /* A refusal the kernel holds for an earlier datagram comes out of the
     * next send instead, and that send did not go: try it once more. */
    int err = 0;
    for (int tries = 0; tries < 2;) {
        ssize_t n;
        if (dir == TO_SERVER)
            n = send(r->server_fd, bytes, len_bytes, 0);
        else
            n = sendto(r->client_fd, bytes, len_bytes, 0,
                       (const struct sockaddr *)to, to_len);
        if (n >= 0) {
            st->sent++;
            return 0;
        }
        err = errno;
        if (err == EINTR)
            continue;
        tries++;
        if (err == ECONNREFUSED)
            st->refused++;
        else
            break;
    }
    st->send_failed++;
    return err;
}

/* Sends every queued copy whose send time has come, oldest due first. */
static void send_due(struct relay *r)
{
    struct send_queue *q = &r->queue;
    if (q->count == 0)
        return;
    uint64_t now_us = relay_time_us(r, 0);
    while (q->count > 0 && q->items[0].due_us <= now_us) {
        struct queued_copy c;
        queue_pop(q, &c);
        pthread_mutex_lock(&r->lock);
        dir_stats(r, c.dir)->pending--;
        int err = send_copy(r, c.dir, c.bytes, c.len_bytes, &c.to, c.to_len);
        pthread_cond_broadcast(&r->counted);
        pthread_mutex_unlock(&r->lock);
        if (err && r->log != NULL)
            log_line(r, "t=%.3fms %s #%" PRIu64 ": a delayed copy was not "
                     "sent: %s\n", now_us / 1e3, direction_name[c.dir],
                     c.datagram_no, strerror(err));
        free(c.bytes);
    }
}

/* Appends ", " (unless first) and a formatted part to a log line. */
static void say(char *line, size_t cap, size_t *used, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void say(char *line, size_t cap, size_t *used, const char *fmt, ...)
{
    if (*used > 0 && *used + 2 < cap) {
        memcpy(line + *used, ", ", 3);
        *used += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line + *used, cap - *used, fmt, ap);
    va_end(ap);
    if (n > 0)
        *used += (size_t)n < cap - *used ? (size_t)n : cap - 1 - *used;
}

/* What happened to a datagram, as one line: see docs/relay.md. */
static void log_decision(struct relay *r, enum direction dir,
                         uint64_t datagram_no, size_t len_bytes,
                         uint64_t now_us,
                         const struct impair_decision *d)
{
    char what[256] = "";
    size_t used = 0, cap = sizeof what;
    if (d->copies == 0) {
        say(what, cap, &used, "dropped%s",
            d->blackholed ? " (blackhole)" : "");
    } else {
        if (d->copies == 2)
            say(what, cap, &used, "duplicated");
        if (d->reordered)
            say(what, cap, &used, "held back to reorder");
        uint64_t first_us = d->send_at_us[0] - now_us;
        uint64_t last_us = d->send_at_us[d->copies - 1] - now_us;
        if (first_us != last_us)
            say(what, cap, &used, "delayed %.3fms and %.3fms",
                first_us / 1e3, last_us / 1e3);
        else if (first_us > 0)
            say(what, cap, &used, "delayed %.3fms", first_us / 1e3);
        if (d->corrupt_count > 0) {
            unsigned kept = 0;
            for (unsigned k = 0; k < d->corrupt_count; k++)
                kept += d->corrupt_offset[k] < d->send_len_bytes;
            say(what, cap, &used, "corrupted %u byte%s", kept,
                kept == 1 ? "" : "s");
            if (kept < d->corrupt_count)
                say(what, cap, &used, "%u more cut off",
                    d->corrupt_count - kept);
        }
        if (d->truncated)
            say(what, cap, &used, "truncated to %zu", d->send_len_bytes);
        if (used == 0)
            say(what, cap, &used, "forwarded");
    }
    log_line(r, "t=%.3fms %s #%" PRIu64 " len=%zu: %s\n", now_us / 1e3,
             direction_name[dir], datagram_no, len_bytes, what);
}

/* Decides and forwards (or queues) the datagram just received into
 * r->datagram, from or to the current client. */
static void forward(struct relay *r, enum direction dir,
                    size_t len_bytes)
{
    /* Copies already due go first: they were decided earlier. */
    send_due(r);
    uint64_t now_us = relay_time_us(r, 1);

    pthread_mutex_lock(&r->lock);
    struct relay_direction_stats *st = dir_stats(r, dir);
    struct impair_decision d =
        impair_decide_at(&r->impair[dir], len_bytes, now_us);
    st->impair = r->impair[dir].counters;
    uint64_t datagram_no = st->impair.seen;
    for (unsigned k = 0; k < d.corrupt_count; k++)
        r->datagram[d.corrupt_offset[k]] ^= d.corrupt_xor[k];

    int failed[IMPAIR_COPIES_MAX] = {0};
    int overflowed[IMPAIR_COPIES_MAX] = {0};
    for (unsigned c = 0; c < d.copies; c++) {
        /* Undelayed, and nothing queued for the same moment: straight out.
         * A copy only ever waits for its own send time or for copies due
         * no later than it, so order is kept. */
        struct send_queue *q = &r->queue;
        if (d.send_at_us[c] <= now_us &&
            (q->count == 0 || q->items[0].due_us > d.send_at_us[c])) {
            failed[c] = send_copy(r, dir, r->datagram, d.send_len_bytes,
                                  &r->client, r->client_len);
            continue;
        }
        struct queued_copy qc = {
            .due_us = d.send_at_us[c],
            .datagram_no = datagram_no,
            .dir = dir,
            .len_bytes = d.send_len_bytes,
            .to_len = r->client_len,
        };
        qc.to = r->client;
        qc.bytes = malloc(d.send_len_bytes ? d.send_len_bytes : 1);
        if (qc.bytes != NULL)
            memcpy(qc.bytes, r->datagram, d.send_len_bytes);
        if (qc.bytes != NULL && queue_push(q, &qc)) {
            st->pending++;
        } else {
            free(qc.bytes);
            st->overflowed++;
            overflowed[c] = 1;
        }
    }
    pthread_cond_broadcast(&r->counted);
    pthread_mutex_unlock(&r->lock);

    if (r->log == NULL)
        return;
    log_decision(r, dir, datagram_no, len_bytes, now_us, &d);
    for (unsigned c = 0; c < d.copies; c++) {
        if (overflowed[c])
            log_line(r, "t=%.3fms %s #%" PRIu64 ": copy %u dropped: the "
                     "send queue is full\n", now_us / 1e3,
                     direction_name[dir], datagram_no, c + 1);
        else if (failed[c])
            log_line(r, "t=%.3fms %s #%" PRIu64 ": copy %u not sent: %s\n",
                     now_us / 1e3, direction_name[dir], datagram_no, c + 1,
                     strerror(failed[c]));
    }
}

static void count(struct relay *r, uint64_t *counter)
{
    pthread_mutex_lock(&r->lock);
    (*counter)++;
    pthread_cond_broadcast(&r->counted);
    pthread_mutex_unlock(&r->lock);
}

static void from_clients(struct relay *r)
{
    for (int i = 0; i < BATCH_DATAGRAMS; i++) {
        struct sockaddr_storage from;
        socklen_t from_len = sizeof from;
        ssize_t n = recvfrom(r->client_fd, r->datagram, sizeof r->datagram, 0,
                             (struct sockaddr *)&from, &from_len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                count(r, &r->stats.to_server.recv_failed);
            return;
        }
        memcpy(&r->client, &from, from_len);
        r->client_len = from_len;
        forward(r, TO_SERVER, (size_t)n);
    }
}

static void from_server(struct relay *r)
{
    for (int i = 0; i < BATCH_DATAGRAMS; i++) {
        ssize_t n = recv(r->server_fd, r->datagram, sizeof r->datagram, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            /* The ICMP port unreachable for something we forwarded: the
             * server is gone, perhaps for a moment. Reading the error
             * clears it; the relay carries on. */
            if (errno == ECONNREFUSED) {
                count(r, &r->stats.to_server.refused);
                continue;
            }
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                count(r, &r->stats.to_client.recv_failed);
            return;
        }
        if (r->client_len == 0) {
            count(r, &r->stats.to_client.unroutable);
            continue;
        }
        forward(r, TO_CLIENT, (size_t)n);
    }
}

/* How long poll may wait: until the first queued copy is due, at most
 * RELAY_IDLE_MS. */
static struct timespec poll_timeout(struct relay *r)
{
    uint64_t wait_us = (uint64_t)RELAY_IDLE_MS * 1000;
    if (r->queue.count > 0) {
        uint64_t now_us = relay_time_us(r, 0);
        uint64_t due_us = r->queue.items[0].due_us;
        uint64_t until_due_us = due_us > now_us ? due_us - now_us : 0;
        if (until_due_us < wait_us)
            wait_us = until_due_us;
    }
    return (struct timespec){.tv_sec = (time_t)(wait_us / 1000000),
                             .tv_nsec = (long)(wait_us % 1000000) * 1000};
}

static void *relay_thread(void *arg)
{
    struct relay *r = arg;
    enum { WAKE, CLIENTS, SERVER };
    struct pollfd fds[3] = {
        [WAKE] = {.fd = r->wake_rd, .events = POLLIN},
        [CLIENTS] = {.fd = r->client_fd, .events = POLLIN},
        [SERVER] = {.fd = r->server_fd, .events = POLLIN},
    };
    for (;;) {
        send_due(r);
        struct timespec timeout = poll_timeout(r);
        int ready = ppoll(fds, 3, &timeout, NULL);
        if (ready < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "relay: poll: %s; relay stopped\n",
                    strerror(errno));
            return NULL;
        }
        if (fds[WAKE].revents)
            return NULL;
        /* POLLERR too: a refusal shows only as an error, and must be read
         * (which clears it) or poll would report it forever. */
        if (fds[CLIENTS].revents)
            from_clients(r);
        if (fds[SERVER].revents)
            from_server(r);
    }
}

static void relay_free(struct relay *r)
{
    queue_free(&r->queue);
    if (r->client_fd >= 0)
        close(r->client_fd);
    if (r->server_fd >= 0)
        close(r->server_fd);
    if (r->wake_rd >= 0)
        close(r->wake_rd);
    if (r->wake_wr >= 0)
        close(r->wake_wr);
    if (r->counted_ready)
        pthread_cond_destroy(&r->counted);
    if (r->lock_ready)
        pthread_mutex_destroy(&r->lock);
    free(r);
}

static struct relay *start_failed(struct relay *r,
                                  const char *what, int err)
{
    fprintf(stderr, "relay: %s: %s\n", what, strerror(err));
    relay_free(r);
    return NULL;
}

struct relay *
relay_start_with(const struct relay_options *opts)
{
    const char *why = NULL;
    if (opts == NULL) {
        fprintf(stderr, "relay: no options\n");
        return NULL;
    }
    if (!is_loopback(opts->server, opts->server_len, &why)) {
        fprintf(stderr, "relay: refused: %s\n", why);
        return NULL;
    }
    if ((why = impair_config_problem(&opts->to_server)) != NULL) {
        fprintf(stderr, "relay: to_server: %s\n", why);
        return NULL;
    }
    if ((why = impair_config_problem(&opts->to_client)) != NULL) {
        fprintf(stderr, "relay: to_client: %s\n", why);
        return NULL;
    }

    struct relay *r = calloc(1, sizeof *r);
    if (r == NULL) {
        fprintf(stderr, "relay: out of memory\n");
        return NULL;
    }
    r->client_fd = r->server_fd = r->wake_rd = r->wake_wr = -1;
    r->log = opts->log;
    r->queue.max_count =
        opts->queue_max ? opts->queue_max : RELAY_QUEUE_DATAGRAMS;
    impair_init(&r->impair[TO_SERVER], &opts->to_server,
                opts->seed);
    impair_init(&r->impair[TO_CLIENT], &opts->to_client,
                ~opts->seed);

    int err = pthread_mutex_init(&r->lock, NULL);
    if (err)
        return start_failed(r, "pthread_mutex_init", err);
    r->lock_ready = 1;
    /* relay_wait measures its timeout on the monotonic clock,
     * so a wall-clock step cannot stretch or cut it. */
    pthread_condattr_t attr;
    if ((err = pthread_condattr_init(&attr)) != 0)
        return start_failed(r, "pthread_condattr_init", err);
    err = pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    if (err == 0)
        err = pthread_cond_init(&r->counted, &attr);
    pthread_condattr_destroy(&attr);
    if (err)
        return start_failed(r, "pthread_cond_init", err);
    r->counted_ready = 1;

    int family = opts->server->sa_family;
    if ((r->client_fd = bound_loopback_socket(family, opts->listen_port)) < 0)
        return start_failed(r, "client socket", errno);
    r->addr_len = sizeof r->addr;
    if (getsockname(r->client_fd, (struct sockaddr *)&r->addr, &r->addr_len))
        return start_failed(r, "getsockname", errno);
    if ((r->server_fd = bound_loopback_socket(family, 0)) < 0)
        return start_failed(r, "server socket", errno);
    if (connect(r->server_fd, opts->server, opts->server_len) < 0)
        return start_failed(r, "connect to server", errno);

    int wake[2];
    if (pipe2(wake, O_CLOEXEC | O_NONBLOCK) < 0)
        return start_failed(r, "pipe2", errno);
    r->wake_rd = wake[0];
    r->wake_wr = wake[1];

    clock_gettime(CLOCK_MONOTONIC, &r->started);
    if ((err = pthread_create(&r->thread, NULL, relay_thread, r)) != 0)
        return start_failed(r, "pthread_create", err);
    return r;
}

struct relay *relay_start(
    const struct sockaddr *server, socklen_t server_len,
    const struct impair_config *to_server,
    const struct impair_config *to_client, uint64_t seed)
{
    struct relay_options opts = {
        .server = server,
        .server_len = server_len,
        .seed = seed,
    };
    if (to_server != NULL)
        opts.to_server = *to_server;
    if (to_client != NULL)
        opts.to_client = *to_client;
    return relay_start_with(&opts);
}

void relay_addr(const struct relay *r,
                struct sockaddr_storage *addr, socklen_t *len)
{
    memcpy(addr, &r->addr, r->addr_len);
    *len = r->addr_len;
}

void relay_stats(struct relay *r,
                 struct relay_stats *out)
{
    pthread_mutex_lock(&r->lock);
    *out = r->stats;
    pthread_mutex_unlock(&r->lock);
}

int relay_wait(struct relay *r, relay_until until,
               void *arg, int timeout_ms)
{
    struct timespec deadline;
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }

    pthread_mutex_lock(&r->lock);
    int held;
    while (!(held = until(&r->stats, arg)))
        if (pthread_cond_timedwait(&r->counted, &r->lock, &deadline) ==
            ETIMEDOUT) {
            held = until(&r->stats, arg);
            break;
        }
    pthread_mutex_unlock(&r->lock);
    return held != 0;
}

void relay_stop(struct relay *r,
                struct relay_stats *out)
{
    if (r == NULL) {
        if (out != NULL)
            *out = (struct relay_stats){0};
        return;
    }
    /* The pipe is empty and non-blocking, so this one byte goes in at
     * once, and the thread's poll returns on it. */
    while (write(r->wake_wr, "", 1) < 0 && errno == EINTR)
        ;
    pthread_join(r->thread, NULL);
    if (out != NULL)
        *out = r->stats; /* the thread is gone: nothing else writes them */
    relay_free(r);
}
