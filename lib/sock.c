/* SPDX-License-Identifier: MIT */
/*
 * sock.c - system calls for sockets, time and randomness. See sock.h.
 */
#include "sock.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <net/if.h>
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

static int resolve(const char *host, const char *service, int family,
                   int passive, struct addrinfo **res)
{
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = family;
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

/* A new socket whose setup ended with rc: handed out when it worked,
 * else closed, errno kept for the caller. Returns rc. */
static int keep_or_close(int fd, int rc, int *fd_out)
{
    if (rc == UDPRR_OK) {
        *fd_out = fd;
        return rc;
    }
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

static int set_int(int fd, int level, int name, int value)
{
    return setsockopt(fd, level, name, &value, sizeof value) == 0
               ? UDPRR_OK
               : UDPRR_ESYS;
}

/* SO_BINDTODEVICE: the socket sends and receives on the interface alone.
 * *ifindex gets its index. */
static int bind_device(int fd, const char *interface, unsigned *ifindex)
{
    *ifindex = if_nametoindex(interface);
    if (*ifindex == 0)
        return UDPRR_ERESOLVE;
    if (setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, interface,
                   (socklen_t)strlen(interface)) != 0)
        return UDPRR_ESYS;
    return UDPRR_OK;
}

/* Asks the kernel to tell, with every datagram, the local address it was
 * sent to and the interface it came in on. An IPv6 socket asks for both
 * families' messages: a dual-stack one receives IPv4 too, and only
 * IP_PKTINFO gives an IPv4 datagram's local address when it was sent to
 * a broadcast address (ipi_spec_dst). */
static int want_local(int fd, int family)
{
    /* Multicast only for the groups this socket joins (udprr_server_join),
     * not for every group another program on the host joined. */
    if (set_int(fd, IPPROTO_IP, IP_MULTICAST_ALL, 0) != UDPRR_OK)
        return UDPRR_ESYS;
    if (family == AF_INET)
        return set_int(fd, IPPROTO_IP, IP_PKTINFO, 1);
#ifdef IPV6_MULTICAST_ALL
    if (set_int(fd, IPPROTO_IPV6, IPV6_MULTICAST_ALL, 0) != UDPRR_OK)
        return UDPRR_ESYS;
#endif
    if (set_int(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, 1) != UDPRR_OK ||
        set_int(fd, IPPROTO_IP, IP_PKTINFO, 1) != UDPRR_OK)
        return UDPRR_ESYS;
    return UDPRR_OK;
}

/* Binds fd (of family) to the first address of host/service of that
 * family that takes it. */
static int bind_local(int fd, int family, const char *host,
                      const char *service)
{
    struct addrinfo *list;
    int rc = resolve(host, service, family, 1, &list);
    if (rc != UDPRR_OK)
        return rc;
    rc = UDPRR_ESYS;
    for (const struct addrinfo *ai = list; ai != NULL; ai = ai->ai_next)
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
            rc = UDPRR_OK;
            break;
        }
    int saved = errno;
    freeaddrinfo(list);
    errno = saved;
    return rc;
}

/* The IPv4 half of a client socket's setup. An IPv6 socket gets it too:
 * to a v4-mapped address it sends IPv4, which reads these. */
static int apply_setup_v4(int fd, const struct udprr__sock_setup *st,
                          unsigned ifindex)
{
    if (ifindex != 0) {
        struct ip_mreqn m;
        memset(&m, 0, sizeof m);
        m.imr_ifindex = (int)ifindex;
        if (setsockopt(fd, IPPROTO_IP, IP_MULTICAST_IF, &m, sizeof m) != 0)
            return UDPRR_ESYS;
    }
    if (st->multicast_ttl != 0 &&
        set_int(fd, IPPROTO_IP, IP_MULTICAST_TTL, (int)st->multicast_ttl) !=
            UDPRR_OK)
        return UDPRR_ESYS;
    if (st->dont_fragment &&
        set_int(fd, IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_DO) != UDPRR_OK)
        return UDPRR_ESYS;
    return UDPRR_OK;
}

