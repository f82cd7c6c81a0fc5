/* SPDX-License-Identifier: MIT */
/*
 * net_contract.c - two contracts between the library and the program:
 *
 *   the options ABI: init writes exactly the program's struct, open reads
 *   exactly opts->size bytes, newer and never-initialized structs are told
 *   apart (the library built with grown structs is tested by
 *   tests/abi-test.sh);
 *
 *   the handler's result: UDPRR_REPLY sends, UDPRR_NO_REPLY sends nothing,
 *   and every other value (1, -1, -EIO, ...) declines, reaching the client
 *   as UDPRR_EREMOTE on its first transmission.
 */
#include <errno.h>
#include <limits.h>
#include <stdatomic.h>

#include "netutil.h"
#include "testutil.h"

#define CANARY 0xA5
#define CANARY_BYTES 64

/* A program's options struct with guard bytes after it. */
struct guarded_client_opts {
    udprr_client_opts opts;
    uint8_t canary[CANARY_BYTES];
};

struct guarded_server_opts {
    udprr_server_opts opts;
    uint8_t canary[CANARY_BYTES];
};

static void assert_canary(const uint8_t *canary, size_t n)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(canary[i] == CANARY, "guard byte %zu overwritten", i);
}

/* After a 0.1 init symbol wrote opts (of opts_size bytes, canary after
 * it): exactly 0.1's struct, size_0_1 bytes, ending where 0.2's fields
 * begin, with that size recorded and not a byte more written. */
static void assert_wrote_0_1(const void *opts, size_t opts_size,
                             size_t size_0_1, const uint8_t *canary)
{
    size_t recorded;
    assert_canary(canary, CANARY_BYTES);
    assert_canary((const uint8_t *)opts + size_0_1, opts_size - size_0_1);
    memcpy(&recorded, opts, sizeof recorded);
    ck_assert_uint_eq(recorded, size_0_1);
}

/* --- the options ABI ------------------------------------------------------ */

START_TEST(test_client_init_writes_exactly_the_struct)
{
    struct guarded_client_opts g;
    memset(&g, CANARY, sizeof g);
    udprr_client_opts_init(&g.opts);
    assert_canary(g.canary, sizeof g.canary);
    ck_assert_uint_eq(g.opts.size, sizeof g.opts);
    ck_assert_uint_eq(g.opts.deadline_ms, 10000);
    ck_assert_uint_eq(g.opts.initial_rto_ms, 1000);
    ck_assert_uint_eq(g.opts.min_rto_ms, 1);
    ck_assert_uint_eq(g.opts.max_rto_ms, 10000);
    ck_assert_uint_eq(g.opts.backoff_pct, 200);
    ck_assert_uint_eq(g.opts.jitter_pct, 20);
    ck_assert_int_eq(g.opts.framing, UDPRR_FRAMING_NATIVE);

    ck_assert_uint_eq(g.opts.max_pending, 65536);
    ck_assert_uint_eq(g.opts.max_pending_bytes, 64u << 20);
    ck_assert_uint_eq(g.opts.max_window, 64);

    /* The 0.1 symbol, as a program built against 0.1 calls it. */
    memset(&g, CANARY, sizeof g);
    (udprr_client_opts_init)(&g.opts);
    assert_wrote_0_1(&g.opts, sizeof g.opts,
                     offsetof(udprr_client_opts, max_pending), g.canary);
    ck_assert_uint_eq(g.opts.deadline_ms, 10000);
}
END_TEST

START_TEST(test_server_init_writes_exactly_the_struct)
{
    struct guarded_server_opts g;
    memset(&g, CANARY, sizeof g);
    udprr_server_opts_init(&g.opts);
    assert_canary(g.canary, sizeof g.canary);
    ck_assert_uint_eq(g.opts.size, sizeof g.opts);
    ck_assert_int_eq(g.opts.reply_cache, 1);
    ck_assert_uint_eq(g.opts.cache_entries, 65536);
    ck_assert_uint_eq(g.opts.cache_lifetime_ms, 30000);
    ck_assert_uint_eq(g.opts.max_deferred, 4096);
    ck_assert_uint_eq(g.opts.deferred_lifetime_ms, 10000);

    memset(&g, CANARY, sizeof g);
    (udprr_server_opts_init)(&g.opts);
    assert_wrote_0_1(&g.opts, sizeof g.opts,
                     offsetof(udprr_server_opts, max_deferred), g.canary);
    ck_assert_int_eq(g.opts.reply_cache, 1);
}
END_TEST

