/* SPDX-License-Identifier: MIT */
/*
 * udprr-relay.c - the impairment relay (relay.h) as a program of its own:
 * put it between any UDP client and a server on this machine, and it drops,
 * duplicates, delays, reorders, damages and cuts datagrams as told, each
 * direction on its own, from a seed. docs/relay.md is its manual.
 *
 * It needs neither Check nor libudprr: build/udprr-relay is built from this
 * file, impair.c and relay.c alone. It always stops by itself (--seconds).
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "relay.h"

#define DEFAULT_SECONDS 60
/* How often the main thread looks at the signal flag while it waits. */
#define SIGNAL_CHECK_MS 50

static void usage(FILE *out)
{
    fprintf(out,
"usage: udprr-relay --listen PORT --server HOST:PORT [options]\n"
"\n"
"Relays UDP between clients and one server on this machine, impairing each\n"
"direction independently, decided from a seed.\n"
"\n"
"  --listen PORT        port clients send to, on the loopback address of the\n"
"                       server's family (0: any free port, printed at start)\n"
"  --server HOST:PORT   the server: 127.x.y.z, ::1 (as [::1]:PORT) or\n"
"                       localhost; anything not loopback is refused\n"
"  --seed S             seed for every decision (default 1); the same seed,\n"
"                       options and traffic give the same decisions\n"
"  --seconds N          stop after N seconds (default %d)\n"
"  --count N            stop once N datagrams (both directions) have come in\n"
"                       and every copy due has left (default: no limit)\n"
"  --log                print one line per datagram: what was done to it\n"
"  --help               this text\n"
"\n"
"Impairments (P is a probability 0..1, kept to 3 decimals; MS milliseconds,\n"
"fractions allowed). Each applies to both directions, or, after --to-server\n"
"or --to-client, to that direction only, until the next of --to-server,\n"
"--to-client or --both; a later setting replaces an earlier one.\n"
"\n"
"  --drop P             lose the datagram\n"
"  --dup P              send it twice\n"
"  --delay MS           hold every datagram this long\n"
"  --jitter MS          plus a uniform extra 0..MS, for each copy\n"
"  --reorder P          hold it back an extra --reorder-delay, so datagrams\n"
"                       arriving meanwhile overtake it\n"
"  --reorder-delay MS   (default 10)\n"
"  --corrupt P          flip 1..--corrupt-bytes distinct bytes\n"
"  --corrupt-bytes N    (default 1, at most 16)\n"
"  --truncate P         cut it to a random shorter length, possibly 0\n"
"  --blackhole START_MS:LEN_MS\n"
"                       lose everything in the relay from START_MS after the\n"
"                       relay starts, for LEN_MS, then recover\n"
"\n"
"docs/relay.md describes each impairment exactly.\n",
            DEFAULT_SECONDS);
}

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = sig;
}

/* ---- parsing -------------------------------------------------------------- */

static int fail(const char *option, const char *value, const char *why)
{
    fprintf(stderr, "udprr-relay: %s %s: %s\n", option, value, why);
    return -1;
}

static int parse_unsigned(const char *option, const char *text, uint64_t max,
                          uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (end == text || *end != '\0' || text[0] == '-' || errno != 0 ||
        v > max)
        return fail(option, text, "not a whole number in range");
    *out = v;
    return 0;
}

static int parse_permille(const char *option, const char *text,
                          unsigned *out)
{
    char *end;
    errno = 0;
    double p = strtod(text, &end);
    if (end == text || *end != '\0' || errno != 0 || !(p >= 0 && p <= 1))
        return fail(option, text, "not a probability from 0 to 1");
    *out = (unsigned)(p * IMPAIR_PERMILLE_MAX + 0.5);
    return 0;
}

/* Milliseconds, fractions allowed, to microseconds below `max_us`. */
static int ms_to_us(const char *option, const char *text, uint64_t max_us,
                    uint64_t *out)
{
    char *end;
    errno = 0;
    double ms = strtod(text, &end);
    if (end == text || *end != '\0' || errno != 0 ||
        !(ms >= 0 && ms * 1000 <= (double)max_us))
        return fail(option, text, "not a time in milliseconds in range");
    *out = (uint64_t)(ms * 1000 + 0.5);
    if (*out > max_us)
        *out = max_us;
    return 0;
}

