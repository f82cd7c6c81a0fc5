/* SPDX-License-Identifier: MIT */
/*
 * unit_fuzz_replay.c - replays every saved input of one fuzz target
 * (fuzz/fuzz_NAME.c, its inputs in fuzz/corpus/NAME) through it, without a
 * fuzzing engine, as a regression test. The Makefile builds it once per
 * target, as build/tests/unit_fuzz_replay_NAME, with FUZZ_NAME ("NAME")
 * and FUZZ_SOURCE (the target's file) defined: a new fuzz/fuzz_NAME.c with
 * its corpus is replayed with no change here or in the Makefile. Under
 * ASan and valgrind (make check runs both) any read outside an input and
 * any leak is an error; the targets themselves abort when an invariant
 * does not hold.
 */
#include <dirent.h>
#include <stdio.h>
#include <string.h>

#include "testutil.h"

#ifndef FUZZ_NAME
#error "FUZZ_NAME and FUZZ_SOURCE name the target (see the Makefile)"
#endif

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#include FUZZ_SOURCE

START_TEST(test_replay_corpus)
{
    const char *dir = "fuzz/corpus/" FUZZ_NAME;
    DIR *d = opendir(dir);
    ck_assert_msg(d != NULL, "no corpus at %s (run from the project root)",
                  dir);
    int files = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        ck_assert_msg(f != NULL, "cannot open %s", path);
        static uint8_t buf[UDPRR_MAX_DATAGRAM + 64];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        /* Each input in a heap block of its own size, so ASan and valgrind
         * see any read past its end. */
        uint8_t *copy = malloc(n ? n : 1);
        ck_assert_ptr_nonnull(copy);
        memcpy(copy, buf, n);
        LLVMFuzzerTestOneInput(copy, n);
        free(copy);
        files++;
    }
    closedir(d);
    ck_assert_msg(files > 0, "%s holds no inputs", dir);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fuzz_replay_" FUZZ_NAME);
    TCase *tc = tcase_create(FUZZ_NAME);
    tcase_add_test(tc, test_replay_corpus);
    suite_add_tcase(s, tc);
    return udprr_test_run(s);
}