/* A shorter struct than the library's (as an older header's) gets only as
 * many bytes as it says it has. */
START_TEST(test_init_sized_writes_no_more_than_asked)
{
    uint8_t buf[sizeof(udprr_client_opts) + CANARY_BYTES];
    const size_t small = 2 * sizeof(size_t);
    memset(buf, CANARY, sizeof buf);
    udprr_client_opts_init_sized((udprr_client_opts *)buf, small);
    assert_canary(buf + small, sizeof buf - small);
    size_t size;
    memcpy(&size, buf, sizeof size);
    ck_assert_uint_eq(size, small);

    /* Too small to hold the size itself, or NULL: nothing is written. */
    memset(buf, CANARY, sizeof buf);
    udprr_client_opts_init_sized((udprr_client_opts *)buf, 3);
    udprr_server_opts_init_sized((udprr_server_opts *)buf, 0);
    assert_canary(buf, sizeof buf);
    udprr_client_opts_init_sized(NULL, sizeof(udprr_client_opts));
    udprr_server_opts_init_sized(NULL, sizeof(udprr_server_opts));
}
END_TEST

/* A program built against a newer header: its struct is larger, init
 * zeroes what this library does not know, and open takes it as long as
 * those bytes stay zero. */
START_TEST(test_newer_struct_accepted_while_unknown_fields_are_zero)
{
    union {
        udprr_client_opts opts;
        uint8_t bytes[sizeof(udprr_client_opts) + 32];
    } newer;
    memset(&newer, CANARY, sizeof newer);
    udprr_client_opts_init_sized(&newer.opts, sizeof newer);
    ck_assert_uint_eq(newer.opts.size, sizeof newer);
    for (size_t i = sizeof newer.opts; i < sizeof newer; i++)
        ck_assert_uint_eq(newer.bytes[i], 0);
    ck_assert_uint_eq(newer.opts.deadline_ms, 10000);

    udprr_client *c = NULL;
    ck_assert_int_eq(udprr_client_open(&c, "127.0.0.1", "9", &newer.opts),
                     UDPRR_OK);
    udprr_client_close(c);

    /* A newer field set to something this library cannot honour. */
    newer.bytes[sizeof newer.opts + 5] = 1;
    c = NULL;
    ck_assert_int_eq(udprr_client_open(&c, "127.0.0.1", "9", &newer.opts),
                     UDPRR_EINVAL);
    ck_assert_ptr_null(c);

    union {
        udprr_server_opts opts;
        uint8_t bytes[sizeof(udprr_server_opts) + 16];
    } snewer;
    udprr_server_opts_init_sized(&snewer.opts, sizeof snewer);
    udprr_server *s = NULL;
    ck_assert_int_eq(udprr_server_open(&s, "127.0.0.1", "0", &snewer.opts),
                     UDPRR_OK);
    udprr_server_close(s);
    snewer.bytes[sizeof snewer - 1] = 7;
    s = NULL;
    ck_assert_int_eq(udprr_server_open(&s, "127.0.0.1", "0", &snewer.opts),
                     UDPRR_EINVAL);
    ck_assert_ptr_null(s);
}
END_TEST

/* Sizes no header ever had: a struct never initialized (0), one that ends
 * inside a field, an absurd one (garbage), and one short of any release. */
