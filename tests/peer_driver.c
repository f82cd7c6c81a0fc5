/* SPDX-License-Identifier: MIT */
/*
 * peer_driver.c - the library's side of tests/protocol-peer-test.sh: a
 * server and a client the Python peer (tests/peer/udprr_peer.py, written
 * from docs/protocol.md alone) talks to, plain or sealed, with the
 * library's defaults (reply cache, amplification guard at 3x).
 *
 *   peer_driver server [--key FILE] [--key-id N] [--seconds N]
 *       on 127.0.0.1, a free port; prints "Listening at ADDR:PORT". The
 *       handler declines the body "decline", answers "big:N" with N bytes
 *       (byte i is (i * 13 + 1) & 0xff), and anything else with "lib:"
 *       followed by the body; one line per handler call. Stops on
 *       SIGTERM, SIGINT or after N seconds (default 30) and prints
 *       "Server stats: received N, handled N, answered N, cache_hits N,
 *       declined N, amplification_echoes N, dropped_malformed N,
 *       dropped_unexpected N, dropped_auth N, dropped_clock N".
 *   peer_driver client HOST PORT [--body-file F] [--out F] [--key FILE]
 *                      [--key-id N] [--deadline MS]
 *       one request with F's bytes (default: an empty body); prints
 *       "client: UDPRR_OK N bytes" (the reply written to --out) or
 *       "client: STATUS_NAME", then "Client stats: ...". Exit 0 for
 *       UDPRR_OK, 3 for UDPRR_EREMOTE, 1 otherwise, 2 for a usage error.
 *
 * A key file holds exactly 32 bytes.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <udprr.h>

#include "../examples/example_util.h"

static void usage(void)
{
    fprintf(stderr,
            "usage: peer_driver server [--key FILE] [--key-id N] [--seconds N]\n"
            "       peer_driver client HOST PORT [--body-file F] [--out F]\n"
            "                   [--key FILE] [--key-id N] [--deadline MS]\n");
}

/* Reads at most cap bytes of path into buf; the count, or -1. */
static long read_file(const char *path, unsigned char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, cap, f);
    int extra = fgetc(f);
    fclose(f);
    return extra == EOF ? (long)n : -1;
}

static int read_key(const char *path, unsigned id, udprr_key *key)
{
    key->id = id;
    if (read_file(path, key->secret, sizeof key->secret) !=
        (long)sizeof key->secret) {
        fprintf(stderr, "peer_driver: %s: not a 32-byte key file\n", path);
        return -1;
    }
    return 0;
}

static int serve(void *user, const udprr_request *req, void *reply,
                 size_t reply_cap, size_t *reply_len)
{
    (void)user;
    const char *body = req->data;
    printf("handler: request %016llx attempt %u, %zu bytes\n",
           (unsigned long long)req->id, (unsigned)req->attempt, req->len);
    if (req->len == 7 && memcmp(body, "decline", 7) == 0)
        return UDPRR_DECLINE;
    if (req->len > 4 && req->len < 16 && memcmp(body, "big:", 4) == 0) {
        char num[16];
        memcpy(num, body + 4, req->len - 4);
        num[req->len - 4] = '\0';
        unsigned n;
        if (example_parse_uint(num, 0, (unsigned)reply_cap, &n) != 0)
            return UDPRR_DECLINE;
        unsigned char *out = reply;
        for (unsigned i = 0; i < n; i++)
            out[i] = (unsigned char)(i * 13 + 1);
        *reply_len = n;
        return UDPRR_REPLY;
    }
    if (req->len + 4 > reply_cap)
        return UDPRR_DECLINE;
    memcpy(reply, "lib:", 4);
    if (req->len > 0)
        memcpy((char *)reply + 4, body, req->len);
    *reply_len = req->len + 4;
    return UDPRR_REPLY;
}

static int run_server(const udprr_key *key, unsigned seconds)
{
    udprr_server_opts opts;
    udprr_server_opts_init(&opts);
    if (key) {
        opts.keys = key;
        opts.n_keys = 1;
    }
    udprr_server *s;
    int rc = udprr_server_open(&s, "127.0.0.1", "0", &opts);
    if (rc != UDPRR_OK) {
        fprintf(stderr, "peer_driver: server: %s%s%s\n", udprr_strerror(rc),
                rc == UDPRR_ESYS ? ": " : "",
                rc == UDPRR_ESYS ? strerror(errno) : "");
        return 1;
    }
    example_print_listening(s);
    example_stop_on_signals(s, seconds);
    rc = udprr_server_run(s, serve, NULL);
    example_forget_signals();
    struct udprr_server_stats st = {.size = sizeof st};
    udprr_server_stats(s, &st);
    printf("Server stats: received %llu, handled %llu, answered %llu, "
           "cache_hits %llu, declined %llu, amplification_echoes %llu, "
           "dropped_malformed %llu, dropped_unexpected %llu, "
           "dropped_auth %llu, dropped_clock %llu\n",
           (unsigned long long)st.received, (unsigned long long)st.handled,
           (unsigned long long)st.answered,
           (unsigned long long)st.cache_hits,
           (unsigned long long)st.declined,
           (unsigned long long)st.amplification_echoes,
           (unsigned long long)st.dropped_malformed,
           (unsigned long long)st.dropped_unexpected,
           (unsigned long long)st.dropped_auth,
           (unsigned long long)st.dropped_clock);
    udprr_server_close(s);
    return rc == UDPRR_OK ? 0 : 1;
}

