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
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/random.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "alloc.h"
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

/* connect(2) or bind(2). */
typedef int attach_fn(int fd, const struct sockaddr *addr, socklen_t len);

/* Tries each address in turn with attach; the errno of the last failure
 * survives for the caller. */
static int first_that_works(const struct addrinfo *list, attach_fn *attach,
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

/* Resolves host/service and attaches a socket to the first address that
 * takes one (passive: for bind, else for connect). */
static int resolve_and_attach(const char *host, const char *service,
                              int passive, attach_fn *attach, int *fd_out)
{
    struct addrinfo *list;
    int rc = resolve(host, service, passive, &list);
    if (rc != UDPRR_OK)
        return rc;
    rc = first_that_works(list, attach, fd_out);
    freeaddrinfo(list);
    return rc;
}

int udprr__sock_connect(const char *host, const char *service, int *fd_out)
{
    return resolve_and_attach(host, service, 0, connect, fd_out);
}

/* The wildcard bind: one IPv6 socket that also receives IPv4 (as mapped
 * addresses) where the system allows it, else plain IPv4. */
static int bind_any(const char *service, attach_fn *attach, int *fd_out)
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
            attach(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
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
            rc = first_that_works(ai, attach, fd_out);
            ai->ai_next = next;
            freeaddrinfo(list);
            return rc;
        }
    freeaddrinfo(list);
    errno = EAFNOSUPPORT;
    return UDPRR_ESYS;
}

/* bind(2), after joining the group of sockets that share the address
 * (SO_REUSEPORT: the kernel spreads datagrams over the group by a hash of
 * the sender's address and port, so one client stays on one socket; only
 * sockets of the same user may join). */
static int bind_shared(int fd, const struct sockaddr *addr, socklen_t len)
{
    int on = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &on, sizeof on) != 0)
        return -1;
    return bind(fd, addr, len);
}

int udprr__sock_bind(const char *host, const char *service, int shared,
                     int *fd_out)
{
    attach_fn *attach = shared ? bind_shared : bind;
    if (host == NULL)
        return bind_any(service, attach, fd_out);
    return resolve_and_attach(host, service, 1, attach, fd_out);
}

int udprr__sock_bind_beside(int first_fd, int *fd_out)
{
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    if (getsockname(first_fd, (struct sockaddr *)&addr, &len) != 0)
        return UDPRR_ESYS;
    int fd = open_udp(addr.ss_family);
    if (fd < 0)
        return UDPRR_ESYS;
    int v6only = 0;
    socklen_t v6only_len = sizeof v6only;
    /* A dual-stack first socket has dual-stack siblings: a group's
     * sockets must agree, or the bind fails. */
    if ((addr.ss_family != AF_INET6 ||
         (getsockopt(first_fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only,
                     &v6only_len) == 0 &&
          setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only,
                     sizeof v6only) == 0)) &&
        bind_shared(fd, (struct sockaddr *)&addr, len) == 0) {
        *fd_out = fd;
        return UDPRR_OK;
    }
    int saved = errno;
    close(fd);
    errno = saved;
    return UDPRR_ESYS;
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

int udprr__sock_wait(int fd, int wake_fd, uint64_t timeout_us)
{
    /* poll ignores an entry whose fd is negative: wake_fd -1 waits on fd
     * alone. */
    struct pollfd p[2] = {{fd, POLLIN, 0}, {wake_fd, POLLIN, 0}};
    struct timespec ts, *tsp = NULL;
    if (timeout_us != UINT64_MAX) {
        ts.tv_sec = (time_t)(timeout_us / 1000000u);
        ts.tv_nsec = (long)(timeout_us % 1000000u) * 1000;
        tsp = &ts;
    }
    if (ppoll(p, 2, tsp, NULL) < 0)
        return -1;
    return p[0].revents != 0;
}

int udprr__sock_name(int fd, struct sockaddr *addr, socklen_t *len)
{
    return getsockname(fd, addr, len) == 0 ? UDPRR_OK : UDPRR_ESYS;
}

