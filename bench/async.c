/* SPDX-License-Identifier: MIT */
/*
 * async.c - the pipelining benchmark of `make bench` (docs/async-bench.md).
 *
 * On loopback, against one echo server (tests/fixture.h) for the whole
 * run, it measures requests per second of:
 *
 *   - the blocking client: COUNT udprr_client_request calls, one after the
 *     other;
 *   - the asynchronous client with max_window 1, 16 and 64: COUNT requests
 *     sent with udprr_client_send, 2 x max_window of them kept pending
 *     (the library sends what the window allows and queues the rest), the
 *     handle driven by poll(2) and udprr_client_process;
 *   - the same asynchronous client at max_window 64 in the sealed mode
 *     (issue 15), against a second echo server that holds the same key:
 *     what sealing costs, beside the plain window-64 run of each round.
 *
 * Every client uses the defaults of udprr_client_opts_init but for
 * max_window (and the key), and a fresh handle per run. A round runs the
 * five clients one after the other; ROUNDS rounds, and the table gives
 * each client's median and its ratio to the blocking client's median, so
 * a neighbour's burst on a shared machine moves one round, not the result.
 * For the sealed client it also gives the ratio to the plain window-64
 * client, and the bytes of one request and one reply datagram in either
 * mode, measured on the wire before the rounds (measure_datagrams).
 *
 * Every reply is compared byte for byte with its request, and every done
 * callback must run exactly once with UDPRR_OK: a mismatch, an error, a
 * lost or a doubled callback prints a FAIL line, and the benchmark exits
 * 1 (a benchmark that counted wrong replies would measure nothing). It
 * exits 2 when it cannot measure (a socket or a thread could not be set
 * up, bad arguments, a run overran its time bound); else 0.
 *
 * Usage: async [-n COUNT] [-r ROUNDS] [-s BYTES]
 *
 * Traffic goes only to 127.0.0.1. Every loop is bounded in count, and
 * every run in time (RUN_BUDGET_MS).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "fixture.h"
#include "udprr.h"

#define DEFAULT_COUNT 50000u
#define DEFAULT_ROUNDS 5u
#define DEFAULT_BYTES 64u
#define MAX_COUNT 1000000u
#define MAX_ROUNDS 15u
/* At least the 8 bytes of the sequence number each request carries. */
#define MIN_BYTES 8u
/* Blocking requests made before the first round, not measured: the
 * server's thread, the caches and the first RTT samples get going. */
#define WARMUP_REQUESTS 500u
/* Requests kept pending per window's worth: twice the window, so that
 * when a reply frees a slot the next request is already queued and the
 * library sends it from the same udprr_client_process. */
#define PENDING_PER_WINDOW 2u
/* A run that takes longer has failed to measure: on loopback the default
 * count takes well under a second per run (tens of thousands of requests
 * per second on 2 cores), and every request is bounded by the default
 * 10 s deadline anyway. */
#define RUN_BUDGET_MS 30000u

static const unsigned windows[] = {1, 16, 64};
#define WINDOWS (sizeof windows / sizeof windows[0])
/* The window of the sealed client, and the plain client it is set
 * against: the one with max_window windows[PLAIN_BESIDE_SEALED - 1],
 * which must be SEALED_WINDOW (main checks). */
#define SEALED_WINDOW 64u
#define PLAIN_BESIDE_SEALED WINDOWS
/* Client 0 is the blocking one, client 1 + i the asynchronous one with
 * max_window windows[i], client SEALED_CLIENT the sealed asynchronous one
 * (left out when this build has no sealed mode). */
#define SEALED_CLIENT (1 + WINDOWS)
#define CLIENTS (2 + WINDOWS)
/* How long measure_datagrams waits for its one exchange. */
#define PROBE_BUDGET_MS 5000u

/* The sealed client's and server's key: fixed bytes, since this is a
 * benchmark and not a secret; the cost of sealing does not depend on
 * what the key is. */
static udprr_key bench_key;

