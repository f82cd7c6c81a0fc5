/* SPDX-License-Identifier: MIT */
/*
 * udp_remote.c - the textbook's "UDP server and client on different
 * machines" pair, redone on libudprr.
 *
 * The server may pretend to drop a seeded fraction of requests, as the
 * textbook's does, to show the client's retries at work. The client prints
 * each wait it makes, taken from the library's own schedule through the
 * per-attempt hook: nothing here computes a timeout.
 *
 * With --key FILE both ends seal every datagram with the 32-byte key in
 * FILE (the sealed mode: encrypted, authenticated, replays refused); a
 * peer without the same key and key ID gets no answer.
 *
 *   udp_remote server [INTERFACE] [-p PORT] [--drop P] [--seed S] [--seconds N]
 *                     [--key FILE [--key-id N]]
 *   udp_remote client HOST [-p PORT] [--count N] [--text T] [--deadline MS]
 *                     [--key FILE [--key-id N]]
 *
 * Build: cc udp_remote.c $(pkg-config --cflags --libs udprr)
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <udprr.h>

#include "example_util.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: udp_remote server [INTERFACE] [-p PORT] [--drop P] "
            "[--seed S] [--seconds N]\n"
            "                         [--key FILE [--key-id N]]\n"
            "       udp_remote client HOST [-p PORT] [--count N] [--text T] "
            "[--deadline MS]\n"
            "                         [--key FILE [--key-id N]]\n"
            "\n"
            "server: answers \"Your data was N bytes long\"; with --drop P it\n"
            "        pretends to drop that fraction (0..1) of requests, drawn\n"
            "        from seed S, and says so. INTERFACE is an address to\n"
            "        bind (default: every interface); --seconds N stops it\n"
            "        after N seconds (default: run until SIGINT/SIGTERM).\n"
            "client: sends --count requests (default 1) of text T and prints\n"
            "        every wait the library makes, the reply, and the RTO as\n"
            "        it adapts; --deadline bounds each request (default 10000).\n"
            "-p PORT defaults to 1060, as in the textbook; 0 picks a free one\n"
            "(server).\n"
            "--key FILE seals every datagram (the sealed mode) with the %d\n"
            "        bytes in FILE, which only its owner may read: make one with\n"
            "        (umask 077; head -c %d /dev/urandom > FILE) and give both\n"
            "        ends a copy. --key-id N names it on the wire (default 1);\n"
            "        both ends must agree. A server answers only requests sealed\n"
            "        with its key; a client with another key times out.\n",
            UDPRR_KEY_BYTES, UDPRR_KEY_BYTES);
}

/* --- the key ------------------------------------------------------------- */

/* Reads --key FILE into *key: exactly UDPRR_KEY_BYTES bytes, from a
 * regular file its group and others have no access to (a key anyone on
 * the machine can read is no secret). Says why not on stderr and returns
 * -1 otherwise. */
