/* SPDX-License-Identifier: MIT */
/*
 * net_resilience.c - "reliable", measured: the client and server through
 * the seeded impairment relay on loopback.
 *
 *   - 10,000 requests through 20% loss each way, 5% duplication and 5%
 *     reordering: each completes with its own reply, the handler runs once
 *     per request, and the client's counters add up;
 *   - corruption and truncation both ways: no damaged datagram is ever
 *     taken for a reply or a request, and the damage is counted;
 *   - a 2 s blackhole in the middle of a stream: every request in flight
 *     completes after recovery or ends with UDPRR_ETIMEDOUT at its
 *     deadline; nothing hangs.
 *
 * Under valgrind (UDPRR_TEST_VALGRIND set by tests/run-suites.sh) the
 * first suite makes 1,000 requests instead of 10,000: the same code paths,
 * at a pace valgrind can follow within the CI budget.
 */
#include <stdatomic.h>
#include <stdlib.h>

#include "netutil.h"
#include "relay.h"
#include "testutil.h"

#define MS 1000ull
#define CLIENTS 8

/* Each request is "c<client>:r<index>" and its reply the same text with a
 * fixed suffix, so a reply can be checked against its own request. The
 * handler counts its calls per request. */
struct ledger {
    pthread_mutex_t lock;
    unsigned *calls; /* [CLIENTS * per_client] */
    unsigned per_client;
    atomic_uint total;
};

static int ledger_handler(void *user, const udprr_request *req, void *reply,
                          size_t cap, size_t *reply_len)
{
    struct ledger *l = user;
    char text[64];
    size_t n = req->len < sizeof text - 1 ? req->len : sizeof text - 1;
    memcpy(text, req->data, n);
    text[n] = '\0';
    unsigned client, index;
    if (sscanf(text, "c%u:r%u", &client, &index) != 2 || client >= CLIENTS ||
        index >= l->per_client)
        ck_abort_msg("handler got a request it never sent: '%s'", text);
    pthread_mutex_lock(&l->lock);
    l->calls[client * l->per_client + index]++;
    pthread_mutex_unlock(&l->lock);
    atomic_fetch_add(&l->total, 1);
    *reply_len = (size_t)snprintf(reply, cap, "%s/answered", text);
    return 0;
}

static struct relay *relay_for(const struct fixture_server *ts,
                               const struct impair_config *both,
                               uint64_t seed, char port[16])
{
    return test_relay_in_front(ts, both, both, seed, port);
}

/* One client thread: its own relay (a relay sends replies to the client
 * that spoke last, so clients do not share one), its own handle. */
struct worker {
    unsigned id;
    unsigned requests;
    const struct fixture_server *ts;
    struct impair_config impair;
    udprr_client_opts opts;
    /* results */
    unsigned ok, wrong, failed;
    struct udprr_client_stats stats;
    struct relay_stats relay;
};

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    char port[16];
    struct relay *relay = relay_for(w->ts, &w->impair, 1000 + w->id, port);
    udprr_client *c = NULL;
    if (udprr_client_open(&c, "127.0.0.1", port, &w->opts) != UDPRR_OK) {
        relay_stop(relay, NULL);
        w->failed = w->requests;
        return NULL;
    }
    for (unsigned i = 0; i < w->requests; i++) {
        char req[32], want[48], reply[64];
        int len = snprintf(req, sizeof req, "c%u:r%u", w->id, i);
        snprintf(want, sizeof want, "%s/answered", req);
        size_t got = 0;
        int rc = udprr_client_request(c, req, (size_t)len, reply,
                                      sizeof reply, &got);
        if (rc != UDPRR_OK)
            w->failed++;
        else if (got != strlen(want) || memcmp(reply, want, got) != 0)
            w->wrong++;
        else
            w->ok++;
    }
    w->stats.size = sizeof w->stats;
    udprr_client_stats(c, &w->stats);
    udprr_client_close(c);
    relay_stop(relay, &w->relay);
    return NULL;
}

static unsigned scaled(unsigned full)
{
    return getenv("UDPRR_TEST_VALGRIND") != NULL ? full / 10 : full;
}

/* Runs CLIENTS workers through relays with `impair` and checks every
 * request got its own reply and ran the handler exactly once. */