static void make_bench_key(void)
{
    bench_key.id = 1;
    for (unsigned i = 0; i < UDPRR_KEY_BYTES; i++)
        bench_key.secret[i] = (unsigned char)(0xa5u ^ (i * 37u));
}

struct settings {
    unsigned count;  /* requests per run */
    unsigned rounds; /* runs per client */
    unsigned bytes;  /* request size */
};

/* What one run of one client gave. */
struct run_result {
    int measured;    /* 0: the run stopped before its end */
    double elapsed_s;
    double per_s;
    struct udprr_client_stats stats; /* at the end of the run */
    uint64_t peak_window;            /* largest window seen (asynchronous) */
    long sleeps;                     /* the client thread's voluntary
                                        context switches during the run */
};

/* One asynchronous run's shared state, and one slot per request: its done
 * callback's user pointer. */
struct async_run;
struct slot {
    struct async_run *run;
    uint32_t seq;
    unsigned done_calls;
};

struct async_run {
    const struct settings *set;
    struct slot *slots;
    uint8_t *want;       /* the request a reply is compared with */
    unsigned completed;  /* done callbacks run */
    unsigned failures;   /* errors, mismatches, doubled callbacks */
    char first_failure[160];
};


/* Request seq's bytes: the sequence number, then a pattern that differs
 * from request to request, so that any reply taken for the wrong request
 * (or damaged) fails the comparison. */
static void fill_request(uint8_t *buf, unsigned bytes, uint32_t seq)
{
    for (unsigned i = 0; i < 4; i++)
        buf[i] = (uint8_t)(seq >> (8 * i));
    for (unsigned i = 4; i < 8; i++)
        buf[i] = (uint8_t)(~seq >> (8 * (i - 4)));
    for (unsigned i = 8; i < bytes; i++)
        buf[i] = (uint8_t)(seq * 131u + i * 7u);
}

static int reply_matches(const uint8_t *want, unsigned bytes,
                         const void *reply, size_t reply_len)
{
    return reply_len == bytes && memcmp(want, reply, bytes) == 0;
}

/* key NULL: a plain client. */
static void open_client(udprr_client **c, const char *port,
                        unsigned max_window, const udprr_key *key)
{
    udprr_client_opts opts;
    udprr_client_opts_init(&opts);
    opts.max_window = max_window;
    opts.key = key;
    if (udprr_client_open(c, "127.0.0.1", port, &opts) != UDPRR_OK)
        die("cannot open a client on 127.0.0.1");
}

static void read_stats(const udprr_client *c, struct udprr_client_stats *st)
{
    memset(st, 0, sizeof *st);
    st->size = sizeof *st;
    if (udprr_client_stats(c, st) != UDPRR_OK)
        die("udprr_client_stats failed");
}

/* Voluntary context switches of the calling thread so far: how often it
 * slept, waiting for the socket. */
static long thread_sleeps(void)
{
    struct rusage ru;
    return getrusage(RUSAGE_THREAD, &ru) == 0 ? ru.ru_nvcsw : 0;
}

static void fail_line(const char *client, unsigned round, const char *what)
{
    printf("FAIL %s, round %u: %s\n", client, round, what);
}

/* COUNT blocking requests, one after the other. Returns the failures. */
static unsigned run_blocking(const struct fixture_server *server,
                             const udprr_key *key, const struct settings *set,
                             unsigned count, unsigned round,
                             struct run_result *res)
{
    udprr_client *c;
    uint8_t *req = malloc(set->bytes);
    uint8_t *reply = malloc(set->bytes + 1u);
    if (req == NULL || reply == NULL)
        die("out of memory");
    open_client(&c, server->port, 0, key);