void udprr__sock_close(int fd)
{
    if (fd >= 0)
        close(fd);
}

int udprr__sock_send(int fd, const void *buf, size_t len)
{
    int refused = 0;
    for (;;) {
        if (send(fd, buf, len, 0) >= 0)
            return UDPRR_OK;
        if (errno == EINTR)
            continue;
        /* Stale: the error belongs to an earlier datagram (a late
         * retransmission of a request long answered, say). If nothing
         * listens now, this datagram's own ICMP error comes back to the
         * receive. */
        if (errno == ECONNREFUSED && !refused) {
            refused = 1;
            continue;
        }
        return udprr__sock_status(errno);
    }
}

size_t udprr__sock_recv_many(int fd, uint8_t *bufs, size_t buf_size,
                             size_t n, size_t *lens, int *refused)
{
    struct mmsghdr msgs[UDPRR__RECV_BATCH];
    struct iovec iov[UDPRR__RECV_BATCH];
    *refused = 0;
    if (n > UDPRR__RECV_BATCH)
        n = UDPRR__RECV_BATCH;
    memset(msgs, 0, n * sizeof msgs[0]);
    for (size_t i = 0; i < n; i++) {
        iov[i].iov_base = bufs + i * buf_size;
        iov[i].iov_len = buf_size;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    for (;;) {
        int got = recvmmsg(fd, msgs, (unsigned)n, MSG_DONTWAIT, NULL);
        if (got >= 0) {
            for (int i = 0; i < got; i++)
                lens[i] = msgs[i].msg_len;
            return (size_t)got;
        }
        if (errno == EINTR)
            continue;
        /* The kernel reports the ICMP error before datagrams already
         * queued; the caller reads on, so a reply that arrived before the
         * server went away still completes its request. */
        *refused = errno == ECONNREFUSED;
        return 0;
    }
}

struct udprr__recv_batch {
    size_t n;
    uint8_t *bufs; /* n slots of UDPRR__RECV_BUFFER_BYTES */
    struct mmsghdr *msgs;
    struct iovec *iov;
    struct sockaddr_storage *peers;
};

int udprr__recv_batch_new(udprr__recv_batch **out, size_t n)
{
    if (n == 0 || n > UDPRR__SOCK_BATCH)
        return UDPRR_EINVAL;
    udprr__recv_batch *b = udprr__calloc(1, sizeof *b);
    if (b == NULL)
        return UDPRR_ENOMEM;
    b->n = n;
    /* malloc, not calloc: the slots are only read after the kernel wrote
     * them (see sock.h). */
    b->bufs = udprr__malloc(n * UDPRR__RECV_BUFFER_BYTES);
    b->msgs = udprr__calloc(n, sizeof *b->msgs);
    b->iov = udprr__calloc(n, sizeof *b->iov);
    b->peers = udprr__calloc(n, sizeof *b->peers);
    if (b->bufs == NULL || b->msgs == NULL || b->iov == NULL ||
        b->peers == NULL) {
        udprr__recv_batch_free(b);
        return UDPRR_ENOMEM;
    }
    for (size_t i = 0; i < n; i++) {
        b->iov[i].iov_base = b->bufs + i * UDPRR__RECV_BUFFER_BYTES;
        b->iov[i].iov_len = UDPRR__RECV_BUFFER_BYTES;
        b->msgs[i].msg_hdr.msg_iov = &b->iov[i];
        b->msgs[i].msg_hdr.msg_iovlen = 1;
        b->msgs[i].msg_hdr.msg_name = &b->peers[i];
    }
    *out = b;
    return UDPRR_OK;
}

void udprr__recv_batch_free(udprr__recv_batch *b)
{
    if (b == NULL)
        return;
    udprr__free(b->bufs);
    udprr__free(b->msgs);
    udprr__free(b->iov);
    udprr__free(b->peers);
    udprr__free(b);
}

size_t udprr__sock_recv_many_from(int fd, udprr__recv_batch *b)
{
    /* The kernel overwrites each address length with the sender's. */
    for (size_t i = 0; i < b->n; i++)
        b->msgs[i].msg_hdr.msg_namelen = sizeof b->peers[i];
    for (;;) {
        int got = recvmmsg(fd, b->msgs, (unsigned)b->n, MSG_DONTWAIT, NULL);
        if (got >= 0)
            return (size_t)got;
        if (errno != EINTR)
            return 0;
    }
}

uint8_t *udprr__recv_batch_data(udprr__recv_batch *b, size_t i, size_t *len)
{
    *len = b->msgs[i].msg_len;
    return b->bufs + i * UDPRR__RECV_BUFFER_BYTES;
}

const struct sockaddr *udprr__recv_batch_peer(const udprr__recv_batch *b,
                                              size_t i, socklen_t *peer_len)
{
    *peer_len = b->msgs[i].msg_hdr.msg_namelen;
    return (const struct sockaddr *)&b->peers[i];
}

size_t udprr__sock_send_many_to(int fd, const struct udprr__sock_out *out,
                                size_t n, int *status)
{
    struct mmsghdr msgs[UDPRR__SOCK_BATCH];
    struct iovec iov[UDPRR__SOCK_BATCH][2];
    if (n > UDPRR__SOCK_BATCH)
        n = UDPRR__SOCK_BATCH;
    memset(msgs, 0, n * sizeof msgs[0]);
    for (size_t i = 0; i < n; i++) {
        const struct udprr__sock_out *o = &out[i];
        size_t k = 0;
        if (o->header_len > 0)
            iov[i][k++] = (struct iovec){(void *)o->header, o->header_len};
        if (o->body_len > 0)
            iov[i][k++] = (struct iovec){(void *)o->body, o->body_len};
        msgs[i].msg_hdr.msg_name = (void *)o->peer;
        msgs[i].msg_hdr.msg_namelen = o->peer_len;
        msgs[i].msg_hdr.msg_iov = iov[i];
        msgs[i].msg_hdr.msg_iovlen = k;
    }
    size_t done = 0, sent = 0;
    while (done < n) {
        int got = sendmmsg(fd, msgs + done, (unsigned)(n - done), 0);
        if (got > 0) {
            for (size_t i = done; i < done + (size_t)got; i++)
                status[i] = UDPRR_OK;
            done += (size_t)got;
            sent += (size_t)got;
            continue;
        }
        if (got < 0 && errno == EINTR)
            continue;
        /* sendmmsg fails only when its first datagram fails (a later
         * failure ends the call early, and the next call meets it
         * first): that one is what errno is about. */
        status[done++] = udprr__sock_status(got < 0 ? errno : EIO);
    }
    return sent;
}

int udprr__wake_open(int *fd_out)
{
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0)
        return UDPRR_ESYS;
    *fd_out = fd;
    return UDPRR_OK;
}

void udprr__wake_signal(int wake_fd)
{
    int saved = errno;
    uint64_t one = 1;
    ssize_t ignored = write(wake_fd, &one, sizeof one);
    (void)ignored; /* a full eventfd is already a pending wake-up */
    errno = saved;
}

void udprr__wake_drain(int wake_fd)
{
    uint64_t count;
    ssize_t ignored = read(wake_fd, &count, sizeof count);
    (void)ignored; /* EAGAIN: nothing was pending */
}

int udprr__poller_open(int fd_a, int fd_b, int *epfd_out)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        return UDPRR_ESYS;
    int fds[2] = {fd_a, fd_b};
    for (int i = 0; i < 2; i++) {
        struct epoll_event ev;
        memset(&ev, 0, sizeof ev);
        ev.events = EPOLLIN; /* level-triggered */
        ev.data.fd = fds[i];
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev) < 0) {
            int saved = errno;
            close(ep);
            errno = saved;
            return UDPRR_ESYS;
        }
    }
    *epfd_out = ep;
    return UDPRR_OK;
}

int udprr__poller_remove(int epfd, int fd)
{
    return epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL) == 0 ? UDPRR_OK
                                                         : UDPRR_ESYS;
}
