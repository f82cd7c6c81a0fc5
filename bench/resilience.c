/* SPDX-License-Identifier: MIT */
/*
 * resilience.c - the resilience benchmark of `make bench` (docs/resilience.md).
 *
 * For each network path, imitated on loopback by the impairment relay
 * (tools/relay/relay.h), it runs the same load twice: once with libudprr's
 * adaptive policy (the defaults of udprr_client_opts_init) and once with
 * the textbook's fixed policy expressed as options of the same engine (first
 * wait 100 ms, doubling, 5 transmissions: gives up 3.1 s after the first).
 * Both policies meet the same seeded impairments: the n-th datagram in each
 * direction of client k's relay meets the same fate under either policy.
 *
 * It prints a table (completion, latency percentiles, retransmissions and
 * spurious retransmissions), checks issue 5's targets, writes the table as
 * data for gnuplot (bench/resilience.gp), and exits 0 whatever it measured:
 * it is a measurement, not a test. It exits 2 only when it cannot measure
 * (a socket, a thread or a relay could not be set up, or a run overran its
 * time bound).
 *
 * Usage: resilience [DATAFILE]    (default build/bench/resilience.dat)
 *
 * Traffic goes only to 127.0.0.1. Every loop is bounded in count, and every
 * run in time (RUN_BUDGET_MS, then a watchdog).
 */
#include <errno.h>
#include <stdarg.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "fixture.h"
#include "relay.h"
#include "udprr.h"

/* Requests per client before the "after warm-up" counters are taken: the
 * adaptive client starts at the 1 s initial RTO and needs a few samples. */
#define WARMUP_REQUESTS 10u

/* A run stops starting requests after this long; a request already under
 * way is bounded by its policy (deadline or last attempt). */
#define RUN_BUDGET_MS 120000u
/* How much longer than the budget a run may take before the benchmark
 * gives up on it: the longest request of either policy (the default
 * 10 s deadline), plus a margin. */
#define RUN_GRACE_MS 30000u

#define REQUEST_BYTES 64u
#define MAX_CLIENTS 16u
#define MAX_REQUESTS_PER_CLIENT 1000u

#define ONE_WAY_DELAY_US 100000u  /* 100 ms each way: RTT 200 ms */
#define ONE_WAY_JITTER_US 10000u  /* 0..10 ms each way: RTT +0..20 ms */

struct path {
    const char *name;  /* for the table */
    const char *label; /* for the plot's axis; "|" breaks the line */
    struct impair_config each_way;
    unsigned clients;
    unsigned requests_per_client;
    uint64_t seed; /* client k's relay is seeded seed + k */
};

static const struct path paths[] = {
    {"clean loopback", "clean|loopback", {0}, 4, 250, 5100},
    {"loss 10% each way", "loss 10%|each way",
     {.drop_permille = 100}, 4, 250, 5200},
    {"loss 30% each way", "loss 30%|each way",
     {.drop_permille = 300}, 4, 250, 5300},
    {"RTT 200 ms, jitter 20 ms", "RTT 200 ms|+0..20 ms jitter",
     {.delay_us = ONE_WAY_DELAY_US, .jitter_us = ONE_WAY_JITTER_US}, 10, 50,
     5400},
    {"RTT 200 ms, loss 10%", "RTT 200 ms|loss 10% each way",
     {.delay_us = ONE_WAY_DELAY_US, .drop_permille = 100}, 10, 50, 5500},
};
#define PATHS (sizeof paths / sizeof paths[0])
/* Indexes the targets refer to. */
enum { PATH_CLEAN, PATH_LOSS10, PATH_LOSS30, PATH_RTT200, PATH_RTT200_LOSS };

enum { POLICY_ADAPTIVE, POLICY_FIXED, POLICIES };
static const char *const policy_names[POLICIES] = {"adaptive", "fixed"};

static void policy_opts(int policy, udprr_client_opts *o)
{
    udprr_client_opts_init(o);
    if (policy == POLICY_FIXED) {
        /* The textbook client: 0.1, 0.2, 0.4, 0.8, 1.6 s, never adapting;
         * it gives up past 2 s, 3.1 s after the first transmission. */
        o->fixed_rto = 1;
        o->initial_rto_ms = 100;
        o->backoff_pct = 200;
        o->jitter_pct = 0;
        o->max_attempts = 5;
        o->deadline_ms = 0;
    }
}


/* --- one client ---------------------------------------------------------- */

