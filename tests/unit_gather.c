/* SPDX-License-Identifier: MIT */
/*
 * unit_gather.c - the gather core (lib/gather.c) with an injected clock:
 * its exact retransmission schedule within the window, max_attempts, and
 * which datagrams are a new server's answer (right ID, an attempt that
 * was made, a reply or a decline, each server once, up to max_replies).
 */
#include <string.h>

#include "gather.h"
#include "testutil.h"
#include "udprr.h"

static const struct udprr__framing native = {UDPRR_FRAMING_NATIVE, 0, 0, 0};

/* An RTT estimator with no samples: its first wait is initial_rto. */
static struct udprr__rtt rtt_of(uint64_t rto_us, unsigned backoff_pct,
                                unsigned jitter_pct)
{
    struct udprr__rtt_policy p;
    udprr__rtt_policy_default(&p);
    p.initial_rto_us = rto_us;
    p.min_rto_us = 1;
    p.max_rto_us = 1000000;
    p.backoff_pct = backoff_pct;
    p.jitter_pct = jitter_pct;
    ck_assert_int_eq(udprr__rtt_policy_check(&p), UDPRR_OK);
    struct udprr__rtt r;
    udprr__rtt_init(&r, &p);
    return r;
}

/* Steps the clock 1 µs at a time from start to end and records when a
 * transmission was due and its attempt number. */
static size_t schedule(struct udprr__gather *g, const struct udprr__rtt *rtt,
                       uint64_t start, uint64_t end, uint32_t random,
                       uint64_t *at, unsigned *attempts, size_t cap)
{
    size_t n = 0;
    for (uint64_t now = start; now <= end; now++) {
        unsigned a = udprr__gather_due(g, rtt, now, random);
        if (a == 0)
            continue;
        ck_assert_uint_lt(n, cap);
        at[n] = now;
        attempts[n++] = a;
        ck_assert_uint_eq(udprr__gather_due(g, rtt, now, random), 0);
    }
    return n;
}

START_TEST(test_schedule_doubles_until_the_window_closes)
{
    struct udprr__rtt rtt = rtt_of(100, 200, 0);
    struct udprr__gather g;
    ck_assert_int_eq(udprr__gather_init(&g, &native, 7, 1000, 1000, 10, 0),
                     UDPRR_OK);
    uint64_t at[16];
    unsigned attempts[16];
    size_t n = schedule(&g, &rtt, 1000, 3000, 0, at, attempts, 16);
    /* 100, then 200, 400: sends at +0, +100, +300, +700; +1500 is past
     * the window's end at +1000. */
    ck_assert_uint_eq(n, 4);
    const uint64_t want[4] = {1000, 1100, 1300, 1700};
    for (size_t i = 0; i < n; i++) {
        ck_assert_uint_eq(at[i], want[i]);
        ck_assert_uint_eq(attempts[i], i + 1);
    }
    ck_assert(!udprr__gather_over(&g, 1999));
    ck_assert(udprr__gather_over(&g, 2000));
    udprr__gather_free(&g);
}
END_TEST

START_TEST(test_next_is_the_transmission_or_the_end)
{
    struct udprr__rtt rtt = rtt_of(300, 200, 0);
    struct udprr__gather g;
    ck_assert_int_eq(udprr__gather_init(&g, &native, 7, 0, 500, 10, 0),
                     UDPRR_OK);
    ck_assert_uint_eq(udprr__gather_next_us(&g), 0);
    ck_assert_uint_eq(udprr__gather_due(&g, &rtt, 0, 0), 1);
    ck_assert_uint_eq(udprr__gather_next_us(&g), 300);
    ck_assert_uint_eq(udprr__gather_due(&g, &rtt, 299, 0), 0);
    ck_assert_uint_eq(udprr__gather_due(&g, &rtt, 300, 0), 2);
    /* The next would be at 900: the window's end at 500 comes first. */
    ck_assert_uint_eq(udprr__gather_next_us(&g), 500);
    /* A caller late by 50 µs is not made to catch up: the next wait
     * counts from when it came. */
    struct udprr__gather h;
    ck_assert_int_eq(udprr__gather_init(&h, &native, 7, 0, 10000, 10, 0),
                     UDPRR_OK);
    ck_assert_uint_eq(udprr__gather_due(&h, &rtt, 50, 0), 1);
    ck_assert_uint_eq(udprr__gather_next_us(&h), 350);
    udprr__gather_free(&g);
    udprr__gather_free(&h);
}
END_TEST