static int apply_setup_v6(int fd, const struct udprr__sock_setup *st,
                          unsigned ifindex)
{
    if (ifindex != 0 &&
        set_int(fd, IPPROTO_IPV6, IPV6_MULTICAST_IF, (int)ifindex) != UDPRR_OK)
        return UDPRR_ESYS;
    if (st->multicast_ttl != 0 &&
        set_int(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS,
                (int)st->multicast_ttl) != UDPRR_OK)
        return UDPRR_ESYS;
    if (st->dont_fragment &&
        (set_int(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_DO) !=
             UDPRR_OK ||
         set_int(fd, IPPROTO_IPV6, IPV6_DONTFRAG, 1) != UDPRR_OK))
        return UDPRR_ESYS;
    return apply_setup_v4(fd, st, ifindex);
}

/* Sets a new client socket up (udprr__sock_setup), before it connects;
 * with_port: bind local_service too. */
static int apply_setup(int fd, int family, const struct udprr__sock_setup *st,
                       int with_port)
{
    if (st == NULL)
        return UDPRR_OK;
    unsigned ifindex = 0;
    int rc;
    if (st->interface != NULL &&
        (rc = bind_device(fd, st->interface, &ifindex)) != UDPRR_OK)
        return rc;
    if (st->broadcast && set_int(fd, SOL_SOCKET, SO_BROADCAST, 1) != UDPRR_OK)
        return UDPRR_ESYS;
    rc = family == AF_INET ? apply_setup_v4(fd, st, ifindex)
                           : apply_setup_v6(fd, st, ifindex);
    if (rc != UDPRR_OK)
        return rc;
    const char *port = with_port ? st->local_service : NULL;
    /* One source port for several endpoints' sockets: each is connected
     * to its own server, and the kernel gives a connected socket the
     * datagrams of its peer first. */
    if (port != NULL && set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1) != UDPRR_OK)
        return UDPRR_ESYS;
    if (st->local_host != NULL || port != NULL)
        return bind_local(fd, family, st->local_host, port ? port : "0");
    return UDPRR_OK;
}

int udprr__sock_connect_each(const char *host, const char *service,
                             const struct udprr__sock_setup *setup, int *fds,
                             size_t cap, size_t *n)
{
    struct addrinfo *list;
    int rc = resolve(host, service, AF_UNSPEC, 0, &list);
    if (rc != UDPRR_OK)
        return rc;
    /* The failure reported is the most telling one: a socket that got as
     * far as its setup or its connect (EADDRINUSE, EACCES) over a source
     * address of no use for that family (ERESOLVE), over no socket at
     * all (EAFNOSUPPORT: IPv6 off, say). */
    int saved = EADDRNOTAVAIL, telling = 0, added = 0;
    rc = UDPRR_ESYS;
    for (const struct addrinfo *ai = list; ai != NULL && *n < cap;
         ai = ai->ai_next) {
        int now, fd = open_udp(ai->ai_family), err = errno;
        if (fd < 0) {
            now = UDPRR_ESYS;
        } else {
            /* A setup that fails for this address (no local address of
             * its family, say) may work for the next one. */
            now = apply_setup(fd, ai->ai_family, setup, 1);
            if (now == UDPRR_OK &&
                connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
                fds[(*n)++] = fd;
                added = 1;
                continue;
            }
            if (now == UDPRR_OK)
                now = UDPRR_ESYS;
            err = errno;
            close(fd);
        }
        int rank = fd < 0 ? 1 : now == UDPRR_ESYS ? 3 : 2;
        if (rank > telling) {
            telling = rank;
            rc = now;
            saved = err;
        }
    }
    freeaddrinfo(list);
    if (added)
        return UDPRR_OK;
    errno = saved;
    return rc;
}

int udprr__sock_open_unconnected(int family,
                                 const struct udprr__sock_setup *setup,
                                 int *fd_out)
{
    int fd = open_udp(family);
    if (fd < 0)
        return UDPRR_ESYS;
    return keep_or_close(fd, apply_setup(fd, family, setup, 0), fd_out);
}

int udprr__sock_share_port(int fd, int on)
{
    return set_int(fd, SOL_SOCKET, SO_REUSEADDR, on);
}

int udprr__sock_mtu(int fd, unsigned *mtu)
{
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    int value = 0;
    socklen_t value_len = sizeof value;
    if (getsockname(fd, (struct sockaddr *)&addr, &len) != 0)
        return UDPRR_ESYS;
    int v4 = addr.ss_family == AF_INET;
    if (getsockopt(fd, v4 ? IPPROTO_IP : IPPROTO_IPV6, v4 ? IP_MTU : IPV6_MTU,
                   &value, &value_len) != 0)
        return UDPRR_ESYS;
    *mtu = (unsigned)value;
    return UDPRR_OK;
}

