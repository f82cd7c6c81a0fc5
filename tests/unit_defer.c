/* SPDX-License-Identifier: MIT */
/*
 * unit_defer.c - the table of deferred requests (lib/defer.c): tokens that
 * are never reused, the bound, taking an entry once, expiry to the
 * microsecond in insertion order, and freeing what is left.
 */
#include <string.h>

#include "alloc.h"
#include "defer.h"
#include "testutil.h"
#include "udprr.h"

static struct udprr__deferred *node(uint64_t id)
{
    struct udprr__deferred *n = udprr__malloc(sizeof *n);
    ck_assert_ptr_nonnull(n);
    memset(n, 0, sizeof *n);
    n->id = id;
    return n;
}

/* Adds a node for request id at now_us; returns its token. */
static uint64_t add(udprr__defer *t, uint64_t id, uint64_t now_us)
{
    uint64_t want = udprr__defer_next_token(t);
    struct udprr__deferred *n = node(id);
    ck_assert_int_eq(udprr__defer_add(t, n, now_us), UDPRR_OK);
    ck_assert_uint_eq(n->token, want);
    return n->token;
}

START_TEST(test_limits)
{
    udprr__defer *t = (udprr__defer *)1;
    ck_assert_int_eq(udprr__defer_new(&t, 0, 1), UDPRR_EINVAL);
    ck_assert_ptr_null(t);
    ck_assert_int_eq(udprr__defer_new(&t, UDPRR__DEFER_MAX + 1, 1),
                     UDPRR_EINVAL);
    ck_assert_int_eq(udprr__defer_new(&t, 4, 0), UDPRR_EINVAL);
    ck_assert_int_eq(udprr__defer_new(NULL, 4, 1), UDPRR_EINVAL);
    ck_assert_int_eq(udprr__defer_new(&t, 4, 1), UDPRR_OK);
    udprr__defer_free(t);
    udprr__defer_free(NULL);
}
END_TEST

START_TEST(test_tokens_count_up_and_are_never_reused)
{
    udprr__defer *t;
    ck_assert_int_eq(udprr__defer_new(&t, 2, 1000), UDPRR_OK);
    ck_assert_uint_eq(add(t, 10, 0), 1);
    ck_assert_uint_eq(add(t, 11, 0), 2);
    /* Full: no token to give, and an add is refused. */
    ck_assert_uint_eq(udprr__defer_next_token(t), 0);
    struct udprr__deferred *extra = node(12);
    ck_assert_int_eq(udprr__defer_add(t, extra, 0), UDPRR_EBUSY);
    udprr__free(extra);
    /* Taken once: the second take finds nothing. */
    struct udprr__deferred *n = udprr__defer_take(t, 1);
    ck_assert_ptr_nonnull(n);
    ck_assert_uint_eq(n->id, 10);
    udprr__free(n);
    ck_assert_ptr_null(udprr__defer_take(t, 1));
    ck_assert_ptr_null(udprr__defer_take(t, 0));
    ck_assert_ptr_null(udprr__defer_take(t, 99));
    /* Room again, and the next token is new. */
    ck_assert_uint_eq(add(t, 13, 0), 3);
    ck_assert_uint_eq(udprr__defer_count(t), 2);
    udprr__defer_free(t); /* frees the two left (valgrind checks) */
}
END_TEST

START_TEST(test_expiry_in_order_to_the_microsecond)
{
    udprr__defer *t;
    uint64_t when = 0;
    ck_assert_int_eq(udprr__defer_new(&t, 8, 100), UDPRR_OK);
    ck_assert_int_eq(udprr__defer_next_expiry(t, &when), 0);
    add(t, 1, 10);
    add(t, 2, 20);
    add(t, 3, 30);
    ck_assert_int_eq(udprr__defer_next_expiry(t, &when), 1);
    ck_assert_uint_eq(when, 110);
    ck_assert_ptr_null(udprr__defer_take_expired(t, 109));
    struct udprr__deferred *n = udprr__defer_take_expired(t, 110);
    ck_assert_ptr_nonnull(n);
    ck_assert_uint_eq(n->id, 1);
    udprr__free(n);
    ck_assert_ptr_null(udprr__defer_take_expired(t, 119));
    /* Taking one from the middle keeps the order of the others. */
    n = udprr__defer_take(t, 2);
    udprr__free(n);
    ck_assert_int_eq(udprr__defer_next_expiry(t, &when), 1);
    ck_assert_uint_eq(when, 130);
    n = udprr__defer_take_expired(t, 1000);
    ck_assert_uint_eq(n->id, 3);
    udprr__free(n);
    ck_assert_ptr_null(udprr__defer_take_expired(t, 1000));
    ck_assert_uint_eq(udprr__defer_count(t), 0);
    /* An expiry past the clock's end saturates instead of wrapping. */
    add(t, 4, UINT64_MAX - 5);
    ck_assert_int_eq(udprr__defer_next_expiry(t, &when), 1);
    ck_assert_uint_eq(when, UINT64_MAX);
    udprr__defer_free(t);
}
END_TEST

START_TEST(test_many_entries_all_found)
{
    enum { N = 5000 };
    udprr__defer *t;
    ck_assert_int_eq(udprr__defer_new(&t, N, 1000), UDPRR_OK);
    for (uint64_t i = 0; i < N; i++)
        add(t, i, i);
    /* Every other one taken by token, the rest by age. */
    for (uint64_t tok = 2; tok <= N; tok += 2) {
        struct udprr__deferred *n = udprr__defer_take(t, tok);
        ck_assert_ptr_nonnull(n);
        ck_assert_uint_eq(n->id, tok - 1);
        udprr__free(n);
    }
    uint64_t expect = 0;
    struct udprr__deferred *n;
    while ((n = udprr__defer_take_oldest(t)) != NULL) {
        ck_assert_uint_eq(n->id, expect);
        expect += 2;
        udprr__free(n);
    }
    ck_assert_uint_eq(expect, N);
    udprr__defer_free(t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("defer");
    TCase *tc = tcase_create("table");
    tcase_add_test(tc, test_limits);
    tcase_add_test(tc, test_tokens_count_up_and_are_never_reused);
    tcase_add_test(tc, test_expiry_in_order_to_the_microsecond);
    tcase_add_test(tc, test_many_entries_all_found);
    suite_add_tcase(s, tc);
    return udprr_test_run(s);
}
