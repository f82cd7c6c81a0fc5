/* SPDX-License-Identifier: MIT */
/*
 * perf.c - the raw-socket comparison of `make bench` (docs/performance.md).
 *
 * It builds, inside itself, everything it compares libudprr with:
 *
 *   - the raw ceiling: a minimal UDP echo server, recvmmsg/sendmmsg in
 *     batches of 64, buffers allocated once;
 *   - a naive echo server: recvfrom/sendto, one datagram at a time;
 *   - a raw load generator: a closed loop on 127.0.0.1 keeping WINDOW
 *     requests in flight. At window 1 it is a send/recv ping-pong (the
 *     reference round trip); at window 64 it sends and receives with
 *     sendmmsg/recvmmsg. Each request carries an 8-byte sequence number at
 *     offset 0 and the generator matches replies on it. In native framing
 *     it builds the 20-byte header of docs/protocol.md itself (ID = the
 *     sequence number, attempt 1, CRC-32C) in front of the same bytes, and
 *     checks every reply's header and CRC.
 *
 * and runs them against libudprr's echo server (udprr_server_run, the
 * reply cache on with its default bounds) in id-at-offset framing (0, 8)
 * and in native framing, and libudprr's clients against the raw server:
 * the blocking client (udprr_client_request) at window 1, the asynchronous
 * one (udprr_client_send, max_window 64, 128 kept pending) at window 64.
 * The asynchronous client also drives libudprr's native server.
 *
 * Workers: libudprr's id-at-offset server with udprr_server_opts.workers
 * 1 and 2, driven by a spread generator (8 connected sockets, so 8 source
 * ports for the kernel's SO_REUSEPORT hash to spread over the workers,
 * window 8 on each: 64 in flight in all, from one thread); their own
 * table, with the ratio of workers 2 to workers 1 in the same round and
 * how many requests each worker thread answered.
 *
 * Each server runs in a forked process of its own pinned to CPU 1, the
 * load (generator or client) in this process pinned to CPU 0 (without
 * pinning when fewer than two CPUs are usable); the workers-2 server runs
 * on CPUs 0 and 1, so one worker shares the load's CPU. A round starts
 * each server in turn, the first one rotating from round to round, then
 * the workers pair (its order alternating), and runs every cell of that
 * server for SECONDS each (a warm-up of WARMUP_MS first, not counted). The table gives medians over the rounds, and each ratio is the
 * median over the rounds of the ratio measured in the round, against the
 * raw generator and the raw ceiling of the same round.
 *
 * Every reply is checked: its sequence number was sent and not yet
 * answered, its bytes are those of the request (and, in native framing,
 * its header answers that request and its CRC is right). A wrong reply
 * prints a FAIL line and the benchmark exits 1. Lost requests (none are
 * expected on loopback) are counted and reported, not failed. It exits 2
 * when it cannot measure, else 0.
 *
 * With STRACE=1 in the environment, one more pass counts each server's
 * system calls per request at window 1 and 64: `perf stat -e
 * raw_syscalls:sys_enter -p` on the server process, or `strace -c -f`
 * where perf cannot count (strace's stops slow the server enough to hide
 * its empty reads at window 1; the output says which was used).
 *
 * Usage: perf [-r ROUNDS] [-t SECONDS] [DATAFILE]
 *        (defaults 5, 0.8, build/bench/perf.dat)
 *
 * Traffic goes only to 127.0.0.1. Every loop is bounded in time, every
 * server process by an alarm.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "fixture.h"
#include "udprr.h"

#define DEFAULT_ROUNDS 5u
#define MAX_ROUNDS 15u
#define DEFAULT_SECONDS 0.8
#define WARMUP_MS 100u
#define PAYLOAD 32u    /* the application's bytes of every request */
#define HDR 20u        /* native framing's header */
#define BATCH 64u      /* the raw server's and generator's batch */
#define BIG_WINDOW 64u
#define RING 4096u     /* generator: requests remembered, by seq % RING */
#define STALL_MS 50    /* generator: no reply for this long, the requests
                          in flight are counted lost and replaced */
#define DRAIN_MS 300u  /* after a run, how long replies are waited for */
#define MAX_SAMPLES (1u << 21)
#define SERVER_ALARM_S 120u /* a server process outlives no more */

/* --- CRC-32C (docs/protocol.md), bytewise ---------------------------------- */

static uint32_t crc_table[256];

static void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint32_t c = i;
        for (int k = 0; k < 8; k++)
            c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        crc_table[i] = c;
    }
}

static uint32_t crc_update(uint32_t c, const uint8_t *p, size_t n)
{
    while (n--)
        c = crc_table[(c ^ *p++) & 0xffu] ^ (c >> 8);
    return c;
}

static uint32_t crc32c_hdr_body(const uint8_t *dgram, size_t len)
{
    uint32_t c = crc_update(0xffffffffu, dgram, 16);
    c = crc_update(c, dgram + HDR, len - HDR);
    return c ^ 0xffffffffu;
}