START_TEST(test_unknown_sizes_are_einval)
{
    const size_t client_bad[] = {0, 1, sizeof(size_t),
                                 offsetof(udprr_client_opts, deadline_ms) + 2,
                                 sizeof(udprr_client_opts) - 1, 4097,
                                 SIZE_MAX};
    const size_t server_bad[] = {0, 1, sizeof(size_t),
                                 offsetof(udprr_server_opts, cache_entries) + 2,
                                 sizeof(udprr_server_opts) - 1, 4097,
                                 SIZE_MAX};
    for (size_t i = 0; i < sizeof client_bad / sizeof client_bad[0]; i++) {
        udprr_client_opts o;
        udprr_client_opts_init(&o);
        o.size = client_bad[i];
        udprr_client *c = NULL;
        ck_assert_msg(udprr_client_open(&c, "127.0.0.1", "9", &o) ==
                          UDPRR_EINVAL,
                      "client size %zu accepted", client_bad[i]);
        ck_assert_ptr_null(c);
    }
    for (size_t i = 0; i < sizeof server_bad / sizeof server_bad[0]; i++) {
        udprr_server_opts o;
        udprr_server_opts_init(&o);
        o.size = server_bad[i];
        udprr_server *s = NULL;
        ck_assert_msg(udprr_server_open(&s, "127.0.0.1", "0", &o) ==
                          UDPRR_EINVAL,
                      "server size %zu accepted", server_bad[i]);
        ck_assert_ptr_null(s);
    }
}
END_TEST

/* --- the handler's result ------------------------------------------------- */

struct verdict {
    int result;        /* what the handler returns */
    size_t reply_len;  /* what it sets *reply_len to */
    atomic_uint calls;
};

static int verdict_handler(void *user, const udprr_request *req, void *reply,
                           size_t cap, size_t *reply_len)
{
    struct verdict *v = user;
    (void)req;
    atomic_fetch_add(&v->calls, 1);
    if (v->reply_len <= cap)
        memset(reply, 'r', v->reply_len);
    *reply_len = v->reply_len;
    return v->result;
}

/* Waits, 10 s at the most, until the handler has run `calls` times: a
 * transmission the client made may still wait in the server's socket on
 * a loaded machine, and stopping the server would leave it unread. */
static void wait_for_calls(struct verdict *v, uint64_t calls)
{
    uint64_t until = test_now_us() + 10 * 1000 * 1000;
    while (atomic_load(&v->calls) < calls && test_now_us() < until) {
        struct timespec pause = {0, 1000 * 1000};
        nanosleep(&pause, NULL);
    }
}

/* Results that must decline: what error paths return by habit, the named
 * decline, and values no convention gives a meaning. */
static const int declining[] = {1,  -1,      -EIO,    UDPRR_DECLINE,
                                42, INT_MIN, INT_MAX, UDPRR_NO_REPLY + 1};
#define DECLINING (int)(sizeof declining / sizeof declining[0])

/* The client of these tests would wait 20 s before its first
 * retransmission: a result taken for "no reply" would show as a second
 * attempt, or as the test's time limit, never pass; a decline must end the
 * request on attempt 1. */
static udprr_client *patient_client(const char *port)
{
    udprr_client_opts o;
    udprr_client_opts_init(&o);
    o.initial_rto_ms = 20000;
    o.min_rto_ms = 20000;
    o.max_rto_ms = 20000;
    o.deadline_ms = 25000;
    udprr_client *c = NULL;
    ck_assert_int_eq(udprr_client_open(&c, "127.0.0.1", port, &o), UDPRR_OK);
    return c;
}

START_TEST(test_every_other_result_declines_on_the_first_attempt)
{
    struct verdict v = {declining[_i], 3, 0};
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", NULL, verdict_handler, &v);
    udprr_client *c = patient_client(ts.port);
    char reply[8];
    size_t got = 99;
    ck_assert_int_eq(udprr_client_request(c, "q", 1, reply, sizeof reply,
                                          &got),
                     UDPRR_EREMOTE);
    struct udprr_client_stats cs = {.size = sizeof cs};
    ck_assert_int_eq(udprr_client_stats(c, &cs), UDPRR_OK);
    udprr_client_close(c);
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);

    /* Answered by the first transmission. */
    ck_assert_uint_eq(cs.attempts, 1);
    ck_assert_uint_eq(cs.declined, 1);
    ck_assert_uint_eq(atomic_load(&v.calls), 1);
    ck_assert_uint_eq(ss.declined, 1);
    ck_assert_uint_eq(ss.not_answered, 0);
}
END_TEST

