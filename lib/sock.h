/* SPDX-License-Identifier: MIT */
/*
 * sock.h - the thin shell around the system: sockets, the clock, and the
 * kernel's random source. Everything that decides anything lives in the
 * pure cores; these functions only make system calls and map their errors
 * to status codes.
 *
 * Every system call on a socket (or on the server's wake-up eventfd) is
 * made here and nowhere else: client.c and server.c call the functions
 * below, batched (recvmmsg/sendmmsg) or one datagram at a time.
 */
#ifndef UDPRR_SOCK_H
#define UDPRR_SOCK_H

#include <stddef.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/types.h>

/* The largest datagram a receive can return (UDP over IPv6 carries up to
 * 65527 bytes); receive buffers of this size never truncate. */
#define UDPRR__RECV_BUFFER_BYTES 65536

/* CLOCK_MONOTONIC in microseconds. */
uint64_t udprr__now_us(void);

/* Fills buf with n bytes from the kernel's CSPRNG (getrandom). UDPRR_OK or
 * UDPRR_ESYS. */
int udprr__random_bytes(void *buf, size_t n);

/* How a client's socket is set up before it is connected (the client
 * options of the same names, udprr.h). All zero: nothing is set. */
struct udprr__sock_setup {
    const char *local_host;    /* bind to this source address; NULL: any */
    const char *local_service; /* ... and port; NULL: any */
    const char *interface;     /* SO_BINDTODEVICE and the multicast
                                  interface; NULL: none */
    int broadcast;             /* SO_BROADCAST */
    unsigned multicast_ttl;    /* 0: the kernel's default */
    int dont_fragment;         /* path MTU discovery "do": never fragment */
};

/* Non-blocking, close-on-exec UDP sockets set up as setup says (NULL:
 * plainly), one connect()ed to each address of host/service that takes
 * one, appended to fds[*n ..] while *n < cap. UDPRR_OK when at least one
 * was added; else the most telling failure: UDPRR_ESYS (errno set) from
 * a socket that got as far as its setup or connect, UDPRR_ERESOLVE
 * (host/service, local_host/local_service or the interface unknown),
 * UDPRR_ESYS from no socket at all. */
int udprr__sock_connect_each(const char *host, const char *service,
                             const struct udprr__sock_setup *setup, int *fds,
                             size_t cap, size_t *n);

/* A non-blocking, close-on-exec UDP socket of family, set up as setup
 * says but bound to any free port (setup->local_service is not used) and
 * not connected: one that can receive from any address. UDPRR_OK,
 * UDPRR_ERESOLVE, UDPRR_ESYS. */
int udprr__sock_open_unconnected(int family,
                                 const struct udprr__sock_setup *setup,
                                 int *fd_out);

/* Stops (on 0) or lets (on 1) other sockets that ask bind fd's port too
 * (SO_REUSEADDR). UDPRR_OK or UDPRR_ESYS. */
int udprr__sock_share_port(int fd, int on);

/* The path MTU the kernel knows for a connected socket (IP_MTU,
 * IPV6_MTU). UDPRR_OK or UDPRR_ESYS. */
int udprr__sock_mtu(int fd, unsigned *mtu);

/* A non-blocking, close-on-exec UDP socket bound to host/service; host
 * NULL: every interface, dual-stack where possible. shared: with
 * SO_REUSEPORT, so that udprr__sock_bind_beside can bind more sockets to
 * the same address. interface: only datagrams arriving on it
 * (SO_BINDTODEVICE); NULL: any. The socket reports where each datagram
 * arrived (udprr__recv_batch_local). UDPRR_OK, UDPRR_ERESOLVE (also an
 * unknown interface), UDPRR_ESYS. */
int udprr__sock_bind(const char *host, const char *service, int shared,
                     const char *interface, int *fd_out);

/* Another socket like it, bound with SO_REUSEPORT (and to the same
 * interface, which a group's sockets must share) to the address first_fd
 * got (its port too, when the first asked for port 0), which must have
 * been bound shared. The kernel then hands each sender's datagrams to one
 * socket of the group. UDPRR_OK or UDPRR_ESYS. */
int udprr__sock_bind_beside(int first_fd, const char *interface,
                            int *fd_out);

