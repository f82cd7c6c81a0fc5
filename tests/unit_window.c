/* SPDX-License-Identifier: MIT */
/*
 * unit_window.c - the congestion window core (lib/window.c): its bounds,
 * slow start, congestion avoidance, and halving once per window.
 */
#include "testutil.h"
#include "window.h"

/* n replies, each arriving while the window is full. */
static void full_replies(struct udprr__window *w, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        udprr__window_reply(w, w->size);
}

START_TEST(test_start_and_bounds)
{
    struct udprr__window w;
    udprr__window_init(&w, 0, 64);
    ck_assert_uint_eq(w.size, UDPRR__WINDOW_INITIAL);
    ck_assert_uint_eq(w.ssthresh, 64);
    udprr__window_init(&w, 0, 2); /* a ceiling under the initial window */
    ck_assert_uint_eq(w.size, 2);
    udprr__window_init(&w, 10, 5);
    ck_assert_uint_eq(w.size, 5);
    udprr__window_init(&w, 0, 0); /* never below one */
    ck_assert_uint_eq(w.size, 1);
    ck_assert_uint_eq(w.max, 1);
    udprr__window_init(&w, 70000, 70000);
    ck_assert_uint_eq(w.max, UDPRR__WINDOW_MAX);
    ck_assert_uint_eq(w.size, UDPRR__WINDOW_MAX);
}
END_TEST

START_TEST(test_slow_start_doubles_per_window_of_replies)
{
    struct udprr__window w;
    udprr__window_init(&w, 0, 64);
    full_replies(&w, 4); /* one round trip of a full window of 4 */
    ck_assert_uint_eq(w.size, 8);
    full_replies(&w, 8);
    ck_assert_uint_eq(w.size, 16);
    full_replies(&w, 1000);
    ck_assert_uint_eq(w.size, 64); /* and stops at the ceiling */
    ck_assert_uint_eq(w.reductions, 0);
}
END_TEST

START_TEST(test_replies_while_not_full_leave_it)
{
    struct udprr__window w;
    udprr__window_init(&w, 0, 64);
    for (int i = 0; i < 100; i++)
        udprr__window_reply(&w, 3); /* three in flight, window of four */
    ck_assert_uint_eq(w.size, 4);
    udprr__window_reply(&w, 4);
    ck_assert_uint_eq(w.size, 5);
}
END_TEST

START_TEST(test_loss_halves_once_per_window)
{
    struct udprr__window w;
    udprr__window_init(&w, 0, 64);
    full_replies(&w, 12); /* 16 */
    ck_assert_uint_eq(w.size, 16);
    /* Requests 1..40 sent; number 30 times out. */
    ck_assert_int_eq(udprr__window_loss(&w, 30, 40), 1);
    ck_assert_uint_eq(w.size, 8);
    ck_assert_uint_eq(w.ssthresh, 8);
    /* The rest of that window (sent up to 40) is the same episode. */
    ck_assert_int_eq(udprr__window_loss(&w, 31, 41), 0);
    ck_assert_int_eq(udprr__window_loss(&w, 40, 45), 0);
    ck_assert_uint_eq(w.size, 8);
    ck_assert_uint_eq(w.reductions, 1);
    /* A request sent after the halving is a new episode. */
    ck_assert_int_eq(udprr__window_loss(&w, 41, 50), 1);
    ck_assert_uint_eq(w.size, 4);
    ck_assert_uint_eq(w.reductions, 2);
}
END_TEST

START_TEST(test_avoidance_grows_one_per_window)
{
    struct udprr__window w;
    udprr__window_init(&w, 0, 64);
    full_replies(&w, 12);
    udprr__window_loss(&w, 1, 1); /* 16 -> 8, ssthresh 8 */
    ck_assert_uint_eq(w.size, 8);
    full_replies(&w, 7);
    ck_assert_uint_eq(w.size, 8); /* 7 of the 8 replies it takes */
    full_replies(&w, 1);
    ck_assert_uint_eq(w.size, 9);
    full_replies(&w, 9);
    ck_assert_uint_eq(w.size, 10);
    full_replies(&w, 10 + 11 + 12);
    ck_assert_uint_eq(w.size, 13);
}
END_TEST

START_TEST(test_never_below_one)
{
    struct udprr__window w;
    udprr__window_init(&w, 1, 64);
    ck_assert_int_eq(udprr__window_loss(&w, 1, 1), 1);
    ck_assert_uint_eq(w.size, 1);
    ck_assert_int_eq(udprr__window_loss(&w, 2, 2), 1);
    ck_assert_uint_eq(w.size, 1);
    ck_assert_uint_eq(w.ssthresh, 1);
    full_replies(&w, 1); /* avoidance from one: a reply per window of one */
    ck_assert_uint_eq(w.size, 2);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("window");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_start_and_bounds);
    tcase_add_test(tc, test_slow_start_doubles_per_window_of_replies);
    tcase_add_test(tc, test_replies_while_not_full_leave_it);
    tcase_add_test(tc, test_loss_halves_once_per_window);
    tcase_add_test(tc, test_avoidance_grows_one_per_window);
    tcase_add_test(tc, test_never_below_one);
    suite_add_tcase(s, tc);
    return udprr_test_run(s);
}