/* HOST:PORT or [HOST]:PORT, numeric or localhost, into *ss. */
static int parse_server(const char *text, struct sockaddr_storage *ss,
                        socklen_t *len)
{
    char host[256];
    const char *port;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (close == NULL || close[1] != ':')
            return fail("--server", text, "expected [HOST]:PORT");
        if ((size_t)(close - text - 1) >= sizeof host)
            return fail("--server", text, "host too long");
        memcpy(host, text + 1, (size_t)(close - text - 1));
        host[close - text - 1] = '\0';
        port = close + 2;
    } else {
        const char *colon = strrchr(text, ':');
        if (colon == NULL || strchr(text, ':') != colon)
            return fail("--server", text, "expected HOST:PORT or [::1]:PORT");
        if ((size_t)(colon - text) >= sizeof host)
            return fail("--server", text, "host too long");
        memcpy(host, text, (size_t)(colon - text));
        host[colon - text] = '\0';
        port = colon + 1;
    }
    uint64_t port_number;
    if (parse_unsigned("--server", port, 65535, &port_number) < 0)
        return -1;
    /* Only numbers and "localhost": no name is ever looked up elsewhere. */
    if (strcmp(host, "localhost") == 0)
        snprintf(host, sizeof host, "127.0.0.1");
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_DGRAM,
                             .ai_flags = AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *found;
    int rc = getaddrinfo(host, port, &hints, &found);
    if (rc != 0)
        return fail("--server", text, gai_strerror(rc));
    memcpy(ss, found->ai_addr, found->ai_addrlen);
    *len = found->ai_addrlen;
    freeaddrinfo(found);
    return 0;
}

enum scope { BOTH, TO_SERVER_ONLY, TO_CLIENT_ONLY };

/* Sets one field in the configs the scope names. */
#define SET(field, value)                                                    \
    do {                                                                     \
        if (scope != TO_CLIENT_ONLY)                                         \
            opts->to_server.field = (value);                                 \
        if (scope != TO_SERVER_ONLY)                                         \
            opts->to_client.field = (value);                                 \
    } while (0)

enum option_id {
    OPT_LISTEN = 1000, OPT_SERVER, OPT_SEED, OPT_SECONDS, OPT_COUNT, OPT_LOG,
    OPT_HELP, OPT_TO_SERVER, OPT_TO_CLIENT, OPT_BOTH, OPT_DROP, OPT_DUP,
    OPT_DELAY, OPT_JITTER, OPT_REORDER, OPT_REORDER_DELAY, OPT_CORRUPT,
    OPT_CORRUPT_BYTES, OPT_TRUNCATE, OPT_BLACKHOLE
};

struct run_limits {
    uint64_t seconds;
    uint64_t count; /* 0: none */
    int have_listen, have_server;
};

