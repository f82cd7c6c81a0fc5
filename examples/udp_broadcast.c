/* SPDX-License-Identifier: MIT */
/*
 * udp_broadcast.c - the textbook's broadcast pair, redone on libudprr: one
 * request to a broadcast address (or a multicast group), and every server
 * on the link that answered it.
 *
 * The server listens on every interface; broadcasts reach it without any
 * call, a multicast group once it has joined it (--join). It answers each
 * request with its name. The client sends one request with
 * udprr_client_gather and prints each server once, however many of its
 * answers arrive: the request goes out again on the client's retry
 * schedule while the window lasts, always with the same ID, so a server
 * that answered already answers the retransmission from its reply cache
 * and its handler runs once. The server's counters show it at exit.
 *
 *   udp_broadcast server [-p PORT] [--join GROUP [--interface IF]]
 *                        [--name NAME] [--seconds N]
 *   udp_broadcast client ADDRESS [-p PORT] [--window MS] [--max N]
 *                        [--rto MS] [--ttl N] [--interface IF]
 *
 * Build: cc udp_broadcast.c $(pkg-config --cflags --libs udprr)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <udprr.h>

#include "example_util.h"

#define NAME_MAX_BYTES 200
#define DEFAULT_SECONDS 60
#define DEFAULT_WINDOW_MS 1000

static void usage(FILE *out)
{
    fprintf(out,
            "usage: udp_broadcast server [-p PORT] [--join GROUP "
            "[--interface IF]] [--name NAME] [--seconds N]\n"
            "       udp_broadcast client ADDRESS [-p PORT] [--window MS] "
            "[--max N] [--rto MS] [--ttl N] [--interface IF]\n"
            "\n"
            "server: listens on every interface at PORT and answers each\n"
            "        request with its name (--name, default: the host's\n"
            "        name and the process ID). --join GROUP joins that\n"
            "        multicast group, on interface IF if given. Stops after\n"
            "        N seconds (default %u) or at SIGINT/SIGTERM, and prints\n"
            "        its counters.\n"
            "client: sends one request to ADDRESS, a broadcast address\n"
            "        (such as 192.168.1.255) or a multicast group, and prints\n"
            "        every server that answers within the window (default\n"
            "        %u ms), each once; --max N stops after N servers\n"
            "        (default: no limit), --rto MS is the first wait before\n"
            "        the request goes out again (default: the library's,\n"
            "        1000), --ttl N the multicast TTL (default 1: this link\n"
            "        only), --interface IF the interface to send on. Exits\n"
            "        0 when a server answered, 1 when none did, 2 on any\n"
            "        other error.\n"
            "-p PORT defaults to 1060, as in the textbook.\n",
            DEFAULT_SECONDS, DEFAULT_WINDOW_MS);
}

/* Bytes that are not printable ASCII are shown as '.', so that what a
 * stranger on the network sent cannot drive the terminal. */
static void print_sanitized(const void *data, size_t len, size_t max)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len && i < max; i++)
        putchar(p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '.');
    if (len > max)
        fputs("...", stdout);
}

/* --- server -------------------------------------------------------------- */

struct server_state {
    char name[NAME_MAX_BYTES + 1];
};

static int serve(void *user, const udprr_request *req, void *reply,
                 size_t reply_cap, size_t *reply_len)
{
    const struct server_state *st = user;
    char peer[EXAMPLE_ADDR_MAX];
    example_format_addr(req->peer, peer, sizeof peer);
    printf("The client at %s asks '", peer);
    print_sanitized(req->data, req->len, 80);
    printf("' (request %016llx attempt %u): answering\n",
           (unsigned long long)req->id, req->attempt);
    size_t n = strlen(st->name);
    if (n > reply_cap)
        n = reply_cap;
    memcpy(reply, st->name, n);
    *reply_len = n;
    return UDPRR_REPLY;
}

static int run_server(const char *port, const char *group,
                      const char *interface, const char *name,
                      unsigned seconds)
{
    struct server_state st;
    if (name != NULL) {
        snprintf(st.name, sizeof st.name, "%s", name);
    } else {
        char host[64] = "unknown host";
        gethostname(host, sizeof host - 1);
        host[sizeof host - 1] = '\0';
        snprintf(st.name, sizeof st.name, "%s, process %ld", host,
                 (long)getpid());
    }

    udprr_server *server;
    int rc = udprr_server_open(&server, NULL, port, NULL);
    if (rc != UDPRR_OK) {
        fprintf(stderr, "udp_broadcast: cannot serve on port %s: %s%s%s\n",
                port, udprr_strerror(rc), rc == UDPRR_ESYS ? ": " : "",
                rc == UDPRR_ESYS ? strerror(errno) : "");
        return 2;
    }
    if (group != NULL) {
        rc = udprr_server_join(server, group, interface);
        if (rc != UDPRR_OK) {
            fprintf(stderr, "udp_broadcast: cannot join %s%s%s: %s%s%s\n",
                    group, interface ? " on " : "", interface ? interface : "",
                    udprr_strerror(rc), rc == UDPRR_ESYS ? ": " : "",
                    rc == UDPRR_ESYS ? strerror(errno) : "");
            udprr_server_close(server);
            return 2;
        }
    }
    example_print_listening_no_newline(server);
    if (group != NULL)
        printf(", member of %s%s%s", group, interface ? " on " : "",
               interface ? interface : "");
    printf(", answering as '%s' for %u s\n", st.name, seconds);
    fflush(stdout);

    example_stop_on_signals(server, seconds);
    rc = udprr_server_run(server, serve, &st);
    example_forget_signals();

    struct udprr_server_stats s = {.size = sizeof s};
    udprr_server_stats(server, &s);
    printf("Server stats: received %llu, handled %llu, answered %llu, "
           "cache_hits %llu, dropped_malformed %llu\n",
           (unsigned long long)s.received, (unsigned long long)s.handled,
           (unsigned long long)s.answered, (unsigned long long)s.cache_hits,
           (unsigned long long)s.dropped_malformed);
    udprr_server_close(server);
    return rc == UDPRR_OK ? 0 : 2;
}