struct client_run {
    /* in */
    unsigned index;
    char port[16]; /* its relay's port on 127.0.0.1 */
    udprr_client_opts opts;
    unsigned requests;
    uint64_t stop_starting_at_us;
    /* out */
    unsigned made;           /* requests made (fewer only past the budget) */
    uint64_t *latency_us;    /* [requests]: from call to return */
    int *status;             /* [requests]: what the call returned */
    unsigned wrong_replies;  /* UDPRR_OK with bytes not the request's */
    int open_status;
    int warm;                /* the after-warm-up counters were taken */
    struct udprr_client_stats after_warmup, at_end;
};

static void *client_main(void *arg)
{
    struct client_run *cr = arg;
    udprr_client *c = NULL;
    cr->open_status = udprr_client_open(&c, "127.0.0.1", cr->port, &cr->opts);
    if (cr->open_status != UDPRR_OK)
        return NULL;
    unsigned char req[REQUEST_BYTES], reply[REQUEST_BYTES + 1];
    for (unsigned i = 0; i < cr->requests; i++) {
        if (now_us() >= cr->stop_starting_at_us)
            break;
        memset(req, 0, sizeof req);
        snprintf((char *)req, sizeof req, "bench client %u request %u",
                 cr->index, i);
        size_t reply_len = 0;
        uint64_t start = now_us();
        int rc = udprr_client_request(c, req, sizeof req, reply, sizeof reply,
                                      &reply_len);
        cr->latency_us[i] = now_us() - start;
        if (rc == UDPRR_OK &&
            (reply_len != sizeof req || memcmp(reply, req, sizeof req) != 0))
            cr->wrong_replies++;
        cr->status[i] = rc;
        cr->made = i + 1;
        if (cr->made == WARMUP_REQUESTS) {
            cr->after_warmup.size = sizeof cr->after_warmup;
            cr->warm = udprr_client_stats(c, &cr->after_warmup) == UDPRR_OK;
        }
    }
    cr->at_end.size = sizeof cr->at_end;
    udprr_client_stats(c, &cr->at_end);
    udprr_client_close(c);
    return NULL;
}

/* --- one run: a path under a policy -------------------------------------- */

struct result {
    unsigned clients, requests_per_client;
    unsigned made, completed, timeouts, other_failures, wrong_replies;
    unsigned not_made; /* cut by the time budget */
    double mean_ms, p50_ms, p99_ms, max_ms;
    double p99_after_warmup_ms;
    uint64_t requests, retransmissions;   /* client counters, whole run */
    uint64_t warm_requests, warm_spurious; /* after each client's 10th */
    uint64_t spurious;
    double elapsed_s;
    uint64_t relay_seen[2], relay_dropped[2]; /* to_server, to_client */
    uint64_t handled;                         /* server handler calls */
};

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Nearest rank: the smallest value with at least pct% of the values at or
 * below it. The values must be sorted; n > 0. */
static double percentile_ms(const uint64_t *sorted, size_t n, unsigned pct)
{
    size_t rank = (n * pct + 99) / 100;
    if (rank < 1)
        rank = 1;
    return (double)sorted[rank - 1] / 1000.0;
}