static void put_be(uint8_t *p, uint64_t v, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

static uint64_t get_be(const uint8_t *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* --- requests ----------------------------------------------------------- */

enum framing { FR_ID, FR_NATIVE };

/* The application's 32 bytes of request seq: the sequence number
 * big-endian, then a pattern derived from it. */
static void fill_payload(uint8_t *p, uint64_t seq)
{
    put_be(p, seq, 8);
    for (unsigned i = 8; i < PAYLOAD; i++)
        p[i] = (uint8_t)(seq * 131u + i * 7u);
}

static size_t make_request(uint8_t *buf, enum framing fr, uint64_t seq)
{
    if (fr == FR_ID) {
        fill_payload(buf, seq);
        return PAYLOAD;
    }
    buf[0] = 0x55, buf[1] = 0x52, buf[2] = 1, buf[3] = 1; /* "UR" v1 req */
    put_be(buf + 4, 1, 2);                                /* attempt 1 */
    put_be(buf + 6, 0, 2);                                /* flags */
    put_be(buf + 8, seq, 8);                              /* id */
    fill_payload(buf + HDR, seq);
    put_be(buf + 16, crc32c_hdr_body(buf, HDR + PAYLOAD), 4);
    return HDR + PAYLOAD;
}

/* 0 and *seq when the reply is the exact answer to some request seq;
 * else -1 and why. */
static int parse_reply(const uint8_t *buf, size_t len, enum framing fr,
                       uint64_t *seq, char *why, size_t why_len)
{
    uint8_t want[PAYLOAD];
    const uint8_t *body = buf;
    if (fr == FR_NATIVE) {
        if (len != HDR + PAYLOAD) {
            snprintf(why, why_len, "native reply of %zu bytes", len);
            return -1;
        }
        if (buf[0] != 0x55 || buf[1] != 0x52 || buf[2] != 1 || buf[3] != 2 ||
            get_be(buf + 4, 2) != 1 || get_be(buf + 6, 2) != 0) {
            snprintf(why, why_len, "native reply with a wrong header "
                                   "(kind %u, attempt %u)",
                     buf[3], (unsigned)get_be(buf + 4, 2));
            return -1;
        }
        if (get_be(buf + 16, 4) != crc32c_hdr_body(buf, len)) {
            snprintf(why, why_len, "native reply with a wrong CRC");
            return -1;
        }
        body = buf + HDR;
        len -= HDR;
    }
    if (len != PAYLOAD) {
        snprintf(why, why_len, "reply of %zu bytes, not %u", len, PAYLOAD);
        return -1;
    }
    *seq = get_be(body, 8);
    if (fr == FR_NATIVE && get_be(buf + 8, 8) != *seq) {
        snprintf(why, why_len, "native reply whose ID is not its request's");
        return -1;
    }
    fill_payload(want, *seq);
    if (memcmp(want, body, PAYLOAD) != 0) {
        snprintf(why, why_len, "reply to %" PRIu64 " differs from the request",
                 *seq);
        return -1;
    }
    return 0;
}

/* --- failures --------------------------------------------------------------- */

static unsigned failures;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("FAIL ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    failures++;
}

/* --- CPUs --------------------------------------------------------------- */

static int pinning; /* 1: server on CPU 1, load on CPU 0 */

static void pin_to(int cpu)
{
    if (!pinning)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        die("sched_setaffinity failed");
}

/* CPUs 0 and 1 (the fork inherited the load's CPU 0). */
static void pin_both(void)
{
    if (!pinning)
        return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(0, &set);
    CPU_SET(1, &set);
    if (sched_setaffinity(0, sizeof set, &set) != 0)
        die("sched_setaffinity failed");
}

/* --- servers (each in its own process) ---------------------------------- */

/* SERVERS: the main table's; the workers pair after them is driven by
 * the spread generator alone (its own table). */
enum server_kind {
    SRV_RAW, SRV_NAIVE, SRV_LIB_ID, SRV_LIB_NATIVE, SERVERS,
    SRV_LIB_W1 = SERVERS, SRV_LIB_W2, ALL_SERVERS
};

static const char *const server_names[ALL_SERVERS] = {
    "raw recvmmsg/sendmmsg echo (ceiling)",
    "naive recvfrom/sendto echo",
    "libudprr, id-at-offset (0, 8), cache on",
    "libudprr, native, cache on",
    "libudprr, id-at-offset, cache on, workers 1",
    "libudprr, id-at-offset, cache on, workers 2",
};

/* For the plot's axis; "|" breaks the line. */
static const char *const server_labels[SERVERS] = {
    "raw|ceiling", "naive|echo", "libudprr|id-at-offset", "libudprr|native",
};

static volatile sig_atomic_t child_stop;
static udprr_server *child_server;

static void on_term(int sig)
{
    (void)sig;
    child_stop = 1;
    if (child_server != NULL)
        udprr_server_stop(child_server);
}

/* What a server process tells its parent through the pipe. */
struct child_report {
    int ok;
    uint16_t port;
    struct udprr_server_stats stats; /* libudprr servers, at the end */
    uint64_t per_thread[2]; /* the workers pair: requests each thread's
                               handler saw, in the order they first ran */
};

static void write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            _exit(3);
        c += w, n -= (size_t)w;
    }
}

static int raw_socket(uint16_t *port)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    /* Wake up now and then to see a stop that came just before a wait. */
    struct timeval tv = {.tv_sec = 0, .tv_usec = 100000};
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &al) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0)
        _exit(3);
    *port = ntohs(a.sin_port);
    return fd;
}

/* The ceiling: every datagram waiting, up to 64, in one recvmmsg; every
 * answer in one sendmmsg. */
static void serve_raw(int fd)
{
    static uint8_t bufs[BATCH][2048];
    static struct sockaddr_in peers[BATCH];
    static struct iovec iov[BATCH];
    static struct mmsghdr msgs[BATCH];
    for (unsigned i = 0; i < BATCH; i++)
        iov[i] = (struct iovec){bufs[i], sizeof bufs[i]};
    while (!child_stop) {
        for (unsigned i = 0; i < BATCH; i++) {
            msgs[i].msg_hdr = (struct msghdr){
                .msg_name = &peers[i], .msg_namelen = sizeof peers[i],
                .msg_iov = &iov[i], .msg_iovlen = 1};
        }
        int n = recvmmsg(fd, msgs, BATCH, MSG_WAITFORONE, NULL);
        if (n <= 0)
            continue;
        for (int i = 0; i < n; i++) {
            iov[i].iov_len = msgs[i].msg_len;
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        int sent = 0;
        while (sent < n) {
            int s = sendmmsg(fd, msgs + sent, (unsigned)(n - sent), 0);
            if (s <= 0)
                break;
            sent += s;
        }
        for (int i = 0; i < n; i++)
            iov[i].iov_len = sizeof bufs[i];
    }
}

static void serve_naive(int fd)
{
    uint8_t buf[2048];
    while (!child_stop) {
        struct sockaddr_in peer;
        socklen_t pl = sizeof peer;
        ssize_t n = recvfrom(fd, buf, sizeof buf, 0,
                             (struct sockaddr *)&peer, &pl);
        if (n < 0)
            continue;
        (void)sendto(fd, buf, (size_t)n, 0, (struct sockaddr *)&peer, pl);
    }
}

/* The workers pair's handler: the fixture's echo, counting on each worker's
 * thread how many requests that thread answered (a slot per thread, taken
 * on its first request, written by that thread alone and read after run
 * has joined them all). */
#define COUNTED_THREADS 2u
static uint64_t thread_counts[COUNTED_THREADS + 1]; /* + 1: the rest */
static atomic_uint threads_seen;
static _Thread_local uint64_t *thread_count;

static int counting_echo_handler(void *user, const udprr_request *req,
                                 void *reply, size_t reply_cap,
                                 size_t *reply_len)
{
    if (thread_count == NULL) {
        unsigned i = atomic_fetch_add(&threads_seen, 1u);
        thread_count = &thread_counts[i < COUNTED_THREADS ? i
                                                          : COUNTED_THREADS];
    }
    (*thread_count)++;
    return fixture_echo_handler(user, req, reply, reply_cap, reply_len);
}

static void lib_server_opts(udprr_server_opts *o, enum server_kind k)
{
    udprr_server_opts_init(o);
    o->reply_cache = 1;
    if (k == SRV_LIB_ID || k == SRV_LIB_W1 || k == SRV_LIB_W2) {
        o->framing = UDPRR_FRAMING_ID_AT_OFFSET;
        o->id_offset = 0;
        o->id_len = 8;
    }
    o->workers = k == SRV_LIB_W2 ? 2 : 1;
}

static void child_main(enum server_kind k, int wfd)
{
    struct child_report rep;
    memset(&rep, 0, sizeof rep);
    alarm(SERVER_ALARM_S);
    if (k == SRV_LIB_W2)
        pin_both(); /* its two workers may run on either CPU */
    else
        pin_to(1);
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term; /* no SA_RESTART: a wait ends with EINTR */
    sigaction(SIGTERM, &sa, NULL);

    if (k == SRV_RAW || k == SRV_NAIVE) {
        int fd = raw_socket(&rep.port);
        rep.ok = 1;
        write_all(wfd, &rep, sizeof rep);
        if (k == SRV_RAW)
            serve_raw(fd);
        else
            serve_naive(fd);
        close(fd);
    } else {
        udprr_server_opts o;
        lib_server_opts(&o, k);
        udprr_server *s;
        if (udprr_server_open(&s, "127.0.0.1", "0", &o) != UDPRR_OK) {
            write_all(wfd, &rep, sizeof rep);
            _exit(3);
        }
        struct sockaddr_in a;
        socklen_t al = sizeof a;
        if (udprr_server_sockname(s, (struct sockaddr *)&a, &al) != UDPRR_OK)
            _exit(3);
        rep.port = ntohs(a.sin_port);
        rep.ok = 1;
        child_server = s;
        write_all(wfd, &rep, sizeof rep);
        int rc = udprr_server_run(s, k == SRV_LIB_W1 || k == SRV_LIB_W2
                                         ? counting_echo_handler
                                         : fixture_echo_handler, NULL);
        rep.per_thread[0] = thread_counts[0];
        rep.per_thread[1] = thread_counts[1];
        if (thread_counts[COUNTED_THREADS] != 0)
            rc = UDPRR_EINVAL; /* more threads than workers */
        rep.ok = rc == UDPRR_OK;
        rep.stats.size = sizeof rep.stats;
        udprr_server_stats(s, &rep.stats);
        child_server = NULL;
        udprr_server_close(s);
    }
    write_all(wfd, &rep, sizeof rep);
    _exit(0);
}

struct server_proc {
    pid_t pid;
    int rfd;
    uint16_t port;
    char port_str[8];
};

static int read_report(int fd, struct child_report *rep, int timeout_ms)
{
    size_t got = 0;
    uint64_t until = now_us() + (uint64_t)timeout_ms * 1000u;
    while (got < sizeof *rep) {
        uint64_t now = now_us();
        if (now >= until)
            return -1;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, (int)((until - now) / 1000u) + 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        ssize_t n = read(fd, (char *)rep + got, sizeof *rep - got);
        if (n <= 0)
            return -1;
        got += (size_t)n;
    }
    return 0;
}

static void start_server(struct server_proc *sp, enum server_kind k)
{
    int p[2];
    if (pipe(p) != 0)
        die("pipe failed");
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        die("fork failed");
    if (pid == 0) {
        close(p[0]);
        child_main(k, p[1]);
    }
    close(p[1]);
    struct child_report rep;
    if (read_report(p[0], &rep, 5000) != 0 || !rep.ok)
        die("a server process did not start");
    sp->pid = pid;
    sp->rfd = p[0];
    sp->port = rep.port;
    snprintf(sp->port_str, sizeof sp->port_str, "%u", rep.port);
}

/* VmHWM of a process, in KiB; 0 when it cannot be read. */
static long vm_hwm_kib(pid_t pid)
{
    char path[64], line[256];
    long kib = 0;
    snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "VmHWM: %ld kB", &kib) == 1)
            break;
    fclose(f);
    return kib;
}