/* --- client -------------------------------------------------------------- */

struct gather_state {
    size_t servers;
};

static int on_answer(void *user, const struct sockaddr *from,
                     socklen_t from_len, int status, const void *reply,
                     size_t reply_len)
{
    struct gather_state *g = user;
    char where[EXAMPLE_ADDR_MAX];
    (void)from_len;
    example_format_addr(from, where, sizeof where);
    g->servers++;
    if (status == UDPRR_OK) {
        printf("%s says '", where);
        print_sanitized(reply, reply_len, NAME_MAX_BYTES);
        printf("'\n");
    } else {
        printf("%s declined the request (%s)\n", where,
               udprr_status_name(status));
    }
    return 0; /* go on gathering */
}

static int run_client(const char *address, const char *port,
                      unsigned window_ms, unsigned max_servers,
                      unsigned rto_ms, unsigned ttl, const char *interface)
{
    udprr_client_opts opts;
    udprr_client_opts_init(&opts);
    opts.broadcast = 1;
    opts.multicast_ttl = ttl; /* 0 keeps the default, 1 */
    opts.interface = interface;
    if (rto_ms > 0) {
        opts.initial_rto_ms = rto_ms;
        if (opts.max_rto_ms < rto_ms)
            opts.max_rto_ms = rto_ms;
    }
    udprr_client *c;
    int rc = udprr_client_open(&c, address, port, &opts);
    if (rc != UDPRR_OK) {
        fprintf(stderr, "udp_broadcast: cannot send to %s port %s: %s%s%s\n",
                address, port, udprr_strerror(rc), rc == UDPRR_ESYS ? ": " : "",
                rc == UDPRR_ESYS ? strerror(errno) : "");
        return 2;
    }

    static const char question[] = "Who is there?";
    struct gather_state g = {0};
    rc = udprr_client_gather(c, question, sizeof question - 1, window_ms,
                             max_servers, on_answer, &g);
    udprr_client_close(c);
    if (rc == UDPRR_OK) {
        printf("%zu server%s answered within %u ms\n", g.servers,
               g.servers == 1 ? "" : "s", window_ms);
        return 0;
    }
    if (rc == UDPRR_ETIMEDOUT) {
        printf("No server answered within %u ms\n", window_ms);
        return 1;
    }
    fprintf(stderr, "udp_broadcast: %s: %s%s%s\n", udprr_status_name(rc),
            udprr_strerror(rc), rc == UDPRR_ESYS ? ": " : "",
            rc == UDPRR_ESYS ? strerror(errno) : "");
    return 2;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"port", required_argument, NULL, 'p'},
        {"join", required_argument, NULL, 'j'},
        {"interface", required_argument, NULL, 'i'},
        {"name", required_argument, NULL, 'n'},
        {"seconds", required_argument, NULL, 'S'},
        {"window", required_argument, NULL, 'w'},
        {"max", required_argument, NULL, 'm'},
        {"rto", required_argument, NULL, 'r'},
        {"ttl", required_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *port = "1060", *group = NULL, *interface = NULL, *name = NULL;
    unsigned seconds = DEFAULT_SECONDS, window_ms = DEFAULT_WINDOW_MS;
    unsigned max_servers = 0, rto_ms = 0, ttl = 0;
    int server_only = 0, client_only = 0, bad = 0;
    int opt;

    setvbuf(stdout, NULL, _IOLBF, 0);
    while ((opt = getopt_long(argc, argv, "p:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'p': port = optarg; break;
        case 'i': interface = optarg; break;
        case 'j': group = optarg; server_only = 1; break;
        case 'n':
            name = optarg;
            server_only = 1;
            bad |= strlen(optarg) > NAME_MAX_BYTES;
            break;
        case 'S':
            bad |= example_parse_uint(optarg, 1, 86400, &seconds);
            server_only = 1;
            break;
        case 'w':
            bad |= example_parse_uint(optarg, 1, 3600000, &window_ms);
            client_only = 1;
            break;
        case 'm':
            bad |= example_parse_uint(optarg, 0, UDPRR_GATHER_MAX,
                                      &max_servers);
            client_only = 1;
            break;
        case 'r':
            bad |= example_parse_uint(optarg, 1, 3600000, &rto_ms);
            client_only = 1;
            break;
        case 't':
            bad |= example_parse_uint(optarg, 1, 255, &ttl);
            client_only = 1;
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (bad || optind >= argc) {
        usage(stderr);
        return 2;
    }
    const char *role = argv[optind];
    if (strcmp(role, "server") == 0 && interface != NULL && group == NULL) {
        fprintf(stderr, "udp_broadcast: a server's --interface says where "
                        "to join the --join group\n");
        usage(stderr);
        return 2;
    }
    if (strcmp(role, "server") == 0 && optind + 1 == argc && !client_only)
        return run_server(port, group, interface, name, seconds);
    if (strcmp(role, "client") == 0 && optind + 2 == argc && !server_only)
        return run_client(argv[optind + 1], port, window_ms, max_servers,
                          rto_ms, ttl, interface);
    usage(stderr);
    return 2;
}
