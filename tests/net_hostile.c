/* SPDX-License-Identifier: MIT */
/*
 * net_hostile.c - every class of bad datagram, sent from a plain UDP
 * socket on loopback, at a running server and at a client with a request
 * in flight (issue 14, "Hostile input").
 *
 * The server answers only the valid requests, counts every other datagram
 * by reason (dropped_malformed: fails to decode; dropped_unexpected: well
 * formed but not a request), and its handler, which records every request
 * it gets, sees exactly the valid ones. The client completes its request
 * only with the right reply, and counts the rest (dropped_malformed,
 * dropped_unexpected, dropped_stale). Every count is asserted exactly.
 *
 * Each bad native datagram is a valid one with one field changed and its
 * checksum made right again, so that the field alone makes it bad (the
 * checksum and truncation rows leave it wrong on purpose).
 *
 * Silence is checked once per batch, with one short wait: datagrams on
 * loopback keep their order, so an answer to a bad datagram would arrive
 * before the answer to the valid request sent after it, which the test
 * awaits first.
 */
#include <stdlib.h>

#include "crc32c.h"
#include "netutil.h"
#include "seeded_rand.h"
#include "testutil.h"
#include "wire.h"

#define HDR UDPRR__WIRE_HEADER_BYTES
#define WAIT_MS 10000 /* bound on what must arrive */
#define QUIET_MS 200  /* once per batch: time for what must not */
#define MAX_RECORDS 64
#define MAX_DATAGRAMS 32

/* Source ports, each its own socket: fewer under valgrind. */
static unsigned port_count(void)
{
    return getenv("UDPRR_TEST_VALGRIND") != NULL ? 4 : 16;
}

/* --- the handler: records every request it gets, echoes it ------------ */

struct record {
    pthread_mutex_t lock;
    size_t count;
    uint8_t *data[MAX_RECORDS];
    size_t len[MAX_RECORDS];
};

static int recording_handler(void *user, const udprr_request *req,
                             void *reply, size_t cap, size_t *reply_len)
{
    struct record *r = user;
    pthread_mutex_lock(&r->lock);
    if (r->count < MAX_RECORDS) {
        r->data[r->count] = malloc(req->len > 0 ? req->len : 1);
        if (r->data[r->count] != NULL && req->len > 0)
            memcpy(r->data[r->count], req->data, req->len);
        r->len[r->count] = req->len;
    }
    r->count++;
    pthread_mutex_unlock(&r->lock);
    if (req->len > cap)
        return UDPRR_DECLINE;
    if (req->len > 0)
        memcpy(reply, req->data, req->len);
    *reply_len = req->len;
    return UDPRR_REPLY;
}

static size_t record_count(struct record *r)
{
    pthread_mutex_lock(&r->lock);
    size_t n = r->count;
    pthread_mutex_unlock(&r->lock);
    return n;
}

static void record_free(struct record *r)
{
    for (size_t i = 0; i < r->count && i < MAX_RECORDS; i++)
        free(r->data[i]);
    pthread_mutex_destroy(&r->lock);
}

/* How many times the handler saw body[0..len). */
static unsigned record_seen(struct record *r, const void *body, size_t len)
{
    unsigned seen = 0;
    pthread_mutex_lock(&r->lock);
    for (size_t i = 0; i < r->count && i < MAX_RECORDS; i++)
        if (r->len[i] == len && r->data[i] != NULL &&
            (len == 0 || memcmp(r->data[i], body, len) == 0))
            seen++;
    pthread_mutex_unlock(&r->lock);
    return seen;
}

/* --- building datagrams ------------------------------------------------ */

enum expect {
    ANSWERED,   /* a valid request (server) or the right reply (client) */
    MALFORMED,  /* fails to decode */
    UNEXPECTED, /* well formed, not a request (server); a request or an
                   attempt never made (client) */
    STALE,      /* a reply to an ID not outstanding (client) */
    UNSEEN      /* from another address: the connected client's kernel
                   drops it, so nothing counts it */
};

enum base {
    B_EMPTY,  /* no bytes */
    B_ONE,    /* one byte, 'U' (the magic's first) */
    B_HEADER, /* a native header, no body */
    B_FULL,   /* a native header and a body */
    B_NOISE   /* UDPRR_MAX_DATAGRAM seeded random bytes */
};

/* One row: a base datagram of `kind` with up to two header bytes changed
 * (value -1 inverts the byte) and the checksum made right again when
 * `reseal`, then `trim` bytes cut from the end. */
struct edit {
    int at; /* -1: none */
    int value;
};

