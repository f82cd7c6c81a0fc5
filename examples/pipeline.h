/* SPDX-License-Identifier: MIT */
/*
 * pipeline.h - what poll_client.c and uv_client.c share, so that each of
 * them shows only its own event loop: the command line, the requests'
 * bytes, the check that every reply answers its own request, and the
 * closing summary. The bookkeeping of the requests is requests.h's.
 *
 * The server is udp_remote's (examples/udp_remote.c), which answers
 * "Your data was N bytes long". So that a reply names the request it
 * answers, request i is the text "request i" padded with dots to a length
 * of its own, PIPELINE_MIN_BYTES + i % PIPELINE_LENGTHS bytes: among any
 * PIPELINE_LENGTHS consecutive requests no two have the same length, and
 * a reply handed to the wrong one is caught.
 */
#ifndef PIPELINE_H
#define PIPELINE_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <udprr.h>

#include "example_util.h"
#include "requests.h"

#define PIPELINE_MAX_COUNT 1000000u
#define PIPELINE_MIN_BYTES 16u /* "request 1000000" and a dot */
#define PIPELINE_LENGTHS 1024u
#define PIPELINE_MAX_BYTES (PIPELINE_MIN_BYTES + PIPELINE_LENGTHS - 1)

_Static_assert(PIPELINE_MAX_BYTES < REQUESTS_MAX_BYTES,
               "a request's bytes and snprintf's NUL fit requests.h's buffer");

struct pipeline {
    const char *host, *port;
    unsigned max_window;     /* udprr_client_opts.max_window */
    struct requests requests; /* requests.client is the handle */
    struct timespec start;
};

static inline void pipeline_usage(const char *prog, FILE *out)
{
    fprintf(out,
            "usage: %s HOST PORT [COUNT] [WINDOW]\n"
            "\n"
            "Sends COUNT requests (default 100, at most %u) at once to a\n"
            "`udp_remote server` at HOST PORT, at most WINDOW of them in\n"
            "flight (1..65535, default 64: the ceiling of the congestion\n"
            "window), from one thread, and checks that each reply answers\n"
            "its own request. Prints one summary line; exits 0 when every\n"
            "request completed with its own reply, 1 otherwise, 2 for a\n"
            "usage error.\n",
            prog, PIPELINE_MAX_COUNT);
}

/* Request i's bytes, into buf (PIPELINE_MAX_BYTES + 1); returns their
 * count. */
static inline size_t pipeline_request_bytes(unsigned index, char *buf)
{
    size_t len = PIPELINE_MIN_BYTES + index % PIPELINE_LENGTHS;
    int n = snprintf(buf, PIPELINE_MAX_BYTES + 1, "request %u", index);
    memset(buf + n, '.', len - (size_t)n);
    return len;
}

/* udp_remote's answer to request i: the length of its bytes. */
static inline int pipeline_own(unsigned index, const void *reply,
                               size_t reply_len, char *expected)
{
    int n = snprintf(expected, REQUESTS_EXPECTED_MAX,
                     "Your data was %u bytes long",
                     PIPELINE_MIN_BYTES + index % PIPELINE_LENGTHS);
    return reply_len == (size_t)n && memcmp(reply, expected, reply_len) == 0;
}

/* Reads the command line into p and allocates the requests. Returns 0 to
 * go on; -1 after printing the usage for --help (exit 0); else the exit
 * status, after saying why: 2 for a usage error, 1 without memory. */
static inline int pipeline_init(struct pipeline *p, const char *prog,
                                int argc, char **argv)
{
    unsigned count = 100;
    memset(p, 0, sizeof *p);
    p->max_window = 64;
    if (argc == 2 &&
        (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        pipeline_usage(prog, stdout);
        return -1;
    }
    if (argc < 3 || argc > 5 ||
        (argc > 3 &&
         example_parse_uint(argv[3], 1, PIPELINE_MAX_COUNT, &count)) ||
        (argc > 4 && example_parse_uint(argv[4], 1, 65535, &p->max_window))) {
        pipeline_usage(prog, stderr);
        return 2;
    }
    p->host = argv[1];
    p->port = argv[2];
    if (requests_init(&p->requests, prog, count, pipeline_request_bytes,
                      pipeline_own) != 0)
        return 1;
    clock_gettime(CLOCK_MONOTONIC, &p->start);
    return 0;
}

/* Closes the handle and prints the summary line. Returns the exit status:
 * 0 only when every request completed with its own reply. */
static inline int pipeline_close(struct pipeline *p)
{
    double seconds =
        requests_close_no_newline(&p->requests, p->max_window, &p->start);
    printf(", %.0f requests/s\n",
           seconds > 0 ? p->requests.count / seconds : 0.0);
    fflush(stdout);
    return requests_free(&p->requests);
}

#endif /* PIPELINE_H */
