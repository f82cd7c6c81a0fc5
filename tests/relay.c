/*
 * relay.c - the socket shell around impair.c: two sockets, one thread,
 * poll. What it does and promises is in relay.h.
 */
#include "relay.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
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

struct udprr_test_relay {
    int client_fd; /* bound to loopback; clients send here */
    int server_fd; /* connect()ed to the server */
    int wake_rd;   /* stop writes a byte to wake_wr; poll sees it here */
    int wake_wr;
    struct sockaddr_storage addr; /* client_fd's address, for clients */
    socklen_t addr_len;
    pthread_t thread;

    /* Only the thread touches these. */
    struct sockaddr_storage client; /* where replies go */
    socklen_t client_len;           /* 0 until a client has sent */
    unsigned char datagram[DATAGRAM_MAX_BYTES];

    /* The lock guards the impairment state and the counters; the condition
     * is broadcast whenever a counter moves, for udprr_test_relay_wait. */
    pthread_mutex_t lock;
    pthread_cond_t counted;
    int lock_ready, counted_ready;
    struct udprr_test_impair impair[2];
    struct udprr_test_relay_stats stats;
};

static struct udprr_test_relay_direction_stats *
dir_stats(struct udprr_test_relay *r, enum direction dir)
{
    return dir == TO_SERVER ? &r->stats.to_server : &r->stats.to_client;
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

/* A UDP socket bound to the loopback address of `family`, port 0. */
static int bound_loopback_socket(int family)
{
    struct sockaddr_storage ss;
    socklen_t len;
    memset(&ss, 0, sizeof ss);
    if (family == AF_INET) {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        in->sin_family = AF_INET;
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *in;
    } else {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        in6->sin6_family = AF_INET6;
        in6->sin6_addr = in6addr_loopback;
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

/* Sends one copy of r->datagram. Counts under the lock, which is held. */
static void send_copy(struct udprr_test_relay *r, enum direction dir,
                      size_t len_bytes)
{
    struct udprr_test_relay_direction_stats *st = dir_stats(r, dir);
    /* A refusal the kernel holds for an earlier datagram comes out of the
     * next send instead, and that send did not go: try it once more. */
    for (int tries = 0; tries < 2;) {
        ssize_t n;
        if (dir == TO_SERVER)
            n = send(r->server_fd, r->datagram, len_bytes, 0);
        else
            n = sendto(r->client_fd, r->datagram, len_bytes, 0,
                       (const struct sockaddr *)&r->client, r->client_len);
        if (n >= 0) {
            st->sent++;
            return;
        }
        if (errno == EINTR)
            continue;
        tries++;
        if (errno == ECONNREFUSED)
            st->refused++;
        else
            break;
    }
    st->send_failed++;
}

/* Decides and forwards the datagram just received into r->datagram. */
static void forward(struct udprr_test_relay *r, enum direction dir,
                    size_t len_bytes)
{
    pthread_mutex_lock(&r->lock);
    struct udprr_test_impair_decision d =
        udprr_test_impair_decide(&r->impair[dir], len_bytes);
    dir_stats(r, dir)->impair = r->impair[dir].counters;
    for (unsigned c = 0; c < d.copies; c++)
        send_copy(r, dir, len_bytes);
    pthread_cond_broadcast(&r->counted);
    pthread_mutex_unlock(&r->lock);
}

static void count(struct udprr_test_relay *r, uint64_t *counter)
{
    pthread_mutex_lock(&r->lock);
    (*counter)++;
    pthread_cond_broadcast(&r->counted);
    pthread_mutex_unlock(&r->lock);
}

static void from_clients(struct udprr_test_relay *r)
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

static void from_server(struct udprr_test_relay *r)
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

static void *relay_thread(void *arg)
{
    struct udprr_test_relay *r = arg;
    enum { WAKE, CLIENTS, SERVER };
    struct pollfd fds[3] = {
        [WAKE] = {.fd = r->wake_rd, .events = POLLIN},
        [CLIENTS] = {.fd = r->client_fd, .events = POLLIN},
        [SERVER] = {.fd = r->server_fd, .events = POLLIN},
    };
    for (;;) {
        /* Delayed datagrams, when they come, will shorten this timeout to
         * the next one due. */
        int ready = poll(fds, 3, UDPRR_TEST_RELAY_IDLE_MS);
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

static void relay_free(struct udprr_test_relay *r)
{
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

static udprr_test_relay *start_failed(struct udprr_test_relay *r,
                                      const char *what, int err)
{
    fprintf(stderr, "relay: %s: %s\n", what, strerror(err));
    relay_free(r);
    return NULL;
}

udprr_test_relay *udprr_test_relay_start(
    const struct sockaddr *server, socklen_t server_len,
    const struct udprr_test_impair_config *to_server,
    const struct udprr_test_impair_config *to_client, uint64_t seed)
{
    static const struct udprr_test_impair_config perfect = {0};
    const char *why = NULL;
    if (!is_loopback(server, server_len, &why)) {
        fprintf(stderr, "relay: refused: %s\n", why);
        return NULL;
    }
    if (to_server == NULL)
        to_server = &perfect;
    if (to_client == NULL)
        to_client = &perfect;
    if ((why = udprr_test_impair_config_problem(to_server)) != NULL) {
        fprintf(stderr, "relay: to_server: %s\n", why);
        return NULL;
    }
    if ((why = udprr_test_impair_config_problem(to_client)) != NULL) {
        fprintf(stderr, "relay: to_client: %s\n", why);
        return NULL;
    }

    struct udprr_test_relay *r = calloc(1, sizeof *r);
    if (r == NULL) {
        fprintf(stderr, "relay: out of memory\n");
        return NULL;
    }
    r->client_fd = r->server_fd = r->wake_rd = r->wake_wr = -1;
    udprr_test_impair_init(&r->impair[TO_SERVER], to_server, seed);
    udprr_test_impair_init(&r->impair[TO_CLIENT], to_client, ~seed);

    int err = pthread_mutex_init(&r->lock, NULL);
    if (err)
        return start_failed(r, "pthread_mutex_init", err);
    r->lock_ready = 1;
    /* udprr_test_relay_wait measures its timeout on the monotonic clock,
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

    int family = server->sa_family;
    if ((r->client_fd = bound_loopback_socket(family)) < 0)
        return start_failed(r, "client socket", errno);
    r->addr_len = sizeof r->addr;
    if (getsockname(r->client_fd, (struct sockaddr *)&r->addr, &r->addr_len))
        return start_failed(r, "getsockname", errno);
    if ((r->server_fd = bound_loopback_socket(family)) < 0)
        return start_failed(r, "server socket", errno);
    if (connect(r->server_fd, server, server_len) < 0)
        return start_failed(r, "connect to server", errno);

    int wake[2];
    if (pipe2(wake, O_CLOEXEC | O_NONBLOCK) < 0)
        return start_failed(r, "pipe2", errno);
    r->wake_rd = wake[0];
    r->wake_wr = wake[1];

    if ((err = pthread_create(&r->thread, NULL, relay_thread, r)) != 0)
        return start_failed(r, "pthread_create", err);
    return r;
}

void udprr_test_relay_addr(const udprr_test_relay *r,
                           struct sockaddr_storage *addr, socklen_t *len)
{
    memcpy(addr, &r->addr, r->addr_len);
    *len = r->addr_len;
}

void udprr_test_relay_stats(udprr_test_relay *r,
                            struct udprr_test_relay_stats *out)
{
    pthread_mutex_lock(&r->lock);
    *out = r->stats;
    pthread_mutex_unlock(&r->lock);
}

int udprr_test_relay_wait(udprr_test_relay *r, udprr_test_relay_until until,
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

void udprr_test_relay_stop(udprr_test_relay *r,
                           struct udprr_test_relay_stats *out)
{
    if (r == NULL) {
        if (out != NULL)
            *out = (struct udprr_test_relay_stats){0};
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