/* Sets a server socket's receive buffer (rcvbuf_bytes; 0: the system's
 * default; SO_RCVBUFFORCE where the process may, else SO_RCVBUF, which the
 * kernel caps at net.core.rmem_max) and asks the kernel to tell, with
 * each datagram, how many it has dropped on that socket so far
 * (SO_RXQ_OVFL: udprr__recv_batch_drops). UDPRR_OK or UDPRR_ESYS. */
int udprr__sock_tune_server(int fd, size_t rcvbuf_bytes);

/* Joins the multicast group (a numeric address or a name) on interface
 * (NULL: the one the routes choose). UDPRR_OK, UDPRR_EINVAL (not a
 * multicast address), UDPRR_ERESOLVE, UDPRR_ESYS. */
int udprr__sock_join(int fd, const char *group, const char *interface);

/* Maps the errno of a failed send or receive to a status: ECONNREFUSED to
 * UDPRR_EREFUSED, EMSGSIZE to UDPRR_ETOOBIG, anything else UDPRR_ESYS. */
int udprr__sock_status(int err);

/* Writes a compact key for a peer address (family, port, address, scope)
 * into out (at least 28 bytes) and returns its length, or 0 for an address
 * family it does not know. */
size_t udprr__sock_addr_key(const struct sockaddr *addr, socklen_t len,
                            uint8_t *out);

/* Waits until fd or wake_fd (-1: none) is readable, or timeout_us passes
 * (UINT64_MAX: forever), with microsecond precision. Returns 1 when fd is
 * readable, 0 when it is not (timed out, or only wake_fd is readable), -1
 * on error (errno set; EINTR is returned to the caller, not retried
 * here). */
int udprr__sock_wait(int fd, int wake_fd, uint64_t timeout_us);

/* The socket's own address, as getsockname(2). UDPRR_OK or UDPRR_ESYS. */
int udprr__sock_name(int fd, struct sockaddr *addr, socklen_t *len);

/* The address a socket is connected to, as getpeername(2). UDPRR_OK or
 * UDPRR_ESYS. */
int udprr__sock_peer(int fd, struct sockaddr *addr, socklen_t *len);

/* Closes a socket or a wake-up fd; -1 is a no-op. */
void udprr__sock_close(int fd);

/* --- a connected socket (the client) ------------------------------------ */

/* Sends one datagram on a connected socket, retrying EINTR. A send that
 * fails with ECONNREFUSED reports an ICMP error left on the socket by an
 * earlier datagram, not by this one (which was not sent); reporting it
 * cleared it, so the send is tried once more. UDPRR_OK, or the status of
 * the errno of the failure (udprr__sock_status). */
int udprr__sock_send(int fd, const void *buf, size_t len);

/* The most datagrams one udprr__sock_recv_many takes. */
#define UDPRR__RECV_BATCH 8

/* Takes up to n (at most UDPRR__RECV_BATCH) datagrams from a connected
 * socket without blocking, in one recvmmsg(2), retrying EINTR: datagram i
 * into bufs + i * buf_size, its length into lens[i]. Returns how many
 * were taken; fewer than n means the socket is drained, or failed. When
 * none was taken because the kernel reported an ICMP port unreachable,
 * *refused is 1 (datagrams queued before it may still follow: call
 * again); else 0 (errno says why, EAGAIN when drained). */
size_t udprr__sock_recv_many(int fd, uint8_t *bufs, size_t buf_size,
                             size_t n, size_t *lens, int *refused);

/* --- batches on an unconnected socket (the server) ---------------------- */

/* The local end of a datagram: the address it was sent to and the
 * interface it arrived on, as IP_PKTINFO or IPV6_PKTINFO told. An answer
 * sent with it leaves from that address, as a client connected to that
 * address requires; over IPv6 also through that interface (a link-local
 * address needs it), over IPv4 through the one the routes choose. For a
 * datagram sent to a
 * broadcast address or a multicast group the address is the arriving
 * interface's own (IPv4), or unspecified (IPv6: the kernel picks one). */
struct udprr__sock_local {
    int family;          /* AF_INET (also IPv4 on a dual-stack socket),
                            AF_INET6, or 0: unknown, the kernel chooses */
    unsigned ifindex;    /* 0: any */
    struct in_addr v4;   /* AF_INET */
    struct in6_addr v6;  /* AF_INET6 */
};