START_TEST(test_jitter_follows_the_retry_schedule)
{
    struct udprr__rtt rtt = rtt_of(1000, 200, 20);
    struct udprr__gather g;
    ck_assert_int_eq(udprr__gather_init(&g, &native, 7, 0, 100000, 10, 0),
                     UDPRR_OK);
    uint32_t r = 0x80000000u; /* half the jitter */
    ck_assert_uint_eq(udprr__gather_due(&g, &rtt, 0, r), 1);
    ck_assert_uint_eq(udprr__gather_next_us(&g), 1000); /* no jitter on 1 */
    ck_assert_uint_eq(udprr__gather_due(&g, &rtt, 1000, r), 2);
    /* base 2000, less 10%: 1800. */
    ck_assert_uint_eq(udprr__gather_next_us(&g), 1000 + 1800);
    ck_assert_uint_eq(udprr__gather_next_us(&g),
                      1000 + udprr__rtt_wait_us(&rtt, 2, r));
    udprr__gather_free(&g);
}
END_TEST

START_TEST(test_max_attempts)
{
    struct udprr__rtt rtt = rtt_of(100, 100, 0);
    struct udprr__gather g;
    ck_assert_int_eq(udprr__gather_init(&g, &native, 7, 0, 10000, 10, 3),
                     UDPRR_OK);
    uint64_t at[16];
    unsigned attempts[16];
    ck_assert_uint_eq(schedule(&g, &rtt, 0, 10000, 0, at, attempts, 16), 3);
    ck_assert_uint_eq(at[2], 200);
    /* Then only the window's end is left to wait for. */
    ck_assert_uint_eq(udprr__gather_next_us(&g), 10000);
    udprr__gather_free(&g);
}
END_TEST

START_TEST(test_bad_arguments)
{
    struct udprr__gather g;
    ck_assert_int_eq(udprr__gather_init(&g, &native, 7, 0, 0, 10, 0),
                     UDPRR_EINVAL);
    ck_assert_int_eq(udprr__gather_init(&g, &native, 7, 0, 10, 0, 0),
                     UDPRR_EINVAL);
    ck_assert_int_eq(udprr__gather_init(&g, &native, 7, 0, 10,
                                        UDPRR_GATHER_MAX + 1, 0),
                     UDPRR_EINVAL);
    ck_assert_int_eq(udprr__gather_init(&g, &native, 7, UINT64_MAX, 10, 1, 0),
                     UDPRR_EINVAL);
}
END_TEST

/* A native answer of kind to request id, transmission attempt. */
static size_t answer(enum udprr__wire_kind kind, uint64_t id,
                     unsigned attempt, const char *body, uint8_t *out)
{
    uint8_t header[UDPRR__WIRE_HEADER_BYTES];
    size_t header_len, len = strlen(body);
    ck_assert(udprr__framing_reply(&native, kind, id, attempt,
                                   (const uint8_t *)body, len, header,
                                   &header_len));
    memcpy(out, header, header_len);
    memcpy(out + header_len, body, len);
    return header_len + len;
}

static struct udprr__gather_key key_of(uint8_t who)
{
    struct udprr__gather_key k = {7, {4, 0, 7, 198, 18, 0, who}};
    return k;
}

/* What udprr__gather_datagram says of buf[0..len) from who; the body (an
 * answer's, an echo's cookie) into text. */
static int offer(struct udprr__gather *g, const uint8_t *buf, size_t len,
                 uint8_t who, int *status, char *text)
{
    const uint8_t *body;
    size_t body_len;
    struct udprr__gather_key k = key_of(who);
    int rc = udprr__gather_datagram(g, buf, len, &k, status, &body, &body_len);
    if ((rc == 1 || rc == UDPRR__GATHER_ECHO) && text != NULL) {
        memcpy(text, body, body_len);
        text[body_len] = '\0';
    }
    return rc;
}