static unsigned char req_buf[UDPRR_MAX_PAYLOAD + 1];
static unsigned char reply_buf[UDPRR_MAX_PAYLOAD];

static int run_client(const char *host, const char *port, const char *body,
                      const char *out, const udprr_key *key,
                      unsigned deadline_ms)
{
    long len = 0;
    if (body && (len = read_file(body, req_buf, UDPRR_MAX_PAYLOAD)) < 0) {
        fprintf(stderr, "peer_driver: %s: unreadable or too long\n", body);
        return 2;
    }
    udprr_client_opts opts;
    udprr_client_opts_init(&opts);
    opts.deadline_ms = deadline_ms;
    opts.key = key;
    udprr_client *c;
    int rc = udprr_client_open(&c, host, port, &opts);
    if (rc != UDPRR_OK) {
        printf("client: open: %s\n", udprr_status_name(rc));
        return 1;
    }
    size_t got = 0;
    rc = udprr_client_request(c, req_buf, (size_t)len, reply_buf,
                              sizeof reply_buf, &got);
    if (rc == UDPRR_OK) {
        printf("client: UDPRR_OK %zu bytes\n", got);
        FILE *f = out ? fopen(out, "wb") : NULL;
        if (out && (!f || fwrite(reply_buf, 1, got, f) != got)) {
            fprintf(stderr, "peer_driver: cannot write %s\n", out);
            rc = UDPRR_ESYS;
        }
        if (f)
            fclose(f);
    } else {
        printf("client: %s\n", udprr_status_name(rc));
    }
    struct udprr_client_stats st = {.size = sizeof st};
    udprr_client_stats(c, &st);
    printf("Client stats: attempts %llu, retransmissions %llu, echoes %llu, "
           "completed %llu, declined %llu, timeouts %llu, "
           "dropped_malformed %llu, dropped_unexpected %llu, "
           "dropped_auth %llu\n",
           (unsigned long long)st.attempts,
           (unsigned long long)st.retransmissions,
           (unsigned long long)st.echoes, (unsigned long long)st.completed,
           (unsigned long long)st.declined, (unsigned long long)st.timeouts,
           (unsigned long long)st.dropped_malformed,
           (unsigned long long)st.dropped_unexpected,
           (unsigned long long)st.dropped_auth);
    udprr_client_close(c);
    return rc == UDPRR_OK ? 0 : rc == UDPRR_EREMOTE ? 3 : 1;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"key", required_argument, NULL, 'k'},
        {"key-id", required_argument, NULL, 'i'},
        {"seconds", required_argument, NULL, 'S'},
        {"body-file", required_argument, NULL, 'b'},
        {"out", required_argument, NULL, 'o'},
        {"deadline", required_argument, NULL, 'D'},
        {NULL, 0, NULL, 0}};
    const char *key_file = NULL, *body = NULL, *out = NULL;
    unsigned key_id = 1, seconds = 30, deadline_ms = 2000;
    int opt;

    setvbuf(stdout, NULL, _IOLBF, 0);
    while ((opt = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        unsigned *num = NULL, lo = 1, hi = 3600;
        switch (opt) {
        case 'k': key_file = optarg; break;
        case 'b': body = optarg; break;
        case 'o': out = optarg; break;
        case 'i': num = &key_id, lo = 0, hi = 0xffffffffu; break;
        case 'S': num = &seconds; break;
        case 'D': num = &deadline_ms, hi = 60000; break;
        default: usage(); return 2;
        }
        if (num && example_parse_uint(optarg, lo, hi, num) != 0) {
            usage();
            return 2;
        }
    }
    udprr_key key;
    if (key_file && read_key(key_file, key_id, &key) != 0)
        return 2;
    const udprr_key *k = key_file ? &key : NULL;
    if (optind + 1 == argc && strcmp(argv[optind], "server") == 0)
        return run_server(k, seconds);
    if (optind + 3 == argc && strcmp(argv[optind], "client") == 0)
        return run_client(argv[optind + 1], argv[optind + 2], body, out, k,
                          deadline_ms);
    usage();
    return 2;
}
