/* SPDX-License-Identifier: MIT */
/*
 * flood.c - the flood that tests/flood-test.sh judges (issue 14): a
 * libudprr server in a child process with a small reply cache, a flood of
 * distinct valid native requests fired at it from a few sockets as fast
 * as the kernel takes them, and a libudprr client whose requests, made
 * while the flood runs, must all be answered.
 *
 *   flood [-n COUNT] [-t SECONDS]
 *
 * COUNT requests (default 1000000), each with its own ID; the flood stops
 * after SECONDS (default 60) whatever happens. The first half are small
 * requests that ask for 16-byte answers (so the cache fills its entry
 * bound), the second half 1000-byte ones answered with their own bytes
 * (so it fills its byte bound). No answer is larger than its request, so
 * no guard against amplification has cause to cut one.
 *
 * It measures; the script judges. It prints (every figure "name N"):
 *   flood: limits cache_entries N cache_bytes N
 *   flood: idle rss_kb N
 *   flood: sent N of N in_ms N send_errors N
 *   flood: client requests N during_flood N answered N wrong N
 *          retransmissions N first_failure NAME
 *   flood: after peak_rss_kb N rss_kb N     (VmHWM, VmRSS of the server)
 *   server: received N handled N cache_hits N evicted N expired N
 *           max_entries N max_bytes N entries N bytes N samples N
 *           (one line: the server's counters after the flood, and the
 *           largest cache figures it read while it ran)
 * and exits 0 when it could measure, 1 when something could not be set
 * up or the server's process did not end as asked.
 *
 * Traffic goes to 127.0.0.1 only; every loop is bounded in count and
 * time.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include "udprr.h"
#include "wire.h"

#define CACHE_ENTRIES 1024
#define CACHE_BYTES (1024 * 1024)
#define SENDER_SOCKETS 4
#define BATCH 64
#define SMALL_BODY 32    /* a request of the first half */
#define BIG_BODY 1000     /* of the second half */
#define SMALL_ANSWER 16
#define CLIENT_DEADLINE_MS 30000
#define CLIENT_MAX_REQUESTS 60000
#define SERVER_MAX_SECONDS 300 /* the child ends by itself after this */

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* --- the server's process ---------------------------------------------- */

/* The body's first byte says what to answer: 'B' the body itself, else
 * its first 16 bytes (padded with 'p' to 16). */
static int flood_handler(void *user, const udprr_request *req, void *reply,
                         size_t cap, size_t *reply_len)
{
    (void)user;
    size_t len = req->len > 0 && ((const char *)req->data)[0] == 'B'
                     ? req->len
                     : SMALL_ANSWER;
    if (len > cap)
        return UDPRR_DECLINE;
    size_t copied = req->len < len ? req->len : len;
    memcpy(reply, req->data, copied);
    memset((char *)reply + copied, 'p', len - copied);
    *reply_len = len;
    return UDPRR_REPLY;
}

struct served {
    udprr_server *server;
    int status;
};

static void *serve_main(void *arg)
{
    struct served *sv = arg;
    sv->status = udprr_server_run(sv->server, flood_handler, NULL);
    return NULL;
}

/* Opens the server, tells the parent its port on ready_fd, then reads
 * the cache's figures every millisecond (through udprr_server_stats, as
 * any thread may) until control_fd closes; then stops and prints. */