/* CPU time of a process so far, user + system, in seconds (clock ticks
 * of /proc/<pid>/stat: 10 ms apart, so a 1 s cell reads within 1%). */
static double proc_cpu_s(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", (long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* Fields 14 and 15, counted after the command's closing parenthesis
     * (field 2, which may hold spaces). */
    char *p = strrchr(buf, ')');
    unsigned long ut = 0, st = 0;
    if (p == NULL || sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u "
                                   "%*u %lu %lu", &ut, &st) != 2)
        return 0;
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* Stops the server; its peak RSS in *hwm and, for libudprr, its stats. */
static void stop_server(struct server_proc *sp, long *hwm,
                        struct child_report *rep)
{
    *hwm = vm_hwm_kib(sp->pid);
    kill(sp->pid, SIGTERM);
    memset(rep, 0, sizeof *rep);
    if (read_report(sp->rfd, rep, 5000) != 0)
        die("a server process did not stop");
    int st;
    if (waitpid(sp->pid, &st, 0) != sp->pid || !WIFEXITED(st) ||
        WEXITSTATUS(st) != 0)
        die("a server process failed");
    close(sp->rfd);
}

/* --- the raw load generator ------------------------------------------------ */

struct cell {
    double per_s;   /* completed requests per second after the warm-up */
    double p50_us;  /* window 1: median round trip after the warm-up */
    uint64_t done;  /* requests counted */
    uint64_t lost;  /* gave up on (a stall, or unanswered at the end) */
    uint64_t replies; /* every right reply, warm-up and drain included */
    uint64_t retransmissions; /* libudprr's async client: its counter */
    double server_cpu; /* W=64: the server process's CPU time / wall time */
    double load_cpu;   /* W=64: this process's */
};

enum { ST_FREE, ST_OUT, ST_LOST, ST_DONE };
struct ring_entry {
    uint64_t seq;
    uint64_t sent_ns;
    uint8_t state;
    uint8_t sock; /* which of the generator's sockets sent it */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t next_seq = 1; /* never repeated in one run of perf */
static double *samples;       /* round trips in us */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median_of(double *v, size_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int gen_socket(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    struct timeval tv = {.tv_sec = 0, .tv_usec = STALL_MS * 1000};
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv) != 0)
        die("cannot set up the generator's socket");
    return fd;
}

/* The closed-loop generator: nsocks connected sockets (so as many source
 * ports, which the kernel's SO_REUSEPORT hash spreads over the server's
 * workers), each keeping `window` requests in flight for warm-up +
 * seconds, in one thread. With one socket it waits in recv (window 1, the
 * round trips sampled) or recvmmsg; with more it polls, then takes what
 * each readable socket holds with recvmmsg without waiting, then tops the
 * windows up with sendmmsg. Every reply is checked: its sequence number
 * one this run sent and not yet answered, its bytes those expected, and
 * back on the socket its request left by. */
#define SPREAD_SOCKS 8u
#define SPREAD_WINDOW (BIG_WINDOW / SPREAD_SOCKS)

struct gen {
    const char *who;
    enum framing fr;
    unsigned nsocks, window;
    struct pollfd pfd[SPREAD_SOCKS];
    unsigned flight[SPREAD_SOCKS];
    unsigned in_flight;
    uint64_t measure_from, stop_at, counted;
    size_t nsamples;
    int reported;
    struct cell *out;
};

static struct ring_entry ring[RING];
static uint8_t sbuf[BATCH][HDR + PAYLOAD];
static uint8_t rbuf[BATCH][2048];
static struct mmsghdr rmsg[BATCH];

/* Top socket s's window up. */
static void gen_top_up(struct gen *g, unsigned s, uint64_t now)
{
    struct iovec siov[BATCH];
    struct mmsghdr smsg[BATCH];
    unsigned n = g->window - g->flight[s];
    for (unsigned i = 0; i < n; i++) {
        uint64_t seq = next_seq++;
        struct ring_entry *e = &ring[seq % RING];
        if (e->state == ST_OUT) { /* RING >> window: never */
            e->state = ST_LOST;
            g->flight[e->sock]--;
            g->in_flight--;
            g->out->lost++;
        }
        size_t len = make_request(sbuf[i], g->fr, seq);
        siov[i] = (struct iovec){sbuf[i], len};
        smsg[i].msg_hdr = (struct msghdr){.msg_iov = &siov[i],
                                          .msg_iovlen = 1};
        *e = (struct ring_entry){seq, now, ST_OUT, (uint8_t)s};
    }
    if (n == 1) {
        if (send(g->pfd[s].fd, sbuf[0], siov[0].iov_len, 0) < 0)
            die("send failed");
    } else if (n > 1) {
        unsigned sent = 0;
        while (sent < n) {
            int r = sendmmsg(g->pfd[s].fd, smsg + sent, n - sent, 0);
            if (r <= 0)
                die("sendmmsg failed");
            sent += (unsigned)r;
        }
    }
    g->flight[s] += n;
    g->in_flight += n;
}

/* A stall: what is in flight is lost; start afresh. */
static void gen_stall(struct gen *g)
{
    for (unsigned i = 0; i < RING; i++)
        if (ring[i].state == ST_OUT)
            ring[i].state = ST_LOST;
    g->out->lost += g->in_flight;
    g->in_flight = 0;
    memset(g->flight, 0, sizeof g->flight);
}