    unsigned failures = 0;
    char what[160];
    long sleeps_before = thread_sleeps();
    uint64_t start = now_us();
    uint64_t give_up_at = start + RUN_BUDGET_MS * 1000ull;
    for (unsigned seq = 0; seq < count; seq++) {
        fill_request(req, set->bytes, seq);
        size_t reply_len = 0;
        /* One byte of room more than the request: a longer reply is
         * seen as longer, not cut to size. */
        int st = udprr_client_request(c, req, set->bytes, reply,
                                      set->bytes + 1u, &reply_len);
        if (st != UDPRR_OK) {
            if (failures++ == 0) {
                snprintf(what, sizeof what, "request %u: %s", seq,
                         udprr_status_name(st));
                fail_line("blocking", round, what);
            }
        } else if (!reply_matches(req, set->bytes, reply, reply_len)) {
            if (failures++ == 0) {
                snprintf(what, sizeof what,
                         "request %u: the reply (%zu bytes) differs from "
                         "the request", seq, reply_len);
                fail_line("blocking", round, what);
            }
        }
        if (now_us() > give_up_at)
            die("a blocking run overran its time bound; giving up");
    }
    res->measured = 1;
    res->elapsed_s = (double)(now_us() - start) / 1e6;
    res->sleeps = thread_sleeps() - sleeps_before;
    res->per_s = res->elapsed_s > 0 ? count / res->elapsed_s : 0;
    read_stats(c, &res->stats);
    res->peak_window = res->stats.window;
    udprr_client_close(c);
    free(req);
    free(reply);
    return failures;
}

static void async_fail(struct async_run *run, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Counts a failure; keeps the text of the first. */
static void async_fail(struct async_run *run, const char *fmt, ...)
{
    if (run->failures++ > 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(run->first_failure, sizeof run->first_failure, fmt, ap);
    va_end(ap);
}

static void on_done(void *user, int status, const void *reply,
                    size_t reply_len)
{
    struct slot *s = user;
    struct async_run *run = s->run;

    if (s->done_calls++ > 0) {
        async_fail(run, "request %" PRIu32 ": a second done callback (%s)",
                   s->seq, udprr_status_name(status));
        return;
    }
    run->completed++;
    if (status != UDPRR_OK) {
        async_fail(run, "request %" PRIu32 ": ended with %s", s->seq,
                   udprr_status_name(status));
        return;
    }
    fill_request(run->want, run->set->bytes, s->seq);
    if (!reply_matches(run->want, run->set->bytes, reply, reply_len))
        async_fail(run,
                   "request %" PRIu32 ": the reply (%zu bytes) differs "
                   "from the request",
                   s->seq, reply_len);
}

/* COUNT requests through udprr_client_send, PENDING_PER_WINDOW x
 * max_window of them pending at a time, driven by poll and
 * udprr_client_process. Returns the failures. */
static unsigned run_async(const struct fixture_server *server,
                          const udprr_key *key, const struct settings *set,
                          unsigned count, unsigned max_window, unsigned round,
                          struct run_result *res)
{
    udprr_client *c;
    struct async_run run;
    char name[32];
    uint8_t *req = malloc(set->bytes);
    memset(&run, 0, sizeof run);
    run.set = set;
    run.slots = calloc(count, sizeof *run.slots);
    run.want = malloc(set->bytes);
    if (req == NULL || run.slots == NULL || run.want == NULL)
        die("out of memory");
    snprintf(name, sizeof name, "%swindow %u", key ? "sealed, " : "",
             max_window);
    open_client(&c, server->port, max_window, key);
    int fd = udprr_client_fd(c);
    unsigned keep_pending = PENDING_PER_WINDOW * max_window;

    struct udprr_client_stats st;
    uint64_t peak_window = 0;
    unsigned sent = 0;
    long sleeps_before = thread_sleeps();
    uint64_t start = now_us();
    uint64_t give_up_at = start + RUN_BUDGET_MS * 1000ull;
    while (run.completed < count) {
        /* Refill outside the callbacks: what a reply frees is already
         * taken by a queued request inside process. */
        while (sent < count && sent - run.completed < keep_pending) {
            struct slot *s = &run.slots[sent];
            s->run = &run;
            s->seq = sent;
            fill_request(req, set->bytes, sent);
            int rc = udprr_client_send(c, req, set->bytes, on_done, s);
            if (rc != UDPRR_OK) {
                char what[96];
                snprintf(what, sizeof what, "udprr_client_send of request "
                                            "%u: %s",
                         sent, udprr_status_name(rc));
                fail_line(name, round, what);
                udprr_client_close(c);
                free(req);
                free(run.want);
                free(run.slots);
                return 1;
            }
            sent++;
        }
        uint64_t now = now_us();
        if (now > give_up_at)
            die("an asynchronous run overran its time bound; giving up");
        int wait_ms = udprr_client_timeout_ms(c);
        int left_ms = (int)((give_up_at - now) / 1000u) + 1;
        if (wait_ms < 0 || wait_ms > left_ms)
            wait_ms = left_ms;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, wait_ms) < 0 && errno != EINTR)
            die("poll failed");
        if (udprr_client_process(c) != UDPRR_OK)
            die("udprr_client_process failed");
        read_stats(c, &st);
        if (st.window > peak_window)
            peak_window = st.window;
    }
    res->measured = 1;
    res->elapsed_s = (double)(now_us() - start) / 1e6;
    res->sleeps = thread_sleeps() - sleeps_before;
    res->per_s = res->elapsed_s > 0 ? count / res->elapsed_s : 0;
    read_stats(c, &res->stats);
    res->peak_window = peak_window;
    udprr_client_close(c);

    for (unsigned i = 0; i < count; i++)
        if (run.slots[i].done_calls != 1)
            async_fail(&run, "request %u: %u done callbacks, not 1", i,
                       run.slots[i].done_calls);
    if (run.failures > 0) {
        char what[200];
        snprintf(what, sizeof what, "%u failures; the first: %s",
                 run.failures, run.first_failure);
        fail_line(name, round, what);
    }
    free(req);
    free(run.want);
    free(run.slots);
    return run.failures;
}

