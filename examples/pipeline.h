/* SPDX-License-Identifier: MIT */
/*
 * pipeline.h - what poll_client.c and uv_client.c share, so that each of
 * them shows only its own event loop: the command line, the requests'
 * bytes, the check that every reply answers its own request, and the
 * closing summary.
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

#define PIPELINE_MAX_COUNT 1000000u
#define PIPELINE_MIN_BYTES 16u /* "request 1000000" and a dot */
#define PIPELINE_LENGTHS 1024u
#define PIPELINE_MAX_BYTES (PIPELINE_MIN_BYTES + PIPELINE_LENGTHS - 1)
#define PIPELINE_REPORTED 10u /* failures described one by one */

struct pipeline;

/* One request: the done callback's user pointer. */
struct pipeline_request {
    struct pipeline *pipeline;
    unsigned index; /* 1..count */
    int ended;      /* its done callback has run */
};

struct pipeline {
    const char *prog;
    const char *host, *port;
    unsigned count;      /* requests to make */
    unsigned max_window; /* udprr_client_opts.max_window */
    udprr_client *client;
    struct pipeline_request *requests;
    unsigned sent;      /* handed to udprr_client_send so far */
    unsigned ended;     /* done callbacks run, plus sends that failed */
    unsigned completed; /* ended with their own reply */
    unsigned failed;    /* ended with an error, or their send failed */
    unsigned wrong;     /* a reply not their own, or done called twice */
    uint64_t peak_in_flight;
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

/* Digits only, within [min, max]. 0 on success, -1 otherwise. */
static inline int pipeline_parse_uint(const char *s, unsigned min,
                                      unsigned max, unsigned *out)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*s < '0' || *s > '9' || *end != '\0' || v < min || v > max)
        return -1;
    *out = (unsigned)v;
    return 0;
}

/* Reads the command line into p and allocates the requests. Returns 0 to
 * go on; -1 after printing the usage for --help (exit 0); else the exit
 * status, after saying why: 2 for a usage error, 1 without memory. */