static void gen_recv_setup(void)
{
    static struct iovec riov[BATCH];
    for (unsigned i = 0; i < BATCH; i++) {
        riov[i] = (struct iovec){rbuf[i], sizeof rbuf[i]};
        rmsg[i].msg_hdr = (struct msghdr){.msg_iov = &riov[i],
                                          .msg_iovlen = 1};
    }
}

/* Check and count the got replies in rbuf that came on socket s at t. */
static void gen_take(struct gen *g, unsigned s, int got, uint64_t t)
{
    char why[160];
    for (int i = 0; i < got; i++) {
        uint64_t seq;
        if (parse_reply(rbuf[i], rmsg[i].msg_len, g->fr, &seq, why,
                        sizeof why) != 0) {
            if (!g->reported++)
                fail("%s: %s", g->who, why);
            continue;
        }
        struct ring_entry *e = &ring[seq % RING];
        if (seq >= next_seq || (e->seq == seq && e->state == ST_DONE) ||
            (e->seq == seq && e->sock != s)) {
            if (!g->reported++)
                fail("%s: reply to %" PRIu64 ", %s", g->who, seq,
                     seq >= next_seq        ? "never sent"
                     : e->state == ST_DONE ? "answered twice"
                                           : "on another socket than its "
                                             "request's");
            continue;
        }
        if (e->seq != seq || e->state != ST_OUT)
            continue; /* late, for a request already given up on */
        e->state = ST_DONE;
        g->flight[s]--;
        g->in_flight--;
        g->out->replies++;
        if (t >= g->measure_from && t < g->stop_at) {
            g->counted++;
            if (g->window == 1 && g->nsocks == 1 &&
                g->nsamples < MAX_SAMPLES)
                samples[g->nsamples++] = (double)(t - e->sent_ns) / 1e3;
        }
    }
}

/* One socket: wait for what comes. */
static void gen_wait_one(struct gen *g)
{
    int fd = g->pfd[0].fd, got;
    if (g->window == 1) {
        ssize_t r = recv(fd, rbuf[0], sizeof rbuf[0], 0);
        got = r < 0 ? -1 : 1;
        rmsg[0].msg_len = r < 0 ? 0 : (unsigned)r;
    } else {
        gen_recv_setup();
        got = recvmmsg(fd, rmsg, BATCH, MSG_WAITFORONE, NULL);
    }
    uint64_t t = now_ns();
    if (got < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
            die("recv failed");
        if (errno != EINTR)
            gen_stall(g);
        return;
    }
    gen_take(g, 0, got, t);
}

/* Several sockets: poll, then take what each readable one holds. */
static void gen_wait_many(struct gen *g)
{
    int ready = poll(g->pfd, g->nsocks, STALL_MS);
    if (ready < 0 && errno == EINTR)
        return;
    if (ready < 0)
        die("poll failed");
    if (ready == 0) {
        gen_stall(g);
        return;
    }
    for (unsigned s = 0; s < g->nsocks; s++) {
        if (!(g->pfd[s].revents & POLLIN))
            continue;
        gen_recv_setup();
        int got = recvmmsg(g->pfd[s].fd, rmsg, BATCH, MSG_DONTWAIT, NULL);
        if (got < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                die("recvmmsg failed");
            continue;
        }
        gen_take(g, s, got, now_ns());
    }
}

static void run_generator(const char *who, uint16_t port, enum framing fr,
                          unsigned nsocks, unsigned window, double seconds,
                          struct cell *out)
{
    if (nsocks < 1 || nsocks > SPREAD_SOCKS || window < 1 || window > BATCH)
        die("generator: bad socket count or window");
    memset(ring, 0, sizeof ring);
    memset(out, 0, sizeof *out);
    struct gen g = {.who = who, .fr = fr, .nsocks = nsocks,
                    .window = window, .out = out};
    for (unsigned s = 0; s < nsocks; s++)
        g.pfd[s] = (struct pollfd){.fd = gen_socket(port), .events = POLLIN};
    uint64_t start = now_ns();
    g.measure_from = start + WARMUP_MS * 1000000ull;
    g.stop_at = g.measure_from + (uint64_t)(seconds * 1e9);

    for (;;) {
        uint64_t now = now_ns();
        int sending = now < g.stop_at;
        if (!sending && (g.in_flight == 0 ||
                         now >= g.stop_at + DRAIN_MS * 1000000ull))
            break;
        for (unsigned s = 0; sending && s < nsocks; s++)
            gen_top_up(&g, s, now);
        if (nsocks == 1)
            gen_wait_one(&g);
        else
            gen_wait_many(&g);
    }
    out->lost += g.in_flight;
    out->done = g.counted;
    out->per_s = (double)g.counted /
                 ((double)(g.stop_at - g.measure_from) / 1e9);
    out->p50_us = median_of(samples, g.nsamples);
    for (unsigned s = 0; s < nsocks; s++)
        close(g.pfd[s].fd);
}

/* --- libudprr's clients ------------------------------------------------------ */

static void open_lib_client(udprr_client **c, const char *port,
                            enum framing fr, unsigned max_window)
{
    udprr_client_opts o;
    udprr_client_opts_init(&o);
    if (fr == FR_ID) {
        o.framing = UDPRR_FRAMING_ID_AT_OFFSET;
        o.id_offset = 0;
        o.id_len = 8;
    }
    if (max_window)
        o.max_window = max_window;
    if (udprr_client_open(c, "127.0.0.1", port, &o) != UDPRR_OK)
        die("cannot open a libudprr client on 127.0.0.1");
}

/* In id-at-offset framing the library writes its own ID over bytes 0..7:
 * compare the rest (the library matched the ID). */
static int lib_reply_ok(enum framing fr, uint64_t seq, const void *reply,
                        size_t len)
{
    uint8_t want[PAYLOAD];
    unsigned from = fr == FR_ID ? 8 : 0;
    fill_payload(want, seq);
    return len == PAYLOAD &&
           memcmp(want + from, (const uint8_t *)reply + from,
                  PAYLOAD - from) == 0;
}

static void run_blocking(const char *who, const char *port, double seconds,
                         struct cell *out)
{
    udprr_client *c;
    uint8_t req[PAYLOAD], reply[PAYLOAD + 1];
    size_t nsamples = 0;
    memset(out, 0, sizeof *out);
    open_lib_client(&c, port, FR_ID, 0);
    uint64_t start = now_ns();
    uint64_t measure_from = start + WARMUP_MS * 1000000ull;
    uint64_t stop_at = measure_from + (uint64_t)(seconds * 1e9);
    for (uint64_t t0 = start; t0 < stop_at; ) {
        uint64_t seq = next_seq++;
        fill_payload(req, seq);
        size_t rlen = 0;
        int st = udprr_client_request(c, req, PAYLOAD, reply, sizeof reply,
                                      &rlen);
        uint64_t t1 = now_ns();
        if (st != UDPRR_OK || !lib_reply_ok(FR_ID, seq, reply, rlen)) {
            fail("%s: request %" PRIu64 ": %s", who, seq,
                 st != UDPRR_OK ? udprr_status_name(st) : "wrong reply");
            break;
        }
        if (t0 >= measure_from) {
            out->done++;
            if (nsamples < MAX_SAMPLES)
                samples[nsamples++] = (double)(t1 - t0) / 1e3;
        }
        t0 = t1;
    }
    out->per_s = (double)out->done / seconds;
    out->p50_us = median_of(samples, nsamples);
    udprr_client_close(c);
}

#define KEEP_PENDING (2u * BIG_WINDOW)