static int server_process(int ready_fd, int control_fd)
{
    udprr_server_opts o;
    udprr_server_opts_init(&o);
    o.cache_entries = CACHE_ENTRIES;
    o.cache_bytes = CACHE_BYTES;
    udprr_server *s;
    int rc = udprr_server_open(&s, "127.0.0.1", "0", &o);
    if (rc != UDPRR_OK) {
        fprintf(stderr, "flood: server: %s\n", udprr_strerror(rc));
        return 1;
    }
    struct sockaddr_in addr;
    socklen_t addr_len = sizeof addr;
    struct served sv = {s, UDPRR_OK};
    pthread_t thread;
    if (udprr_server_sockname(s, (struct sockaddr *)&addr, &addr_len) !=
            UDPRR_OK ||
        pthread_create(&thread, NULL, serve_main, &sv) != 0) {
        fprintf(stderr, "flood: server: cannot start\n");
        udprr_server_close(s);
        return 1;
    }
    unsigned short port = ntohs(addr.sin_port);
    if (write(ready_fd, &port, sizeof port) != (ssize_t)sizeof port)
        fprintf(stderr, "flood: server: cannot report its port\n");
    close(ready_fd);

    uint64_t max_entries = 0, max_bytes = 0, samples = 0;
    uint64_t end = now_ms() + SERVER_MAX_SECONDS * 1000u;
    for (;;) {
        struct udprr_server_stats st = {.size = sizeof st};
        udprr_server_stats(s, &st);
        if (st.cache_entries > max_entries)
            max_entries = st.cache_entries;
        if (st.cache_bytes > max_bytes)
            max_bytes = st.cache_bytes;
        samples++;
        struct pollfd p = {control_fd, POLLIN, 0};
        if (poll(&p, 1, 1) != 0 || now_ms() >= end)
            break; /* the parent closed it (or poll failed): done */
    }
    udprr_server_stop(s);
    pthread_join(thread, NULL);
    struct udprr_server_stats st = {.size = sizeof st};
    udprr_server_stats(s, &st);
    if (st.cache_entries > max_entries)
        max_entries = st.cache_entries;
    if (st.cache_bytes > max_bytes)
        max_bytes = st.cache_bytes;
    printf("server: received %llu handled %llu cache_hits %llu evicted %llu "
           "expired %llu max_entries %llu max_bytes %llu entries %llu "
           "bytes %llu samples %llu run_status %d\n",
           (unsigned long long)st.received, (unsigned long long)st.handled,
           (unsigned long long)st.cache_hits,
           (unsigned long long)st.cache_evicted,
           (unsigned long long)st.cache_expired,
           (unsigned long long)max_entries, (unsigned long long)max_bytes,
           (unsigned long long)st.cache_entries,
           (unsigned long long)st.cache_bytes, (unsigned long long)samples,
           sv.status);
    fflush(stdout);
    udprr_server_close(s);
    return 0;
}

/* A field of /proc/PID/status in kB ("VmRSS", "VmHWM"); -1 if absent. */
static long proc_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%ld/status", (long)pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    long kb = -1;
    size_t flen = strlen(field);
    while (fgets(line, sizeof line, f) != NULL)
        if (strncmp(line, field, flen) == 0 && line[flen] == ':') {
            kb = strtol(line + flen + 1, NULL, 10);
            break;
        }
    fclose(f);
    return kb;
}

/* --- the client during the flood --------------------------------------- */

struct client_run {
    const char *port;
    atomic_int flood_running; /* 1 while the sender sends */
    atomic_int flood_over;
    uint64_t stop_at_ms;      /* whatever happens */
    unsigned requests, during, answered, wrong;
    uint64_t retransmissions; /* the client's, all its requests */
    int first_failure;
};

/* One request; 1 if the right answer came. */
static int ask(udprr_client *c, unsigned n, int *status)
{
    char body[32], want[SMALL_ANSWER], got[SMALL_ANSWER + 1];
    int len = snprintf(body, sizeof body, "Sclient %u", n);
    memset(want, 'p', sizeof want);
    memcpy(want, body, (size_t)len);
    size_t got_len = 0;
    *status = udprr_client_request(c, body, (size_t)len, got, sizeof got,
                                   &got_len);
    return *status == UDPRR_OK && got_len == sizeof want &&
           memcmp(got, want, sizeof want) == 0;
}