/* The most datagrams one batch holds, received or sent. */
#define UDPRR__SOCK_BATCH 64

/* Storage for one udprr__sock_recv_many_from: n slots, each with room for
 * the largest datagram and its sender's address, allocated once. The
 * slots' buffers are never written before the kernel writes them, so
 * pages a small datagram does not reach are never made resident. */
typedef struct udprr__recv_batch udprr__recv_batch;

/* n: 1 .. UDPRR__SOCK_BATCH. UDPRR_OK, UDPRR_EINVAL or UDPRR_ENOMEM. */
int udprr__recv_batch_new(udprr__recv_batch **out, size_t n);

/* NULL is a no-op. */
void udprr__recv_batch_free(udprr__recv_batch *b);

/* Takes up to the batch's n datagrams and their senders' addresses
 * without blocking, in one recvmmsg(2), retrying EINTR. Returns how many
 * were taken; fewer than n means the socket was drained (or failed: 0,
 * errno set, EAGAIN when drained), so no further call is needed to find
 * it empty. Each datagram stays in the batch until the next call. */
size_t udprr__sock_recv_many_from(int fd, udprr__recv_batch *b);

/* Datagram i of the last receive: its bytes (writable, *len of them) and
 * its sender (*peer_len bytes). */
uint8_t *udprr__recv_batch_data(udprr__recv_batch *b, size_t i, size_t *len);
const struct sockaddr *udprr__recv_batch_peer(const udprr__recv_batch *b,
                                              size_t i, socklen_t *peer_len);

/* The kernel's count of the datagrams it dropped on the socket, as the
 * last receive's datagrams told it (it wraps at 2^32; the caller takes
 * differences); 0 when none told. */
uint32_t udprr__recv_batch_drops(const udprr__recv_batch *b);

/* Where datagram i of the last receive arrived (family 0 when the kernel
 * did not say). */
const struct udprr__sock_local *
udprr__recv_batch_local(const udprr__recv_batch *b, size_t i);

/* One datagram to send: header[0..header_len) (header_len 0: none)
 * followed by body[0..body_len), to peer, from local (NULL or family 0:
 * wherever the kernel chooses). */
struct udprr__sock_out {
    const struct sockaddr *peer;
    socklen_t peer_len;
    const struct udprr__sock_local *local;
    const void *header;
    size_t header_len;
    const void *body;
    size_t body_len;
};

/* Sends out[0..n) (n at most UDPRR__SOCK_BATCH) in as few sendmmsg(2)
 * calls as the kernel allows, retrying EINTR: after a partial send the
 * rest is sent, and a datagram the kernel refuses is skipped, so that
 * one failure does not cost the datagrams behind it. status[i] is
 * UDPRR_OK or the status of the errno of datagram i's failure
 * (udprr__sock_status). Returns how many were sent. */
size_t udprr__sock_send_many_to(int fd, const struct udprr__sock_out *out,
                                size_t n, int *status);

/* --- waking a wait from another thread or a signal handler --------------- */

/* A non-blocking, close-on-exec eventfd for udprr__wake_signal. UDPRR_OK,
 * or UDPRR_ESYS. */
int udprr__wake_open(int *fd_out);

/* Makes wake_fd readable, so a udprr__sock_wait on it returns.
 * Async-signal-safe (one write(2)); keeps errno, since a signal handler
 * may interrupt code that reads it. */
void udprr__wake_signal(int wake_fd);

/* Takes whatever wake-ups are pending on wake_fd, so that a
 * level-triggered wait on it stops reporting them. Never blocks. */
void udprr__wake_drain(int wake_fd);

/* An epoll descriptor (close-on-exec) that is readable, level-triggered,
 * while any of fds[0..n) is: one descriptor for an event loop to watch.
 * UDPRR_OK or UDPRR_ESYS. */
int udprr__poller_open(const int *fds, size_t n, int *epfd_out);

/* Stops epfd watching fd. UDPRR_OK or UDPRR_ESYS. */
int udprr__poller_remove(int epfd, int fd);

#endif /* UDPRR_SOCK_H */