struct async_slot {
    struct async_state *as;
    uint64_t seq;
    int busy;
};

struct async_state {
    const char *who;
    enum framing fr;
    struct async_slot slots[KEEP_PENDING];
    struct async_slot *free_list[KEEP_PENDING];
    unsigned nfree;
    uint64_t completed;
    int closing;
    int reported;
};

static void async_done(void *user, int status, const void *reply,
                       size_t len)
{
    struct async_slot *s = user;
    struct async_state *as = s->as;
    if (!s->busy) {
        if (!as->reported++)
            fail("%s: a second done callback", as->who);
        return;
    }
    s->busy = 0;
    as->free_list[as->nfree++] = s;
    if (as->closing && status == UDPRR_ECANCELED)
        return;
    if (status != UDPRR_OK || !lib_reply_ok(as->fr, s->seq, reply, len)) {
        if (!as->reported++)
            fail("%s: request %" PRIu64 ": %s", as->who, s->seq,
                 status != UDPRR_OK ? udprr_status_name(status)
                                    : "wrong reply");
        return;
    }
    as->completed++;
}

static void run_async(const char *who, const char *port, enum framing fr,
                      double seconds, struct cell *out)
{
    static struct async_state as;
    udprr_client *c;
    uint8_t req[PAYLOAD];
    memset(&as, 0, sizeof as);
    memset(out, 0, sizeof *out);
    as.who = who;
    as.fr = fr;
    for (unsigned i = 0; i < KEEP_PENDING; i++) {
        as.slots[i].as = &as;
        as.free_list[as.nfree++] = &as.slots[i];
    }
    open_lib_client(&c, port, fr, BIG_WINDOW);
    int fd = udprr_client_fd(c);
    uint64_t start = now_ns();
    uint64_t measure_from = start + WARMUP_MS * 1000000ull;
    uint64_t stop_at = measure_from + (uint64_t)(seconds * 1e9);
    uint64_t give_up = stop_at + DRAIN_MS * 1000000ull;
    uint64_t base = 0, t_base = 0;
    int measuring = 0;
    for (;;) {
        uint64_t now = now_ns();
        if (!measuring && now >= measure_from) {
            measuring = 1;
            base = as.completed;
            t_base = now;
        }
        if (now >= stop_at) {
            if (measuring) {
                out->done = as.completed - base;
                out->per_s = (double)out->done / ((double)(now - t_base) / 1e9);
                measuring = 2;
            }
            break;
        }
        while (as.nfree > 0) {
            struct async_slot *s = as.free_list[--as.nfree];
            s->seq = next_seq++;
            s->busy = 1;
            fill_payload(req, s->seq);
            int rc = udprr_client_send(c, req, PAYLOAD, async_done, s);
            if (rc != UDPRR_OK) {
                s->busy = 0;
                as.free_list[as.nfree++] = s;
                fail("%s: udprr_client_send: %s", who, udprr_status_name(rc));
                goto out;
            }
        }
        int wait_ms = udprr_client_timeout_ms(c);
        if (wait_ms < 0 || wait_ms > 100)
            wait_ms = 100;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, wait_ms) < 0 && errno != EINTR)
            die("poll failed");
        if (udprr_client_process(c) != UDPRR_OK)
            die("udprr_client_process failed");
    }
    /* Drain what is pending, then close (cancels any rest). */
    while (as.nfree < KEEP_PENDING && now_ns() < give_up) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 10) < 0 && errno != EINTR)
            die("poll failed");
        if (udprr_client_process(c) != UDPRR_OK)
            die("udprr_client_process failed");
    }
    out->lost = KEEP_PENDING - as.nfree;
out:;
    struct udprr_client_stats st;
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    if (udprr_client_stats(c, &st) == UDPRR_OK)
        out->retransmissions = st.retransmissions;
    as.closing = 1;
    udprr_client_close(c);
}

/* --- system calls per request, under strace (STRACE=1) ---------------------- */

/* Whether the process whose /proc status file is path has a tracer. */
static int tracer_attached(const char *path)
{
    char line[256];
    long tracer = 0;
    FILE *f = fopen(path, "r");
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "TracerPid: %ld", &tracer) == 1)
            break;
    if (f != NULL)
        fclose(f);
    return tracer != 0;
}

/* Whether perf's output file has its first line for the event. */
static int perf_counting(const char *path)
{
    char line[256];
    int found = 0;
    FILE *f = fopen(path, "r");
    while (f != NULL && fgets(line, sizeof line, f) != NULL)
        if (strstr(line, "raw_syscalls:sys_enter") != NULL)
            found = 1;
    if (f != NULL)
        fclose(f);
    return found;
}

/* With the tracer tr started on the server: waits, at most 5 s, until
 * ready(arg) says it counts, runs the generator against the server, and
 * stops the tracer. 0 with the generator's cell in *c, or -1 (the tracer
 * gave up or never got ready, or no reply came). */
static int run_traced(pid_t tr, int (*ready)(const char *), const char *arg,
                      const struct server_proc *sp, enum server_kind k,
                      unsigned window, double seconds, const char *how,
                      struct cell *c)
{
    int ok = 0;
    for (unsigned i = 0; i < 500 && !(ok = ready(arg)); i++) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
        if (waitpid(tr, NULL, WNOHANG) == tr)
            return -1; /* the tracer gave up */
    }
    char who[96];
    snprintf(who, sizeof who, "raw generator W=%u -> %s, %s", window,
             server_names[k], how);
    c->replies = 0;
    if (ok)
        run_generator(who, sp->port, k == SRV_LIB_NATIVE ? FR_NATIVE : FR_ID,
                      1, window, seconds, c);
    kill(tr, SIGINT);
    waitpid(tr, NULL, 0);
    return ok && c->replies > 0 ? 0 : -1;
}

/* Attaches `strace -c -f` to the server, runs the generator, detaches;
 * the server's system calls per right reply, or -1. */
static double traced_calls(const struct server_proc *sp, enum server_kind k,
                           unsigned window, double seconds)
{
    char file[64], pidstr[16], line[256];
    snprintf(file, sizeof file, "build/bench/perf-strace-%d-%u.txt", (int)k,
             window);
    snprintf(pidstr, sizeof pidstr, "%ld", (long)sp->pid);
    fflush(stdout);
    pid_t tr = fork();
    if (tr < 0)
        die("fork failed");
    if (tr == 0) {
        execlp("strace", "strace", "-c", "-f", "-q", "-o", file, "-p", pidstr,
               (char *)NULL);
        _exit(127);
    }
    char status[64];
    snprintf(status, sizeof status, "/proc/%ld/status", (long)sp->pid);
    struct cell c;
    if (run_traced(tr, tracer_attached, status, sp, k, window, seconds,
                   "under strace", &c) != 0)
        return -1;
    FILE *f = fopen(file, "r");
    unsigned long calls = 0;
    int found = 0;
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        double pct, secs;
        unsigned long per, n;
        if (strstr(line, " total") != NULL &&
            sscanf(line, "%lf %lf %lu %lu", &pct, &secs, &per, &n) == 4)
            calls = n, found = 1;
    }
    if (f != NULL)
        fclose(f);
    return found ? (double)calls / (double)c.replies : -1;
}

/* The same through `perf stat -e raw_syscalls:sys_enter -p`, which counts
 * in the kernel without stopping the server at each call (strace's stops
 * slow the server so much that at window 1 the next request is always
 * waiting when it looks, hiding its empty reads and waits). Counting
 * starts before the generator does: the wait is for perf's first
 * interval line (bounded). -1 when perf cannot count here. */
