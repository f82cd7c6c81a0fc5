/* SPDX-License-Identifier: MIT */
/*
 * example_util.h - the few lines every example needs: printing an
 * address, saying where a server listens, stopping it on a signal,
 * reading numbers from the command line and timing a run. Plain libudprr
 * API use, kept in one place so each example shows only what is its own.
 */
#ifndef EXAMPLE_UTIL_H
#define EXAMPLE_UTIL_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <udprr.h>

#define EXAMPLE_ADDR_MAX (INET6_ADDRSTRLEN + 8)

/* "127.0.0.1:1060" or "::1:1060". */
static inline void example_format_addr(const struct sockaddr *sa, char *out,
                                       size_t cap)
{
    char host[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
        port = ntohs(in->sin_port);
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, host, sizeof host);
        port = ntohs(in6->sin6_port);
    }
    snprintf(out, cap, "%s:%u", host, port);
}

/* Prints "Listening at ADDR:PORT" (no newline: callers may add to it). */
static inline void example_print_listening_no_newline(const udprr_server *s)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char where[EXAMPLE_ADDR_MAX] = "?";
    if (udprr_server_sockname(s, (struct sockaddr *)&ss, &len) == UDPRR_OK)
        example_format_addr((struct sockaddr *)&ss, where, sizeof where);
    printf("Listening at %s", where);
}

static inline void example_print_listening(const udprr_server *s)
{
    example_print_listening_no_newline(s);
    printf("\n");
    fflush(stdout);
}

static udprr_server *example_signal_target;

static void example_on_signal(int sig)
{
    (void)sig;
    udprr_server_stop(example_signal_target); /* async-signal-safe */
}

/* SIGINT and SIGTERM stop s; so does SIGALRM after `seconds` (0: never). */
static inline void example_stop_on_signals(udprr_server *s, unsigned seconds)
{
    struct sigaction sa;
    example_signal_target = s;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = example_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGALRM, &sa, NULL);
    if (seconds > 0)
        alarm(seconds);
}

/* Before closing the server: no signal may reach a closed handle. */
static inline void example_forget_signals(void)
{
    alarm(0);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGALRM, SIG_DFL);
}

/* Digits only, within [min, max]. 0 on success, -1 otherwise. */
static inline int example_parse_uint(const char *s, unsigned min,
                                     unsigned max, unsigned *out)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*s < '0' || *s > '9' || *end != '\0' || v < min || v > max)
        return -1;
    *out = (unsigned)v;
    return 0;
}

/* A duration in milliseconds from the command line: digits only, at most
 * an hour. 0 on success, -1 otherwise. */
static inline int example_parse_ms(const char *s, unsigned *out)
{
    return example_parse_uint(s, 0, 3600000, out);
}

/* Seconds on the monotonic clock since start. */
static inline double example_seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) +
           (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

#endif /* EXAMPLE_UTIL_H */