/* measure_datagrams' one request. */
struct probe {
    const uint8_t *want;
    unsigned bytes;
    int done;
    int status;
    size_t reply_len;
    int matches;
};

static void on_probe_done(void *user, int status, const void *reply,
                          size_t reply_len)
{
    struct probe *p = user;
    p->done++;
    p->status = status;
    p->reply_len = reply_len;
    p->matches = status == UDPRR_OK &&
                 reply_matches(p->want, p->bytes, reply, reply_len);
}

static int from_server(const struct sockaddr_storage *from,
                       const struct fixture_server *server)
{
    const struct sockaddr_in *a = (const struct sockaddr_in *)from;
    const struct sockaddr_in *b = (const struct sockaddr_in *)&server->addr;
    return from->ss_family == AF_INET && a->sin_port == b->sin_port &&
           a->sin_addr.s_addr == b->sin_addr.s_addr;
}

/* The bytes on the wire of one request of `bytes` bytes and of its reply,
 * between a client (key NULL: plain) and `server`, measured rather than
 * computed: the client sends to a socket of ours, which passes the
 * request on to the server and the server's answer back to the client,
 * taking each datagram's size as it goes by. The reply must come back
 * whole. Returns the failures (0 or 1). */
static unsigned measure_datagrams(const struct fixture_server *server,
                                  const udprr_key *key, unsigned bytes,
                                  size_t *request_bytes, size_t *reply_bytes)
{
    struct sockaddr_in me;
    memset(&me, 0, sizeof me);
    me.sin_family = AF_INET;
    me.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t me_len = sizeof me;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || bind(fd, (struct sockaddr *)&me, sizeof me) != 0 ||
        getsockname(fd, (struct sockaddr *)&me, &me_len) != 0)
        die("cannot open the probe's socket on 127.0.0.1");
    char port[16];
    snprintf(port, sizeof port, "%u", (unsigned)ntohs(me.sin_port));

    uint8_t *req = malloc(bytes);
    uint8_t *datagram = malloc(UDPRR_MAX_DATAGRAM);
    if (req == NULL || datagram == NULL)
        die("out of memory");
    fill_request(req, bytes, 0x5ea1u);
    struct probe p;
    memset(&p, 0, sizeof p);
    p.want = req;
    p.bytes = bytes;
    udprr_client *c;
    open_client(&c, port, 1, key);
    int rc = udprr_client_send(c, req, bytes, on_probe_done, &p);
    if (rc != UDPRR_OK)
        die("udprr_client_send failed in the probe");

    struct sockaddr_storage client_addr;
    socklen_t client_len = 0;
    *request_bytes = *reply_bytes = 0;
    uint64_t give_up_at = now_us() + PROBE_BUDGET_MS * 1000ull;
    while (!p.done && now_us() < give_up_at) {
        struct pollfd fds[2] = {{.fd = fd, .events = POLLIN},
                                {.fd = udprr_client_fd(c), .events = POLLIN}};
        int wait_ms = udprr_client_timeout_ms(c);
        if (wait_ms < 0 || wait_ms > 100)
            wait_ms = 100;
        if (poll(fds, 2, wait_ms) < 0 && errno != EINTR)
            die("poll failed");
        if (fds[0].revents & POLLIN) {
            struct sockaddr_storage from;
            socklen_t from_len = sizeof from;
            ssize_t n = recvfrom(fd, datagram, UDPRR_MAX_DATAGRAM, 0,
                                 (struct sockaddr *)&from, &from_len);
            if (n >= 0 && from_server(&from, server)) {
                if (*reply_bytes == 0)
                    *reply_bytes = (size_t)n;
                if (client_len > 0)
                    sendto(fd, datagram, (size_t)n, 0,
                           (struct sockaddr *)&client_addr, client_len);
            } else if (n >= 0) {
                if (*request_bytes == 0)
                    *request_bytes = (size_t)n;
                client_addr = from;
                client_len = from_len;
                sendto(fd, datagram, (size_t)n, 0,
                       (const struct sockaddr *)&server->addr,
                       server->addr_len);
            }
        }
        if (udprr_client_process(c) != UDPRR_OK)
            die("udprr_client_process failed in the probe");
    }
    udprr_client_close(c);
    close(fd);

    unsigned failures = 0;
    if (p.done != 1 || !p.matches || *request_bytes == 0 ||
        *reply_bytes == 0) {
        char what[160];
        snprintf(what, sizeof what,
                 "%s probe: %d done callbacks, status %s, reply %zu bytes "
                 "(%s), datagrams seen %zu and %zu bytes",
                 key ? "sealed" : "plain", p.done,
                 udprr_status_name(p.status), p.reply_len,
                 p.matches ? "matches" : "does not match", *request_bytes,
                 *reply_bytes);
        fail_line("datagram sizes", 0, what);
        failures = 1;
    }
    free(req);
    free(datagram);
    return failures;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* The median of n values (the mean of the middle two for an even n). */