/* 0: go on; 1: --help done; -1: bad usage (said why). */
static int parse_args(int argc, char **argv,
                      struct relay_options *opts,
                      struct sockaddr_storage *server, struct run_limits *lim)
{
    static const struct option longopts[] = {
        {"listen", required_argument, NULL, OPT_LISTEN},
        {"server", required_argument, NULL, OPT_SERVER},
        {"seed", required_argument, NULL, OPT_SEED},
        {"seconds", required_argument, NULL, OPT_SECONDS},
        {"count", required_argument, NULL, OPT_COUNT},
        {"log", no_argument, NULL, OPT_LOG},
        {"help", no_argument, NULL, OPT_HELP},
        {"to-server", no_argument, NULL, OPT_TO_SERVER},
        {"to-client", no_argument, NULL, OPT_TO_CLIENT},
        {"both", no_argument, NULL, OPT_BOTH},
        {"drop", required_argument, NULL, OPT_DROP},
        {"dup", required_argument, NULL, OPT_DUP},
        {"delay", required_argument, NULL, OPT_DELAY},
        {"jitter", required_argument, NULL, OPT_JITTER},
        {"reorder", required_argument, NULL, OPT_REORDER},
        {"reorder-delay", required_argument, NULL, OPT_REORDER_DELAY},
        {"corrupt", required_argument, NULL, OPT_CORRUPT},
        {"corrupt-bytes", required_argument, NULL, OPT_CORRUPT_BYTES},
        {"truncate", required_argument, NULL, OPT_TRUNCATE},
        {"blackhole", required_argument, NULL, OPT_BLACKHOLE},
        {NULL, 0, NULL, 0}};
    enum scope scope = BOTH;
    int opt;
    uint64_t n;
    unsigned permille;
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        char name[32] = "";
        for (const struct option *o = longopts; o->name != NULL; o++)
            if (o->val == opt)
                snprintf(name, sizeof name, "--%s", o->name);
        switch (opt) {
        case OPT_LISTEN:
            if (parse_unsigned("--listen", optarg, 65535, &n) < 0)
                return -1;
            opts->listen_port = (uint16_t)n;
            lim->have_listen = 1;
            break;
        case OPT_SERVER:
            if (parse_server(optarg, server, &opts->server_len) < 0)
                return -1;
            opts->server = (const struct sockaddr *)server;
            lim->have_server = 1;
            break;
        case OPT_SEED:
            if (parse_unsigned("--seed", optarg, UINT64_MAX, &opts->seed) < 0)
                return -1;
            break;
        case OPT_SECONDS:
            if (parse_unsigned(name, optarg, 365u * 24 * 3600, &n) < 0)
                return -1;
            if (n == 0)
                return fail(name, optarg, "must be at least 1");
            lim->seconds = n;
            break;
        case OPT_COUNT:
            if (parse_unsigned("--count", optarg, UINT64_MAX, &lim->count) <
                0)
                return -1;
            break;
        case OPT_LOG: opts->log = stdout; break;
        case OPT_HELP: usage(stdout); return 1;
        case OPT_TO_SERVER: scope = TO_SERVER_ONLY; break;
        case OPT_TO_CLIENT: scope = TO_CLIENT_ONLY; break;
        case OPT_BOTH: scope = BOTH; break;
        case OPT_DROP:
        case OPT_DUP:
        case OPT_REORDER:
        case OPT_CORRUPT:
        case OPT_TRUNCATE:
            if (parse_permille(name, optarg, &permille) < 0)
                return -1;
            if (opt == OPT_DROP)
                SET(drop_permille, permille);
            else if (opt == OPT_DUP)
                SET(dup_permille, permille);
            else if (opt == OPT_REORDER)
                SET(reorder_permille, permille);
            else if (opt == OPT_CORRUPT)
                SET(corrupt_permille, permille);
            else
                SET(truncate_permille, permille);
            break;
        case OPT_DELAY:
        case OPT_JITTER:
        case OPT_REORDER_DELAY:
            if (ms_to_us(name, optarg, UINT32_MAX, &n) < 0)
                return -1;
            if (opt == OPT_DELAY)
                SET(delay_us, (uint32_t)n);
            else if (opt == OPT_JITTER)
                SET(jitter_us, (uint32_t)n);
            else if (n == 0)
                return fail("--reorder-delay", optarg, "must be above 0");
            else
                SET(reorder_delay_us, (uint32_t)n);
            break;
        case OPT_CORRUPT_BYTES:
            if (parse_unsigned(name, optarg,
                               IMPAIR_CORRUPT_BYTES_MAX, &n) < 0)
                return -1;
            if (n == 0)
                return fail(name, optarg, "must be 1..16");
            SET(corrupt_max_bytes, (unsigned)n);
            break;
        case OPT_BLACKHOLE: {
            char start[64];
            const char *colon = strchr(optarg, ':');
            uint64_t start_us, len_us;
            if (colon == NULL || (size_t)(colon - optarg) >= sizeof start)
                return fail("--blackhole", optarg, "expected START_MS:LEN_MS");
            memcpy(start, optarg, (size_t)(colon - optarg));
            start[colon - optarg] = '\0';
            /* Bounded well below overflow: ten years each. */
            const uint64_t decade_us = 10ull * 365 * 24 * 3600 * 1000000;
            if (ms_to_us("--blackhole", start, decade_us, &start_us) < 0 ||
                ms_to_us("--blackhole", colon + 1, decade_us, &len_us) < 0)
                return -1;
            SET(blackhole_start_us, start_us);
            SET(blackhole_len_us, len_us);
            break;
        }
        default: usage(stderr); return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "udprr-relay: unexpected argument '%s'\n",
                argv[optind]);
        return -1;
    }
    if (!lim->have_listen || !lim->have_server) {
        fprintf(stderr, "udprr-relay: --listen and --server are required "
                        "(--help says more)\n");
        return -1;
    }
    return 0;
}

#undef SET

/* ---- running -------------------------------------------------------------- */