START_TEST(test_reply_sends_the_bytes)
{
    struct verdict v = {UDPRR_REPLY, 5, 0};
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", NULL, verdict_handler, &v);
    udprr_client *c = patient_client(ts.port);
    char reply[8];
    size_t got = 0;
    ck_assert_int_eq(udprr_client_request(c, "q", 1, reply, sizeof reply,
                                          &got),
                     UDPRR_OK);
    ck_assert_uint_eq(got, 5);
    ck_assert_mem_eq(reply, "rrrrr", 5);
    udprr_client_close(c);
    test_server_stop(&ts, NULL);
}
END_TEST

/* UDPRR_REPLY with more bytes than reply_cap is a decline, not an
 * overflow and not silence. */
START_TEST(test_reply_longer_than_cap_declines)
{
    struct verdict v = {UDPRR_REPLY, UDPRR_MAX_PAYLOAD + 1, 0};
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", NULL, verdict_handler, &v);
    udprr_client *c = patient_client(ts.port);
    size_t got;
    ck_assert_int_eq(udprr_client_request(c, "q", 1, NULL, 0, &got),
                     UDPRR_EREMOTE);
    udprr_client_close(c);
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    ck_assert_uint_eq(ss.declined, 1);
}
END_TEST

/* UDPRR_NO_REPLY alone sends nothing: every transmission runs the handler
 * again, and the request ends at its last attempt. */
START_TEST(test_no_reply_sends_nothing)
{
    struct verdict v = {UDPRR_NO_REPLY, 3, 0};
    struct fixture_server ts;
    test_server_start(&ts, "127.0.0.1", NULL, verdict_handler, &v);
    udprr_client_opts o;
    udprr_client_opts_init(&o);
    o.initial_rto_ms = 20;
    o.max_attempts = 3;
    o.deadline_ms = 0;
    udprr_client *c = NULL;
    ck_assert_int_eq(udprr_client_open(&c, "127.0.0.1", ts.port, &o),
                     UDPRR_OK);
    size_t got;
    ck_assert_int_eq(udprr_client_request(c, "q", 1, NULL, 0, &got),
                     UDPRR_ETIMEDOUT);
    udprr_client_close(c);
    /* The third transmission was sent at least 64 ms before the request
     * timed out, but a loaded machine (valgrind) may not have run the
     * server's thread since. */
    wait_for_calls(&v, 3);
    struct udprr_server_stats ss;
    test_server_stop(&ts, &ss);
    ck_assert_uint_eq(atomic_load(&v.calls), 3);
    ck_assert_uint_eq(ss.not_answered, 3);
    ck_assert_uint_eq(ss.answered, 0);
    ck_assert_uint_eq(ss.declined, 0);
}
END_TEST

/* A program built against 0.1 calls the symbol udprr_server_run, and its
 * handler's 1 was 0.1's UDPRR_NO_REPLY: it must still send nothing. */
struct legacy_server {
    udprr_server *server;
    struct verdict *v;
    int run_status;
};

static void *legacy_run(void *arg)
{
    struct legacy_server *ls = arg;
    ls->run_status = (udprr_server_run)(ls->server, verdict_handler, ls->v);
    return NULL;
}

/* Runs one request against a server run through the 0.1 symbol with a
 * handler that returns `result`; returns the request's status and fills
 * the server's stats. */