static double median(const double *v, unsigned n)
{
    double sorted[MAX_ROUNDS];
    memcpy(sorted, v, n * sizeof *v);
    qsort(sorted, n, sizeof *sorted, cmp_double);
    return n % 2 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
}

static unsigned parse_unsigned(const char *arg, unsigned lo, unsigned hi,
                               const char *what)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(arg, &end, 10);
    if (errno != 0 || end == arg || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "bench: %s must be a number in %u..%u, not '%s'\n",
                what, lo, hi, arg);
        exit(2);
    }
    return (unsigned)v;
}

static void usage(void)
{
    fprintf(stderr, "usage: async [-n COUNT] [-r ROUNDS] [-s BYTES]\n"
                    "  -n  requests per run (default %u)\n"
                    "  -r  runs per client; the median is reported "
                    "(default %u)\n"
                    "  -s  bytes per request, %u..%u (default %u)\n",
            DEFAULT_COUNT, DEFAULT_ROUNDS, MIN_BYTES, UDPRR_MAX_PAYLOAD,
            DEFAULT_BYTES);
    exit(2);
}

static const char *client_name(unsigned k, char buf[32])
{
    if (k == 0)
        snprintf(buf, 32, "blocking");
    else if (k == SEALED_CLIENT)
        snprintf(buf, 32, "sealed, window %u", SEALED_WINDOW);
    else
        snprintf(buf, 32, "async, window %u", windows[k - 1]);
    return buf;
}