/* How a server's socket is attached: bound, shared or not, to an
 * interface or not. */
struct binding {
    int shared;            /* SO_REUSEPORT */
    const char *interface; /* NULL: any */
};

/* Sets fd up as b says, binds it to addr, and asks for the local end of
 * every datagram. */
static int attach_server(int fd, const struct binding *b,
                         const struct sockaddr *addr, socklen_t len)
{
    unsigned ifindex;
    int rc;
    if (b->interface != NULL &&
        (rc = bind_device(fd, b->interface, &ifindex)) != UDPRR_OK)
        return rc;
    /* SO_REUSEPORT: the kernel spreads datagrams over the sockets that
     * share the address by a hash of the sender's address and port, so
     * one client stays on one socket; only sockets of the same user may
     * join. */
    if (b->shared && set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1) != UDPRR_OK)
        return UDPRR_ESYS;
    if (bind(fd, addr, len) != 0)
        return UDPRR_ESYS;
    return want_local(fd, addr->sa_family);
}

/* Opens a socket of ai's family, attaches it; closes it on failure. */
static int open_attached(const struct addrinfo *ai, const struct binding *b,
                         int v6only, int *fd_out)
{
    int fd = open_udp(ai->ai_family);
    if (fd < 0)
        return UDPRR_ESYS;
    int rc = UDPRR_OK;
    if (v6only >= 0)
        rc = set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, v6only);
    if (rc == UDPRR_OK)
        rc = attach_server(fd, b, ai->ai_addr, ai->ai_addrlen);
    return keep_or_close(fd, rc, fd_out);
}

/* The first address of list (of family, AF_UNSPEC: any) that takes a
 * socket. v6only: -1 leaves IPV6_V6ONLY as it is. */
static int bind_first(const struct addrinfo *list, int family, int v6only,
                      const struct binding *b, int *fd_out)
{
    int rc = UDPRR_ESYS, saved = EADDRNOTAVAIL;
    for (const struct addrinfo *ai = list; ai != NULL; ai = ai->ai_next) {
        if (family != AF_UNSPEC && ai->ai_family != family)
            continue;
        rc = open_attached(ai, b, v6only, fd_out);
        if (rc == UDPRR_OK || rc == UDPRR_ERESOLVE)
            return rc; /* an unknown interface is unknown for every one */
        saved = errno;
    }
    errno = saved;
    return rc;
}

int udprr__sock_bind(const char *host, const char *service, int shared,
                     const char *interface, int *fd_out)
{
    struct binding b = {shared, interface};
    struct addrinfo *list;
    int rc = resolve(host, service, AF_UNSPEC, 1, &list);
    if (rc != UDPRR_OK)
        return rc;
    if (host != NULL) {
        rc = bind_first(list, AF_UNSPEC, -1, &b, fd_out);
    } else {
        /* The wildcard: one IPv6 socket that also receives IPv4 (as
         * mapped addresses) where the system allows it, else plain IPv4. */
        rc = bind_first(list, AF_INET6, 0, &b, fd_out);
        if (rc != UDPRR_OK && rc != UDPRR_ERESOLVE)
            rc = bind_first(list, AF_INET, -1, &b, fd_out);
    }
    int saved = errno;
    freeaddrinfo(list);
    errno = saved;
    return rc;
}

int udprr__sock_bind_beside(int first_fd, const char *interface, int *fd_out)
{
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    if (getsockname(first_fd, (struct sockaddr *)&addr, &len) != 0)
        return UDPRR_ESYS;
    /* A dual-stack first socket has dual-stack siblings: a group's
     * sockets must agree, or the bind fails. */
    int v6only = -1;
    socklen_t v6only_len = sizeof v6only;
    if (addr.ss_family == AF_INET6 &&
        getsockopt(first_fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only,
                   &v6only_len) != 0)
        return UDPRR_ESYS;
    struct addrinfo ai;
    memset(&ai, 0, sizeof ai);
    ai.ai_family = addr.ss_family;
    ai.ai_addr = (struct sockaddr *)&addr;
    ai.ai_addrlen = len;
    struct binding b = {1, interface};
    return open_attached(&ai, &b, v6only, fd_out) == UDPRR_OK ? UDPRR_OK
                                                               : UDPRR_ESYS;
}

