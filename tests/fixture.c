/* SPDX-License-Identifier: MIT */
/*
 * fixture.c - a libudprr server on a thread, and an echo handler for it
 * (fixture.h).
 */
#include "fixture.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

static void *server_main(void *arg)
{
    struct fixture_server *fs = arg;
    fs->run_status = udprr_server_run(fs->server, fs->handler, fs->user);
    return NULL;
}

int fixture_server_serve(struct fixture_server *fs, udprr_server *server,
                         udprr_handler h, void *user)
{
    memset(fs, 0, sizeof *fs);
    fs->server = server;
    fs->handler = h;
    fs->user = user;
    fs->addr_len = sizeof fs->addr;
    int rc = udprr_server_sockname(server, (struct sockaddr *)&fs->addr,
                                   &fs->addr_len);
    if (rc != UDPRR_OK)
        goto fail;
    unsigned port = fs->addr.ss_family == AF_INET6
                        ? ntohs(((struct sockaddr_in6 *)&fs->addr)->sin6_port)
                        : ntohs(((struct sockaddr_in *)&fs->addr)->sin_port);
    snprintf(fs->port, sizeof fs->port, "%u", port);
    int err = pthread_create(&fs->thread, NULL, server_main, fs);
    if (err != 0) {
        errno = err;
        rc = UDPRR_ESYS;
        goto fail;
    }
    return UDPRR_OK;

fail:
    udprr_server_close(server);
    fs->server = NULL;
    return rc;
}

int fixture_server_start(struct fixture_server *fs, const char *host,
                         const udprr_server_opts *opts, udprr_handler h,
                         void *user)
{
    udprr_server *server;
    int rc = udprr_server_open(&server, host, "0", opts);
    if (rc != UDPRR_OK) {
        memset(fs, 0, sizeof *fs);
        return rc;
    }
    return fixture_server_serve(fs, server, h, user);
}

int fixture_server_stop(struct fixture_server *fs,
                        struct udprr_server_stats *stats)
{
    udprr_server_stop(fs->server);
    int rc = UDPRR_OK;
    int err = pthread_join(fs->thread, NULL);
    if (err != 0) {
        errno = err;
        rc = UDPRR_ESYS;
    } else if (fs->run_status != UDPRR_OK) {
        rc = fs->run_status;
    }
    if (stats != NULL) {
        stats->size = sizeof *stats;
        int st = udprr_server_stats(fs->server, stats);
        if (rc == UDPRR_OK)
            rc = st;
    }
    /* Not joined: the thread may still be inside run; leaking the server
     * is the lesser harm than closing it under that thread. */
    if (err == 0)
        udprr_server_close(fs->server);
    fs->server = NULL;
    return rc;
}

int fixture_echo_handler(void *user, const udprr_request *req, void *reply,
                         size_t reply_cap, size_t *reply_len)
{
    (void)user;
    if (req->len > reply_cap)
        return UDPRR_DECLINE;
    memcpy(reply, req->data, req->len);
    *reply_len = req->len;
    return UDPRR_REPLY;
}
