/* SPDX-License-Identifier: MIT */
/*
 * sock.c - system calls for sockets, time and randomness. See sock.h.
 */
#include "sock.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "udprr.h"

uint64_t udprr__now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

int udprr__random_bytes(void *buf, size_t n)
{
    uint8_t *p = buf;
    while (n > 0) {
        ssize_t got = getrandom(p, n, 0);
        if (got < 0) {
            if (errno == EINTR)
                continue;
            return UDPRR_ESYS;
        }
        p += got;
        n -= (size_t)got;
    }
    return UDPRR_OK;
}

int udprr__sock_status(int err)
{
    switch (err) {
    case ECONNREFUSED:
        return UDPRR_EREFUSED;
    case EMSGSIZE:
        return UDPRR_ETOOBIG;
    default:
        return UDPRR_ESYS;
    }
}

static int resolve(const char *host, const char *service, int passive,
                   struct addrinfo **res)
{
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_DGRAM;
    hints.ai_protocol = IPPROTO_UDP;
    hints.ai_flags = passive ? AI_PASSIVE : 0;
    int rc = getaddrinfo(host, service, &hints, res);
    if (rc == EAI_MEMORY)
        return UDPRR_ENOMEM;
    if (rc == EAI_SYSTEM)
        return UDPRR_ESYS;
    return rc == 0 ? UDPRR_OK : UDPRR_ERESOLVE;
}

static int open_udp(int family)
{
    return socket(family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC,
                  IPPROTO_UDP);
}

/* Tries each address in turn with attach (connect or bind); the errno of
 * the last failure survives for the caller. */
static int first_that_works(const struct addrinfo *list,
                            int (*attach)(int, const struct sockaddr *,
                                          socklen_t),
                            int *fd_out)
{
    int saved = EADDRNOTAVAIL;
    for (const struct addrinfo *ai = list; ai != NULL; ai = ai->ai_next) {
        int fd = open_udp(ai->ai_family);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        if (attach(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            *fd_out = fd;
            return UDPRR_OK;
        }
        saved = errno;
        close(fd);
    }
    errno = saved;
    return UDPRR_ESYS;
}

int udprr__sock_connect(const char *host, const char *service, int *fd_out)
{
    struct addrinfo *list;
    int rc = resolve(host, service, 0, &list);
    if (rc != UDPRR_OK)
        return rc;
    rc = first_that_works(list, connect, fd_out);
    freeaddrinfo(list);
    return rc;
}

/* The wildcard bind: one IPv6 socket that also receives IPv4 (as mapped
 * addresses) where the system allows it, else plain IPv4. */
static int bind_any(const char *service, int *fd_out)
{
    struct addrinfo *list;
    int rc = resolve(NULL, service, 1, &list);
    if (rc != UDPRR_OK)
        return rc;
    for (const struct addrinfo *ai = list; ai != NULL; ai = ai->ai_next) {
        if (ai->ai_family != AF_INET6)
            continue;
        int fd = open_udp(AF_INET6);
        int off = 0;
        if (fd < 0)
            break;
        if (setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off) == 0 &&
            bind(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            freeaddrinfo(list);
            *fd_out = fd;
            return UDPRR_OK;
        }
        close(fd);
        break;
    }
    for (struct addrinfo *ai = list; ai != NULL; ai = ai->ai_next)
        if (ai->ai_family == AF_INET) {
            struct addrinfo *next = ai->ai_next;
            ai->ai_next = NULL; /* try this one alone */
            rc = first_that_works(ai, bind, fd_out);
            ai->ai_next = next;
            freeaddrinfo(list);
            return rc;
        }
    freeaddrinfo(list);
    errno = EAFNOSUPPORT;
    return UDPRR_ESYS;
}

int udprr__sock_bind(const char *host, const char *service, int *fd_out)
{
    if (host == NULL)
        return bind_any(service, fd_out);
    struct addrinfo *list;
    int rc = resolve(host, service, 1, &list);
    if (rc != UDPRR_OK)
        return rc;
    rc = first_that_works(list, bind, fd_out);
    freeaddrinfo(list);
    return rc;
}

static void put16(uint8_t *p, uint16_t v)
{
    memcpy(p, &v, sizeof v);
}

size_t udprr__sock_addr_key(const struct sockaddr *addr, socklen_t len,
                            uint8_t *out)
{
    if (addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)addr;
        out[0] = 4;
        put16(out + 1, in->sin_port);
        memcpy(out + 3, &in->sin_addr, 4);
        return 7;
    }
    if (addr->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)addr;
        out[0] = 6;
        put16(out + 1, in6->sin6_port);
        memcpy(out + 3, &in6->sin6_addr, 16);
        memcpy(out + 19, &in6->sin6_scope_id, 4);
        return 23;
    }
    return 0;
}

int udprr__sock_wait(int fd, uint64_t timeout_us)
{
    struct pollfd p = {fd, POLLIN, 0};
    struct timespec ts, *tsp = NULL;
    if (timeout_us != UINT64_MAX) {
        ts.tv_sec = (time_t)(timeout_us / 1000000u);
        ts.tv_nsec = (long)(timeout_us % 1000000u) * 1000;
        tsp = &ts;
    }
    int n = ppoll(&p, 1, tsp, NULL);
    if (n < 0)
        return -1;
    return n > 0;
}