int udprr__sock_tune_server(int fd, size_t rcvbuf_bytes)
{
    if (rcvbuf_bytes > 0) {
        int bytes = rcvbuf_bytes > INT_MAX / 2 ? INT_MAX / 2 : (int)rcvbuf_bytes;
        /* FORCE passes over net.core.rmem_max, with CAP_NET_ADMIN. */
        if (set_int(fd, SOL_SOCKET, SO_RCVBUFFORCE, bytes) != UDPRR_OK &&
            set_int(fd, SOL_SOCKET, SO_RCVBUF, bytes) != UDPRR_OK)
            return UDPRR_ESYS;
    }
    return set_int(fd, SOL_SOCKET, SO_RXQ_OVFL, 1);
}

static int is_multicast(const struct sockaddr *a)
{
    if (a->sa_family == AF_INET)
        return IN_MULTICAST(
            ntohl(((const struct sockaddr_in *)a)->sin_addr.s_addr));
    return a->sa_family == AF_INET6 &&
           IN6_IS_ADDR_MULTICAST(&((const struct sockaddr_in6 *)a)->sin6_addr);
}

int udprr__sock_join(int fd, const char *group, const char *interface)
{
    struct addrinfo *list;
    unsigned ifindex = 0;
    if (interface != NULL && (ifindex = if_nametoindex(interface)) == 0)
        return UDPRR_ERESOLVE;
    int rc = resolve(group, NULL, AF_UNSPEC, 0, &list);
    if (rc != UDPRR_OK)
        return rc;
    if (!is_multicast(list->ai_addr) ||
        list->ai_addrlen > sizeof(struct sockaddr_storage)) {
        freeaddrinfo(list);
        return UDPRR_EINVAL;
    }
    /* The protocol-independent join (RFC 3678); an IPv4 group is joined
     * at the IPv4 level, also on a dual-stack IPv6 socket. */
    struct group_req req;
    memset(&req, 0, sizeof req);
    req.gr_interface = ifindex;
    memcpy(&req.gr_group, list->ai_addr, list->ai_addrlen);
    int level = list->ai_family == AF_INET ? IPPROTO_IP : IPPROTO_IPV6;
    freeaddrinfo(list);
    return setsockopt(fd, level, MCAST_JOIN_GROUP, &req, sizeof req) == 0
               ? UDPRR_OK
               : UDPRR_ESYS;
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

int udprr__sock_peer(int fd, struct sockaddr *addr, socklen_t *len)
{
    return getpeername(fd, addr, len) == 0 ? UDPRR_OK : UDPRR_ESYS;
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

/* Room for the control messages a server's socket asks for: IP_PKTINFO
 * and IPV6_PKTINFO, both for an IPv4 datagram on a dual-stack socket,
 * and the drop count (SO_RXQ_OVFL). */
#define CONTROL_BYTES                                                          \
    (CMSG_SPACE(sizeof(struct in_pktinfo)) +                                   \
     CMSG_SPACE(sizeof(struct in6_pktinfo)) + CMSG_SPACE(sizeof(uint32_t)))

union control {
    uint8_t bytes[CONTROL_BYTES];
    struct cmsghdr align;
};

struct udprr__recv_batch {
    size_t n;
    uint8_t *bufs; /* n slots of UDPRR__RECV_BUFFER_BYTES */
    struct mmsghdr *msgs;
    struct iovec *iov;
    struct sockaddr_storage *peers;
    union control *control;
    struct udprr__sock_local *locals;
    uint32_t drops; /* the kernel's drop count, as last told */
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
    b->control = udprr__calloc(n, sizeof *b->control);
    b->locals = udprr__calloc(n, sizeof *b->locals);
    if (b->bufs == NULL || b->msgs == NULL || b->iov == NULL ||
        b->peers == NULL || b->control == NULL || b->locals == NULL) {
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
    udprr__free(b->control);
    udprr__free(b->locals);
    udprr__free(b);
}

/* Reads the local end of a received datagram from its control messages,
 * and the drop count when it comes along (into *drops). IP_PKTINFO wins
 * over IPV6_PKTINFO for an IPv4 datagram: its ipi_spec_dst is the local
 * address to answer from, the arriving interface's own for a broadcast
 * or a multicast request. */
static void read_local(const struct msghdr *m, struct udprr__sock_local *l,
                       uint32_t *drops)
{
    memset(l, 0, sizeof *l);
    if (m->msg_flags & MSG_CTRUNC)
        return;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(m); c != NULL;
         c = CMSG_NXTHDR((struct msghdr *)m, c)) {
        if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SO_RXQ_OVFL) {
            memcpy(drops, CMSG_DATA(c), sizeof *drops);
        } else if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
            struct in_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof pi);
            l->family = AF_INET;
            l->ifindex = (unsigned)pi.ipi_ifindex;
            l->v4 = pi.ipi_spec_dst;
        } else if (c->cmsg_level == IPPROTO_IPV6 &&
                   c->cmsg_type == IPV6_PKTINFO && l->family != AF_INET) {
            struct in6_pktinfo pi;
            memcpy(&pi, CMSG_DATA(c), sizeof pi);
            l->ifindex = pi.ipi6_ifindex;
            if (IN6_IS_ADDR_V4MAPPED(&pi.ipi6_addr)) {
                l->family = AF_INET;
                memcpy(&l->v4, &pi.ipi6_addr.s6_addr[12], 4);
            } else {
                l->family = AF_INET6;
                /* Never from a group: the kernel picks a unicast one. */
                if (!IN6_IS_ADDR_MULTICAST(&pi.ipi6_addr))
                    l->v6 = pi.ipi6_addr;
            }
        }
    }
}

