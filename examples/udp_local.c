/* SPDX-License-Identifier: MIT */
/*
 * udp_local.c - the textbook's first UDP pair, a client and a server on
 * loopback, redone on libudprr in raw framing: no libudprr header on the
 * wire, just the text, so either side talks to a plain UDP peer that knows
 * nothing of libudprr (such as the textbook's own programs).
 *
 *   udp_local server [-p PORT] [--seconds N]
 *   udp_local client [-p PORT] [--count N] [--text T] [--deadline MS]
 *
 * Build: cc udp_local.c $(pkg-config --cflags --libs udprr)
 */
#define _GNU_SOURCE
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <udprr.h>

#include "example_util.h"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: udp_local server [-p PORT] [--seconds N]\n"
            "       udp_local client [-p PORT] [--count N] [--text T] "
            "[--deadline MS]\n"
            "\n"
            "A client and server on 127.0.0.1 in raw framing: the datagrams\n"
            "carry the text alone, so plain UDP peers interoperate.\n"
            "server: answers each datagram with \"Your data was N bytes long\";\n"
            "        --seconds N stops it after N seconds (default: run until\n"
            "        SIGINT or SIGTERM). Port 0 picks a free port.\n"
            "client: sends --count datagrams (default 1) of text T (default:\n"
            "        \"The time is\" and the time) and prints each reply,\n"
            "        retrying with the library's backoff from the textbook's\n"
            "        first wait of 0.1 s; --deadline MS bounds each request\n"
            "        (default 10000; 0: retry until answered).\n"
            "-p PORT defaults to 1060, as in the textbook.\n");
}

static int answer(void *user, const udprr_request *req, void *reply,
                  size_t reply_cap, size_t *reply_len)
{
    (void)user;
    char peer[EXAMPLE_ADDR_MAX];
    example_format_addr(req->peer, peer, sizeof peer);
    printf("The client at %s says '%.*s'\n", peer,
           (int)(req->len > 200 ? 200 : req->len), (const char *)req->data);
    *reply_len = (size_t)snprintf(reply, reply_cap,
                                  "Your data was %zu bytes long", req->len);
    return UDPRR_REPLY;
}

static int run_server(const char *port, unsigned seconds)
{
    udprr_server_opts opts;
    udprr_server_opts_init(&opts);
    opts.framing = UDPRR_FRAMING_RAW;
    udprr_server *s;
    int rc = udprr_server_open(&s, "127.0.0.1", port, &opts);
    if (rc != UDPRR_OK) {
        fprintf(stderr, "udp_local: cannot serve on port %s: %s\n", port,
                udprr_strerror(rc));
        return 1;
    }
    example_print_listening(s);
    example_stop_on_signals(s, seconds);
    rc = udprr_server_run(s, answer, NULL);
    example_forget_signals();
    udprr_server_close(s);
    return rc == UDPRR_OK ? 0 : 1;
}

static int run_client(const char *port, unsigned count, const char *text,
                      unsigned deadline_ms)
{
    udprr_client_opts opts;
    udprr_client_opts_init(&opts);
    opts.framing = UDPRR_FRAMING_RAW;
    /* Raw replies after a retransmission are ambiguous and give no RTT
     * sample, so on a lossy path the RTO may never learn the loopback's
     * speed: start where the textbook does, not at the RFC's 1 s. */
    opts.initial_rto_ms = 100;
    opts.deadline_ms = deadline_ms;
    udprr_client *c;
    int rc = udprr_client_open(&c, "127.0.0.1", port, &opts);
    if (rc != UDPRR_OK) {
        fprintf(stderr, "udp_local: %s\n", udprr_strerror(rc));
        return 1;
    }
    int status = 0;
    for (unsigned i = 0; i < count && status == 0; i++) {
        char message[128], reply[256];
        size_t len;
        if (text == NULL) {
            time_t now = time(NULL);
            char when[32];
            strftime(when, sizeof when, "%a %b %d %H:%M:%S %Y",
                     localtime(&now));
            snprintf(message, sizeof message, "The time is %s", when);
        } else {
            snprintf(message, sizeof message, "%s", text);
        }
        rc = udprr_client_request(c, message, strlen(message), reply,
                                  sizeof reply - 1, &len);
        if (rc == UDPRR_OK) {
            reply[len] = '\0';
            printf("The server replied '%s'\n", reply);
        } else {
            printf("%s: %s\n", udprr_status_name(rc), udprr_strerror(rc));
            status = 1;
        }
    }
    udprr_client_close(c);
    return status;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"port", required_argument, NULL, 'p'},
        {"seconds", required_argument, NULL, 'S'},
        {"count", required_argument, NULL, 'c'},
        {"text", required_argument, NULL, 't'},
        {"deadline", required_argument, NULL, 'D'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *port = "1060", *text = NULL;
    unsigned seconds = 0, count = 1, deadline_ms = 10000;
    int opt;

    setvbuf(stdout, NULL, _IOLBF, 0);
    while ((opt = getopt_long(argc, argv, "p:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'p': port = optarg; break;
        case 'S': seconds = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'c': count = (unsigned)strtoul(optarg, NULL, 10); break;
        case 't': text = optarg; break;
        case 'D': deadline_ms = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind + 1 != argc) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[optind], "server") == 0)
        return run_server(port, seconds);
    if (strcmp(argv[optind], "client") == 0)
        return run_client(port, count, text, deadline_ms);
    usage(stderr);
    return 2;
}