static inline int pipeline_init(struct pipeline *p, const char *prog,
                                int argc, char **argv)
{
    memset(p, 0, sizeof *p);
    p->prog = prog;
    p->count = 100;
    p->max_window = 64;
    if (argc == 2 &&
        (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        pipeline_usage(prog, stdout);
        return -1;
    }
    if (argc < 3 || argc > 5 ||
        (argc > 3 &&
         pipeline_parse_uint(argv[3], 1, PIPELINE_MAX_COUNT, &p->count)) ||
        (argc > 4 &&
         pipeline_parse_uint(argv[4], 1, 65535, &p->max_window))) {
        pipeline_usage(prog, stderr);
        return 2;
    }
    p->host = argv[1];
    p->port = argv[2];
    p->requests = calloc(p->count, sizeof *p->requests);
    if (p->requests == NULL) {
        fprintf(stderr, "%s: no memory for %u requests\n", prog, p->count);
        return 1;
    }
    for (unsigned i = 0; i < p->count; i++) {
        p->requests[i].pipeline = p;
        p->requests[i].index = i + 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &p->start);
    return 0;
}

/* Request i's bytes, into buf (PIPELINE_MAX_BYTES); returns their count. */
static inline size_t pipeline_request_bytes(unsigned index, char *buf)
{
    size_t len = PIPELINE_MIN_BYTES + index % PIPELINE_LENGTHS;
    int n = snprintf(buf, PIPELINE_MAX_BYTES + 1, "request %u", index);
    memset(buf + n, '.', len - (size_t)n);
    return len;
}

/* The next request to send, or NULL when all have been sent. */
static inline struct pipeline_request *pipeline_next(struct pipeline *p)
{
    return p->sent < p->count ? &p->requests[p->sent] : NULL;
}

/* Accounts for the send of r that returned rc (not UDPRR_EBUSY, after
 * which the same request is tried again later): a send that failed never
 * calls done, so the request ends here. */
static inline void pipeline_sent(struct pipeline *p,
                                 struct pipeline_request *r, int rc)
{
    p->sent++;
    if (rc == UDPRR_OK)
        return;
    r->ended = 1;
    p->ended++;
    if (p->failed++ < PIPELINE_REPORTED)
        fprintf(stderr, "%s: request %u not sent: %s: %s\n", p->prog,
                r->index, udprr_status_name(rc), udprr_strerror(rc));
}

/* The done callback's work: how request r ended. */
static inline void pipeline_record(struct pipeline_request *r, int status,
                                   const void *reply, size_t reply_len)
{
    struct pipeline *p = r->pipeline;
    if (r->ended) {
        p->wrong++;
        fprintf(stderr, "%s: request %u: done ran a second time (%s)\n",
                p->prog, r->index, udprr_status_name(status));
        return;
    }
    r->ended = 1;
    p->ended++;
    if (status != UDPRR_OK) {
        if (p->failed++ < PIPELINE_REPORTED)
            fprintf(stderr, "%s: request %u: %s: %s\n", p->prog, r->index,
                    udprr_status_name(status), udprr_strerror(status));
        return;
    }
    char expected[64];
    int n = snprintf(expected, sizeof expected, "Your data was %u bytes long",
                     PIPELINE_MIN_BYTES + r->index % PIPELINE_LENGTHS);
    if (reply_len == (size_t)n && memcmp(reply, expected, reply_len) == 0) {
        p->completed++;
        return;
    }
    p->wrong++;
    fprintf(stderr, "%s: request %u: the reply '%.*s' is not its own ('%s')\n",
            p->prog, r->index, (int)(reply_len > 80 ? 80 : reply_len),
            (const char *)reply, expected);
}

static inline int pipeline_finished(const struct pipeline *p)
{
    return p->ended == p->count;
}

/* Notes how many requests are in flight now (for the summary's peak). */
static inline void pipeline_note_in_flight(struct pipeline *p)
{
    struct udprr_client_stats s = {.size = sizeof s};
    if (udprr_client_stats(p->client, &s) == UDPRR_OK &&
        s.in_flight > p->peak_in_flight)
        p->peak_in_flight = s.in_flight;
}

/* The done callback of every request: its user pointer is the request. */
static inline void pipeline_done(void *user, int status, const void *reply,
                                 size_t reply_len)
{
    pipeline_record(user, status, reply, reply_len);
}

/* Sends what has not been sent yet; stops early when the handle holds
 * max_pending requests (UDPRR_EBUSY), to go on once some have ended. */
static inline void pipeline_send_more(struct pipeline *p)
{
    struct pipeline_request *r;
    while ((r = pipeline_next(p)) != NULL) {
        char bytes[PIPELINE_MAX_BYTES + 1];
        size_t len = pipeline_request_bytes(r->index, bytes);
        int rc = udprr_client_send(p->client, bytes, len, pipeline_done, r);
        if (rc == UDPRR_EBUSY)
            break;
        pipeline_sent(p, r, rc);
    }
    pipeline_note_in_flight(p);
}

/* Takes the handle's counters, closes it (any request still pending ends
 * with UDPRR_ECANCELED: a failure) and prints the summary line. Returns
 * the exit status: 0 only when every request completed with its own
 * reply. */
static inline int pipeline_close(struct pipeline *p)
{
    struct udprr_client_stats s = {.size = sizeof s};
    udprr_client_stats(p->client, &s);
    udprr_client_close(p->client);
    p->client = NULL;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    double seconds = (double)(now.tv_sec - p->start.tv_sec) +
                     (double)(now.tv_nsec - p->start.tv_nsec) / 1e9;
    printf("%s: %u requests, %u completed, %u failed, %u wrong replies; "
           "%llu attempts, %llu retransmissions; window %llu (max %u), "
           "peak in flight %llu, %llu window reductions; %.3f s, %.0f "
           "requests/s\n",
           p->prog, p->count, p->completed, p->failed, p->wrong,
           (unsigned long long)s.attempts,
           (unsigned long long)s.retransmissions,
           (unsigned long long)s.window, p->max_window,
           (unsigned long long)p->peak_in_flight,
           (unsigned long long)s.window_reductions, seconds,
           seconds > 0 ? p->count / seconds : 0.0);
    fflush(stdout);
    int ok = p->completed == p->count && p->wrong == 0;
    free(p->requests);
    p->requests = NULL;
    return ok ? 0 : 1;
}

#endif /* PIPELINE_H */