static double perf_calls(const struct server_proc *sp, enum server_kind k,
                         unsigned window, double seconds)
{
    char file[64], pidstr[16], line[256];
    snprintf(file, sizeof file, "build/bench/perf-syscalls-%d-%u.txt", (int)k,
             window);
    snprintf(pidstr, sizeof pidstr, "%ld", (long)sp->pid);
    unlink(file);
    fflush(stdout);
    pid_t tr = fork();
    if (tr < 0)
        die("fork failed");
    if (tr == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) {
            dup2(devnull, 1);
            dup2(devnull, 2);
        }
        execlp("perf", "perf", "stat", "-e", "raw_syscalls:sys_enter", "-x,",
               "-I", "100", "-o", file, "-p", pidstr, (char *)NULL);
        _exit(127);
    }
    struct cell c;
    if (run_traced(tr, perf_counting, file, sp, k, window, seconds,
                   "counted by perf", &c) != 0)
        return -1;
    FILE *f = fopen(file, "r");
    double calls = 0;
    while (f != NULL && fgets(line, sizeof line, f) != NULL) {
        double t, n;
        if (strstr(line, "raw_syscalls:sys_enter") != NULL &&
            sscanf(line, "%lf,%lf", &t, &n) == 2)
            calls += n; /* "<not counted>": the server slept throughout */
    }
    if (f != NULL)
        fclose(f);
    return calls / (double)c.replies;
}

static void strace_pass(double seconds)
{
    static const unsigned w[2] = {1, BIG_WINDOW};
    double per[SERVERS][2];
    int use_strace = 0;
    printf("\nSTRACE=1: one more pass, the server's system calls counted "
           "while the raw generator runs (every call of the process, its "
           "idle wake-ups included)\n");
    for (unsigned k = 0; k < SERVERS; k++) {
        for (unsigned i = 0; i < 2; i++) {
            struct server_proc sp;
            struct child_report rep;
            long hwm;
            start_server(&sp, (enum server_kind)k);
            per[k][i] = -1;
            if (!use_strace) {
                per[k][i] = perf_calls(&sp, (enum server_kind)k, w[i], seconds);
                if (per[k][i] < 0 && k == 0 && i == 0) {
                    printf("perf stat cannot count raw_syscalls here: "
                           "strace -c -f instead, which slows the server "
                           "down so much that its window-1 count misses "
                           "the empty reads and the waits\n");
                    use_strace = 1;
                }
            }
            if (use_strace)
                per[k][i] = traced_calls(&sp, (enum server_kind)k, w[i],
                                         seconds);
            stop_server(&sp, &hwm, &rep);
        }
    }
    if (!use_strace)
        printf("counted by perf stat -e raw_syscalls:sys_enter -p PID\n");
    printf("| server | system calls per request, W=1 | W=64 |\n"
           "|---|---|---|\n");
    for (unsigned k = 0; k < SERVERS; k++) {
        printf("| %s |", server_names[k]);
        for (unsigned i = 0; i < 2; i++) {
            if (per[k][i] < 0)
                printf(" (strace failed) |");
            else
                printf(" %.2f |", per[k][i]);
        }
        printf("\n");
    }
}

/* --- the rounds ------------------------------------------------------------ */

/* The cells of the table, one per round. */
enum {
    C_W1,   /* raw generator, window 1 (req/s and p50) */
    C_W64,  /* raw generator, window 64 */
    C_BLOCK, /* raw server only: libudprr blocking client */
    C_ASYNC, /* raw and native servers: libudprr async client, window 64 */
    CELLS
};

static struct cell cells[ALL_SERVERS][CELLS][MAX_ROUNDS];
static long rss_kib[ALL_SERVERS][MAX_ROUNDS];
static struct udprr_server_stats lib_stats[ALL_SERVERS];
static uint64_t per_thread[ALL_SERVERS][MAX_ROUNDS][2];

/* The workers pair: one cell each, the spread generator's (in C_W64). */
static void run_workers_cell(enum server_kind k, unsigned round,
                             double seconds)
{
    struct server_proc sp;
    struct child_report rep;
    char who[128];
    start_server(&sp, k);
    snprintf(who, sizeof who, "spread generator %ux%u -> %s, round %u",
             SPREAD_SOCKS, SPREAD_WINDOW, server_names[k], round + 1);
    double srv0 = proc_cpu_s(sp.pid), gen0 = proc_cpu_s(getpid());
    uint64_t t0 = now_us();
    run_generator(who, sp.port, FR_ID, SPREAD_SOCKS, SPREAD_WINDOW, seconds,
                  &cells[k][C_W64][round]);
    double wall = (double)(now_us() - t0) / 1e6;
    cells[k][C_W64][round].server_cpu = (proc_cpu_s(sp.pid) - srv0) / wall;
    cells[k][C_W64][round].load_cpu = (proc_cpu_s(getpid()) - gen0) / wall;
    stop_server(&sp, &rss_kib[k][round], &rep);
    lib_stats[k] = rep.stats;
    per_thread[k][round][0] = rep.per_thread[0];
    per_thread[k][round][1] = rep.per_thread[1];
    if (!rep.ok)
        fail("%s: udprr_server_run failed", server_names[k]);
    if (rep.stats.cache_hits > 0) /* no retransmissions: no hit either */
        fail("%s: %" PRIu64 " cache hits: a request ID repeated",
             server_names[k], rep.stats.cache_hits);
}

static void run_server_cells(enum server_kind k, unsigned round,
                             double seconds)
{
    struct server_proc sp;
    struct child_report rep;
    char who[96];
    enum framing fr = k == SRV_LIB_NATIVE ? FR_NATIVE : FR_ID;
    start_server(&sp, k);

    snprintf(who, sizeof who, "raw generator W=1 -> %s, round %u",
             server_names[k], round + 1);
    run_generator(who, sp.port, fr, 1, 1, seconds, &cells[k][C_W1][round]);
    snprintf(who, sizeof who, "raw generator W=64 -> %s, round %u",
             server_names[k], round + 1);
    double srv0 = proc_cpu_s(sp.pid), gen0 = proc_cpu_s(getpid());
    uint64_t t0 = now_us();
    run_generator(who, sp.port, fr, 1, BIG_WINDOW, seconds,
                  &cells[k][C_W64][round]);
    double wall = (double)(now_us() - t0) / 1e6;
    cells[k][C_W64][round].server_cpu = (proc_cpu_s(sp.pid) - srv0) / wall;
    cells[k][C_W64][round].load_cpu = (proc_cpu_s(getpid()) - gen0) / wall;
    if (k == SRV_RAW) {
        snprintf(who, sizeof who, "blocking libudprr client -> raw, round %u",
                 round + 1);
        run_blocking(who, sp.port_str, seconds, &cells[k][C_BLOCK][round]);
    }
    if (k == SRV_RAW || k == SRV_LIB_NATIVE) {
        snprintf(who, sizeof who, "async libudprr client W=64 -> %s, round %u",
                 server_names[k], round + 1);
        run_async(who, sp.port_str, fr, seconds, &cells[k][C_ASYNC][round]);
    }
    stop_server(&sp, &rss_kib[k][round], &rep);
    if (k == SRV_LIB_ID || k == SRV_LIB_NATIVE) {
        lib_stats[k] = rep.stats;
        if (!rep.ok)
            fail("%s: udprr_server_run failed", server_names[k]);
        /* Only the async client retransmits: a cache hit beyond its
         * retransmissions is a request ID that repeated. */
        uint64_t retx = cells[k][C_ASYNC][round].retransmissions;
        if (rep.stats.cache_hits > retx)
            fail("%s: %" PRIu64 " cache hits, %" PRIu64 " retransmissions: "
                 "a request ID repeated",
                 server_names[k], rep.stats.cache_hits, retx);
    }
}