struct hostile_case {
    const char *name;
    enum base base;
    struct edit edit[2];
    int reseal;
    size_t trim;
    enum expect expect;
};

#define NO_EDIT {-1, 0}

static void put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* The checksum of a native datagram, as docs/protocol.md defines it. */
static void reseal(uint8_t *d, size_t len)
{
    uint32_t crc = udprr__crc32c_update(0, d, 16);
    if (len > HDR)
        crc = udprr__crc32c_update(crc, d + HDR, len - HDR);
    put_be32(d + 16, crc);
}

static size_t native(uint8_t *out, enum udprr__wire_kind kind,
                     unsigned attempt, uint64_t id, const void *body,
                     size_t len)
{
    if (len > 0)
        memcpy(out + HDR, body, len);
    struct udprr__wire_header h = {kind, (uint16_t)attempt, id};
    ck_assert_int_eq(udprr__wire_encode(&h, out + HDR, len, out), UDPRR_OK);
    return HDR + len;
}

static void fill_noise(uint8_t *out, size_t len, uint64_t seed)
{
    for (size_t i = 0; i < len; i++)
        out[i] = (uint8_t)seeded_rand(&seed);
}

/* Writes the row's datagram into out (room for UDPRR_MAX_DATAGRAM) from a
 * base of `kind`, `id` and attempt 1; returns its length. */
static size_t build(const struct hostile_case *c, enum udprr__wire_kind kind,
                    uint64_t id, const char *body, uint8_t *out)
{
    size_t len = 0;
    switch (c->base) {
    case B_EMPTY:
        return 0;
    case B_ONE:
        out[0] = 'U';
        return 1;
    case B_HEADER:
        len = native(out, kind, 1, id, NULL, 0);
        break;
    case B_FULL:
        len = native(out, kind, 1, id, body, strlen(body));
        break;
    case B_NOISE:
        fill_noise(out, UDPRR_MAX_DATAGRAM, 0x5eed0001 + id);
        /* Noise it is, whatever the seed: never a valid datagram. */
        ck_assert_int_ne(udprr__wire_decode(out, UDPRR_MAX_DATAGRAM, NULL,
                                            NULL, NULL),
                         UDPRR__WIRE_VALID);
        return UDPRR_MAX_DATAGRAM;
    }
    for (int i = 0; i < 2; i++) {
        const struct edit *e = &c->edit[i];
        if (e->at >= 0)
            out[e->at] = e->value < 0 ? (uint8_t)~out[e->at]
                                      : (uint8_t)e->value;
    }
    if (c->reseal)
        reseal(out, len);
    return len - c->trim;
}

/* What a server must make of each (requests of ID id, attempt 1). */
static const struct hostile_case server_cases[] = {
    {"empty", B_EMPTY, {NO_EDIT, NO_EDIT}, 0, 0, MALFORMED},
    {"one byte", B_ONE, {NO_EDIT, NO_EDIT}, 0, 0, MALFORMED},
    {"header only, bad checksum", B_HEADER, {{16, -1}, NO_EDIT}, 0, 0,
     MALFORMED},
    {"body, bad checksum", B_FULL, {{19, -1}, NO_EDIT}, 0, 0, MALFORMED},
    {"magic 'uR'", B_FULL, {{0, 'u'}, NO_EDIT}, 1, 0, MALFORMED},
    {"magic 'Ur'", B_FULL, {{1, 'r'}, NO_EDIT}, 1, 0, MALFORMED},
    {"magic 'RU'", B_FULL, {{0, 'R'}, {1, 'U'}}, 1, 0, MALFORMED},
    {"magic zero", B_FULL, {{0, 0}, {1, 0}}, 1, 0, MALFORMED},
    {"version 0", B_FULL, {{2, 0}, NO_EDIT}, 1, 0, MALFORMED},
    {"version 2", B_FULL, {{2, 2}, NO_EDIT}, 1, 0, MALFORMED},
    {"version 255", B_FULL, {{2, 255}, NO_EDIT}, 1, 0, MALFORMED},
    {"kind 0", B_FULL, {{3, 0}, NO_EDIT}, 1, 0, MALFORMED},
    {"kind 4", B_FULL, {{3, 4}, NO_EDIT}, 1, 0, MALFORMED},
    {"kind 255", B_FULL, {{3, 255}, NO_EDIT}, 1, 0, MALFORMED},
    {"attempt 0", B_FULL, {{5, 0}, NO_EDIT}, 1, 0, MALFORMED},
    {"flags 0x0001", B_FULL, {{7, 1}, NO_EDIT}, 1, 0, MALFORMED},
    {"flags 0x8000", B_FULL, {{6, 0x80}, NO_EDIT}, 1, 0, MALFORMED},
    {"decline with a body", B_FULL, {{3, UDPRR__KIND_DECLINE}, NO_EDIT}, 1,
     0, MALFORMED},
    {"noise, 65507 bytes", B_NOISE, {NO_EDIT, NO_EDIT}, 0, 0, MALFORMED},
    {"request truncated by one byte", B_FULL, {NO_EDIT, NO_EDIT}, 0, 1,
     MALFORMED},
    {"header only, truncated by one byte", B_HEADER, {NO_EDIT, NO_EDIT}, 0,
     1, MALFORMED},
    {"a reply", B_FULL, {{3, UDPRR__KIND_REPLY}, NO_EDIT}, 1, 0, UNEXPECTED},
    {"an empty reply", B_HEADER, {{3, UDPRR__KIND_REPLY}, NO_EDIT}, 1, 0,
     UNEXPECTED},
    {"a decline", B_HEADER, {{3, UDPRR__KIND_DECLINE}, NO_EDIT}, 1, 0,
     UNEXPECTED},
};

