/* SPDX-License-Identifier: MIT */
/*
 * sock.h - the thin shell around the system: sockets, the clock, and the
 * kernel's random source. Everything that decides anything lives in the
 * pure cores; these functions only make system calls and map their errors
 * to status codes.
 */
#ifndef UDPRR_SOCK_H
#define UDPRR_SOCK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The largest datagram a receive can return (UDP over IPv6 carries up to
 * 65527 bytes); receive buffers of this size never truncate. */
#define UDPRR__RECV_BUFFER_BYTES 65536

/* CLOCK_MONOTONIC in microseconds. */
uint64_t udprr__now_us(void);

/* Fills buf with n bytes from the kernel's CSPRNG (getrandom). UDPRR_OK or
 * UDPRR_ESYS. */
int udprr__random_bytes(void *buf, size_t n);

/* A non-blocking, close-on-exec UDP socket connect()ed to the first
 * address of host/service that takes one. UDPRR_OK, UDPRR_ERESOLVE,
 * UDPRR_ESYS. */
int udprr__sock_connect(const char *host, const char *service, int *fd_out);

/* A non-blocking, close-on-exec UDP socket bound to host/service; host
 * NULL: every interface, dual-stack where possible. UDPRR_OK,
 * UDPRR_ERESOLVE, UDPRR_ESYS. */
int udprr__sock_bind(const char *host, const char *service, int *fd_out);

/* Maps the errno of a failed send or receive to a status: ECONNREFUSED to
 * UDPRR_EREFUSED, EMSGSIZE to UDPRR_ETOOBIG, anything else UDPRR_ESYS. */
int udprr__sock_status(int err);

/* Writes a compact key for a peer address (family, port, address, scope)
 * into out (at least 28 bytes) and returns its length, or 0 for an address
 * family it does not know. */
size_t udprr__sock_addr_key(const struct sockaddr *addr, socklen_t len,
                            uint8_t *out);

/* Waits until fd is readable or timeout_us passes (UINT64_MAX: forever),
 * with microsecond precision. Returns 1 readable, 0 timed out, -1 error
 * (errno set; EINTR is returned to the caller, not retried here). */
int udprr__sock_wait(int fd, uint64_t timeout_us);

#endif /* UDPRR_SOCK_H */