static void *client_main(void *arg)
{
    struct client_run *cr = arg;
    udprr_client_opts o;
    udprr_client_opts_init(&o);
    o.deadline_ms = CLIENT_DEADLINE_MS;
    o.initial_rto_ms = 100;
    udprr_client *c = NULL;
    int rc = udprr_client_open(&c, "127.0.0.1", cr->port, &o);
    if (rc != UDPRR_OK) {
        cr->first_failure = rc;
        return NULL;
    }
    /* From the flood's start to its end; at least one request. */
    while (!atomic_load(&cr->flood_running) && !atomic_load(&cr->flood_over) &&
           now_ms() < cr->stop_at_ms) {
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
    do {
        int during = atomic_load(&cr->flood_running);
        int status;
        cr->requests++;
        cr->during += during;
        if (ask(c, cr->requests, &status))
            cr->answered++;
        else {
            cr->wrong++;
            if (cr->first_failure == 0)
                cr->first_failure = status != UDPRR_OK ? status : 1;
        }
        /* A request a millisecond at most: one client among the flood's
         * senders, not a second flood. */
        struct timespec pace = {0, 1000000};
        nanosleep(&pace, NULL);
    } while (!atomic_load(&cr->flood_over) &&
             cr->requests < CLIENT_MAX_REQUESTS && now_ms() < cr->stop_at_ms);
    struct udprr_client_stats st = {.size = sizeof st};
    if (udprr_client_stats(c, &st) == UDPRR_OK)
        cr->retransmissions = st.retransmissions;
    udprr_client_close(c);
    return NULL;
}

/* --- the flood --------------------------------------------------------- */

struct flood_result {
    uint64_t sent, send_errors, in_ms;
};

static void flood(unsigned short port, uint64_t count, unsigned seconds,
                  struct client_run *cr, struct flood_result *out)
{
    struct sockaddr_in to;
    memset(&to, 0, sizeof to);
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int fds[SENDER_SOCKETS];
    for (int i = 0; i < SENDER_SOCKETS; i++) {
        fds[i] = socket(AF_INET, SOCK_DGRAM, 0);
        if (fds[i] < 0 ||
            connect(fds[i], (struct sockaddr *)&to, sizeof to) != 0) {
            perror("flood: sender socket");
            exit(1);
        }
    }
    static uint8_t datagrams[BATCH][UDPRR__WIRE_HEADER_BYTES + BIG_BODY];
    struct iovec iov[BATCH];
    struct mmsghdr msgs[BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = datagrams[i];
        iov[i].iov_len = sizeof datagrams[i];
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }

    uint64_t start = now_ms(), stop_at = start + (uint64_t)seconds * 1000u;
    uint64_t next_id = 1; /* IDs 1..count: every request distinct */
    uint64_t sent = 0, errors = 0;
    unsigned turn = 0;
    atomic_store(&cr->flood_running, 1);
    while (sent < count && now_ms() < stop_at) {
        /* The batch from the next unsent ID: the IDs of datagrams the
         * kernel would not take are sent again, so every ID goes once. */
        unsigned n = count - sent < BATCH ? (unsigned)(count - sent) : BATCH;
        for (unsigned i = 0; i < n; i++) {
            uint64_t id = next_id + i;
            uint8_t *body = datagrams[i] + UDPRR__WIRE_HEADER_BYTES;
            size_t len = id <= count / 2 ? SMALL_BODY : BIG_BODY;
            memset(body, '.', len);
            body[0] = len == SMALL_BODY ? 'S' : 'B';
            snprintf((char *)body + 1, len - 1, "flood %llu",
                     (unsigned long long)id);
            struct udprr__wire_header h = {UDPRR__KIND_REQUEST, 1, id};
            udprr__wire_encode(&h, body, len, datagrams[i]);
            iov[i].iov_len = UDPRR__WIRE_HEADER_BYTES + len;
        }
        int got = sendmmsg(fds[turn++ % SENDER_SOCKETS], msgs, n,
                           MSG_DONTWAIT);
        if (got > 0) {
            sent += (uint64_t)got;
            next_id += (uint64_t)got;
        } else {
            /* ENOBUFS, EAGAIN: the kernel takes no more for now. */
            errors++;
            struct pollfd p = {fds[turn % SENDER_SOCKETS], POLLOUT, 0};
            poll(&p, 1, 1);
        }
    }
    out->in_ms = now_ms() - start;
    out->sent = sent;
    out->send_errors = errors;
    atomic_store(&cr->flood_running, 0);
    atomic_store(&cr->flood_over, 1);
    for (int i = 0; i < SENDER_SOCKETS; i++)
        close(fds[i]);
}

static int warm_up(const char *port)
{
    /* A few requests of each size, so the idle figure includes what
     * serving touches once (buffers, the handler's path, the cache's
     * first blocks). */
    udprr_client *c = NULL;
    if (udprr_client_open(&c, "127.0.0.1", port, NULL) != UDPRR_OK)
        return -1;
    int ok = 0;
    char got[BIG_BODY];
    for (int i = 0; i < 8; i++) {
        size_t got_len;
        const char *body = i % 2 ? "Bwarm up" : "Swarm up";
        ok += udprr_client_request(c, body, 8, got, sizeof got, &got_len) ==
              UDPRR_OK;
    }
    udprr_client_close(c);
    return ok == 8 ? 0 : -1;
}

int main(int argc, char **argv)
{
    uint64_t count = 1000000;
    unsigned seconds = 60;
    int opt;
    while ((opt = getopt(argc, argv, "n:t:")) != -1) {
        if (opt == 'n')
            count = strtoull(optarg, NULL, 10);
        else if (opt == 't')
            seconds = (unsigned)strtoul(optarg, NULL, 10);
        else {
            fprintf(stderr, "usage: flood [-n COUNT] [-t SECONDS]\n");
            return 2;
        }
    }
    if (count < 2 || seconds < 1) {
        fprintf(stderr, "flood: COUNT >= 2, SECONDS >= 1\n");
        return 2;
    }

    int ready[2], control[2];
    if (pipe(ready) != 0 || pipe(control) != 0) {
        perror("flood: pipe");
        return 1;
    }
    fflush(stdout);
    pid_t child = fork();
    if (child < 0) {
        perror("flood: fork");
        return 1;
    }
    if (child == 0) {
        close(ready[0]);
        close(control[1]);
        _exit(server_process(ready[1], control[0]));
    }
    close(ready[1]);
    close(control[0]);
    unsigned short port_number = 0;
    struct pollfd rp = {ready[0], POLLIN, 0};
    if (poll(&rp, 1, 10000) != 1 ||
        read(ready[0], &port_number, sizeof port_number) !=
            (ssize_t)sizeof port_number) {
        fprintf(stderr, "flood: the server did not start\n");
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        return 1;
    }
    close(ready[0]);
    char port[16];
    snprintf(port, sizeof port, "%u", port_number);
    printf("flood: limits cache_entries %d cache_bytes %d\n", CACHE_ENTRIES,
           CACHE_BYTES);

    int failed = warm_up(port) != 0;
    if (failed)
        fprintf(stderr, "flood: the server did not answer before the flood\n");
    long idle_kb = proc_kb(child, "VmRSS");
    printf("flood: idle rss_kb %ld\n", idle_kb);
    fflush(stdout);

    struct client_run cr;
    memset(&cr, 0, sizeof cr);
    cr.port = port;
    cr.stop_at_ms = now_ms() + (uint64_t)seconds * 1000u;
    pthread_t client;
    struct flood_result fr = {0, 0, 0};
    if (!failed && pthread_create(&client, NULL, client_main, &cr) == 0) {
        flood(port_number, count, seconds, &cr, &fr);
        pthread_join(client, NULL);
    } else {
        failed = 1;
    }
    printf("flood: sent %llu of %llu in_ms %llu send_errors %llu\n",
           (unsigned long long)fr.sent, (unsigned long long)count,
           (unsigned long long)fr.in_ms, (unsigned long long)fr.send_errors);
    printf("flood: client requests %u during_flood %u answered %u wrong %u "
           "retransmissions %llu first_failure %s\n",
           cr.requests, cr.during, cr.answered, cr.wrong,
           (unsigned long long)cr.retransmissions,
           cr.first_failure == 0 ? "none"
           : cr.first_failure == 1
               ? "wrong bytes"
               : udprr_status_name(cr.first_failure));
    printf("flood: after peak_rss_kb %ld rss_kb %ld\n",
           proc_kb(child, "VmHWM"), proc_kb(child, "VmRSS"));
    fflush(stdout);

    /* Closing the pipe stops the server's process; bounded, then killed. */
    close(control[1]);
    int status = 0;
    pid_t done = 0;
    for (int i = 0; i < 1000 && done == 0; i++) {
        done = waitpid(child, &status, WNOHANG);
        if (done == 0) {
            struct timespec pause = {0, 10000000};
            nanosleep(&pause, NULL);
        }
    }
    if (done == 0) {
        fprintf(stderr, "flood: the server's process did not end; killed\n");
        kill(child, SIGKILL);
        waitpid(child, &status, 0);
        return 1;
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        failed = 1;
    return failed;
}