static int request_via_0_1_run(int result, struct udprr_server_stats *ss,
                               unsigned *calls)
{
    struct verdict v = {result, 3, 0};
    struct legacy_server ls = {NULL, &v, -1};
    ck_assert_int_eq(udprr_server_open(&ls.server, "127.0.0.1", "0", NULL),
                     UDPRR_OK);
    struct sockaddr_in sin;
    socklen_t len = sizeof sin;
    ck_assert_int_eq(udprr_server_sockname(ls.server, (struct sockaddr *)&sin,
                                           &len),
                     UDPRR_OK);
    char port[16];
    snprintf(port, sizeof port, "%u", ntohs(sin.sin_port));
    pthread_t thread;
    ck_assert_int_eq(pthread_create(&thread, NULL, legacy_run, &ls), 0);

    udprr_client_opts o;
    udprr_client_opts_init(&o);
    o.initial_rto_ms = 20;
    o.max_attempts = 3;
    o.deadline_ms = 0;
    udprr_client *c = NULL;
    ck_assert_int_eq(udprr_client_open(&c, "127.0.0.1", port, &o), UDPRR_OK);
    char reply[8];
    size_t got;
    int rc = udprr_client_request(c, "q", 1, reply, sizeof reply, &got);
    struct udprr_client_stats cs = {.size = sizeof cs};
    ck_assert_int_eq(udprr_client_stats(c, &cs), UDPRR_OK);
    udprr_client_close(c);
    wait_for_calls(&v, cs.attempts);
    udprr_server_stop(ls.server);
    ck_assert_int_eq(pthread_join(thread, NULL), 0);
    ck_assert_int_eq(ls.run_status, UDPRR_OK);
    ss->size = sizeof *ss;
    ck_assert_int_eq(udprr_server_stats(ls.server, ss), UDPRR_OK);
    udprr_server_close(ls.server);
    *calls = atomic_load(&v.calls);
    return rc;
}

START_TEST(test_0_1_run_symbol_keeps_0_1_results)
{
    struct udprr_server_stats ss;
    unsigned calls;
    /* 1: nothing sent, every transmission runs the handler. */
    ck_assert_int_eq(request_via_0_1_run(1, &ss, &calls), UDPRR_ETIMEDOUT);
    ck_assert_uint_eq(calls, 3);
    ck_assert_uint_eq(ss.not_answered, 3);
    ck_assert_uint_eq(ss.answered, 0);
    /* Other nonzero results declined in 0.1 too. */
    ck_assert_int_eq(request_via_0_1_run(-1, &ss, &calls), UDPRR_EREMOTE);
    ck_assert_uint_eq(calls, 1);
    ck_assert_uint_eq(ss.declined, 1);
    /* And 0 replied. */
    ck_assert_int_eq(request_via_0_1_run(0, &ss, &calls), UDPRR_OK);
    ck_assert_uint_eq(ss.answered, 1);
}
END_TEST

START_TEST(test_result_names_are_distinct)
{
    ck_assert_int_eq(UDPRR_REPLY, 0);
    ck_assert_int_eq(UDPRR_DECLINE, UDPRR_EREMOTE);
    /* No habitual error value means "send nothing". */
    for (int i = 0; i < DECLINING; i++)
        ck_assert_int_ne(declining[i], UDPRR_NO_REPLY);
    for (int e = -4096; e <= 4096; e++)
        ck_assert_int_ne(e, UDPRR_NO_REPLY);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("net_contract");
    TCase *abi = tcase_create("options_abi");
    tcase_add_test(abi, test_client_init_writes_exactly_the_struct);
    tcase_add_test(abi, test_server_init_writes_exactly_the_struct);
    tcase_add_test(abi, test_init_sized_writes_no_more_than_asked);
    tcase_add_test(abi, test_newer_struct_accepted_while_unknown_fields_are_zero);
    tcase_add_test(abi, test_unknown_sizes_are_einval);
    suite_add_tcase(s, abi);

    TCase *h = tcase_create("handler_result");
    tcase_set_timeout(h, 30);
    tcase_add_loop_test(h, test_every_other_result_declines_on_the_first_attempt,
                        0, DECLINING);
    tcase_add_test(h, test_reply_sends_the_bytes);
    tcase_add_test(h, test_reply_longer_than_cap_declines);
    tcase_add_test(h, test_no_reply_sends_nothing);
    tcase_add_test(h, test_0_1_run_symbol_keeps_0_1_results);
    tcase_add_test(h, test_result_names_are_distinct);
    suite_add_tcase(s, h);
    return udprr_test_run(s);
}
