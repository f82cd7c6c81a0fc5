/* SPDX-License-Identifier: MIT */
/*
 * failover.c - one client over several servers: every request goes to the
 * best endpoint, moves to another when its server refuses (nothing
 * listens) or, unless --refused-only, when a transmission goes unanswered
 * for its whole wait, and a failed server is tried again once its back-off
 * has run out.
 *
 * It sends --count requests, one every --interval ms, and prints for each
 * its status, the reply, which endpoint answered and what the others did
 * (refused, unanswered), all read from the per-endpoint counters before
 * and after the request. At the end every endpoint's counters. The servers
 * of examples/udp_broadcast answer with their --name, so the reply says
 * who answered too.
 *
 *   failover HOST:PORT [HOST:PORT...] [--count N] [--interval MS]
 *            [--deadline MS] [--rto MS] [--retry MS] [--refused-only]
 *
 * Build: cc failover.c $(pkg-config --cflags --libs udprr)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <udprr.h>

#include "example_util.h"

#define DEFAULT_COUNT 10
#define DEFAULT_INTERVAL_MS 500
#define MAX_COUNT 100000
#define HOST_MAX_BYTES 255
#define SERVICE_MAX_BYTES 31
#define REPLY_SHOWN_BYTES 80

static void usage(FILE *out)
{
    fprintf(out,
            "usage: failover HOST:PORT [HOST:PORT...] [--count N] "
            "[--interval MS]\n"
            "                [--deadline MS] [--rto MS] [--retry MS] "
            "[--refused-only]\n"
            "\n"
            "Opens one client on every server listed (1..%u; an IPv6\n"
            "address as [ADDR]:PORT; a name stands for every address it\n"
            "resolves to) and sends --count requests (default %u), one\n"
            "every --interval ms (default %u), each with\n"
            "udprr_client_request. Prints each request's status, the reply,\n"
            "the endpoint that answered and what the others did, a line\n"
            "when the answers start to come from another endpoint, and at\n"
            "the end every endpoint's counters.\n"
            "--deadline MS  bounds each request (default: the library's,\n"
            "               10000)\n"
            "--rto MS       the first wait for a reply, before anything is\n"
            "               measured (default: the library's, 1000)\n"
            "--retry MS     how long a failed endpoint is left alone before\n"
            "               it is tried again (default: the library's, 1000;\n"
            "               doubled by each further failure in a row)\n"
            "--refused-only move a request only when its server refused it\n"
            "               (UDPRR_FAILOVER_REFUSED, for requests that must\n"
            "               not run twice); an unanswered one is retried on\n"
            "               the same endpoint\n"
            "Exits 0 when every request was answered, 1 otherwise, 2 on a\n"
            "usage error or when the client cannot be opened.\n",
            UDPRR_MAX_ENDPOINTS, DEFAULT_COUNT, DEFAULT_INTERVAL_MS);
}

/* "HOST:PORT" or "[V6ADDR]:PORT" into host and service. 0 on success. */
static int split_host_port(const char *arg, char *host, char *service)
{
    const char *host_start = arg, *colon;
    if (arg[0] == '[') {
        const char *close = strchr(arg, ']');
        if (close == NULL || close[1] != ':')
            return -1;
        host_start = arg + 1;
        colon = close + 1;
    } else {
        colon = strchr(arg, ':');
        /* A second colon is an IPv6 address without its brackets: its
         * port cannot be told from its last group. */
        if (colon == NULL || strchr(colon + 1, ':') != NULL)
            return -1;
    }
    size_t host_len = (size_t)(colon - host_start) - (arg[0] == '[');
    size_t service_len = strlen(colon + 1);
    if (host_len == 0 || host_len > HOST_MAX_BYTES || service_len == 0 ||
        service_len > SERVICE_MAX_BYTES)
        return -1;
    memcpy(host, host_start, host_len);
    host[host_len] = '\0';
    memcpy(service, colon + 1, service_len + 1);
    return 0;
}

/* Bytes that are not printable ASCII are shown as '.': a reply is a
 * stranger's text. */
static void print_sanitized(const void *data, size_t len, size_t max)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len && i < max; i++)
        putchar(p[i] >= 0x20 && p[i] < 0x7f ? p[i] : '.');
    if (len > max)
        fputs("...", stdout);
}