/* What a client must make of each (replies to its request: ID id,
 * attempt 1), but the last, which completes it. */
static const struct hostile_case client_cases[] = {
    {"empty", B_EMPTY, {NO_EDIT, NO_EDIT}, 0, 0, MALFORMED},
    {"one byte", B_ONE, {NO_EDIT, NO_EDIT}, 0, 0, MALFORMED},
    {"header only, bad checksum", B_HEADER, {{16, -1}, NO_EDIT}, 0, 0,
     MALFORMED},
    {"body, bad checksum", B_FULL, {{19, -1}, NO_EDIT}, 0, 0, MALFORMED},
    {"magic 'uR'", B_FULL, {{0, 'u'}, NO_EDIT}, 1, 0, MALFORMED},
    {"magic 'Ur'", B_FULL, {{1, 'r'}, NO_EDIT}, 1, 0, MALFORMED},
    {"magic zero", B_FULL, {{0, 0}, {1, 0}}, 1, 0, MALFORMED},
    {"version 0", B_FULL, {{2, 0}, NO_EDIT}, 1, 0, MALFORMED},
    {"version 2", B_FULL, {{2, 2}, NO_EDIT}, 1, 0, MALFORMED},
    {"version 255", B_FULL, {{2, 255}, NO_EDIT}, 1, 0, MALFORMED},
    {"kind 0", B_FULL, {{3, 0}, NO_EDIT}, 1, 0, MALFORMED},
    {"kind 4", B_FULL, {{3, 4}, NO_EDIT}, 1, 0, MALFORMED},
    {"kind 255", B_FULL, {{3, 255}, NO_EDIT}, 1, 0, MALFORMED},
    {"attempt 0", B_FULL, {{5, 0}, NO_EDIT}, 1, 0, MALFORMED},
    {"flags 0x0001", B_FULL, {{7, 1}, NO_EDIT}, 1, 0, MALFORMED},
    {"flags 0x8000", B_FULL, {{6, 0x80}, NO_EDIT}, 1, 0, MALFORMED},
    {"decline with a body", B_FULL, {{3, UDPRR__KIND_DECLINE}, NO_EDIT}, 1,
     0, MALFORMED},
    {"noise, 65507 bytes", B_NOISE, {NO_EDIT, NO_EDIT}, 0, 0, MALFORMED},
    {"reply truncated by one byte", B_FULL, {NO_EDIT, NO_EDIT}, 0, 1,
     MALFORMED},
    {"a request of its ID", B_FULL, {{3, UDPRR__KIND_REQUEST}, NO_EDIT}, 1,
     0, UNEXPECTED},
    {"a reply to attempt 2, never made", B_FULL, {{5, 2}, NO_EDIT}, 1, 0,
     UNEXPECTED},
    {"a reply to attempt 65535, never made", B_FULL, {{4, 255}, {5, 255}},
     1, 0, UNEXPECTED},
    {"a reply, wrong ID", B_FULL, {{15, -1}, NO_EDIT}, 1, 0, STALE},
    {"a reply, other ID high bits", B_FULL, {{8, -1}, NO_EDIT}, 1, 0, STALE},
    {"a decline, wrong ID", B_HEADER,
     {{3, UDPRR__KIND_DECLINE}, {15, -1}}, 1, 0, STALE},
    {"the right reply from another port", B_FULL, {NO_EDIT, NO_EDIT}, 0, 0,
     UNSEEN},
    {"the right reply", B_FULL, {NO_EDIT, NO_EDIT}, 0, 0, ANSWERED},
};

