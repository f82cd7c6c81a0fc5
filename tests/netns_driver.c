/* SPDX-License-Identifier: MIT */
/*
 * netns_driver.c - the two small programs tests/netns-test.sh needs that
 * no example is: a server bound to one interface (SO_BINDTODEVICE, the
 * server's opts.interface), and a client that makes one request, in
 * native or raw framing, within a deadline, and says how it ended.
 *
 *   netns_driver server PORT [--interface IF] [--seconds N]
 *       answers "netns_driver answers N bytes"; prints "Listening at
 *       ADDR:PORT" once bound and "Server stats: received N, handled N,
 *       answered N" when it stops (SIGTERM, SIGINT, or after N seconds,
 *       default 30).
 *   netns_driver client HOST PORT [--raw] [--deadline MS]
 *       one request "ping"; prints "client: UDPRR_OK 'REPLY'" or
 *       "client: STATUS_NAME" and exits 0 for UDPRR_OK, 1 otherwise
 *       (2 for a usage error). Deadline default 1500 ms.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <udprr.h>

#include "../examples/example_util.h"

static void usage(void)
{
    fprintf(stderr,
            "usage: netns_driver server PORT [--interface IF] [--seconds N]\n"
            "       netns_driver client HOST PORT [--raw] [--deadline MS]\n");
}

static int serve(void *user, const udprr_request *req, void *reply,
                 size_t reply_cap, size_t *reply_len)
{
    (void)user;
    int n = snprintf(reply, reply_cap, "netns_driver answers %zu bytes",
                     req->len);
    *reply_len = n > 0 ? (size_t)n : 0;
    return UDPRR_REPLY;
}

static int run_server(const char *port, const char *interface,
                      unsigned seconds)
{
    udprr_server_opts opts;
    udprr_server_opts_init(&opts);
    opts.interface = interface;
    udprr_server *s;
    int rc = udprr_server_open(&s, NULL, port, &opts);
    if (rc != UDPRR_OK) {
        fprintf(stderr, "netns_driver: server: %s%s%s\n", udprr_strerror(rc),
                rc == UDPRR_ESYS ? ": " : "",
                rc == UDPRR_ESYS ? strerror(errno) : "");
        return 1;
    }
    example_print_listening_no_newline(s);
    printf("%s%s\n", interface ? " on interface " : "",
           interface ? interface : "");
    fflush(stdout);
    example_stop_on_signals(s, seconds);
    rc = udprr_server_run(s, serve, NULL);
    example_forget_signals();
    struct udprr_server_stats st = {.size = sizeof st};
    udprr_server_stats(s, &st);
    printf("Server stats: received %llu, handled %llu, answered %llu\n",
           (unsigned long long)st.received, (unsigned long long)st.handled,
           (unsigned long long)st.answered);
    udprr_server_close(s);
    return rc == UDPRR_OK ? 0 : 1;
}

static int run_client(const char *host, const char *port, int raw,
                      unsigned deadline_ms)
{
    udprr_client_opts opts;
    udprr_client_opts_init(&opts);
    opts.deadline_ms = deadline_ms;
    if (raw)
        opts.framing = UDPRR_FRAMING_RAW;
    udprr_client *c;
    int rc = udprr_client_open(&c, host, port, &opts);
    if (rc != UDPRR_OK) {
        printf("client: open: %s\n", udprr_status_name(rc));
        return 1;
    }
    char reply[256];
    size_t len = 0;
    rc = udprr_client_request(c, "ping", 4, reply, sizeof reply - 1, &len);
    udprr_client_close(c);
    if (rc == UDPRR_OK) {
        reply[len] = '\0';
        printf("client: UDPRR_OK '%s'\n", reply);
        return 0;
    }
    printf("client: %s\n", udprr_status_name(rc));
    return 1;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"interface", required_argument, NULL, 'i'},
        {"seconds", required_argument, NULL, 'S'},
        {"raw", no_argument, NULL, 'r'},
        {"deadline", required_argument, NULL, 'D'},
        {NULL, 0, NULL, 0}};
    const char *interface = NULL;
    unsigned seconds = 30, deadline_ms = 1500;
    int raw = 0, opt;

    setvbuf(stdout, NULL, _IOLBF, 0);
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (opt) {
        case 'i': interface = optarg; break;
        case 'S':
            if (example_parse_uint(optarg, 1, 3600, &seconds) != 0) {
                usage();
                return 2;
            }
            break;
        case 'r': raw = 1; break;
        case 'D':
            if (example_parse_uint(optarg, 1, 60000, &deadline_ms) != 0) {
                usage();
                return 2;
            }
            break;
        default: usage(); return 2;
        }
    }
    if (optind + 2 == argc && strcmp(argv[optind], "server") == 0)
        return run_server(argv[optind + 1], interface, seconds);
    if (optind + 3 == argc && strcmp(argv[optind], "client") == 0)
        return run_client(argv[optind + 1], argv[optind + 2], raw,
                          deadline_ms);
    usage();
    return 2;
}
