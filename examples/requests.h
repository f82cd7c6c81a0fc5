/* SPDX-License-Identifier: MIT */
/*
 * requests.h - the client side's bookkeeping that poll_client.c,
 * uv_client.c (through pipeline.h), deferred_server.c's client mode and
 * one_loop.c share: COUNT requests handed to one asynchronous handle at
 * once, the count of those sent, ended, completed, failed and answered
 * wrongly, the check that every reply answers its own request, and the
 * closing summary. Each program says what request i's bytes are and what
 * reply is request i's own; this file does the rest.
 *
 * For servers that answer with the request's text and more (the deferred
 * examples), requests_text_bytes and requests_text_own are that pair:
 * request i is the text "request i", and its own reply starts with
 * "request i -> ".
 */
#ifndef REQUESTS_H
#define REQUESTS_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <udprr.h>

#include "example_util.h"

#define REQUESTS_MAX_BYTES 2048u /* room for one request's bytes */
#define REQUESTS_EXPECTED_MAX 64u /* room for what a reply should be */
#define REQUESTS_REPORTED 10u     /* failures described one by one */

/* Request i's bytes, into buf (REQUESTS_MAX_BYTES); returns their count. */
typedef size_t requests_bytes_fn(unsigned index, char *buf);

/* 1 when reply is request i's own; 0 otherwise, having written what it
 * should have been into expected (REQUESTS_EXPECTED_MAX, for the
 * message that says so). */
typedef int requests_own_fn(unsigned index, const void *reply,
                            size_t reply_len, char *expected);

struct requests;

/* One request: the done callback's user pointer. */
struct request {
    struct requests *set;
    unsigned index; /* 1..count */
    int ended;      /* its done callback has run */
};

struct requests {
    const char *prog; /* the start of every message */
    udprr_client *client;
    requests_bytes_fn *bytes;
    requests_own_fn *own;
    unsigned count;     /* requests to make */
    unsigned sent;      /* handed to udprr_client_send so far */
    unsigned ended;     /* done callbacks run, plus sends that failed */
    unsigned completed; /* ended with their own reply */
    unsigned failed;    /* ended with an error, or their send failed */
    unsigned wrong;     /* a reply not their own, or done called twice */
    uint64_t peak_in_flight;
    struct request *each; /* count of them */
};

/* Allocates count requests, none sent yet; rs->client is the caller's to
 * set before the first requests_send_more. 0, or 1 after saying there was
 * no memory. */
static inline int requests_init(struct requests *rs, const char *prog,
                                unsigned count, requests_bytes_fn *bytes,
                                requests_own_fn *own)
{
    memset(rs, 0, sizeof *rs);
    rs->prog = prog;
    rs->bytes = bytes;
    rs->own = own;
    rs->count = count;
    rs->each = calloc(count, sizeof *rs->each);
    if (rs->each == NULL) {
        fprintf(stderr, "%s: no memory for %u requests\n", prog, count);
        return 1;
    }
    for (unsigned i = 0; i < count; i++) {
        rs->each[i].set = rs;
        rs->each[i].index = i + 1;
    }
    return 0;
}

/* The done callback of every request: its user pointer is the request. */
static inline void requests_done(void *user, int status, const void *reply,
                                 size_t reply_len)
{
    struct request *r = user;
    struct requests *rs = r->set;
    if (r->ended) {
        rs->wrong++;
        fprintf(stderr, "%s: request %u: done ran a second time (%s)\n",
                rs->prog, r->index, udprr_status_name(status));
        return;
    }
    r->ended = 1;
    rs->ended++;
    if (status != UDPRR_OK) {
        if (rs->failed++ < REQUESTS_REPORTED)
            fprintf(stderr, "%s: request %u: %s: %s\n", rs->prog, r->index,
                    udprr_status_name(status), udprr_strerror(status));
        return;
    }
    char expected[REQUESTS_EXPECTED_MAX];
    if (rs->own(r->index, reply, reply_len, expected)) {
        rs->completed++;
        return;
    }
    rs->wrong++;
    fprintf(stderr, "%s: request %u: the reply '%.*s' is not its own ('%s')\n",
            rs->prog, r->index, (int)(reply_len > 80 ? 80 : reply_len),
            (const char *)reply, expected);
}