int main(int argc, char **argv)
{
    struct settings set = {DEFAULT_COUNT, DEFAULT_ROUNDS, DEFAULT_BYTES};
    int opt;
    while ((opt = getopt(argc, argv, "n:r:s:")) != -1) {
        switch (opt) {
        case 'n':
            set.count = parse_unsigned(optarg, 1, MAX_COUNT, "-n COUNT");
            break;
        case 'r':
            set.rounds = parse_unsigned(optarg, 1, MAX_ROUNDS, "-r ROUNDS");
            break;
        case 's':
            set.bytes = parse_unsigned(optarg, MIN_BYTES, UDPRR_MAX_PAYLOAD,
                                       "-s BYTES");
            break;
        default:
            usage();
        }
    }
    if (optind != argc)
        usage();

    char date[64];
    time_t t = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&t));
    cpu_set_t cpus;
    int usable = sched_getaffinity(0, sizeof cpus, &cpus) == 0
                     ? CPU_COUNT(&cpus)
                     : -1;
    double load[3] = {0, 0, 0};
    if (getloadavg(load, 3) != 3)
        load[0] = load[1] = load[2] = -1;

    /* The sealed client runs when this build can seal and the request
     * fits a sealed datagram. */
    const char *no_sealed = NULL;
    if (!udprr_sealed_supported())
        no_sealed = "this build has no sealed mode (make SODIUM=no)";
    else if (set.bytes > UDPRR_MAX_SEALED_PAYLOAD)
        no_sealed = "-s is above UDPRR_MAX_SEALED_PAYLOAD";
    unsigned n_clients = no_sealed ? SEALED_CLIENT : CLIENTS;
    if (windows[PLAIN_BESIDE_SEALED - 1] != SEALED_WINDOW)
        die("the sealed client's plain counterpart has another window");
    make_bench_key();

    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("libudprr %s pipelining benchmark, %s\n", udprr_version(), date);
    printf("settings: -n %u -r %u -s %u (requests per run, rounds, bytes per "
           "request)\n",
           set.count, set.rounds, set.bytes);
    printf("machine: %ld cores online, %d usable by this process; load "
           "average %.2f %.2f %.2f\n",
           sysconf(_SC_NPROCESSORS_ONLN), usable, load[0], load[1], load[2]);
    printf("server: native framing, default options, echo handler, on a "
           "thread, 127.0.0.1; one server for every run\n");
    printf("clients: udprr_client_opts_init() defaults but max_window; a "
           "fresh handle per run;\n"
           "  blocking: udprr_client_request, one after the other;\n"
           "  async:    udprr_client_send with %u x max_window pending, "
           "poll() + udprr_client_process\n",
           PENDING_PER_WINDOW);
    if (no_sealed)
        printf("sealed: not measured: %s\n", no_sealed);
    else
        printf("sealed: a second such server with one key (ID %" PRIu32
               ", %u fixed bytes), the async client with the same key at "
               "max_window %u,\n  run right after the plain one in each "
               "round\n",
               bench_key.id, UDPRR_KEY_BYTES, SEALED_WINDOW);
    printf("each round runs the %u clients in turn; the table gives the "
           "median of the rounds\n\n",
           n_clients);

    struct fixture_server server, sealed_server;
    if (fixture_server_start(&server, "127.0.0.1", NULL, fixture_echo_handler,
                             NULL) != UDPRR_OK)
        die("cannot start the server on 127.0.0.1");
    if (!no_sealed) {
        udprr_server_opts sopts;
        udprr_server_opts_init(&sopts);
        sopts.keys = &bench_key;
        sopts.n_keys = 1;
        if (fixture_server_start(&sealed_server, "127.0.0.1", &sopts,
                                 fixture_echo_handler, NULL) != UDPRR_OK)
            die("cannot start the sealed server on 127.0.0.1");
    }

    unsigned failures = 0;
    struct run_result warm;
    memset(&warm, 0, sizeof warm);
    failures += run_blocking(&server, NULL, &set, WARMUP_REQUESTS, 0, &warm);
    printf("warm-up (round 0): %u blocking requests, %.0f/s, not counted\n",
           WARMUP_REQUESTS, warm.per_s);
    /* Bytes per datagram, plain and sealed, for this request size. */
    size_t dgram[2][2] = {{0, 0}, {0, 0}}; /* [sealed][request, reply] */
    failures += measure_datagrams(&server, NULL, set.bytes, &dgram[0][0],
                                  &dgram[0][1]);
    if (!no_sealed) {
        memset(&warm, 0, sizeof warm);
        failures += run_blocking(&sealed_server, &bench_key, &set,
                                 WARMUP_REQUESTS, 0, &warm);
        printf("warm-up (round 0): %u sealed blocking requests, %.0f/s, not "
               "counted\n",
               WARMUP_REQUESTS, warm.per_s);
        failures += measure_datagrams(&sealed_server, &bench_key, set.bytes,
                                      &dgram[1][0], &dgram[1][1]);
    }

    static struct run_result res[CLIENTS][MAX_ROUNDS];
    char name[32];
    for (unsigned r = 0; r < set.rounds && failures == 0; r++) {
        for (unsigned k = 0; k < n_clients && failures == 0; k++) {
            struct run_result *x = &res[k][r];
            if (k == 0)
                failures += run_blocking(&server, NULL, &set, set.count,
                                         r + 1, x);
            else if (k == SEALED_CLIENT)
                failures += run_async(&sealed_server, &bench_key, &set,
                                      set.count, SEALED_WINDOW, r + 1, x);
            else
                failures += run_async(&server, NULL, &set, set.count,
                                      windows[k - 1], r + 1, x);
            if (!x->measured)
                continue;
            const struct udprr_client_stats *s = &x->stats;
            printf("round %u %-17s %7.3f s %9.0f/s  completed %" PRIu64
                   ", timeouts %" PRIu64 ", retransmissions %" PRIu64
                   " (spurious %" PRIu64 "), window final %" PRIu64
                   " peak %" PRIu64 ", reductions %" PRIu64
                   "; client slept %.2f times per request\n",
                   r + 1, client_name(k, name), x->elapsed_s, x->per_s,
                   s->completed, s->timeouts, s->retransmissions,
                   s->spurious_retransmissions, s->window, x->peak_window,
                   s->window_reductions, (double)x->sleeps / set.count);
        }
    }

    struct udprr_server_stats ss;
    int server_status = fixture_server_stop(&server, &ss);
    if (server_status != UDPRR_OK) {
        printf("FAIL the server: %s\n", udprr_status_name(server_status));
        failures++;
    } else {
        printf("server: handled %" PRIu64 " requests (warm-up included)\n",
               ss.handled);
    }
    if (!no_sealed) {
        server_status = fixture_server_stop(&sealed_server, &ss);
        if (server_status != UDPRR_OK) {
            printf("FAIL the sealed server: %s\n",
                   udprr_status_name(server_status));
            failures++;
        } else {
            printf("sealed server: handled %" PRIu64 " requests (warm-up "
                   "included); dropped_auth %" PRIu64 ", dropped_clock %" PRIu64
                   "\n",
                   ss.handled, ss.dropped_auth, ss.dropped_clock);
            /* Every datagram on clean loopback comes from a client with
             * the key and a clock within the window: a drop is a bug. */
            if (ss.dropped_auth > 0 || ss.dropped_clock > 0) {
                printf("FAIL the sealed server dropped datagrams of its own "
                       "clients\n");
                failures++;
            }
        }
    }
    if (failures > 0) {
        printf("\nFAIL: %u failures (see the FAIL lines above); no table: "
               "these figures would count wrong or missing replies\n",
               failures);
        return 1;
    }

    double med[CLIENTS];
    for (unsigned k = 0; k < n_clients; k++) {
        double v[MAX_ROUNDS];
        for (unsigned r = 0; r < set.rounds; r++)
            v[r] = res[k][r].per_s;
        med[k] = median(v, set.rounds);
    }
    printf("\nMedian of %u rounds, %u requests of %u bytes each, every "
           "reply checked:\n\n",
           set.rounds, set.count, set.bytes);
    /* Each round's figure, so the spread shows beside the median. */
    char rounds[CLIENTS][MAX_ROUNDS * 12];
    int rounds_width = (int)strlen("rounds, requests/s");
    for (unsigned k = 0; k < n_clients; k++) {
        size_t used = 0;
        rounds[k][0] = '\0';
        for (unsigned r = 0; r < set.rounds; r++)
            used += (size_t)snprintf(rounds[k] + used,
                                     sizeof rounds[k] - used, "%s%.0f",
                                     r ? " " : "", res[k][r].per_s);
        if ((int)used > rounds_width)
            rounds_width = (int)used;
    }
    printf("| %-17s | %10s | %11s | %-*s |\n", "client", "requests/s",
           "x blocking", rounds_width, "rounds, requests/s");
    printf("|-------------------|------------|-------------|-");
    for (int i = 0; i <= rounds_width; i++)
        putchar('-');
    printf("|\n");
    for (unsigned k = 0; k < n_clients; k++)
        printf("| %-17s | %10.0f | %10.2fx | %-*s |\n",
               client_name(k, name), med[k], med[0] > 0 ? med[k] / med[0] : 0,
               rounds_width, rounds[k]);

    printf("\nBytes per datagram, measured (request, reply), for %u bytes "
           "of request and reply: plain %zu, %zu",
           set.bytes, dgram[0][0], dgram[0][1]);
    if (!no_sealed)
        printf("; sealed %zu, %zu", dgram[1][0], dgram[1][1]);
    printf("\n");
    if (no_sealed)
        return 0;
    /* Each round's sealed rate over that round's plain window-64 rate: the
     * two ran one after the other, so a burst of load on the machine
     * tends to hit both. */
    double ratio[MAX_ROUNDS];
    size_t used = 0;
    char ratios[MAX_ROUNDS * 8];
    ratios[0] = '\0';
    for (unsigned r = 0; r < set.rounds; r++) {
        double plain = res[PLAIN_BESIDE_SEALED][r].per_s;
        ratio[r] = plain > 0 ? res[SEALED_CLIENT][r].per_s / plain : 0;
        used += (size_t)snprintf(ratios + used, sizeof ratios - used,
                                 "%s%.2f", r ? " " : "", ratio[r]);
    }
    printf("\nSealed against plain at max_window %u, the same rounds:\n\n",
           SEALED_WINDOW);
    printf("| %-17s | %10s | %8s | %8s | %8s |\n", "client", "requests/s",
           "x plain", "request", "reply");
    printf("|-------------------|------------|----------|----------|"
           "----------|\n");
    for (unsigned m = 0; m < 2; m++) {
        unsigned k = m ? SEALED_CLIENT : PLAIN_BESIDE_SEALED;
        double x = med[PLAIN_BESIDE_SEALED] > 0
                       ? med[k] / med[PLAIN_BESIDE_SEALED]
                       : 0;
        printf("| %-17s | %10.0f | %7.2fx | %8zu | %8zu |\n",
               client_name(k, name), med[k], x, dgram[m][0], dgram[m][1]);
    }
    printf("\nsealed / plain: %.2f of the medians; %.2f the median of the "
           "rounds' ratios (%s)\n",
           med[PLAIN_BESIDE_SEALED] > 0
               ? med[SEALED_CLIENT] / med[PLAIN_BESIDE_SEALED]
               : 0,
           median(ratio, set.rounds), ratios);
    printf("bytes per datagram: sealed - plain = %td request, %td reply "
           "(UDPRR_SEAL_OVERHEAD %d)\n",
           (ptrdiff_t)dgram[1][0] - (ptrdiff_t)dgram[0][0],
           (ptrdiff_t)dgram[1][1] - (ptrdiff_t)dgram[0][1],
           UDPRR_SEAL_OVERHEAD);
    return 0;
}