static void format_addr(const struct sockaddr_storage *ss, socklen_t len,
                        char *out, size_t cap)
{
    char host[NI_MAXHOST] = "?", port[NI_MAXSERV] = "?";
    getnameinfo((const struct sockaddr *)ss, len, host, sizeof host,
                port, sizeof port, NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(out, cap, ss->ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host,
             port);
}

static void print_config(const char *dir,
                         const struct impair_config *c)
{
    printf("%s:", dir);
    int any = 0;
#define PERMILLE(field, label)                                               \
    if (c->field) {                                                          \
        printf(" " label " %.3f", c->field / 1000.0);                        \
        any = 1;                                                             \
    }
    PERMILLE(drop_permille, "drop")
    PERMILLE(dup_permille, "dup")
    if (c->delay_us) {
        printf(" delay %.3fms", c->delay_us / 1e3);
        any = 1;
    }
    if (c->jitter_us) {
        printf(" jitter %.3fms", c->jitter_us / 1e3);
        any = 1;
    }
    if (c->reorder_permille) {
        printf(" reorder %.3f (held %.3fms)", c->reorder_permille / 1000.0,
               (c->reorder_delay_us ? c->reorder_delay_us
                                    : IMPAIR_REORDER_DELAY_US) /
                   1e3);
        any = 1;
    }
    if (c->corrupt_permille) {
        unsigned most = c->corrupt_max_bytes ? c->corrupt_max_bytes : 1;
        printf(" corrupt %.3f (1", c->corrupt_permille / 1000.0);
        if (most > 1)
            printf("..%u bytes)", most);
        else
            printf(" byte)");
        any = 1;
    }
    PERMILLE(truncate_permille, "truncate")
#undef PERMILLE
    if (c->blackhole_len_us) {
        printf(" blackhole %.3fms..%.3fms", c->blackhole_start_us / 1e3,
               (c->blackhole_start_us + c->blackhole_len_us) / 1e3);
        any = 1;
    }
    printf("%s\n", any ? "" : " no impairment");
}

static void print_stats(const char *dir,
                        const struct relay_direction_stats *s)
{
    const struct impair_counters *c = &s->impair;
    printf("%s: %" PRIu64 " datagrams: %" PRIu64 " dropped (%" PRIu64
           " in the blackhole), %" PRIu64 " duplicated, %" PRIu64
           " reordered, %" PRIu64 " corrupted, %" PRIu64 " truncated; %" PRIu64
           " copies sent, %" PRIu64 " send failures, %" PRIu64
           " queue overflows, %" PRIu64 " still queued at exit, %" PRIu64
           " refused, %" PRIu64 " unroutable\n",
           dir, c->seen, c->dropped, c->blackholed, c->duplicated,
           c->reordered, c->corrupted, c->truncated, s->sent, s->send_failed,
           s->overflowed, s->pending, s->refused, s->unroutable);
}

struct stop_when {
    uint64_t count; /* 0: never */
};

/* --count reached, and every copy due has left. */
static int count_done(const struct relay_stats *st, void *arg)
{
    const struct stop_when *w = arg;
    return w->count > 0 &&
           st->to_server.impair.seen + st->to_client.impair.seen >=
               w->count &&
           st->to_server.pending + st->to_client.pending == 0;
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) +
           (now.tv_nsec - t0->tv_nsec) / 1e9;
}

int main(int argc, char **argv)
{
    struct relay_options opts = {.seed = 1};
    struct sockaddr_storage server;
    struct run_limits lim = {.seconds = DEFAULT_SECONDS};

    setvbuf(stdout, NULL, _IOLBF, 0);
    int parsed = parse_args(argc, argv, &opts, &server, &lim);
    if (parsed != 0)
        return parsed > 0 ? 0 : 2;

    struct sigaction sa = {.sa_handler = on_signal};
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct relay *r = relay_start_with(&opts);
    if (r == NULL)
        return 1; /* the relay said why */

    struct sockaddr_storage listen;
    socklen_t listen_len;
    char listen_text[80], server_text[80];
    relay_addr(r, &listen, &listen_len);
    format_addr(&listen, listen_len, listen_text, sizeof listen_text);
    format_addr(&server, opts.server_len, server_text, sizeof server_text);
    printf("udprr-relay: clients send to %s; server %s; seed %" PRIu64
           "; stops after %" PRIu64 " s",
           listen_text, server_text, opts.seed, lim.seconds);
    if (lim.count)
        printf(" or %" PRIu64 " datagrams", lim.count);
    printf("\n");
    print_config("to_server", &opts.to_server);
    print_config("to_client", &opts.to_client);

    struct stop_when when = {.count = lim.count};
    const char *why = "--seconds reached";
    for (;;) {
        if (stop_signal) {
            why = stop_signal == SIGINT ? "interrupted" : "terminated";
            break;
        }
        double left_ms = lim.seconds * 1e3 - seconds_since(&t0) * 1e3;
        if (left_ms <= 0)
            break;
        int slice_ms = left_ms < SIGNAL_CHECK_MS ? (int)left_ms + 1
                                                 : SIGNAL_CHECK_MS;
        if (relay_wait(r, count_done, &when, slice_ms)) {
            why = "--count reached";
            break;
        }
    }

    struct relay_stats st;
    relay_stop(r, &st);
    printf("udprr-relay: stopped after %.3f s: %s\n", seconds_since(&t0),
           why);
    print_stats("to_server", &st.to_server);
    print_stats("to_client", &st.to_client);
    return 0;
}