static int read_key_file(const char *path, uint32_t id, udprr_key *key)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0) {
        fprintf(stderr, "udp_remote: cannot open key file %s: %s\n", path,
                strerror(errno));
        return -1;
    }
    struct stat st;
    const char *wrong = NULL;
    if (fstat(fd, &st) != 0)
        wrong = strerror(errno);
    else if (!S_ISREG(st.st_mode))
        wrong = "not a regular file";
    if (wrong == NULL && (st.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        fprintf(stderr,
                "udp_remote: key file %s is open to its group or others "
                "(mode %04o): a key must be readable by its owner only "
                "(chmod 600 %s)\n",
                path, (unsigned)(st.st_mode & 07777), path);
        close(fd);
        return -1;
    }
    if (wrong == NULL && st.st_size != UDPRR_KEY_BYTES) {
        fprintf(stderr,
                "udp_remote: key file %s holds %lld bytes; a key is exactly "
                "%d (head -c %d /dev/urandom makes one)\n",
                path, (long long)st.st_size, UDPRR_KEY_BYTES,
                UDPRR_KEY_BYTES);
        close(fd);
        return -1;
    }
    size_t got = 0;
    while (wrong == NULL && got < sizeof key->secret) {
        ssize_t n = read(fd, key->secret + got, sizeof key->secret - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            wrong = strerror(errno);
        else if (n == 0)
            wrong = "shorter than it was a moment ago";
        else
            got += (size_t)n;
    }
    close(fd);
    if (wrong != NULL) {
        fprintf(stderr, "udp_remote: cannot read key file %s: %s\n", path,
                wrong);
        explicit_bzero(key->secret, sizeof key->secret);
        return -1;
    }
    key->id = id;
    return 0;
}

/* --- server -------------------------------------------------------------- */

struct server_state {
    uint64_t rng;
    double drop;
};

/* A seeded generator, so a run with the same seed drops the same requests. */
static double next_uniform(uint64_t *state)
{
    uint64_t x = *state ? *state : 1;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return (double)((x * 0x2545F4914F6CDD1Dull) >> 11) / 9007199254740992.0;
}

static int serve(void *user, const udprr_request *req, void *reply,
                 size_t reply_cap, size_t *reply_len)
{
    struct server_state *st = user;
    char peer[EXAMPLE_ADDR_MAX];
    example_format_addr(req->peer, peer, sizeof peer);
    if (next_uniform(&st->rng) < st->drop) {
        printf("Pretending to drop request %016llx attempt %u from %s\n",
               (unsigned long long)req->id, req->attempt, peer);
        fflush(stdout);
        return UDPRR_NO_REPLY;
    }
    printf("The client at %s says '%.*s' (request %016llx attempt %u)\n", peer,
           (int)(req->len > 200 ? 200 : req->len), (const char *)req->data,
           (unsigned long long)req->id, req->attempt);
    fflush(stdout);
    int n = snprintf(reply, reply_cap, "Your data was %zu bytes long",
                     req->len);
    *reply_len = (size_t)n;
    return UDPRR_REPLY;
}

/* key NULL: plain datagrams. The library copies the key at open; this
 * copy is wiped then. */
static int run_server(const char *interface, const char *port, double drop,
                      uint64_t seed, unsigned seconds, udprr_key *key)
{
    udprr_server_opts opts;
    udprr_server_opts_init(&opts);
    if (key != NULL) {
        opts.keys = key;
        opts.n_keys = 1;
    }
    udprr_server *server;
    int rc = udprr_server_open(&server, interface, port, &opts);
    uint32_t key_id = key ? key->id : 0;
    if (key != NULL)
        explicit_bzero(key->secret, sizeof key->secret);
    if (rc != UDPRR_OK) {
        fprintf(stderr, "udp_remote: cannot serve on port %s: %s\n", port,
                udprr_strerror(rc));
        return 1;
    }
    example_print_listening_no_newline(server);
    if (key != NULL)
        printf(", sealed with key ID %lu", (unsigned long)key_id);
    if (drop > 0)
        printf(", pretending to drop %.0f%% of requests (seed %llu)",
               drop * 100, (unsigned long long)seed);
    printf("\n");
    fflush(stdout);
    example_stop_on_signals(server, seconds);

    struct server_state st = {seed, drop};
    rc = udprr_server_run(server, serve, &st);
    example_forget_signals();

    struct udprr_server_stats s = {.size = sizeof s};
    udprr_server_stats(server, &s);
    printf("Server stats: %llu datagrams received, %llu handler calls, "
           "%llu pretended drops, %llu answers sent, %llu from the reply "
           "cache, %llu malformed; cache holds %llu answers in %llu bytes\n",
           (unsigned long long)s.received, (unsigned long long)s.handled,
           (unsigned long long)s.not_answered,
           (unsigned long long)s.answered, (unsigned long long)s.cache_hits,
           (unsigned long long)s.dropped_malformed,
           (unsigned long long)s.cache_entries,
           (unsigned long long)s.cache_bytes);
    /* Sealed: what came without the key, or too late, never reached the
     * handler and got no answer. */
    if (key != NULL)
        printf("Sealed: %llu datagrams did not open with the key "
               "(dropped_auth), %llu requests outside the replay window "
               "(dropped_clock)\n",
               (unsigned long long)s.dropped_auth,
               (unsigned long long)s.dropped_clock);
    udprr_server_close(server);
    return rc == UDPRR_OK ? 0 : 1;
}

/* --- client -------------------------------------------------------------- */

static void on_attempt(void *user, const udprr_attempt_info *info)
{
    (void)user;
    /* Every time in milliseconds, the wait beside the RTO it came from. */
    printf("  attempt %u: sent %zu bytes; waiting up to %.1f ms for a reply "
           "(RTO %.1f ms)\n",
           info->attempt, info->len, info->wait_us / 1e3,
           info->rto_us / 1e3);
}

/* key NULL: plain datagrams. The key is wiped once the library has its
 * copy. */
static int run_client(const char *host, const char *port, unsigned count,
                      const char *text, unsigned deadline_ms, udprr_key *key)
{
    udprr_client_opts opts;
    udprr_client_opts_init(&opts);
    opts.deadline_ms = deadline_ms;
    opts.on_attempt = on_attempt;
    opts.key = key;
    udprr_client *c;
    int rc = udprr_client_open(&c, host, port, &opts);
    uint32_t key_id = key ? key->id : 0;
    if (key != NULL)
        explicit_bzero(key->secret, sizeof key->secret);
    if (rc != UDPRR_OK) {
        fprintf(stderr, "udp_remote: cannot reach %s port %s: %s\n", host,
                port, udprr_strerror(rc));
        return 1;
    }
    int status = 0;
    for (unsigned i = 1; i <= count; i++) {
        char reply[256];
        size_t len = 0;
        printf("Request %u: '%s'\n", i, text);
        rc = udprr_client_request(c, text, strlen(text), reply,
                                  sizeof reply - 1, &len);
        if (rc == UDPRR_OK) {
            reply[len] = '\0';
            printf("  The server says '%s'\n", reply);
        } else if (rc == UDPRR_ETIMEDOUT && key != NULL) {
            printf("  I think the server is down, or does not hold key "
                   "ID %lu\n",
                   (unsigned long)key_id);
            status = 1;
            break;
        } else if (rc == UDPRR_ETIMEDOUT) {
            printf("  I think the server is down\n");
            status = 1;
            break;
        } else {
            printf("  %s: %s\n", udprr_status_name(rc), udprr_strerror(rc));
            status = 1;
            break;
        }
    }
    struct udprr_client_stats s = {.size = sizeof s};
    udprr_client_stats(c, &s);
    printf("Client stats: %llu requests, %llu completed, %llu datagrams sent "
           "(%llu retransmissions), %llu timeouts; SRTT %.3f ms, RTTVAR %.3f "
           "ms, RTO %.1f ms\n",
           (unsigned long long)s.requests, (unsigned long long)s.completed,
           (unsigned long long)s.attempts,
           (unsigned long long)s.retransmissions,
           (unsigned long long)s.timeouts, s.srtt_us / 1e3, s.rttvar_us / 1e3,
           s.rto_us / 1e3);
    if (key != NULL)
        printf("Sealed: %llu datagrams did not open with the key "
               "(dropped_auth)\n",
               (unsigned long long)s.dropped_auth);
    udprr_client_close(c);
    return status;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"port", required_argument, NULL, 'p'},
        {"drop", required_argument, NULL, 'd'},
        {"seed", required_argument, NULL, 's'},
        {"seconds", required_argument, NULL, 'S'},
        {"count", required_argument, NULL, 'c'},
        {"text", required_argument, NULL, 't'},
        {"deadline", required_argument, NULL, 'D'},
        {"key", required_argument, NULL, 'k'},
        {"key-id", required_argument, NULL, 'K'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *port = "1060", *text = "This is my message";
    const char *key_file = NULL, *key_id_arg = NULL;
    double drop = 0;
    uint64_t seed = 1;
    unsigned seconds = 0, count = 1, deadline_ms = 10000, key_id = 1;
    int opt;

    setvbuf(stdout, NULL, _IOLBF, 0);
    while ((opt = getopt_long(argc, argv, "p:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'p': port = optarg; break;
        case 'd': drop = atof(optarg); break;
        case 's': seed = strtoull(optarg, NULL, 10); break;
        case 'S': seconds = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'c': count = (unsigned)strtoul(optarg, NULL, 10); break;
        case 't': text = optarg; break;
        case 'D': deadline_ms = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'k': key_file = optarg; break;
        case 'K': key_id_arg = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind >= argc || drop < 0 || drop > 1 ||
        (key_id_arg != NULL &&
         (key_file == NULL ||
          example_parse_uint(key_id_arg, 0, UINT32_MAX, &key_id) != 0))) {
        usage(stderr);
        return 2;
    }
    udprr_key key;
    if (key_file != NULL && read_key_file(key_file, key_id, &key) != 0)
        return 2;
    udprr_key *sealed = key_file != NULL ? &key : NULL;
    const char *role = argv[optind];
    const char *where = optind + 1 < argc ? argv[optind + 1] : NULL;
    int rc = 2;
    if (strcmp(role, "server") == 0)
        rc = run_server(where, port, drop, seed, seconds, sealed);
    else if (strcmp(role, "client") == 0 && where != NULL)
        rc = run_client(where, port, count, text, deadline_ms, sealed);
    else
        usage(stderr);
    if (sealed != NULL)
        explicit_bzero(&key, sizeof key);
    return rc;
}