static double med(unsigned rounds, double (*f)(unsigned r, const void *ctx),
                  const void *ctx)
{
    double v[MAX_ROUNDS];
    for (unsigned r = 0; r < rounds; r++)
        v[r] = f(r, ctx);
    return median_of(v, rounds);
}

struct pick {
    int server, cell, field; /* field 0: per_s, 1: p50 */
    int ref_server, ref_cell; /* ratio to this cell of the same round */
};

static double cell_value(const struct cell *c, int field)
{
    switch (field) {
    case 0: return c->per_s;
    case 1: return c->p50_us;
    case 2: return c->server_cpu * 100;
    default: return c->load_cpu * 100;
    }
}

static double pick_value(unsigned r, const void *ctx)
{
    const struct pick *p = ctx;
    return cell_value(&cells[p->server][p->cell][r], p->field);
}

static double pick_ratio(unsigned r, const void *ctx)
{
    const struct pick *p = ctx;
    double ref = cell_value(&cells[p->ref_server][p->ref_cell][r], p->field);
    return ref > 0 ? pick_value(r, ctx) / ref : 0;
}

static double value(unsigned rounds, int s, int c, int field)
{
    struct pick p = {s, c, field, 0, 0};
    return med(rounds, pick_value, &p);
}

static double ratio(unsigned rounds, int s, int c, int field, int rs, int rc)
{
    struct pick p = {s, c, field, rs, rc};
    return med(rounds, pick_ratio, &p);
}

static void kreq(char *buf, size_t n, double v)
{
    snprintf(buf, n, "%.1fk", v / 1e3);
}

static void loadavg(char *buf, size_t n)
{
    FILE *f = fopen("/proc/loadavg", "r");
    buf[0] = '\0';
    if (f != NULL) {
        if (fgets(buf, (int)n, f) == NULL)
            buf[0] = '\0';
        fclose(f);
    }
    char *nl = strchr(buf, '\n');
    if (nl)
        *nl = '\0';
    /* Keep the three averages only. */
    char *sp = buf;
    for (int i = 0; i < 3 && sp != NULL; i++)
        sp = strchr(sp + 1, ' ');
    if (sp)
        *sp = '\0';
}