#define N_CASES(t) (sizeof(t) / sizeof(t)[0])

/* --- plain sockets ----------------------------------------------------- */

static void send_to(int fd, const void *buf, size_t len,
                    const struct sockaddr_storage *to, socklen_t to_len)
{
    ck_assert_int_eq(sendto(fd, buf, len, 0, (const struct sockaddr *)to,
                            to_len),
                     (ssize_t)len);
}

/* Nothing arrives on any of fds[0..n) within QUIET_MS: one wait for all. */
static void assert_quiet(const int *fds, size_t n)
{
    struct pollfd p[MAX_RECORDS];
    ck_assert_uint_le(n, MAX_RECORDS);
    for (size_t i = 0; i < n; i++)
        p[i] = (struct pollfd){fds[i], POLLIN, 0};
    ck_assert_int_eq(poll(p, (nfds_t)n, QUIET_MS), 0);
}

static struct udprr_server_stats server_stats(const udprr_server *s)
{
    struct udprr_server_stats st = {.size = sizeof st};
    ck_assert_int_eq(udprr_server_stats(s, &st), UDPRR_OK);
    return st;
}

/* Waits (bounded) until the server has received n datagrams, so that the
 * next ones do not pile up behind a 64 KiB one in its receive queue. */
static void wait_received(const udprr_server *s, uint64_t n)
{
    uint64_t end = test_now_us() + (uint64_t)WAIT_MS * 1000;
    while (server_stats(s).received < n) {
        ck_assert_msg(test_now_us() < end,
                      "the server received %llu datagrams of %llu in %d ms",
                      (unsigned long long)server_stats(s).received,
                      (unsigned long long)n, WAIT_MS);
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
}

/* --- the server -------------------------------------------------------- */

/* A request to the server in the framing under test: the native header,
 * or (id-at-offset, 2 bytes at 2, as CoAP) the ID written into the body. */
struct framing_under_test {
    int framing;
    size_t (*request)(uint8_t *out, uint64_t id, const char *body);
    /* Asserts that answer[0..len) answers request[0..req_len). */
    void (*check_answer)(const uint8_t *answer, size_t len,
                         const uint8_t *request, size_t req_len);
};

static size_t native_request(uint8_t *out, uint64_t id, const char *body)
{
    return native(out, UDPRR__KIND_REQUEST, 1, id, body, strlen(body));
}

static void native_check_answer(const uint8_t *answer, size_t len,
                                const uint8_t *request, size_t req_len)
{
    struct udprr__wire_header rq, an;
    const uint8_t *rq_body, *an_body;
    size_t rq_len, an_len;
    ck_assert_int_eq(udprr__wire_decode(request, req_len, &rq, &rq_body,
                                        &rq_len),
                     UDPRR__WIRE_VALID);
    ck_assert_int_eq(udprr__wire_decode(answer, len, &an, &an_body, &an_len),
                     UDPRR__WIRE_VALID);
    ck_assert_int_eq(an.kind, UDPRR__KIND_REPLY);
    ck_assert_uint_eq(an.id, rq.id);
    ck_assert_uint_eq(an.attempt, rq.attempt);
    ck_assert_uint_eq(an_len, rq_len);
    ck_assert(rq_len == 0 || memcmp(an_body, rq_body, rq_len) == 0);
}

#define COAP_ID_OFFSET 2
#define COAP_ID_LEN 2

static size_t coap_request(uint8_t *out, uint64_t id, const char *body)
{
    size_t len = strlen(body);
    ck_assert_uint_ge(len, COAP_ID_OFFSET + COAP_ID_LEN);
    memcpy(out, body, len);
    out[COAP_ID_OFFSET] = (uint8_t)(id >> 8);
    out[COAP_ID_OFFSET + 1] = (uint8_t)id;
    return len;
}

static void coap_check_answer(const uint8_t *answer, size_t len,
                              const uint8_t *request, size_t req_len)
{
    /* The echo with the request's ID written in: the request itself. */
    ck_assert_uint_eq(len, req_len);
    ck_assert(memcmp(answer, request, len) == 0);
}

static const struct framing_under_test native_framing = {
    UDPRR_FRAMING_NATIVE, native_request, native_check_answer};
static const struct framing_under_test coap_framing = {
    UDPRR_FRAMING_ID_AT_OFFSET, coap_request, coap_check_answer};

/* A datagram the test sends, and what the server must make of it. */
struct datagram {
    const char *name;
    uint8_t *bytes;
    size_t len;
    enum expect expect;
};

/* Sends req from fd and asserts that the first datagram fd receives
 * answers it. */
static void request_answered(const struct framing_under_test *f, int fd,
                             const struct fixture_server *fs,
                             const struct datagram *req, uint8_t *buf)
{
    send_to(fd, req->bytes, req->len, &fs->addr, fs->addr_len);
    struct sockaddr_storage from;
    socklen_t from_len = sizeof from;
    ssize_t n = test_recv_within(fd, buf, UDPRR_MAX_DATAGRAM + 1, WAIT_MS,
                                 &from, &from_len);
    ck_assert_msg(n >= 0, "no answer to \"%s\" within %d ms", req->name,
                  WAIT_MS);
    f->check_answer(buf, (size_t)n, req->bytes, req->len);
}

/* The whole run against one server: the bad datagrams `bad` (in order,
 * from one socket), then the valid `valid` each awaited, then each valid
 * one again byte for byte (a replay: answered from the cache, the handler
 * not run), then one request from each of many source ports, all with
 * the same ID and each its own body. */
static void run_server(const struct framing_under_test *f,
                       const struct datagram *bad, size_t n_bad,
                       const struct datagram *valid, size_t n_valid)
{
    struct record rec = {.count = 0};
    pthread_mutex_init(&rec.lock, NULL);
    udprr_server_opts o;
    udprr_server_opts_init(&o);
    o.framing = f->framing;
    o.id_offset = COAP_ID_OFFSET;
    o.id_len = COAP_ID_LEN;
    struct fixture_server fs;
    test_server_start(&fs, "127.0.0.1", &o, recording_handler, &rec);
    char unused[16];
    int fd = test_plain_socket("127.0.0.1", unused);
    uint8_t *buf = malloc(UDPRR_MAX_DATAGRAM + 1);
    ck_assert_ptr_nonnull(buf);

    uint64_t sent = 0, malformed = 0, unexpected = 0;
    for (size_t i = 0; i < n_bad; i++) {
        send_to(fd, bad[i].bytes, bad[i].len, &fs.addr, fs.addr_len);
        sent++;
        malformed += bad[i].expect == MALFORMED;
        unexpected += bad[i].expect == UNEXPECTED;
        if (bad[i].len > 1500)
            wait_received(fs.server, sent);
    }
    wait_received(fs.server, sent);
    ck_assert_uint_eq(record_count(&rec), 0);

    for (size_t i = 0; i < n_valid; i++)
        request_answered(f, fd, &fs, &valid[i], buf);
    ck_assert_uint_eq(record_count(&rec), n_valid);
    for (size_t i = 0; i < n_valid; i++)
        request_answered(f, fd, &fs, &valid[i], buf);
    ck_assert_uint_eq(record_count(&rec), n_valid); /* the replays ran nothing */
    sent += 2 * n_valid;

    unsigned ports = port_count();
    int port_fds[MAX_RECORDS];
    struct datagram port_req[MAX_RECORDS];
    char bodies[MAX_RECORDS][32];
    uint8_t *port_bytes = malloc((size_t)ports * 64);
    ck_assert_ptr_nonnull(port_bytes);
    for (unsigned i = 0; i < ports; i++) {
        port_fds[i] = test_plain_socket("127.0.0.1", unused);
        snprintf(bodies[i], sizeof bodies[i], "from port %u", i);
        port_req[i] = (struct datagram){
            bodies[i], port_bytes + (size_t)i * 64,
            f->request(port_bytes + (size_t)i * 64, 0x4242, bodies[i]),
            ANSWERED};
    }
    for (unsigned i = 0; i < ports; i++)
        send_to(port_fds[i], port_req[i].bytes, port_req[i].len, &fs.addr,
                fs.addr_len);
    for (unsigned i = 0; i < ports; i++) {
        struct sockaddr_storage from;
        socklen_t from_len = sizeof from;
        ssize_t n = test_recv_within(port_fds[i], buf, UDPRR_MAX_DATAGRAM + 1,
                                     WAIT_MS, &from, &from_len);
        ck_assert_msg(n >= 0, "no answer on source port %u", i);
        f->check_answer(buf, (size_t)n, port_req[i].bytes, port_req[i].len);
    }
    sent += ports;

    /* Nothing else comes back, to anyone. */
    port_fds[ports] = fd;
    assert_quiet(port_fds, ports + 1);

    struct udprr_server_stats st;
    test_server_stop(&fs, &st);
    ck_assert_uint_eq(st.received, sent);
    ck_assert_uint_eq(st.dropped_malformed, malformed);
    ck_assert_uint_eq(st.dropped_unexpected, unexpected);
    ck_assert_uint_eq(st.handled, n_valid + ports);
    ck_assert_uint_eq(st.cache_hits, n_valid);
    ck_assert_uint_eq(st.answered, 2 * n_valid + ports);
    ck_assert_uint_eq(st.declined, 0);
    ck_assert_uint_eq(st.send_errors, 0);

    /* The handler saw exactly the valid requests, each once. */
    ck_assert_uint_eq(record_count(&rec), n_valid + ports);
    int native_bytes = f->framing == UDPRR_FRAMING_NATIVE;
    for (size_t i = 0; i < n_valid; i++) {
        const uint8_t *body = valid[i].bytes;
        size_t len = valid[i].len;
        if (native_bytes) {
            body += HDR;
            len -= HDR;
        }
        ck_assert_msg(record_seen(&rec, body, len) == 1,
                      "the handler saw \"%s\" %u times", valid[i].name,
                      record_seen(&rec, body, len));
    }
    for (unsigned i = 0; i < ports; i++) {
        const uint8_t *body = port_req[i].bytes;
        size_t len = port_req[i].len;
        if (native_bytes) {
            body += HDR;
            len -= HDR;
        }
        ck_assert_uint_eq(record_seen(&rec, body, len), 1);
    }

    for (unsigned i = 0; i <= ports; i++)
        close(port_fds[i]);
    free(port_bytes);
    free(buf);
    record_free(&rec);
}

/* Room for n datagrams of the largest size. */
static uint8_t *datagram_room(size_t n)
{
    uint8_t *room = malloc(n * UDPRR_MAX_DATAGRAM);
    ck_assert_ptr_nonnull(room);
    return room;
}

START_TEST(test_server_native_answers_only_valid_requests)
{
    size_t n_bad = N_CASES(server_cases);
    ck_assert_uint_le(n_bad, MAX_DATAGRAMS);
    uint8_t *room = datagram_room(n_bad + 3);
    struct datagram bad[MAX_DATAGRAMS], valid[3];
    for (size_t i = 0; i < n_bad; i++) {
        uint8_t *out = room + i * UDPRR_MAX_DATAGRAM;
        /* Each its own ID: none is a retransmission of another. */
        bad[i] = (struct datagram){
            server_cases[i].name, out,
            build(&server_cases[i], UDPRR__KIND_REQUEST, 100 + i,
                  "hostile request", out),
            server_cases[i].expect};
    }
    static const char *const bodies[] = {"valid request one",
                                         "valid request two", ""};
    for (size_t i = 0; i < 3; i++) {
        uint8_t *out = room + (n_bad + i) * UDPRR_MAX_DATAGRAM;
        valid[i] = (struct datagram){bodies[i], out,
                                     native_request(out, 1000 + i, bodies[i]),
                                     ANSWERED};
    }
    run_server(&native_framing, bad, n_bad, valid, 3);
    free(room);
}
END_TEST

START_TEST(test_server_id_at_offset_answers_only_valid_requests)
{
    /* A datagram too short to hold the ID is all that is malformed in
     * this framing: every other one is a request, noise included. */
    static const size_t short_lens[] = {0, 1, COAP_ID_OFFSET,
                                        COAP_ID_OFFSET + COAP_ID_LEN - 1};
    size_t n_bad = N_CASES(short_lens);
    uint8_t *room = datagram_room(n_bad + 3);
    struct datagram bad[MAX_DATAGRAMS], valid[3];
    for (size_t i = 0; i < n_bad; i++) {
        uint8_t *out = room + i * UDPRR_MAX_DATAGRAM;
        memset(out, 0x40, short_lens[i]);
        bad[i] = (struct datagram){"too short for the ID", out, short_lens[i],
                                   MALFORMED};
    }
    uint8_t *out = room + n_bad * UDPRR_MAX_DATAGRAM;
    valid[0] = (struct datagram){"a CoAP-like request", out,
                                 coap_request(out, 0x0101, "\x40\x01..coap"),
                                 ANSWERED};
    out += UDPRR_MAX_DATAGRAM;
    valid[1] = (struct datagram){"just the ID", out,
                                 coap_request(out, 0x0102, "\x40\x01.."),
                                 ANSWERED};
    out += UDPRR_MAX_DATAGRAM;
    fill_noise(out, UDPRR_MAX_DATAGRAM, 0x5eed0002);
    out[COAP_ID_OFFSET] = 0x01; /* an ID of its own, whatever the seed */
    out[COAP_ID_OFFSET + 1] = 0x03;
    valid[2] = (struct datagram){"noise, 65507 bytes", out,
                                 UDPRR_MAX_DATAGRAM, ANSWERED};
    run_server(&coap_framing, bad, n_bad, valid, 3);
    free(room);
}
END_TEST

/* --- the client -------------------------------------------------------- */

struct outcome {
    int done;
    int status;
    size_t len;
    uint8_t reply[64];
};

static void on_done(void *user, int status, const void *reply, size_t len)
{
    struct outcome *o = user;
    o->done++;
    o->status = status;
    o->len = len;
    if (len <= sizeof o->reply && len > 0)
        memcpy(o->reply, reply, len);
}

static int is_done(void *arg)
{
    return ((struct outcome *)arg)->done > 0;
}

/* The client has counted at least these many drops. */
struct drops_seen {
    udprr_client *c;
    uint64_t malformed, stale;
};

static int drops_reached(void *arg)
{
    struct drops_seen *d = arg;
    struct udprr_client_stats st = test_client_stats(d->c);
    return st.dropped_malformed >= d->malformed &&
           st.dropped_stale >= d->stale;
}

/* A client of a plain socket: one transmission, waited out for long (no
 * retransmission may make "an attempt never made" one that was). */
static udprr_client *client_of(const char *port, int framing)
{
    udprr_client_opts o;
    udprr_client_opts_init(&o);
    o.framing = framing;
    o.id_offset = 0; /* DNS-like: 2 bytes at 0 */
    o.id_len = 2;
    o.max_attempts = 1;
    o.initial_rto_ms = 30000;
    o.max_rto_ms = 30000;
    o.deadline_ms = 30000;
    return test_client_open(port, &o);
}

/* Receives the client's request on the plain socket: its bytes and where
 * it came from. */
static size_t take_request(int peer, uint8_t *buf, struct sockaddr_storage *from,
                           socklen_t *from_len)
{
    *from_len = sizeof *from;
    ssize_t n = test_recv_within(peer, buf, UDPRR_MAX_DATAGRAM + 1, WAIT_MS,
                                 from, from_len);
    ck_assert_int_gt(n, 0);
    return (size_t)n;
}

START_TEST(test_client_native_completes_only_with_the_right_reply)
{
    char port[16], unused[16];
    int peer = test_plain_socket("127.0.0.1", port);
    int elsewhere = test_plain_socket("127.0.0.1", unused);
    udprr_client *c = client_of(port, UDPRR_FRAMING_NATIVE);
    struct outcome out = {0};
    ck_assert_int_eq(udprr_client_send(c, "question", 8, on_done, &out),
                     UDPRR_OK);

    uint8_t *buf = malloc(UDPRR_MAX_DATAGRAM + 1);
    ck_assert_ptr_nonnull(buf);
    struct sockaddr_storage from;
    socklen_t from_len;
    size_t n = take_request(peer, buf, &from, &from_len);
    struct udprr__wire_header rq;
    const uint8_t *body;
    size_t body_len;
    ck_assert_int_eq(udprr__wire_decode(buf, n, &rq, &body, &body_len),
                     UDPRR__WIRE_VALID);
    ck_assert_int_eq(rq.kind, UDPRR__KIND_REQUEST);
    ck_assert_uint_eq(rq.attempt, 1);
    ck_assert_uint_eq(body_len, 8);

    uint64_t malformed = 0, unexpected = 0, stale = 0;
    for (size_t i = 0; i < N_CASES(client_cases); i++) {
        const struct hostile_case *k = &client_cases[i];
        size_t len = build(k, UDPRR__KIND_REPLY, rq.id, "the answer", buf);
        send_to(k->expect == UNSEEN ? elsewhere : peer, buf, len, &from,
                from_len);
        malformed += k->expect == MALFORMED;
        unexpected += k->expect == UNEXPECTED;
        stale += k->expect == STALE;
        if (len > 1500) {
            /* Taken before the rest queue up behind it. */
            struct drops_seen d = {c, malformed, stale};
            ck_assert(test_pump_until(c, drops_reached, &d, WAIT_MS, 50));
        }
        if (k->expect != ANSWERED) /* nothing has completed it yet */
            ck_assert_int_eq(out.done, 0);
    }
    ck_assert_int_eq(client_cases[N_CASES(client_cases) - 1].expect, ANSWERED);
    ck_assert(test_pump_until(c, is_done, &out, WAIT_MS, 50));
    ck_assert_int_eq(out.done, 1);
    ck_assert_int_eq(out.status, UDPRR_OK);
    ck_assert_uint_eq(out.len, 10);
    ck_assert_mem_eq(out.reply, "the answer", 10);

    struct udprr_client_stats st = test_client_stats(c);
    ck_assert_uint_eq(st.requests, 1);
    ck_assert_uint_eq(st.completed, 1);
    ck_assert_uint_eq(st.attempts, 1);
    ck_assert_uint_eq(st.dropped_malformed, malformed);
    ck_assert_uint_eq(st.dropped_unexpected, unexpected);
    ck_assert_uint_eq(st.dropped_stale, stale);
    ck_assert_uint_eq(st.dropped_duplicate, 0);
    ck_assert_uint_eq(st.timeouts + st.declined + st.failed, 0);
    int fds[2] = {peer, elsewhere};
    assert_quiet(fds, 2); /* no retransmission, nothing else sent */
    udprr_client_close(c);
    close(peer);
    close(elsewhere);
    free(buf);
}
END_TEST

START_TEST(test_client_id_at_offset_completes_only_with_the_right_reply)
{
    char port[16], unused[16];
    int peer = test_plain_socket("127.0.0.1", port);
    int elsewhere = test_plain_socket("127.0.0.1", unused);
    udprr_client *c = client_of(port, UDPRR_FRAMING_ID_AT_OFFSET);
    struct outcome out = {0};
    ck_assert_int_eq(udprr_client_send(c, "..question", 10, on_done, &out),
                     UDPRR_OK);
    uint8_t *buf = malloc(UDPRR_MAX_DATAGRAM + 1);
    ck_assert_ptr_nonnull(buf);
    struct sockaddr_storage from;
    socklen_t from_len;
    ck_assert_uint_eq(take_request(peer, buf, &from, &from_len), 10);
    uint8_t id[2] = {buf[0], buf[1]};

    /* Too short to hold the ID: malformed. */
    send_to(peer, "", 0, &from, from_len);
    send_to(peer, id, 1, &from, from_len);
    /* 65507 bytes of noise with another ID: a reply to nothing. */
    fill_noise(buf, UDPRR_MAX_DATAGRAM, 0x5eed0003);
    buf[0] = (uint8_t)~id[0];
    send_to(peer, buf, UDPRR_MAX_DATAGRAM, &from, from_len);
    struct drops_seen d = {c, 2, 1};
    ck_assert(test_pump_until(c, drops_reached, &d, WAIT_MS, 50));
    /* The right ID, another body, from another port: never seen. */
    memcpy(buf, id, 2);
    memcpy(buf + 2, "forged", 6);
    send_to(elsewhere, buf, 8, &from, from_len);
    /* A short reply with the other ID. */
    buf[1] = (uint8_t)~id[1];
    send_to(peer, buf, 8, &from, from_len);
    ck_assert_int_eq(out.done, 0);
    memcpy(buf, id, 2);
    memcpy(buf + 2, "the answer", 10);
    send_to(peer, buf, 12, &from, from_len);
    ck_assert(test_pump_until(c, is_done, &out, WAIT_MS, 50));
    ck_assert_int_eq(out.done, 1);
    ck_assert_int_eq(out.status, UDPRR_OK);
    ck_assert_uint_eq(out.len, 12);
    ck_assert_mem_eq(out.reply, id, 2);
    ck_assert_mem_eq(out.reply + 2, "the answer", 10);

    struct udprr_client_stats st = test_client_stats(c);
    ck_assert_uint_eq(st.completed, 1);
    ck_assert_uint_eq(st.attempts, 1);
    ck_assert_uint_eq(st.dropped_malformed, 2);
    ck_assert_uint_eq(st.dropped_unexpected, 0);
    ck_assert_uint_eq(st.dropped_stale, 2);
    ck_assert_uint_eq(st.dropped_duplicate, 0);
    int fds[2] = {peer, elsewhere};
    assert_quiet(fds, 2);
    udprr_client_close(c);
    close(peer);
    close(elsewhere);
    free(buf);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("net_hostile");
    TCase *server = tcase_create("server");
    tcase_set_timeout(server, 60);
    tcase_add_test(server, test_server_native_answers_only_valid_requests);
    tcase_add_test(server,
                   test_server_id_at_offset_answers_only_valid_requests);
    suite_add_tcase(s, server);
    TCase *client = tcase_create("client");
    tcase_set_timeout(client, 60);
    tcase_add_test(client,
                   test_client_native_completes_only_with_the_right_reply);
    tcase_add_test(client,
                   test_client_id_at_offset_completes_only_with_the_right_reply);
    suite_add_tcase(s, client);
    return udprr_test_run(s);
}
