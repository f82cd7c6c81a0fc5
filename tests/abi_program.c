/* SPDX-License-Identifier: MIT */
/*
 * abi_program.c - a program as a user builds it, against include/udprr.h as
 * it is, run by tests/abi-test.sh against the library as built and against
 * one whose option and stats structs have grown (fields appended, as a
 * later version will). Every struct it hands the library has guard bytes
 * after it; the library must never touch them, open must succeed with the
 * program's fields taken and the newer fields at their defaults, and a
 * request must work.
 *
 * Prints one "ok:" or "FAIL:" line per check and exits 1 if any failed.
 * Traffic goes to 127.0.0.1 only; the server thread stops by itself.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include <udprr.h>

#define GUARD 0x5C
#define GUARD_BYTES 64

static int failures;

static void check(int ok, const char *what)
{
    printf("%s: %s\n", ok ? "ok" : "FAIL", what);
    if (!ok)
        failures++;
}

static int guard_intact(const unsigned char *g)
{
    for (int i = 0; i < GUARD_BYTES; i++)
        if (g[i] != GUARD)
            return 0;
    return 1;
}

/* Fills the padding after an options struct's last field (id_len, in the
 * header this program is built with) with junk, as a field-by-field copy
 * or a language binding may leave it: the library must not read it. */
static void scramble_padding(void *opts, size_t fields_end, size_t size)
{
    memset((unsigned char *)opts + fields_end, 0xEE, size - fields_end);
}
/* Where each struct's last field ends (the rest is padding). */
#define FIELDS_END(type, last)                                                 \
    (offsetof(type, last) + sizeof(((type *)0)->last))

/* Whether an init recorded size_0_1 and left the struct's bytes past it
 * alone. */
static int wrote_0_1(const void *opts, size_t recorded, size_t size_0_1,
                     size_t size)
{
    for (size_t i = size_0_1; i < size; i++)
        if (((const unsigned char *)opts)[i] != GUARD)
            return 0;
    return recorded == size_0_1;
}

static int echo(void *user, const udprr_request *req, void *reply,
                size_t cap, size_t *reply_len)
{
    (void)user;
    if (req->len > cap)
        return -1; /* declines */
    memcpy(reply, req->data, req->len);
    *reply_len = req->len;
    return 0;
}

static void *serve(void *arg)
{
    udprr_server_run(arg, echo, NULL);
    return NULL;
}

int main(void)
{
    struct {
        udprr_server_opts opts;
        unsigned char guard[GUARD_BYTES];
    } so;
    struct {
        udprr_client_opts opts;
        unsigned char guard[GUARD_BYTES];
    } co;
    struct {
        struct udprr_client_stats st;
        unsigned char guard[GUARD_BYTES];
    } cst;
    struct {
        struct udprr_server_stats st;
        unsigned char guard[GUARD_BYTES];
    } sst;

    printf("library %s, program built against %s\n", udprr_version(),
           UDPRR_VERSION_STRING);

    memset(&so, GUARD, sizeof so);
    udprr_server_opts_init(&so.opts);
    check(guard_intact(so.guard), "server opts init writes only the struct");
    check(so.opts.size == sizeof so.opts, "server opts carry the program's size");
    scramble_padding(&so.opts, FIELDS_END(udprr_server_opts, n_keys), sizeof so.opts);
    udprr_server *s = NULL;
    int rc = udprr_server_open(&s, "127.0.0.1", "0", &so.opts);
    check(rc == UDPRR_OK, "server opens with the program's struct");
    check(guard_intact(so.guard), "server open reads only the struct");
    if (rc != UDPRR_OK)
        return 1;

    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    char port[8];
    udprr_server_sockname(s, (struct sockaddr *)&ss, &len);
    snprintf(port, sizeof port, "%u",
             (unsigned)ntohs(((struct sockaddr_in *)&ss)->sin_port));
    pthread_t thread;
    pthread_create(&thread, NULL, serve, s);

    memset(&co, GUARD, sizeof co);
    udprr_client_opts_init(&co.opts);
    check(guard_intact(co.guard), "client opts init writes only the struct");
    check(co.opts.size == sizeof co.opts, "client opts carry the program's size");
    check(co.opts.deadline_ms == 10000 && co.opts.initial_rto_ms == 1000,
          "client opts hold the defaults");
    co.opts.max_attempts = 7; /* the program's own setting is honoured */
    scramble_padding(&co.opts, FIELDS_END(udprr_client_opts, key), sizeof co.opts);
    udprr_client *c = NULL;
    rc = udprr_client_open(&c, "127.0.0.1", port, &co.opts);
    check(rc == UDPRR_OK, "client opens with the program's struct");
    check(guard_intact(co.guard), "client open reads only the struct");

    if (rc == UDPRR_OK) {
        char reply[16];
        size_t got = 0;
        rc = udprr_client_request(c, "abi", 3, reply, sizeof reply, &got);
        check(rc == UDPRR_OK && got == 3 && memcmp(reply, "abi", 3) == 0,
              "a request gets its reply");

        memset(&cst, GUARD, sizeof cst);
        cst.st.size = sizeof cst.st;
        rc = udprr_client_stats(c, &cst.st);
        check(rc == UDPRR_OK && cst.st.size == sizeof cst.st &&
                  cst.st.completed == 1,
              "client stats fill the program's struct");
        check(guard_intact(cst.guard), "client stats write only the struct");
        udprr_client_close(c);
    }

    udprr_server_stop(s);
    pthread_join(thread, NULL);
    memset(&sst, GUARD, sizeof sst);
    sst.st.size = sizeof sst.st;
    rc = udprr_server_stats(s, &sst.st);
    check(rc == UDPRR_OK && sst.st.size == sizeof sst.st &&
              sst.st.handled == 1,
          "server stats fill the program's struct");
    check(guard_intact(sst.guard), "server stats write only the struct");
    udprr_server_close(s);

    /* The 0.1 symbols, as a program built against 0.1's header calls them. */
    /* 0.1's structs end where 0.2's fields begin. */
    memset(&co, GUARD, sizeof co);
    (udprr_client_opts_init)(&co.opts);
    check(guard_intact(co.guard) &&
              wrote_0_1(&co.opts, co.opts.size,
                        offsetof(udprr_client_opts, max_pending),
                        sizeof co.opts),
          "the 0.1 client init symbol writes exactly 0.1's struct");
    memset(&so, GUARD, sizeof so);
    (udprr_server_opts_init)(&so.opts);
    check(guard_intact(so.guard) &&
              wrote_0_1(&so.opts, so.opts.size,
                        offsetof(udprr_server_opts, max_deferred),
                        sizeof so.opts),
          "the 0.1 server init symbol writes exactly 0.1's struct");

    return failures == 0 ? 0 : 1;
}