START_TEST(test_each_server_once)
{
    struct udprr__rtt rtt = rtt_of(100, 200, 0);
    struct udprr__gather g;
    ck_assert_int_eq(udprr__gather_init(&g, &native, 42, 0, 1000, 100, 0),
                     UDPRR_OK);
    uint8_t buf[64];
    int status;
    char text[64];
    size_t len = answer(UDPRR__KIND_REPLY, 42, 1, "one", buf);
    /* Nothing sent yet: no answer can be to it. */
    ck_assert_int_eq(offer(&g, buf, len, 11, &status, text), 0);
    ck_assert_uint_eq(udprr__gather_due(&g, &rtt, 0, 0), 1);
    ck_assert_int_eq(offer(&g, buf, len, 11, &status, text), 1);
    ck_assert_int_eq(status, UDPRR_OK);
    ck_assert_str_eq(text, "one");
    /* The same server again (its cache answering a retransmission). */
    ck_assert_int_eq(offer(&g, buf, len, 11, &status, text), 0);
    /* Another server's decline. */
    len = answer(UDPRR__KIND_DECLINE, 42, 1, "", buf);
    ck_assert_int_eq(offer(&g, buf, len, 12, &status, text), 1);
    ck_assert_int_eq(status, UDPRR_EREMOTE);
    /* Another ID; an attempt not yet made; a request; noise. */
    len = answer(UDPRR__KIND_REPLY, 43, 1, "x", buf);
    ck_assert_int_eq(offer(&g, buf, len, 13, &status, text), 0);
    len = answer(UDPRR__KIND_REPLY, 42, 2, "x", buf);
    ck_assert_int_eq(offer(&g, buf, len, 13, &status, text), 0);
    uint8_t request[64];
    size_t request_len;
    ck_assert_int_eq(udprr__framing_request(&native, 42, 1, "q", 1, request,
                                            &request_len),
                     UDPRR_OK);
    ck_assert_int_eq(offer(&g, request, request_len, 13, &status, text), 0);
    ck_assert_int_eq(offer(&g, (const uint8_t *)"junk", 4, 13, &status, text),
                     0);
    /* Once sent, attempt 2's answer counts. */
    ck_assert_uint_eq(udprr__gather_due(&g, &rtt, 100, 0), 2);
    len = answer(UDPRR__KIND_REPLY, 42, 2, "three", buf);
    ck_assert_int_eq(offer(&g, buf, len, 13, &status, text), 1);
    ck_assert_str_eq(text, "three");
    ck_assert_uint_eq(g.replies, 3);
    udprr__gather_free(&g);
}
END_TEST

/* An echo from a server not yet reported is answered: the core gives its
 * cookie and the attempt number to send with (counted as sent, so the
 * answer it draws is taken), at most UDPRR__GATHER_ECHOES times per
 * server; never from a server already reported, for another ID or for an
 * attempt not made. */
START_TEST(test_echoes_are_answered_a_few_times)
{
    struct udprr__rtt rtt = rtt_of(100, 200, 0);
    struct udprr__gather g;
    ck_assert_int_eq(udprr__gather_init(&g, &native, 42, 0, 1000, 100, 0),
                     UDPRR_OK);
    uint8_t buf[64];
    int status;
    char text[64];
    static const char cookie[] = "0123456789abcdef";
    size_t len = answer(UDPRR__KIND_ECHO, 42, 1, cookie, buf);
    /* Before any transmission: nothing to answer. */
    ck_assert_int_eq(offer(&g, buf, len, 11, &status, text), 0);
    ck_assert_uint_eq(udprr__gather_due(&g, &rtt, 0, 0), 1);
    ck_assert_int_eq(offer(&g, buf, len, 11, &status, text),
                     UDPRR__GATHER_ECHO);
    ck_assert_int_eq(status, 2);
    ck_assert_str_eq(text, cookie);
    ck_assert_uint_eq(g.sent, 2);
    /* The reply to the transmission with the cookie is a reply to one
     * made; after it, that server's echoes are not answered. */
    len = answer(UDPRR__KIND_REPLY, 42, 2, "big", buf);
    ck_assert_int_eq(offer(&g, buf, len, 11, &status, NULL), 1);
    len = answer(UDPRR__KIND_ECHO, 42, 2, cookie, buf);
    ck_assert_int_eq(offer(&g, buf, len, 11, &status, text), 0);
    /* Server b echoes for ever: answered twice, then no more. */
    ck_assert_int_eq(offer(&g, buf, len, 12, &status, text),
                     UDPRR__GATHER_ECHO);
    ck_assert_int_eq(status, 3);
    ck_assert_int_eq(offer(&g, buf, len, 12, &status, text),
                     UDPRR__GATHER_ECHO);
    ck_assert_int_eq(status, 4);
    ck_assert_int_eq(offer(&g, buf, len, 12, &status, text), 0);
    ck_assert_uint_eq(g.sent, 4);
    /* Another ID, an attempt not made: not answered. */
    len = answer(UDPRR__KIND_ECHO, 43, 1, cookie, buf);
    ck_assert_int_eq(offer(&g, buf, len, 13, &status, text), 0);
    len = answer(UDPRR__KIND_ECHO, 42, 5, cookie, buf);
    ck_assert_int_eq(offer(&g, buf, len, 13, &status, text), 0);
    ck_assert_uint_eq(g.sent, 4);
    ck_assert_uint_eq(g.replies, 1);
    udprr__gather_free(&g);
}
END_TEST