static void run_workers(struct worker *w, unsigned total,
                        const struct impair_config *impair,
                        struct ledger *l, struct udprr_server_stats *ss)
{
    struct fixture_server ts;
    pthread_t threads[CLIENTS];
    memset(l, 0, sizeof *l);
    pthread_mutex_init(&l->lock, NULL);
    l->per_client = total / CLIENTS;
    l->calls = calloc(CLIENTS * (size_t)l->per_client, sizeof *l->calls);
    ck_assert_ptr_nonnull(l->calls);
    test_server_start(&ts, "127.0.0.1", NULL, ledger_handler, l);
    for (unsigned i = 0; i < CLIENTS; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].id = i;
        w[i].requests = l->per_client;
        w[i].ts = &ts;
        w[i].impair = *impair;
        udprr_client_opts_init(&w[i].opts);
        w[i].opts.deadline_ms = 0; /* retry until answered */
        w[i].opts.min_rto_ms = 2;
        w[i].opts.initial_rto_ms = 100;
        w[i].opts.max_rto_ms = 200;
        ck_assert_int_eq(pthread_create(&threads[i], NULL, worker_main, &w[i]),
                         0);
    }
    for (unsigned i = 0; i < CLIENTS; i++)
        ck_assert_int_eq(pthread_join(threads[i], NULL), 0);
    test_server_stop(&ts, ss);
}

START_TEST(test_loss_duplication_reordering)
{
    const unsigned total = scaled(10000);
    struct impair_config impair = {
        .drop_permille = 200, .dup_permille = 50, .reorder_permille = 50,
        .reorder_delay_us = 5000};
    struct worker w[CLIENTS];
    struct ledger l;
    struct udprr_server_stats ss;
    run_workers(w, total, &impair, &l, &ss);

    uint64_t requests = 0, attempts = 0, retrans = 0, dropped = 0, dup = 0;
    uint64_t reordered = 0;
    for (unsigned i = 0; i < CLIENTS; i++) {
        ck_assert_uint_eq(w[i].failed, 0);
        ck_assert_uint_eq(w[i].wrong, 0);
        ck_assert_uint_eq(w[i].ok, l.per_client);
        ck_assert_uint_eq(w[i].stats.completed, l.per_client);
        ck_assert_uint_eq(w[i].stats.attempts,
                          w[i].stats.requests + w[i].stats.retransmissions);
        requests += w[i].stats.requests;
        attempts += w[i].stats.attempts;
        retrans += w[i].stats.retransmissions;
        dropped += w[i].relay.to_server.impair.dropped +
                   w[i].relay.to_client.impair.dropped;
        dup += w[i].relay.to_server.impair.duplicated +
               w[i].relay.to_client.impair.duplicated;
        reordered += w[i].relay.to_server.impair.reordered +
                     w[i].relay.to_client.impair.reordered;
    }
    ck_assert_uint_eq(requests, (uint64_t)CLIENTS * l.per_client);
    ck_assert_uint_eq(attempts, requests + retrans);
    for (size_t k = 0; k < (size_t)CLIENTS * l.per_client; k++)
        if (l.calls[k] != 1)
            ck_abort_msg("request %zu ran the handler %u times", k,
                         l.calls[k]);
    ck_assert_uint_eq(ss.handled, requests);
    /* The impairments really happened, and the retries covered them. */
    ck_assert_uint_gt(dropped, requests / 10);
    ck_assert_uint_gt(dup, 0);
    ck_assert_uint_gt(reordered, 0);
    ck_assert_uint_gt(retrans, dropped / 2);
    ck_assert_uint_gt(ss.cache_hits, 0);
    printf("loss/dup/reorder: %llu requests, %llu attempts, %llu dropped, "
           "%llu duplicated, %llu reordered, %llu answered from the cache\n",
           (unsigned long long)requests, (unsigned long long)attempts,
           (unsigned long long)dropped, (unsigned long long)dup,
           (unsigned long long)reordered, (unsigned long long)ss.cache_hits);
    free(l.calls);
    pthread_mutex_destroy(&l.lock);
}
END_TEST