struct endpoints {
    size_t n;
    char addr[UDPRR_MAX_ENDPOINTS][EXAMPLE_ADDR_MAX];
    struct udprr_endpoint_stats stats[UDPRR_MAX_ENDPOINTS];
};

static void read_endpoints(const udprr_client *c, struct endpoints *e)
{
    for (size_t i = 0; i < e->n; i++) {
        memset(&e->stats[i], 0, sizeof e->stats[i]);
        e->stats[i].size = sizeof e->stats[i];
        udprr_client_endpoint_stats(c, i, &e->stats[i]);
    }
}

/* What the endpoints other than the one that answered did during one
 * request: ", ADDR refused" and ", ADDR unanswered N times". */
static void print_others(const struct endpoints *before,
                         const struct endpoints *after)
{
    for (size_t i = 0; i < after->n; i++) {
        const struct udprr_endpoint_stats *b = &before->stats[i];
        const struct udprr_endpoint_stats *a = &after->stats[i];
        if (a->refusals > b->refusals)
            printf("; %s refused", after->addr[i]);
        if (a->timeouts > b->timeouts)
            printf("; %s unanswered %llu time%s", after->addr[i],
                   (unsigned long long)(a->timeouts - b->timeouts),
                   a->timeouts - b->timeouts == 1 ? "" : "s");
    }
}

static void print_endpoint_stats(const struct endpoints *e)
{
    for (size_t i = 0; i < e->n; i++) {
        const struct udprr_endpoint_stats *s = &e->stats[i];
        printf("endpoint %s: attempts %llu, answers %llu, timeouts %llu, "
               "refusals %llu, failovers %llu, failures %llu, retry_in_ms "
               "%llu; SRTT %.3f ms, RTO %.1f ms\n",
               e->addr[i], (unsigned long long)s->attempts,
               (unsigned long long)s->answers,
               (unsigned long long)s->timeouts,
               (unsigned long long)s->refusals,
               (unsigned long long)s->failovers,
               (unsigned long long)s->failures,
               (unsigned long long)s->retry_in_ms, s->srtt_us / 1e3,
               s->rto_us / 1e3);
    }
}

/* The next request's start: start + k * interval, on the monotonic clock,
 * so that slow requests do not stretch the schedule. */
static void sleep_until(const struct timespec *start, unsigned k,
                        unsigned interval_ms)
{
    unsigned long long ms = (unsigned long long)k * interval_ms;
    struct timespec at = *start;
    at.tv_sec += (time_t)(ms / 1000);
    at.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (at.tv_nsec >= 1000000000L) {
        at.tv_sec++;
        at.tv_nsec -= 1000000000L;
    }
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &at, NULL) == EINTR)
        ;
}

struct run_opts {
    unsigned count, interval_ms, deadline_ms, rto_ms, retry_ms;
    int refused_only;
};