static void run(const struct path *p, int policy, struct result *res)
{
    struct fixture_server server;
    struct client_run cr[MAX_CLIENTS];
    struct relay *relay[MAX_CLIENTS];
    pthread_t thread[MAX_CLIENTS];
    size_t total = (size_t)p->clients * p->requests_per_client;
    uint64_t *all = calloc(total, sizeof *all);
    uint64_t *warm = calloc(total, sizeof *warm);
    if (all == NULL || warm == NULL)
        die("out of memory");

    memset(res, 0, sizeof *res);
    res->clients = p->clients;
    res->requests_per_client = p->requests_per_client;
    if (fixture_server_start(&server, "127.0.0.1", NULL, fixture_echo_handler,
                             NULL) != UDPRR_OK)
        die("cannot start the server on 127.0.0.1");

    uint64_t start = now_us();
    for (unsigned k = 0; k < p->clients; k++) {
        memset(&cr[k], 0, sizeof cr[k]);
        cr[k].index = k;
        /* One relay per client: a relay sends replies to the client that
         * sent last, so clients sharing one would receive each other's. */
        relay[k] = fixture_relay_in_front(&server, &p->each_way, &p->each_way,
                                          p->seed + k, cr[k].port);
        if (relay[k] == NULL)
            die("cannot start a relay");
        policy_opts(policy, &cr[k].opts);
        cr[k].requests = p->requests_per_client;
        cr[k].stop_starting_at_us = start + RUN_BUDGET_MS * 1000ull;
        cr[k].latency_us = calloc(p->requests_per_client, sizeof(uint64_t));
        cr[k].status = calloc(p->requests_per_client, sizeof(int));
        if (cr[k].latency_us == NULL || cr[k].status == NULL)
            die("out of memory");
    }
    for (unsigned k = 0; k < p->clients; k++)
        if (pthread_create(&thread[k], NULL, client_main, &cr[k]) != 0)
            die("cannot start a client thread");

    uint64_t give_up_at = start + (RUN_BUDGET_MS + RUN_GRACE_MS) * 1000ull;
    for (unsigned k = 0; k < p->clients; k++) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        uint64_t left = give_up_at > now_us() ? give_up_at - now_us() : 0;
        until.tv_sec += (time_t)(left / 1000000u);
        until.tv_nsec += (long)(left % 1000000u) * 1000;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        if (pthread_timedjoin_np(thread[k], NULL, &until) != 0)
            die("a client overran its time bound; giving up");
    }
    res->elapsed_s = (double)(now_us() - start) / 1e6;

    for (unsigned k = 0; k < p->clients; k++) {
        struct relay_stats rs;
        relay_stop(relay[k], &rs);
        res->relay_seen[0] += rs.to_server.impair.seen;
        res->relay_dropped[0] += rs.to_server.impair.dropped;
        res->relay_seen[1] += rs.to_client.impair.seen;
        res->relay_dropped[1] += rs.to_client.impair.dropped;
    }
    struct udprr_server_stats ss;
    if (fixture_server_stop(&server, &ss) != UDPRR_OK)
        die("the server failed");
    res->handled = ss.handled;

    size_t n = 0, n_warm = 0;
    double sum_ms = 0;
    for (unsigned k = 0; k < p->clients; k++) {
        const struct client_run *c = &cr[k];
        if (c->open_status != UDPRR_OK)
            die("cannot open a client");
        for (unsigned i = 0; i < c->made; i++) {
            all[n++] = c->latency_us[i];
            sum_ms += (double)c->latency_us[i] / 1000.0;
            if (i >= WARMUP_REQUESTS)
                warm[n_warm++] = c->latency_us[i];
            if (c->status[i] == UDPRR_OK)
                res->completed++;
            else if (c->status[i] == UDPRR_ETIMEDOUT)
                res->timeouts++;
            else
                res->other_failures++;
        }
        res->made += c->made;
        res->wrong_replies += c->wrong_replies;
        res->requests += c->at_end.requests;
        res->retransmissions += c->at_end.retransmissions;
        res->spurious += c->at_end.spurious_retransmissions;
        if (c->warm) {
            res->warm_requests +=
                c->at_end.requests - c->after_warmup.requests;
            res->warm_spurious += c->at_end.spurious_retransmissions -
                                  c->after_warmup.spurious_retransmissions;
        }
        free(c->latency_us);
        free(c->status);
    }
    /* A wrong reply is not a completion. */
    res->completed -= res->wrong_replies;
    res->not_made = (unsigned)(total - n);
    if (n > 0) {
        qsort(all, n, sizeof *all, cmp_u64);
        res->mean_ms = sum_ms / (double)n;
        res->p50_ms = percentile_ms(all, n, 50);
        res->p99_ms = percentile_ms(all, n, 99);
        res->max_ms = (double)all[n - 1] / 1000.0;
    }
    if (n_warm > 0) {
        qsort(warm, n_warm, sizeof *warm, cmp_u64);
        res->p99_after_warmup_ms = percentile_ms(warm, n_warm, 99);
    }
    free(all);
    free(warm);
}

/* --- output -------------------------------------------------------------- */

static double pct(uint64_t part, uint64_t whole)
{
    return whole > 0 ? 100.0 * (double)part / (double)whole : 0.0;
}

static double completed_pct(const struct result *r)
{
    unsigned planned = r->clients * r->requests_per_client;
    return pct(r->completed, planned);
}

/* Three significant figures, or two decimals below 10 ms. */
static const char *ms_text(double ms, char buf[16])
{
    if (ms < 10)
        snprintf(buf, 16, "%.2f", ms);
    else if (ms < 100)
        snprintf(buf, 16, "%.1f", ms);
    else
        snprintf(buf, 16, "%.0f", ms);
    return buf;
}