size_t udprr__sock_recv_many_from(int fd, udprr__recv_batch *b)
{
    /* The kernel overwrites each address and control length. */
    for (size_t i = 0; i < b->n; i++) {
        b->msgs[i].msg_hdr.msg_namelen = sizeof b->peers[i];
        b->msgs[i].msg_hdr.msg_control = &b->control[i];
        b->msgs[i].msg_hdr.msg_controllen = sizeof b->control[i];
    }
    for (;;) {
        int got = recvmmsg(fd, b->msgs, (unsigned)b->n, MSG_DONTWAIT, NULL);
        if (got >= 0) {
            for (int i = 0; i < got; i++)
                read_local(&b->msgs[i].msg_hdr, &b->locals[i], &b->drops);
            return (size_t)got;
        }
        if (errno != EINTR)
            return 0;
    }
}

uint32_t udprr__recv_batch_drops(const udprr__recv_batch *b)
{
    return b->drops;
}

const struct udprr__sock_local *
udprr__recv_batch_local(const udprr__recv_batch *b, size_t i)
{
    return &b->locals[i];
}

/* Writes the control message that sends a datagram from local into c;
 * returns its length (0: none). */
static size_t write_local(const struct udprr__sock_local *local,
                          union control *c)
{
    struct cmsghdr *h = &c->align;
    if (local == NULL || local->family == 0)
        return 0;
    memset(c, 0, sizeof *c);
    if (local->family == AF_INET) {
        struct in_pktinfo pi;
        /* The address alone: the routes choose the interface, as for
         * any IPv4 datagram (a host may take a datagram for one
         * interface's address on another). */
        memset(&pi, 0, sizeof pi);
        pi.ipi_spec_dst = local->v4;
        h->cmsg_level = IPPROTO_IP;
        h->cmsg_type = IP_PKTINFO;
        h->cmsg_len = CMSG_LEN(sizeof pi);
        memcpy(CMSG_DATA(h), &pi, sizeof pi);
        return CMSG_SPACE(sizeof pi);
    }
    /* The interface too: a link-local address means nothing without
     * it. */
    struct in6_pktinfo pi;
    memset(&pi, 0, sizeof pi);
    pi.ipi6_ifindex = local->ifindex;
    pi.ipi6_addr = local->v6;
    h->cmsg_level = IPPROTO_IPV6;
    h->cmsg_type = IPV6_PKTINFO;
    h->cmsg_len = CMSG_LEN(sizeof pi);
    memcpy(CMSG_DATA(h), &pi, sizeof pi);
    return CMSG_SPACE(sizeof pi);
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
    union control control[UDPRR__SOCK_BATCH];
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
        size_t control_len = write_local(o->local, &control[i]);
        if (control_len > 0) {
            msgs[i].msg_hdr.msg_control = &control[i];
            msgs[i].msg_hdr.msg_controllen = control_len;
        }
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

int udprr__poller_open(const int *fds, size_t n, int *epfd_out)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        return UDPRR_ESYS;
    for (size_t i = 0; i < n; i++) {
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