/* Sends what has not been sent yet; stops early when the handle holds
 * max_pending requests (UDPRR_EBUSY), to go on once some have ended.
 * Notes how many are in flight then, for the summary. */
static inline void requests_send_more(struct requests *rs)
{
    while (rs->sent < rs->count) {
        struct request *r = &rs->each[rs->sent];
        char bytes[REQUESTS_MAX_BYTES];
        size_t len = rs->bytes(r->index, bytes);
        int rc = udprr_client_send(rs->client, bytes, len, requests_done, r);
        if (rc == UDPRR_EBUSY)
            break;
        rs->sent++;
        if (rc != UDPRR_OK) { /* done will not run for it */
            r->ended = 1;
            rs->ended++;
            if (rs->failed++ < REQUESTS_REPORTED)
                fprintf(stderr, "%s: request %u not sent: %s: %s\n",
                        rs->prog, r->index, udprr_status_name(rc),
                        udprr_strerror(rc));
        }
    }
    struct udprr_client_stats s = {.size = sizeof s};
    if (udprr_client_stats(rs->client, &s) == UDPRR_OK &&
        s.in_flight > rs->peak_in_flight)
        rs->peak_in_flight = s.in_flight;
}

static inline int requests_finished(const struct requests *rs)
{
    return rs->ended == rs->count;
}

/* Takes the handle's counters, closes it (any request still pending ends
 * with UDPRR_ECANCELED: a failure) and prints the summary line, without
 * its newline (callers may add to it). Returns the seconds since start.
 * max_window is the one given in the handle's options. */
static inline double requests_close_no_newline(struct requests *rs,
                                               unsigned max_window,
                                               const struct timespec *start)
{
    struct udprr_client_stats s = {.size = sizeof s};
    udprr_client_stats(rs->client, &s);
    udprr_client_close(rs->client);
    rs->client = NULL;
    double seconds = example_seconds_since(start);
    printf("%s: %u requests, %u completed, %u failed, %u wrong replies; "
           "%llu attempts, %llu retransmissions; window %llu (max %u), "
           "peak in flight %llu, %llu window reductions; %.3f s",
           rs->prog, rs->count, rs->completed, rs->failed, rs->wrong,
           (unsigned long long)s.attempts,
           (unsigned long long)s.retransmissions,
           (unsigned long long)s.window, max_window,
           (unsigned long long)rs->peak_in_flight,
           (unsigned long long)s.window_reductions, seconds);
    return seconds;
}

/* Frees the requests. Returns the exit status: 0 only when every request
 * completed with its own reply. */
static inline int requests_free(struct requests *rs)
{
    int ok = rs->completed == rs->count && rs->wrong == 0;
    free(rs->each);
    rs->each = NULL;
    return ok ? 0 : 1;
}

/* "request i": for requests_init, with requests_text_own. */
static inline size_t requests_text_bytes(unsigned index, char *buf)
{
    return (size_t)snprintf(buf, REQUESTS_MAX_BYTES, "request %u", index);
}

/* The reply to "request i" starts with "request i -> " (so the reply to
 * request 1 is not taken for request 10's). */
static inline int requests_text_own(unsigned index, const void *reply,
                                    size_t reply_len, char *expected)
{
    int n = snprintf(expected, REQUESTS_EXPECTED_MAX, "request %u -> ...",
                     index);
    size_t len = (size_t)n - 3; /* up to the arrow's space */
    return reply_len > len && memcmp(reply, expected, len) == 0;
}

#endif /* REQUESTS_H */