static int run(const udprr_endpoint *list, size_t n,
               const struct run_opts *ro)
{
    udprr_client_opts opts;
    udprr_client_opts_init(&opts);
    if (ro->deadline_ms > 0)
        opts.deadline_ms = ro->deadline_ms;
    if (ro->rto_ms > 0) {
        opts.initial_rto_ms = ro->rto_ms;
        if (opts.max_rto_ms < ro->rto_ms)
            opts.max_rto_ms = ro->rto_ms;
    }
    if (ro->retry_ms > 0)
        opts.endpoint_retry_ms = ro->retry_ms;
    if (ro->refused_only)
        opts.failover = UDPRR_FAILOVER_REFUSED;

    udprr_client *c;
    int rc = udprr_client_open_list(&c, list, n, &opts);
    if (rc != UDPRR_OK) {
        fprintf(stderr, "failover: cannot open the client: %s%s%s\n",
                udprr_strerror(rc), rc == UDPRR_ESYS ? ": " : "",
                rc == UDPRR_ESYS ? strerror(errno) : "");
        return 2;
    }

    static struct endpoints before, after;
    before.n = udprr_client_endpoints(c);
    read_endpoints(c, &before);
    for (size_t i = 0; i < before.n; i++)
        example_format_addr((const struct sockaddr *)&before.stats[i].addr,
                            before.addr[i], sizeof before.addr[i]);
    after = before;
    printf("%zu endpoint%s:", before.n, before.n == 1 ? "" : "s");
    for (size_t i = 0; i < before.n; i++)
        printf(" %s", before.addr[i]);
    printf("; failover on %s; a failed endpoint is left alone for %u ms "
           "at first\n",
           ro->refused_only ? "refusals only" : "refusals and timeouts",
           opts.endpoint_retry_ms);

    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    unsigned succeeded = 0;
    size_t last_answerer = (size_t)-1;
    for (unsigned k = 1; k <= ro->count; k++) {
        if (k > 1)
            sleep_until(&start, k - 1, ro->interval_ms);
        char text[32];
        int text_len = snprintf(text, sizeof text, "request %u", k);
        char reply[512];
        size_t reply_len = 0;
        struct timespec sent;
        clock_gettime(CLOCK_MONOTONIC, &sent);
        rc = udprr_client_request(c, text, (size_t)text_len, reply,
                                  sizeof reply, &reply_len);
        double took_ms = example_seconds_since(&sent) * 1e3;
        read_endpoints(c, &after);

        printf("request %u: %s", k, udprr_status_name(rc));
        if (rc == UDPRR_OK || rc == UDPRR_ETRUNC) {
            printf(" '");
            print_sanitized(reply, reply_len, REPLY_SHOWN_BYTES);
            printf("'");
        }
        /* The endpoint that answered is the one whose answers grew (a
         * late reply to an earlier request is not an answer). */
        size_t answerer = (size_t)-1;
        for (size_t i = 0; i < after.n; i++) {
            if (after.stats[i].answers > before.stats[i].answers) {
                printf(answerer == (size_t)-1 ? " from %s" : " and %s",
                       after.addr[i]);
                if (answerer == (size_t)-1)
                    answerer = i;
            }
        }
        printf(" in %.1f ms", took_ms);
        print_others(&before, &after);
        printf("\n");
        if (answerer != (size_t)-1 && answerer != last_answerer &&
            last_answerer != (size_t)-1)
            printf("  the answers now come from %s (before: %s)\n",
                   after.addr[answerer], after.addr[last_answerer]);
        if (answerer != (size_t)-1)
            last_answerer = answerer;
        if (rc == UDPRR_OK)
            succeeded++;
        before = after;
    }

    printf("failover: %u requests, %u answered, %u failed in %.1f s\n",
           ro->count, succeeded, ro->count - succeeded,
           example_seconds_since(&start));
    print_endpoint_stats(&after);
    udprr_client_close(c);
    return succeeded == ro->count ? 0 : 1;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"count", required_argument, NULL, 'c'},
        {"interval", required_argument, NULL, 'i'},
        {"deadline", required_argument, NULL, 'D'},
        {"rto", required_argument, NULL, 'r'},
        {"retry", required_argument, NULL, 'R'},
        {"refused-only", no_argument, NULL, 'o'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    struct run_opts ro = {DEFAULT_COUNT, DEFAULT_INTERVAL_MS, 0, 0, 0, 0};
    int bad = 0, opt;

    setvbuf(stdout, NULL, _IOLBF, 0);
    while ((opt = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            bad |= example_parse_uint(optarg, 1, MAX_COUNT, &ro.count);
            break;
        case 'i': bad |= example_parse_ms(optarg, &ro.interval_ms); break;
        case 'D':
            bad |= example_parse_uint(optarg, 1, 3600000, &ro.deadline_ms);
            break;
        case 'r':
            bad |= example_parse_uint(optarg, 1, 3600000, &ro.rto_ms);
            break;
        case 'R':
            bad |= example_parse_uint(optarg, 1, 3600000, &ro.retry_ms);
            break;
        case 'o': ro.refused_only = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    size_t n = (size_t)(argc - optind);
    if (bad || n == 0 || n > UDPRR_MAX_ENDPOINTS) {
        usage(stderr);
        return 2;
    }
    static char hosts[UDPRR_MAX_ENDPOINTS][HOST_MAX_BYTES + 1];
    static char services[UDPRR_MAX_ENDPOINTS][SERVICE_MAX_BYTES + 1];
    udprr_endpoint list[UDPRR_MAX_ENDPOINTS];
    for (size_t i = 0; i < n; i++) {
        const char *arg = argv[optind + (int)i];
        if (split_host_port(arg, hosts[i], services[i]) != 0) {
            fprintf(stderr, "failover: '%s' is not HOST:PORT or [ADDR]:PORT\n",
                    arg);
            usage(stderr);
            return 2;
        }
        list[i].host = hosts[i];
        list[i].service = services[i];
    }
    return run(list, n, &ro);
}
