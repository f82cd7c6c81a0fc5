/* SPDX-License-Identifier: MIT */
/*
 * server_hooks.h - the server's datagram path without its socket, for the
 * fuzz target (fuzz/fuzz_server.c) and tests: datagrams go in with a
 * sender and a time the caller chooses, and the answers come out through
 * a hook instead of the socket. Not part of the public API; nothing in
 * the library calls these.
 */
#ifndef UDPRR_SERVER_HOOKS_H
#define UDPRR_SERVER_HOOKS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "udprr.h"

/* Takes one answer the server would send: header[0..header_len) then
 * body[0..body_len), to peer. */
typedef void (*udprr__server_tx_fn)(void *ctx, const struct sockaddr *peer,
                                    socklen_t peer_len, const void *header,
                                    size_t header_len, const void *body,
                                    size_t body_len);

/* From now on the answers of s (a single worker) go to fn, never to its
 * socket; NULL gives them back to the socket. */
void udprr__server_set_tx_hook(udprr_server *s, udprr__server_tx_fn fn,
                               void *ctx);

/* Handles datagram data[0..len) (writable, as the receive slot it stands
 * for) as if it came from peer at now_us, then sends what is ready, as
 * one step of udprr_server_process does for each datagram. */
void udprr__server_feed(udprr_server *s, uint8_t *data, size_t len,
                        const struct sockaddr *peer, socklen_t peer_len,
                        udprr_handler h, void *user, uint64_t now_us);

/* Shifts the wall clock s (a single worker) checks sealed requests'
 * clocks against, and stamps its sealed answers with, by skew_ms: a
 * request sealed now is "from the past" to a server skewed forward. */
void udprr__server_set_clock_skew(udprr_server *s, int64_t skew_ms);

/* Sends the deferred answers given so far and declines the deferred
 * requests whose lifetime has ended at now_us, as a step does. */
void udprr__server_tick(udprr_server *s, uint64_t now_us);

#endif /* UDPRR_SERVER_HOOKS_H */
