/* SPDX-License-Identifier: MIT */
/*
 * testutil.h - what every Check suite binary shares.
 */
#ifndef UDPRR_TESTUTIL_H
#define UDPRR_TESTUTIL_H

#include <check.h>
#include <stdint.h>
#include <stdlib.h>

#include "seeded_rand.h"

/* Runs one suite and turns its result into the process exit status. */
static inline int udprr_test_run(Suite *suite)
{
    SRunner *runner = srunner_create(suite);
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}

#endif /* UDPRR_TESTUTIL_H */