static void print_row(const struct path *p, int policy, const struct result *r)
{
    char mean[16], p50[16], p99[16], max[16], p99w[16];
    printf("| %-24s | %-8s | %3u x %-4u | %9.2f | %7s | %7s | %7s | %7s | "
           "%7s | %5.3f | %10.2f |\n",
           p->name, policy_names[policy], r->clients, r->requests_per_client,
           completed_pct(r), ms_text(r->mean_ms, mean),
           ms_text(r->p50_ms, p50), ms_text(r->p99_ms, p99),
           ms_text(r->max_ms, max), ms_text(r->p99_after_warmup_ms, p99w),
           r->requests ? (double)r->retransmissions / (double)r->requests : 0.0,
           pct(r->warm_spurious, r->warm_requests));
}

static int passes, misses;

static void target(int met, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void target(int met, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    printf("%s ", met ? "PASS" : "MISS");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
    if (met)
        passes++;
    else
        misses++;
}

/* How many times the fixed policy's p99 is the adaptive one's. */
static double p99_ratio(const struct result path_res[POLICIES])
{
    double a = path_res[POLICY_ADAPTIVE].p99_ms;
    return a > 0 ? path_res[POLICY_FIXED].p99_ms / a : 0.0;
}

static void write_data(const char *file, const char *date,
                       struct result res[PATHS][POLICIES])
{
    FILE *f = fopen(file, "w");
    if (f == NULL) {
        fprintf(stderr, "bench: cannot write %s: %s\n", file, strerror(errno));
        return;
    }
    fprintf(f, "# libudprr resilience benchmark, %s, libudprr %s\n", date,
            udprr_version());
    fprintf(f, "# path policy: 0 adaptive, 1 fixed; times in ms; percentages "
               "of requests\n");
    fprintf(f, "# path_index label policy policy_name clients requests "
               "completed_pct mean_ms p50_ms p99_ms max_ms p99_after10_ms "
               "retx_per_request spurious_after10_pct "
               "path_p99_fixed_over_adaptive\n");
    for (unsigned i = 0; i < PATHS; i++)
        for (int pol = 0; pol < POLICIES; pol++) {
            const struct result *r = &res[i][pol];
            fprintf(f, "%u \"%s\" %d %s %u %u %.3f %.3f %.3f %.3f %.3f %.3f "
                       "%.4f %.3f %.2f\n",
                    i, paths[i].label, pol, policy_names[pol], r->clients,
                    r->requests_per_client, completed_pct(r), r->mean_ms,
                    r->p50_ms, r->p99_ms, r->max_ms, r->p99_after_warmup_ms,
                    r->requests ? (double)r->retransmissions /
                                      (double)r->requests
                                : 0.0,
                    pct(r->warm_spurious, r->warm_requests),
                    p99_ratio(res[i]));
        }
    fclose(f);
    printf("data: %s\n", file);
}

int main(int argc, char **argv)
{
    const char *data_file = argc > 1 ? argv[1] : "build/bench/resilience.dat";
    static struct result res[PATHS][POLICIES];
    char date[64];
    time_t t = time(NULL);
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&t));

    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("libudprr %s resilience benchmark, %s\n", udprr_version(), date);
    printf("server: native framing, echo handler, 127.0.0.1; one impairment "
           "relay per client in front of it\n");
    printf("policies: adaptive = udprr_client_opts_init() defaults; "
           "fixed = fixed_rto, initial_rto_ms 100, backoff_pct 200,\n"
           "          jitter_pct 0, max_attempts 5, deadline_ms 0 "
           "(waits 0.1 0.2 0.4 0.8 1.6 s: gives up 3.1 s after the "
           "first send)\n");
    printf("paths (impairments apply to each direction on its own):\n");
    for (unsigned i = 0; i < PATHS; i++) {
        const struct impair_config *c = &paths[i].each_way;
        printf("  %-24s drop %u/1000, delay %u ms + 0..%u ms jitter, each "
               "way; %u clients x %u sequential requests; seeds %" PRIu64
               "..%" PRIu64 "\n",
               paths[i].name, c->drop_permille, c->delay_us / 1000,
               c->jitter_us / 1000, paths[i].clients,
               paths[i].requests_per_client, paths[i].seed,
               paths[i].seed + paths[i].clients - 1);
    }
    printf("  (client k's relay has seed base+k: requests seeded with it, "
           "replies with its complement; the same for both policies)\n\n");

    for (unsigned i = 0; i < PATHS; i++)
        for (int pol = 0; pol < POLICIES; pol++) {
            struct result *r = &res[i][pol];
            run(&paths[i], pol, r);
            printf("ran %-24s %-8s %5.1f s: %u requests, %u ok, %u timed "
                   "out, %u other errors, %u wrong replies, %u not made; "
                   "relay lost %" PRIu64 "/%" PRIu64 " requests, %" PRIu64
                   "/%" PRIu64 " replies; server handled %" PRIu64 "\n",
                   paths[i].name, policy_names[pol], r->elapsed_s, r->made,
                   r->completed, r->timeouts, r->other_failures,
                   r->wrong_replies, r->not_made, r->relay_dropped[0],
                   r->relay_seen[0], r->relay_dropped[1], r->relay_seen[1],
                   r->handled);
        }

    printf("\nLatency: from call to return of udprr_client_request, every "
           "request counted whatever its outcome.\n"
           "p99 w/o warm-up: over requests after each client's first %u. "
           "retx/req: retransmissions per request.\n"
           "spurious %%: spurious retransmissions per request after each "
           "client's first %u requests.\n\n",
           WARMUP_REQUESTS, WARMUP_REQUESTS);
    printf("| %-24s | %-8s | clients x  | completed | mean ms | p50 ms  | "
           "p99 ms  | max ms  | p99 ms  | retx/ | spurious %% |\n",
           "path", "policy");
    printf("| %-24s | %-8s | requests   | %%         |         |         | "
           "        |         | w/o w-u | req   | after 10   |\n",
           "", "");
    printf("|--------------------------|----------|------------|-----------|"
           "---------|---------|---------|---------|---------|-------|"
           "------------|\n");
    for (unsigned i = 0; i < PATHS; i++)
        for (int pol = 0; pol < POLICIES; pol++)
            print_row(&paths[i], pol, &res[i][pol]);

    printf("\nfixed p99 / adaptive p99:");
    for (unsigned i = 0; i < PATHS; i++)
        printf("%s %s %.1fx", i ? ";" : "", paths[i].name, p99_ratio(res[i]));
    printf("\n\ntargets (issue 5):\n");

    const struct result *ad = &res[PATH_RTT200][POLICY_ADAPTIVE];
    const struct result *fx = &res[PATH_RTT200][POLICY_FIXED];
    target(ad->warm_requests > 0 &&
               pct(ad->warm_spurious, ad->warm_requests) < 1.0,
           "spurious retransmissions < 1%% after the first %u requests, %s: "
           "adaptive %.2f%% (%" PRIu64 " of %" PRIu64
           " requests; fixed %.1f%%)",
           WARMUP_REQUESTS, paths[PATH_RTT200].name,
           pct(ad->warm_spurious, ad->warm_requests), ad->warm_spurious,
           ad->warm_requests, pct(fx->warm_spurious, fx->warm_requests));

    const unsigned lossy[] = {PATH_LOSS10, PATH_LOSS30};
    for (unsigned j = 0; j < sizeof lossy / sizeof lossy[0]; j++) {
        const struct result *a = &res[lossy[j]][POLICY_ADAPTIVE];
        const struct result *f = &res[lossy[j]][POLICY_FIXED];
        double ratio = p99_ratio(res[lossy[j]]);
        target(ratio >= 10.0,
               "p99 at least 10x lower than fixed, %s: %.2fx (adaptive "
               "%.1f ms, fixed %.1f ms; w/o warm-up adaptive %.1f ms, "
               "fixed %.1f ms)",
               paths[lossy[j]].name, ratio, a->p99_ms, f->p99_ms,
               a->p99_after_warmup_ms, f->p99_after_warmup_ms);
    }

    for (unsigned i = 0; i < PATHS; i++) {
        double a = completed_pct(&res[i][POLICY_ADAPTIVE]);
        double f = completed_pct(&res[i][POLICY_FIXED]);
        if (res[i][POLICY_FIXED].completed ==
            res[i][POLICY_FIXED].clients *
                res[i][POLICY_FIXED].requests_per_client)
            target(res[i][POLICY_ADAPTIVE].completed ==
                       res[i][POLICY_ADAPTIVE].clients *
                           res[i][POLICY_ADAPTIVE].requests_per_client,
                   "completion 100%% where fixed completes, %s: adaptive "
                   "%.2f%% (fixed %.2f%%)",
                   paths[i].name, a, f);
        else
            printf("n/a  completion, %s: fixed does not complete (%.2f%%); "
                   "adaptive %.2f%%\n",
                   paths[i].name, f, a);
    }
    printf("\n%d passed, %d missed%s\n", passes, misses,
           misses ? "  <-- see the MISS lines above" : "");

    write_data(data_file, date, res);
    return 0;
}