START_TEST(test_corruption_and_truncation_never_accepted)
{
    const unsigned total = scaled(2000);
    struct impair_config impair = {
        .corrupt_permille = 100, .corrupt_max_bytes = 4,
        .truncate_permille = 100};
    struct worker w[CLIENTS];
    struct ledger l;
    struct udprr_server_stats ss;
    run_workers(w, total, &impair, &l, &ss);

    uint64_t damaged_to_client = 0, damaged_to_server = 0, malformed = 0;
    for (unsigned i = 0; i < CLIENTS; i++) {
        /* A damaged reply taken for an answer would show up as wrong. */
        ck_assert_uint_eq(w[i].wrong, 0);
        ck_assert_uint_eq(w[i].failed, 0);
        ck_assert_uint_eq(w[i].ok, l.per_client);
        damaged_to_client += w[i].relay.to_client.impair.corrupted +
                             w[i].relay.to_client.impair.truncated;
        damaged_to_server += w[i].relay.to_server.impair.corrupted +
                             w[i].relay.to_server.impair.truncated;
        malformed += w[i].stats.dropped_malformed;
        /* A damaged reply that passed for well-formed would show up as a
         * wrong reply, or (its ID hit: IDs are random 64-bit values) as
         * stale or unexpected. */
        ck_assert_uint_eq(w[i].stats.dropped_stale, 0);
        ck_assert_uint_eq(w[i].stats.dropped_unexpected, 0);
    }
    /* Damage was done and counted as malformed where it arrived. (Not
     * every damaged copy is read: the replies to a last request's early
     * retransmissions may still be in flight when its client closes.) */
    ck_assert_uint_gt(damaged_to_client, 0);
    ck_assert_uint_gt(damaged_to_server, 0);
    ck_assert_uint_gt(malformed, 0);
    ck_assert_uint_le(malformed, damaged_to_client);
    ck_assert_uint_gt(ss.dropped_malformed, 0);
    ck_assert_uint_le(ss.dropped_malformed, damaged_to_server);
    /* A damaged request that passed would not parse in the handler, or
     * would run it a second time. */
    ck_assert_uint_eq(ss.dropped_unexpected, 0);
    for (size_t k = 0; k < (size_t)CLIENTS * l.per_client; k++)
        ck_assert_uint_eq(l.calls[k], 1);
    printf("corrupt/truncate: %u requests, every reply right; damage "
           "decisions (a datagram may be both corrupted and cut): %llu on "
           "replies (%llu read and dropped as malformed), %llu on requests "
           "(%llu dropped as malformed)\n",
           CLIENTS * l.per_client, (unsigned long long)damaged_to_client,
           (unsigned long long)malformed,
           (unsigned long long)damaged_to_server,
           (unsigned long long)ss.dropped_malformed);
    free(l.calls);
    pthread_mutex_destroy(&l.lock);
}
END_TEST

START_TEST(test_blackhole_then_recovery)
{
    /* Everything is lost from 1 s to 3 s after the relay starts. Requests
     * run back to back with a 1.5 s deadline until 4.5 s: one started in
     * the first half of the blackhole cannot be answered before its
     * deadline, and requests after it are answered again. */
    const uint64_t hole_start = 1000 * MS, hole_len = 2000 * MS;
    const uint64_t deadline = 1500 * MS;
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", NULL, test_echo_handler, NULL);
    struct impair_config impair = {
        .blackhole_start_us = hole_start, .blackhole_len_us = hole_len};
    char port[16];
    struct relay *relay = relay_for(&ts, &impair, 9, port);
    uint64_t relay_started_us = test_now_us(); /* the relay's own start: earlier */
    udprr_client_opts o;
    udprr_client_opts_init(&o);
    o.deadline_ms = (unsigned)(deadline / MS);
    o.initial_rto_ms = 50;
    udprr_client *c = NULL;
    ck_assert_int_eq(udprr_client_open(&c, "127.0.0.1", port, &o), UDPRR_OK);

    unsigned ok_before = 0, timeouts = 0, ok_after = 0, n = 0;
    while (test_now_us() - relay_started_us < 4500 * MS && n < 100000) {
        char req[16], reply[16];
        int len = snprintf(req, sizeof req, "%u", n++);
        size_t got;
        uint64_t start = test_now_us();
        int rc = udprr_client_request(c, req, (size_t)len, reply,
                                      sizeof reply, &got);
        uint64_t end = test_now_us(), took = end - start;
        if (rc == UDPRR_OK) {
            ck_assert_uint_eq(got, (size_t)len);
            ck_assert_mem_eq(reply, req, (size_t)len);
            if (end - relay_started_us < hole_start)
                ok_before++;
            else
                ok_after++;
            /* Nothing is answered from well inside the blackhole (100 ms
             * of margin: the relay's clock started a moment before ours). */
            uint64_t s_at = start - relay_started_us, e_at = end - relay_started_us;
            ck_assert(!(s_at >= hole_start + 100 * MS &&
                        e_at < hole_start + hole_len - 100 * MS));
        } else {
            /* ends at its deadline: not before, and not long after */
            ck_assert_int_eq(rc, UDPRR_ETIMEDOUT);
            ck_assert_uint_ge(took, deadline);
            ck_assert_uint_lt(took, deadline + 1000 * MS);
            timeouts++;
        }
    }
    udprr_client_close(c);
    struct relay_stats rs;
    relay_stop(relay, &rs);
    test_server_stop(&ts, NULL);
    ck_assert_uint_gt(ok_before, 0);
    ck_assert_uint_ge(timeouts, 1);
    ck_assert_uint_gt(ok_after, 0);
    ck_assert_uint_gt(rs.to_server.impair.blackholed, 0);
    printf("blackhole: %u answered before, %u timed out, %u answered after\n",
           ok_before, timeouts, ok_after);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("net_resilience");
    TCase *tc = tcase_create("impaired");
    tcase_set_timeout(tc, 240);
    tcase_add_test(tc, test_loss_duplication_reordering);
    tcase_add_test(tc, test_corruption_and_truncation_never_accepted);
    tcase_add_test(tc, test_blackhole_then_recovery);
    suite_add_tcase(s, tc);
    return udprr_test_run(s);
}
