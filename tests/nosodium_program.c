/* SPDX-License-Identifier: MIT */
/*
 * nosodium_program.c - run by tests/nosodium-test.sh against a libudprr
 * built with `make SODIUM=no` (and linked without libsodium): the sealed
 * mode is refused, plainly and with UDPRR_ENOTSUP, and the plain mode
 * works. A server and a client in one thread and one poll(2) loop on
 * 127.0.0.1, bounded in turns and in time.
 *
 * Prints one line per check, "yes TEXT" or "no TEXT (why)", for the
 * script to count; exits 0 when every check held, 1 otherwise.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "udprr.h"

#define REQUESTS 5
#define MAX_TURNS 2000
#define MAX_SECONDS 5.0

static int failures;

static void say(int ok, const char *text, const char *why)
{
    if (ok)
        printf("yes %s\n", text);
    else
        printf("no %s (%s)\n", text, why);
    failures += !ok;
}

static void say_status(const char *text, int got, int want)
{
    char why[160];
    snprintf(why, sizeof why, "got %s, want %s", udprr_status_name(got),
             udprr_status_name(want));
    say(got == want, text, why);
}

static int echo(void *user, const udprr_request *req, void *reply,
                size_t reply_cap, size_t *reply_len)
{
    unsigned *handled = user;
    if (req->len + 1 > reply_cap)
        return UDPRR_DECLINE;
    ((char *)reply)[0] = '>';
    memcpy((char *)reply + 1, req->data, req->len);
    *reply_len = req->len + 1;
    ++*handled;
    return UDPRR_REPLY;
}

struct outcome {
    int status;
    char reply[64];
    size_t len;
    int done;
};

static void done(void *user, int status, const void *reply, size_t len)
{
    struct outcome *o = user;
    o->status = status;
    o->done++;
    if (status == UDPRR_OK && len <= sizeof o->reply) {
        memcpy(o->reply, reply, len);
        o->len = len;
    }
}

static double seconds_since(const struct timespec *t0)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - t0->tv_sec) +
           (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

static int earlier(int a, int b)
{
    if (a < 0)
        return b;
    if (b < 0)
        return a;
    return a < b ? a : b;
}

/* What a build without libsodium says to the sealed mode. */
static void sealed_refused(void)
{
    say(udprr_sealed_supported() == 0, "udprr_sealed_supported() is 0",
        "it says 1");

    udprr_key key = {.id = 1};
    memset(key.secret, 0x5a, sizeof key.secret);

    udprr_client_opts copts;
    udprr_client_opts_init(&copts);
    copts.key = &key;
    udprr_client *c = (udprr_client *)&key; /* must stay as it is */
    say_status("udprr_client_open with a key: ENOTSUP",
               udprr_client_open(&c, "127.0.0.1", "9", &copts),
               UDPRR_ENOTSUP);
    say(c == (udprr_client *)&key, "a refused client open leaves *out",
        "*out changed");
    if (c != (udprr_client *)&key)
        udprr_client_close(c);

    udprr_server_opts sopts;
    udprr_server_opts_init(&sopts);
    udprr_key keys[2] = {key, key};
    keys[1].id = 2;
    sopts.keys = keys;
    sopts.n_keys = 2;
    udprr_server *s = (udprr_server *)&key;
    say_status("udprr_server_open with keys: ENOTSUP",
               udprr_server_open(&s, "127.0.0.1", "0", &sopts),
               UDPRR_ENOTSUP);
    say(s == (udprr_server *)&key, "a refused server open leaves *out",
        "*out changed");
    if (s != (udprr_server *)&key)
        udprr_server_close(s);

    const char *text = udprr_strerror(UDPRR_ENOTSUP);
    say(strstr(text, "libsodium") != NULL,
        "udprr_strerror(UDPRR_ENOTSUP) names libsodium", text);
}

/* The plain mode: REQUESTS requests through one loop, each answered. */
static void plain_round_trip(void)
{
    udprr_server *s = NULL;
    int rc = udprr_server_open(&s, "127.0.0.1", "0", NULL);
    say_status("a plain server opens", rc, UDPRR_OK);
    if (rc != UDPRR_OK)
        return;
    struct sockaddr_in addr;
    socklen_t alen = sizeof addr;
    char port[16] = "0";
    if (udprr_server_sockname(s, (struct sockaddr *)&addr, &alen) ==
            UDPRR_OK &&
        addr.sin_family == AF_INET)
        snprintf(port, sizeof port, "%u", (unsigned)ntohs(addr.sin_port));
    udprr_client *c = NULL;
    rc = udprr_client_open(&c, "127.0.0.1", port, NULL);
    say_status("a plain client opens", rc, UDPRR_OK);
    if (rc != UDPRR_OK) {
        udprr_server_close(s);
        return;
    }

    struct outcome out[REQUESTS];
    memset(out, 0, sizeof out);
    char req[REQUESTS][16];
    int sent = 0;
    for (int i = 0; i < REQUESTS; i++) {
        snprintf(req[i], sizeof req[i], "request %d", i);
        sent += udprr_client_send(c, req[i], strlen(req[i]), done, &out[i]) ==
                UDPRR_OK;
    }
    say(sent == REQUESTS, "every request queued", "a send failed");

    unsigned handled = 0;
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int ended = 0, turns = 0;
    while (ended < sent && turns < MAX_TURNS &&
           seconds_since(&t0) < MAX_SECONDS) {
        turns++;
        int timeout = earlier(udprr_server_timeout_ms(s),
                              udprr_client_timeout_ms(c));
        if (timeout < 0 || timeout > 100)
            timeout = 100;
        struct pollfd fds[2] = {{.fd = udprr_server_fd(s), .events = POLLIN},
                                {.fd = udprr_client_fd(c), .events = POLLIN}};
        poll(fds, 2, timeout);
        udprr_server_process(s, echo, &handled);
        udprr_client_process(c);
        ended = 0;
        for (int i = 0; i < REQUESTS; i++)
            ended += out[i].done > 0;
    }
    int right = 0;
    for (int i = 0; i < REQUESTS; i++) {
        char want[20];
        int n = snprintf(want, sizeof want, ">%s", req[i]);
        right += out[i].done == 1 && out[i].status == UDPRR_OK &&
                 out[i].len == (size_t)n && memcmp(out[i].reply, want, n) == 0;
    }
    char why[96];
    snprintf(why, sizeof why, "%d of %d right after %d turns", right,
             REQUESTS, turns);
    say(right == REQUESTS, "every plain request answered with its bytes",
        why);
    snprintf(why, sizeof why, "the handler ran %u times", handled);
    say(handled == REQUESTS, "the handler ran once per request", why);

    struct udprr_server_stats st;
    memset(&st, 0, sizeof st);
    st.size = sizeof st;
    say(udprr_server_stats(s, &st) == UDPRR_OK && st.dropped_auth == 0,
        "a plain server drops nothing as unauthenticated", "dropped_auth");
    udprr_key key = {.id = 1};
    say_status("udprr_server_set_keys on a plain server: EINVAL",
               udprr_server_set_keys(s, &key, 1), UDPRR_EINVAL);
    udprr_client_close(c);
    udprr_server_close(s);
}

int main(void)
{
    sealed_refused();
    plain_round_trip();
    return failures == 0 ? 0 : 1;
}
