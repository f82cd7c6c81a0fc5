/* SPDX-License-Identifier: MIT */
/*
 * fixture.h - the fixture the socket suites and the benchmark share, free
 * of Check: a libudprr server on a thread of its own, an echo handler for
 * it, and the impairment relay (tools/relay/) in front of it.
 *
 * Every function reports failure as a status instead of asserting, so the
 * benchmark (a measurement, not a test) uses it as it is and the Check
 * suites assert on it through the thin wrappers in netutil.h.
 *
 * The relay half lives in fixture_relay.c, so a program that runs a server
 * without a relay (tests/net_refused) links nothing of the relay.
 */
#ifndef UDPRR_FIXTURE_H
#define UDPRR_FIXTURE_H

#include <pthread.h>
#include <stdint.h>
#include <sys/socket.h>

#include "udprr.h"

struct relay;         /* tools/relay/relay.h */
struct impair_config; /* tools/relay/impair.h */

/* A server running udprr_server_run on its own thread. */
struct fixture_server {
    udprr_server *server;
    pthread_t thread;
    udprr_handler handler;
    void *user;
    int run_status;               /* what udprr_server_run returned */
    struct sockaddr_storage addr; /* where it listens */
    socklen_t addr_len;
    char port[16];                /* its port, as udprr_client_open takes it */
};

/* Opens a server on `host` (NULL: every interface), a free port, with
 * `opts` (NULL: the defaults), and runs it with `h` on a thread. Returns
 * UDPRR_OK; or the status of the call that failed, UDPRR_ESYS with errno
 * set when the thread could not start; then nothing is left open. */
int fixture_server_start(struct fixture_server *fs, const char *host,
                         const udprr_server_opts *opts, udprr_handler h,
                         void *user);

/* Runs `server`, already open, with `h` on a thread (for a test that
 * opens its server itself, say on a port it knows). fs owns the server
 * from here on: it is closed on failure, as by fixture_server_start. */
int fixture_server_serve(struct fixture_server *fs, udprr_server *server,
                         udprr_handler h, void *user);

/* Stops the server, waits for its thread, fills *stats (when not NULL;
 * its size is set here) and closes the server. Returns UDPRR_OK, or the
 * first failure: UDPRR_ESYS when the thread could not be joined, the
 * run's status, or udprr_server_stats'. The server is closed either way. */
int fixture_server_stop(struct fixture_server *fs,
                        struct udprr_server_stats *stats);

/* A handler that answers each request with its own bytes (declines one
 * that would not fit, which a server never hands it). */
int fixture_echo_handler(void *user, const udprr_request *req, void *reply,
                         size_t reply_cap, size_t *reply_len);

/* Starts an impairment relay in front of fs's server, seeded with `seed`
 * (a NULL config leaves that direction unimpaired), and writes the port
 * clients send to, on the loopback address of the server's family. A
 * server bound to every interface is reached at that loopback address.
 * Returns NULL when the relay could not start (it says why on stderr).
 * One relay per client: a relay answers the client that sent last. */
struct relay *fixture_relay_in_front(const struct fixture_server *fs,
                                     const struct impair_config *to_server,
                                     const struct impair_config *to_client,
                                     uint64_t seed, char port[16]);

#endif /* UDPRR_FIXTURE_H */
