/* SPDX-License-Identifier: MIT */
/*
 * bench.h - what the benchmarks share: a clock, and how they give up.
 */
#ifndef UDPRR_BENCH_H
#define UDPRR_BENCH_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* CLOCK_MONOTONIC in microseconds. */
static inline uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* The benchmark cannot measure at all: says why and exits 2. */
static inline void die(const char *what)
{
    fprintf(stderr, "bench: %s\n", what);
    exit(2);
}

#endif /* UDPRR_BENCH_H */