int main(int argc, char **argv)
{
    unsigned rounds = DEFAULT_ROUNDS;
    double seconds = DEFAULT_SECONDS;
    const char *datafile = "build/bench/perf.dat";
    int opt;
    while ((opt = getopt(argc, argv, "r:t:")) != -1) {
        if (opt == 'r')
            rounds = (unsigned)strtoul(optarg, NULL, 10);
        else if (opt == 't')
            seconds = strtod(optarg, NULL);
        else
            die("usage: perf [-r ROUNDS] [-t SECONDS] [DATAFILE]");
    }
    if (optind < argc)
        datafile = argv[optind];
    if (rounds < 1 || rounds > MAX_ROUNDS || !(seconds >= 0.05 && seconds <= 10))
        die("-r takes 1..15, -t 0.05..10");
    setvbuf(stdout, NULL, _IOLBF, 0);
    crc_init();
    if (crc_update(0xffffffffu, (const uint8_t *)"123456789", 9) !=
        (0xE3069283u ^ 0xffffffffu))
        die("CRC-32C self-check failed");
    samples = malloc(MAX_SAMPLES * sizeof *samples);
    if (samples == NULL)
        die("out of memory");
    signal(SIGPIPE, SIG_IGN);

    cpu_set_t avail;
    CPU_ZERO(&avail);
    if (sched_getaffinity(0, sizeof avail, &avail) == 0 &&
        CPU_ISSET(0, &avail) && CPU_ISSET(1, &avail))
        pinning = 1;
    pin_to(0);

    char la[64];
    loadavg(la, sizeof la);
    printf("perf: libudprr %s against raw sockets on 127.0.0.1\n",
           udprr_version());
    printf("machine: %ld CPUs online, %d usable; load average %s at start; "
           "%s\n",
           sysconf(_SC_NPROCESSORS_ONLN), CPU_COUNT(&avail), la,
           pinning ? "servers pinned to CPU 1, load to CPU 0"
                   : "NOT pinned (CPUs 0 and 1 are not both usable)");
    udprr_server_opts so;
    lib_server_opts(&so, SRV_LIB_NATIVE);
    printf("settings: %u rounds, %.2f s per cell after a %u ms warm-up; "
           "%u-byte requests (native: +%u-byte header), 8-byte sequence "
           "number at offset 0;\n  raw server batch %u; generator window 1 "
           "(send/recv) and %u (sendmmsg/recvmmsg);\n  libudprr servers: "
           "udprr_server_run, echo handler, reply cache on: %zu entries, "
           "%zu MiB, lifetime %u ms;\n  libudprr clients: defaults, "
           "id-at-offset (0, 8) against the raw server; async: max_window "
           "%u, %u pending\n",
           rounds, seconds, WARMUP_MS, PAYLOAD, HDR, BATCH, BIG_WINDOW,
           so.cache_entries, so.cache_bytes >> 20, so.cache_lifetime_ms,
           BIG_WINDOW, KEEP_PENDING);

    uint64_t t_start = now_us();
    for (unsigned r = 0; r < rounds; r++) {
        for (unsigned i = 0; i < SERVERS; i++)
            run_server_cells((enum server_kind)((r + i) % SERVERS), r,
                             seconds);
        /* The workers pair, its order alternating from round to round. */
        for (unsigned i = 0; i < 2; i++)
            run_workers_cell((enum server_kind)(SRV_LIB_W1 + (r + i) % 2), r,
                             seconds);
        printf("round %u: raw W=64 %.1fk/s, libudprr id %.1fk/s, native "
               "%.1fk/s; raw p50 %.1f us\n",
               r + 1, cells[SRV_RAW][C_W64][r].per_s / 1e3,
               cells[SRV_LIB_ID][C_W64][r].per_s / 1e3,
               cells[SRV_LIB_NATIVE][C_W64][r].per_s / 1e3,
               cells[SRV_RAW][C_W1][r].p50_us);
        printf("round %u: spread %ux%u: workers 1 %.1fk/s, workers 2 "
               "%.1fk/s (requests per worker thread %" PRIu64 " / %" PRIu64
               ")\n",
               r + 1, SPREAD_SOCKS, SPREAD_WINDOW,
               cells[SRV_LIB_W1][C_W64][r].per_s / 1e3,
               cells[SRV_LIB_W2][C_W64][r].per_s / 1e3,
               per_thread[SRV_LIB_W2][r][0], per_thread[SRV_LIB_W2][r][1]);
    }
    loadavg(la, sizeof la);
    printf("%u rounds in %.1f s; load average %s at the end\n\n", rounds,
           (double)(now_us() - t_start) / 1e6, la);

    /* The table: medians; each ratio the median of the rounds' ratios to
     * the raw server's cell (raw generator against the raw ceiling). */
    printf("| what | W=1 req/s | W=64 req/s | W=64 / raw | W=1 p50 us | "
           "p50 / raw | peak RSS | CPU at W=64, server / load |\n");
    printf("|---|---|---|---|---|---|---|---|\n");
    FILE *dat = fopen(datafile, "w");
    if (dat == NULL)
        die("cannot write the data file");
    fprintf(dat, "# perf.c: index, label, W=1 req/s, W=64 req/s, W=64 ratio "
                 "to raw, W=1 p50 us, p50 ratio to raw, peak RSS KiB "
                 "(NaN: not measured)\n");
    uint64_t lost = 0;
    for (unsigned k = 0; k < SERVERS; k++) {
        char a[32], b[32];
        long rss = 0;
        for (unsigned r = 0; r < rounds; r++) {
            if (rss_kib[k][r] > rss)
                rss = rss_kib[k][r];
            for (unsigned c = 0; c < CELLS; c++)
                lost += cells[k][c][r].lost;
        }
        double w1 = value(rounds, (int)k, C_W1, 0);
        double w64 = value(rounds, (int)k, C_W64, 0);
        double p50 = value(rounds, (int)k, C_W1, 1);
        double r64 = ratio(rounds, (int)k, C_W64, 0, SRV_RAW, C_W64);
        double rp = ratio(rounds, (int)k, C_W1, 1, SRV_RAW, C_W1);
        kreq(a, sizeof a, w1);
        kreq(b, sizeof b, w64);
        printf("| server: %s | %s | %s | %.2fx | %.1f | %.2fx | %.1f MiB | "
               "%.0f%% / %.0f%% |\n",
               server_names[k], a, b, r64, p50, rp, rss / 1024.0,
               value(rounds, (int)k, C_W64, 2), value(rounds, (int)k, C_W64, 3));
        fprintf(dat, "%u \"%s\" %.0f %.0f %.3f %.2f %.3f %ld\n", k,
                server_labels[k], w1, w64, r64, p50, rp, rss);
    }
    {
        char a[32];
        double w1 = value(rounds, SRV_RAW, C_BLOCK, 0);
        double p50 = value(rounds, SRV_RAW, C_BLOCK, 1);
        double rp = ratio(rounds, SRV_RAW, C_BLOCK, 1, SRV_RAW, C_W1);
        kreq(a, sizeof a, w1);
        printf("| client: libudprr blocking -> raw echo (vs raw send/recv "
               "ping-pong) | %s | - | - | %.1f | %.2fx | - | - |\n", a, p50, rp);
        fprintf(dat, "4 \"blocking client|-> raw\" %.0f NaN NaN %.2f %.3f "
                     "NaN\n", w1, p50, rp);
    }
    {
        char a[32];
        double w64 = value(rounds, SRV_RAW, C_ASYNC, 0);
        double r64 = ratio(rounds, SRV_RAW, C_ASYNC, 0, SRV_RAW, C_W64);
        kreq(a, sizeof a, w64);
        printf("| client: libudprr async W=64 -> raw echo (vs raw "
               "generator) | - | %s | %.2fx | - | - | - | - |\n", a, r64);
        fprintf(dat, "5 \"async client|-> raw\" NaN %.0f %.3f NaN NaN "
                     "NaN\n", w64, r64);
        w64 = value(rounds, SRV_LIB_NATIVE, C_ASYNC, 0);
        r64 = ratio(rounds, SRV_LIB_NATIVE, C_ASYNC, 0, SRV_RAW, C_W64);
        kreq(a, sizeof a, w64);
        printf("| both: libudprr async W=64 -> libudprr native server | - | "
               "%s | %.2fx | - | - | - | - |\n", a, r64);
        fprintf(dat, "6 \"async client|-> native\" NaN %.0f %.3f "
                     "NaN NaN NaN\n", w64, r64);
    }
    fclose(dat);
    printf("\nworkers (udprr_server_opts.workers), driven by the spread "
           "generator: %u connected sockets (%u source ports) x window %u "
           "= %u in flight, one thread, %s\n",
           SPREAD_SOCKS, SPREAD_SOCKS, SPREAD_WINDOW,
           SPREAD_SOCKS * SPREAD_WINDOW,
           pinning ? "on CPU 0; the workers-1 server on CPU 1, the "
                     "workers-2 server on CPUs 0 and 1 (so one of its "
                     "workers shares CPU 0 with the generator)"
                   : "nothing pinned");
    printf("| what | spread W=%u req/s | workers 2 / workers 1 | peak RSS | "
           "CPU, server / load |\n|---|---|---|---|---|\n",
           SPREAD_SOCKS * SPREAD_WINDOW);
    for (unsigned k = SRV_LIB_W1; k <= SRV_LIB_W2; k++) {
        char a[32], b[32] = "1.00x (reference)";
        long rss = 0;
        for (unsigned r = 0; r < rounds; r++) {
            if (rss_kib[k][r] > rss)
                rss = rss_kib[k][r];
            lost += cells[k][C_W64][r].lost;
        }
        kreq(a, sizeof a, value(rounds, (int)k, C_W64, 0));
        if (k == SRV_LIB_W2)
            snprintf(b, sizeof b, "%.2fx",
                     ratio(rounds, (int)k, C_W64, 0, SRV_LIB_W1, C_W64));
        printf("| server: %s | %s | %s | %.1f MiB | %.0f%% / %.0f%% |\n",
               server_names[k], a, b, rss / 1024.0,
               value(rounds, (int)k, C_W64, 2),
               value(rounds, (int)k, C_W64, 3));
    }
    printf("workers 2 / workers 1: median over the rounds of the ratio in "
           "the round; the cache bounds hold per worker (workers 2: twice "
           "the memory). CPU: the server process's CPU time (all its "
           "threads) and the generator's, over wall time.\n");
    printf("\nratios: median over the rounds of each round's ratio to the raw "
           "generator against the raw ceiling (the first row) in that round.\n");
    printf("peak RSS: VmHWM of the server process, the largest over the "
           "rounds; the cache's bound: %zu entries x (%u + %u bytes) "
           "accounted = %.1f MiB (cache_bytes %zu MiB)\n",
           so.cache_entries, UDPRR_CACHE_ENTRY_OVERHEAD, PAYLOAD,
           so.cache_entries * (double)(UDPRR_CACHE_ENTRY_OVERHEAD + PAYLOAD) /
               1048576.0,
           so.cache_bytes >> 20);
    for (unsigned k = SRV_LIB_ID; k <= SRV_LIB_W2; k++)
        printf("%s, last round: received %" PRIu64 ", answered %" PRIu64
               ", cache hits %" PRIu64 ", cached %" PRIu64 " (%.1f MiB), "
               "evicted %" PRIu64 "\n",
               server_names[k], lib_stats[k].received, lib_stats[k].answered,
               lib_stats[k].cache_hits, lib_stats[k].cache_entries,
               lib_stats[k].cache_bytes / 1048576.0,
               lib_stats[k].cache_evicted);
    uint64_t retx_raw = 0, retx_native = 0;
    for (unsigned r = 0; r < rounds; r++) {
        retx_raw += cells[SRV_RAW][C_ASYNC][r].retransmissions;
        retx_native += cells[SRV_LIB_NATIVE][C_ASYNC][r].retransmissions;
    }
    printf("async libudprr client, retransmissions over all rounds: %" PRIu64
           " against the raw server, %" PRIu64 " against libudprr's native "
           "one\n", retx_raw, retx_native);
    printf("requests given up on (lost on loopback, not failures): %" PRIu64
           "\n", lost);
    printf("data: %s\n", datafile);
    const char *st = getenv("STRACE");
    if (st != NULL && strcmp(st, "1") == 0)
        strace_pass(seconds);
    if (failures) {
        printf("FAIL: %u wrong replies or errors\n", failures);
        return 1;
    }
    return 0;
}