START_TEST(test_max_replies_and_stop)
{
    struct udprr__rtt rtt = rtt_of(100, 200, 0);
    struct udprr__gather g;
    ck_assert_int_eq(udprr__gather_init(&g, &native, 5, 0, 1000, 20, 0),
                     UDPRR_OK);
    ck_assert_uint_eq(udprr__gather_due(&g, &rtt, 0, 0), 1);
    uint8_t buf[64];
    int status;
    size_t len = answer(UDPRR__KIND_REPLY, 5, 1, "r", buf);
    for (uint8_t who = 0; who < 20; who++) {
        ck_assert(!udprr__gather_over(&g, 1));
        ck_assert_int_eq(offer(&g, buf, len, who, &status, NULL), 1);
    }
    ck_assert(udprr__gather_over(&g, 1));
    ck_assert_int_eq(offer(&g, buf, len, 99, &status, NULL), 0);
    /* Over: nothing more is sent either. */
    ck_assert_uint_eq(udprr__gather_due(&g, &rtt, 100, 0), 0);
    udprr__gather_free(&g);

    ck_assert_int_eq(udprr__gather_init(&g, &native, 5, 0, 1000, 20, 0),
                     UDPRR_OK);
    ck_assert_uint_eq(udprr__gather_due(&g, &rtt, 0, 0), 1);
    udprr__gather_stop(&g);
    ck_assert(udprr__gather_over(&g, 1));
    ck_assert_int_eq(offer(&g, buf, len, 1, &status, NULL), 0);
    udprr__gather_free(&g);
}
END_TEST

START_TEST(test_id_at_offset_and_raw)
{
    struct udprr__rtt rtt = rtt_of(100, 200, 0);
    const struct udprr__framing dns = {UDPRR_FRAMING_ID_AT_OFFSET, 0, 2, 0};
    struct udprr__gather g;
    ck_assert_int_eq(udprr__gather_init(&g, &dns, 0xabcd, 0, 1000, 10, 0),
                     UDPRR_OK);
    ck_assert_uint_eq(udprr__gather_due(&g, &rtt, 0, 0), 1);
    const uint8_t wrong[4] = {0xab, 0xce, 1, 2}, right[4] = {0xab, 0xcd, 1, 2};
    int status;
    struct udprr__gather_key k = key_of(1);
    const uint8_t *body;
    size_t body_len;
    ck_assert_int_eq(udprr__gather_datagram(&g, wrong, 4, &k, &status, &body,
                                            &body_len),
                     0);
    ck_assert_int_eq(udprr__gather_datagram(&g, right, 4, &k, &status, &body,
                                            &body_len),
                     1);
    ck_assert_int_eq(status, UDPRR_OK);
    ck_assert_uint_eq(body_len, 4); /* the whole datagram */
    udprr__gather_free(&g);

    /* Raw: anything from a new sender is its answer. */
    const struct udprr__framing raw = {UDPRR_FRAMING_RAW, 0, 0, 0};
    ck_assert_int_eq(udprr__gather_init(&g, &raw, 0, 0, 1000, 10, 0),
                     UDPRR_OK);
    ck_assert_uint_eq(udprr__gather_due(&g, &rtt, 0, 0), 1);
    ck_assert_int_eq(udprr__gather_datagram(&g, wrong, 4, &k, &status, &body,
                                            &body_len),
                     1);
    ck_assert_int_eq(udprr__gather_datagram(&g, right, 4, &k, &status, &body,
                                            &body_len),
                     0);
    udprr__gather_free(&g);
}
END_TEST

static Suite *gather_suite(void)
{
    Suite *s = suite_create("gather");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_schedule_doubles_until_the_window_closes);
    tcase_add_test(tc, test_next_is_the_transmission_or_the_end);
    tcase_add_test(tc, test_jitter_follows_the_retry_schedule);
    tcase_add_test(tc, test_max_attempts);
    tcase_add_test(tc, test_bad_arguments);
    tcase_add_test(tc, test_each_server_once);
    tcase_add_test(tc, test_echoes_are_answered_a_few_times);
    tcase_add_test(tc, test_max_replies_and_stop);
    tcase_add_test(tc, test_id_at_offset_and_raw);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return udprr_test_run(gather_suite());
}
