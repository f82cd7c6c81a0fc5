/* SPDX-License-Identifier: MIT */
/*
 * net_network.c - the network features on loopback (the namespace tests,
 * tests/netns-test.sh, take what loopback cannot show: several hosts, a
 * bridge, a small MTU, two interfaces):
 *
 *   - a server bound to every interface answers a client connected to
 *     127.0.0.2 from 127.0.0.2 (IP_PKTINFO), directly and through a
 *     deferred answer, where a plain socket that answers from the
 *     kernel's choice of address is never heard (the control that shows
 *     the test can fail);
 *   - a client's chosen source address and port are what the server sees;
 *   - a gather to one server retransmits with the same ID, the server
 *     runs its handler once, and the gather reports it once; a decline is
 *     reported as such; nothing answering ends in UDPRR_ETIMEDOUT; the
 *     callback can stop it; bad arguments are refused;
 *   - udprr_client_mtu reports the loopback interface's MTU;
 *   - the options' and udprr_server_join's argument checks.
 */
#include <errno.h>
#include <net/if.h>
#include <stdatomic.h>

#include "netutil.h"
#include "testutil.h"

/* Bounds every wait of this suite. */
#define DEADLINE_MS 5000

static int lo_mtu(void)
{
    FILE *f = fopen("/sys/class/net/lo/mtu", "r");
    int mtu = -1;
    if (f != NULL) {
        if (fscanf(f, "%d", &mtu) != 1)
            mtu = -1;
        fclose(f);
    }
    return mtu;
}

/* --- replies from the address the request was sent to ------------------ */

static void request_ok(udprr_client *c, const char *text)
{
    char reply[64];
    size_t len = 0;
    ck_assert_int_eq(udprr_client_request(c, text, strlen(text), reply,
                                          sizeof reply, &len),
                     UDPRR_OK);
    ck_assert_uint_eq(len, strlen(text));
    ck_assert_mem_eq(reply, text, len);
}

static udprr_client *open_to(const char *host, const char *port,
                             unsigned deadline_ms)
{
    udprr_client_opts o;
    udprr_client_opts_init(&o);
    o.deadline_ms = deadline_ms;
    o.initial_rto_ms = 50;
    udprr_client *c = NULL;
    ck_assert_int_eq(udprr_client_open(&c, host, port, &o), UDPRR_OK);
    return c;
}

START_TEST(wildcard_server_answers_from_second_address)
{
    struct fixture_server fs;
    test_server_start(&fs, NULL, NULL, test_echo_handler, NULL);
    udprr_client *c = open_to("127.0.0.2", fs.port, DEADLINE_MS);
    request_ok(c, "to the second address");
    request_ok(c, "and again");
    udprr_client_close(c);
    /* The primary address and IPv6 still work as before. */
    c = open_to("127.0.0.1", fs.port, DEADLINE_MS);
    request_ok(c, "to the first address");
    udprr_client_close(c);
    c = open_to("::1", fs.port, DEADLINE_MS);
    request_ok(c, "over IPv6");
    udprr_client_close(c);
    struct udprr_server_stats st;
    test_server_stop(&fs, &st);
    ck_assert_uint_eq(st.answered, 4);
    ck_assert_uint_eq(st.send_errors, 0);
}
END_TEST

/* The handler defers and answers through its token at once: the answer
 * goes out later, from the deferred request's record. */
static int defer_and_answer(void *user, const udprr_request *req, void *reply,
                            size_t cap, size_t *reply_len)
{
    udprr_server *const *s = user;
    (void)reply;
    (void)cap;
    (void)reply_len;
    ck_assert_uint_ne(req->token, 0);
    ck_assert_int_eq(udprr_server_reply(*s, req->token, req->data, req->len),
                     UDPRR_OK);
    return UDPRR_DEFER;
}

START_TEST(deferred_answer_from_second_address)
{
    struct fixture_server fs;
    udprr_server *s = NULL;
    ck_assert_int_eq(udprr_server_open(&s, NULL, "0", NULL), UDPRR_OK);
    static udprr_server *shared;
    shared = s;
    test_server_serve(&fs, s, defer_and_answer, &shared);
    udprr_client *c = open_to("127.0.0.2", fs.port, DEADLINE_MS);
    request_ok(c, "deferred");
    udprr_client_close(c);
    struct udprr_server_stats st;
    test_server_stop(&fs, &st);
    ck_assert_uint_eq(st.deferred_answered, 1);
}
END_TEST

/* A plain server on every interface, as naive code writes one: recvfrom,
 * then sendto, and the kernel picks the source address. */
struct plain_echo {
    int fd;
    atomic_int answered;
};

static void *plain_echo_run(void *arg)
{
    struct plain_echo *p = arg;
    char buf[2048];
    struct sockaddr_storage from;
    socklen_t from_len = sizeof from;
    ssize_t n = test_recv_within(p->fd, buf, sizeof buf, DEADLINE_MS, &from,
                                 &from_len);
    if (n >= 0 && sendto(p->fd, buf, (size_t)n, 0, (struct sockaddr *)&from,
                         from_len) == n)
        atomic_store(&p->answered, 1);
    return NULL;
}

START_TEST(control_plain_server_is_not_heard_from_second_address)
{
    struct plain_echo p = {test_plain_socket("0.0.0.0", (char[16]){0}), 0};
    char port[16];
    struct sockaddr_in a;
    socklen_t len = sizeof a;
    ck_assert_int_eq(getsockname(p.fd, (struct sockaddr *)&a, &len), 0);
    snprintf(port, sizeof port, "%u", (unsigned)ntohs(a.sin_port));
    pthread_t t;
    ck_assert_int_eq(pthread_create(&t, NULL, plain_echo_run, &p), 0);
    udprr_client_opts o;
    udprr_client_opts_init(&o);
    o.framing = UDPRR_FRAMING_RAW;
    o.deadline_ms = 500;
    o.initial_rto_ms = 50;
    udprr_client *c = NULL;
    ck_assert_int_eq(udprr_client_open(&c, "127.0.0.2", port, &o), UDPRR_OK);
    char reply[64];
    size_t got;
    ck_assert_int_eq(udprr_client_request(c, "hello", 5, reply, sizeof reply,
                                          &got),
                     UDPRR_ETIMEDOUT);
    pthread_join(t, NULL);
    /* It answered, from 127.0.0.1, and the connected client never saw
     * it: exactly what PKTINFO prevents. */
    ck_assert_int_eq(atomic_load(&p.answered), 1);
    udprr_client_close(c);
    close(p.fd);
}
END_TEST

/* --- the client's source address and port ------------------------------ */

struct seen_peer {
    pthread_mutex_t lock;
    struct sockaddr_storage peer;
};

static int record_peer(void *user, const udprr_request *req, void *reply,
                       size_t cap, size_t *reply_len)
{
    struct seen_peer *sp = user;
    pthread_mutex_lock(&sp->lock);
    memcpy(&sp->peer, req->peer, req->peer_len);
    pthread_mutex_unlock(&sp->lock);
    return test_echo_handler(NULL, req, reply, cap, reply_len);
}

START_TEST(client_source_address_and_port)
{
    struct seen_peer sp = {PTHREAD_MUTEX_INITIALIZER, {0}};
    struct fixture_server fs;
    test_server_start(&fs, "127.0.0.1", NULL, record_peer, &sp);
    udprr_client_opts o;
    udprr_client_opts_init(&o);
    o.local_host = "127.0.0.3";
    udprr_client *c = NULL;
    /* A port that was free a moment ago; another program may take it in
     * between, so a few are tried. */
    int rc = UDPRR_ESYS;
    char local_port[16];
    for (int tries = 0; tries < 10 && rc != UDPRR_OK; tries++) {
        int fd = test_plain_socket("127.0.0.3", local_port);
        close(fd);
        o.local_service = local_port;
        rc = udprr_client_open(&c, "127.0.0.1", fs.port, &o);
    }
    ck_assert_int_eq(rc, UDPRR_OK);
    request_ok(c, "from where?");
    struct sockaddr_in *in = (struct sockaddr_in *)&sp.peer;
    char text[INET_ADDRSTRLEN];
    pthread_mutex_lock(&sp.lock);
    ck_assert_int_eq(in->sin_family, AF_INET);
    ck_assert_str_eq(inet_ntop(AF_INET, &in->sin_addr, text, sizeof text),
                     "127.0.0.3");
    ck_assert_uint_eq(ntohs(in->sin_port), (unsigned)atoi(local_port));
    pthread_mutex_unlock(&sp.lock);
    /* The port is the handle's alone: a second handle cannot take it. */
    udprr_client *other = NULL;
    errno = 0;
    ck_assert_int_eq(udprr_client_open(&other, "127.0.0.1", fs.port, &o),
                     UDPRR_ESYS);
    ck_assert_int_eq(errno, EADDRINUSE);
    udprr_client_close(c);
    test_server_stop(&fs, NULL);
}
END_TEST

START_TEST(client_source_of_other_family_is_skipped)
{
    /* "localhost" may give ::1 first: the IPv4 source address cannot be
     * bound to an IPv6 socket, so that address is passed over. */
    struct fixture_server fs;
    test_server_start(&fs, "127.0.0.1", NULL, test_echo_handler, NULL);
    udprr_client_opts o;
    udprr_client_opts_init(&o);
    o.local_host = "127.0.0.1";
    udprr_client *c = NULL;
    ck_assert_int_eq(udprr_client_open(&c, "localhost", fs.port, &o),
                     UDPRR_OK);
    request_ok(c, "v4 only");
    udprr_client_close(c);
    /* No address of the server's family: nothing to bind. */
    o.local_host = "::1";
    ck_assert_int_eq(udprr_client_open(&c, "127.0.0.1", fs.port, &o),
                     UDPRR_ERESOLVE);
    test_server_stop(&fs, NULL);
}
END_TEST

/* --- gathers ------------------------------------------------------------ */

struct gathered {
    int calls, stop_after;
    int status;
    char reply[64];
    size_t reply_len;
    struct sockaddr_storage from;
};

static int on_answer(void *user, const struct sockaddr *from,
                     socklen_t from_len, int status, const void *reply,
                     size_t reply_len)
{
    struct gathered *g = user;
    g->calls++;
    g->status = status;
    g->reply_len = reply_len;
    memcpy(g->reply, reply, reply_len < sizeof g->reply ? reply_len
                                                        : sizeof g->reply);
    memcpy(&g->from, from, from_len);
    return g->stop_after != 0 && g->calls >= g->stop_after;
}

static udprr_client *gather_client(const char *port, unsigned rto_ms,
                                   int framing)
{
    udprr_client_opts o;
    udprr_client_opts_init(&o);
    o.id_offset = 0;
    o.id_len = 2;
    o.initial_rto_ms = rto_ms;
    o.fixed_rto = 1;
    o.jitter_pct = 0;
    o.backoff_pct = 100; /* a transmission every rto_ms */
    o.framing = framing;
    return test_client_open(port, &o);
}

static atomic_int handled;

static int counting_echo(void *user, const udprr_request *req, void *reply,
                         size_t cap, size_t *reply_len)
{
    atomic_fetch_add(&handled, 1);
    return test_echo_handler(user, req, reply, cap, reply_len);
}

START_TEST(gather_one_server_retransmits_with_one_id)
{
    atomic_store(&handled, 0);
    struct fixture_server fs;
    test_server_start(&fs, "127.0.0.1", NULL, counting_echo, NULL);
    udprr_client *c = gather_client(fs.port, 20, UDPRR_FRAMING_NATIVE);
    struct gathered g = {0};
    uint64_t t0 = test_now_us();
    ck_assert_int_eq(udprr_client_gather(c, "who is there", 12, 200, 0,
                                         on_answer, &g),
                     UDPRR_OK);
    uint64_t took = test_now_us() - t0;
    ck_assert_int_eq(g.calls, 1);
    ck_assert_int_eq(g.status, UDPRR_OK);
    ck_assert_uint_eq(g.reply_len, 12);
    ck_assert_mem_eq(g.reply, "who is there", 12);
    ck_assert_int_eq(((struct sockaddr *)&g.from)->sa_family, AF_INET);
    /* The window was waited out: more servers might have answered. */
    ck_assert_uint_ge(took, 200000);
    struct udprr_server_stats st;
    test_server_stop(&fs, &st);
    /* About ten transmissions, one handler run: the others were answered
     * from the reply cache, which only the same ID reaches. */
    ck_assert_int_eq(atomic_load(&handled), 1);
    ck_assert_uint_ge(st.received, 3);
    ck_assert_uint_eq(st.cache_hits, st.received - 1);
    udprr_client_close(c);
}
END_TEST

START_TEST(gather_stops_at_max_replies_and_when_asked)
{
    struct fixture_server fs;
    test_server_start(&fs, "127.0.0.1", NULL, test_echo_handler, NULL);
    udprr_client *c = gather_client(fs.port, 1000, UDPRR_FRAMING_NATIVE);
    struct gathered g = {0};
    uint64_t t0 = test_now_us();
    ck_assert_int_eq(udprr_client_gather(c, "x", 1, DEADLINE_MS, 1, on_answer,
                                         &g),
                     UDPRR_OK);
    ck_assert_int_eq(g.calls, 1);
    ck_assert_uint_lt(test_now_us() - t0, (uint64_t)DEADLINE_MS * 1000);
    struct gathered h = {.stop_after = 1};
    t0 = test_now_us();
    ck_assert_int_eq(udprr_client_gather(c, "y", 1, DEADLINE_MS, 0, on_answer,
                                         &h),
                     UDPRR_OK);
    ck_assert_int_eq(h.calls, 1);
    ck_assert_uint_lt(test_now_us() - t0, (uint64_t)DEADLINE_MS * 1000);
    udprr_client_close(c);
    test_server_stop(&fs, NULL);
}
END_TEST

static int decline_all(void *user, const udprr_request *req, void *reply,
                       size_t cap, size_t *reply_len)
{
    (void)user, (void)req, (void)reply, (void)cap, (void)reply_len;
    return UDPRR_DECLINE;
}

START_TEST(gather_reports_a_decline)
{
    struct fixture_server fs;
    test_server_start(&fs, "127.0.0.1", NULL, decline_all, NULL);
    udprr_client *c = gather_client(fs.port, 1000, UDPRR_FRAMING_NATIVE);
    struct gathered g = {0};
    ck_assert_int_eq(udprr_client_gather(c, "no", 2, 100, 0, on_answer, &g),
                     UDPRR_OK);
    ck_assert_int_eq(g.calls, 1);
    ck_assert_int_eq(g.status, UDPRR_EREMOTE);
    ck_assert_uint_eq(g.reply_len, 0);
    udprr_client_close(c);
    test_server_stop(&fs, NULL);
}
END_TEST

static int answer_big(void *user, const udprr_request *req, void *reply,
                      size_t cap, size_t *reply_len)
{
    (void)user, (void)req;
    atomic_fetch_add(&handled, 1);
    ck_assert_uint_ge(cap, 1000);
    memset(reply, 'b', 1000);
    *reply_len = 1000;
    return UDPRR_REPLY;
}

/* A server with the amplification guard (the default) holds a 1000-byte
 * answer to a 1-byte request back behind an echo; the gather sends the
 * request again to that server with the cookie, and hears the answer,
 * which the server's cache gives without running the handler again. */
START_TEST(gather_answers_an_echo)
{
    atomic_store(&handled, 0);
    struct fixture_server fs;
    test_server_start(&fs, "127.0.0.1", NULL, answer_big, NULL);
    udprr_client *c = gather_client(fs.port, 1000, UDPRR_FRAMING_NATIVE);
    struct gathered g = {0};
    ck_assert_int_eq(udprr_client_gather(c, "?", 1, DEADLINE_MS, 1, on_answer,
                                         &g),
                     UDPRR_OK);
    ck_assert_int_eq(g.calls, 1);
    ck_assert_int_eq(g.status, UDPRR_OK);
    ck_assert_uint_eq(g.reply_len, 1000);
    ck_assert_int_eq(g.reply[0], 'b');
    struct udprr_server_stats st;
    test_server_stop(&fs, &st);
    ck_assert_int_eq(atomic_load(&handled), 1);
    ck_assert_uint_eq(st.amplification_echoes, 1);
    ck_assert_uint_eq(st.cache_hits, 1);
    udprr_client_close(c);
}
END_TEST

START_TEST(gather_in_raw_framing)
{
    struct fixture_server fs;
    udprr_server_opts so;
    udprr_server_opts_init(&so);
    so.framing = UDPRR_FRAMING_RAW;
    test_server_start(&fs, "127.0.0.1", &so, test_echo_handler, NULL);
    udprr_client *c = gather_client(fs.port, 30, UDPRR_FRAMING_RAW);
    struct gathered g = {0};
    ck_assert_int_eq(udprr_client_gather(c, "raw", 3, 150, 0, on_answer, &g),
                     UDPRR_OK);
    /* Every retransmission was answered (raw has no cache), and the one
     * server is reported once. */
    ck_assert_int_eq(g.calls, 1);
    ck_assert_mem_eq(g.reply, "raw", 3);
    struct udprr_server_stats st;
    test_server_stop(&fs, &st);
    ck_assert_uint_ge(st.answered, 2);
    udprr_client_close(c);
}
END_TEST

START_TEST(gather_nobody_answers)
{
    char port[16];
    int silent = test_plain_socket("127.0.0.1", port);
    udprr_client *c = gather_client(port, 20, UDPRR_FRAMING_NATIVE);
    struct gathered g = {0};
    uint64_t t0 = test_now_us();
    ck_assert_int_eq(udprr_client_gather(c, "anyone?", 7, 120, 0, on_answer,
                                         &g),
                     UDPRR_ETIMEDOUT);
    ck_assert_uint_ge(test_now_us() - t0, 120000);
    ck_assert_int_eq(g.calls, 0);
    /* It sent, with one ID, several times. */
    char buf[64];
    struct sockaddr_storage from;
    socklen_t from_len = sizeof from;
    int n = 0;
    while (test_recv_within(silent, buf, sizeof buf, 0, &from, &from_len) > 0)
        n++;
    ck_assert_int_ge(n, 3);
    udprr_client_close(c);
    close(silent);
}
END_TEST

/* Closes the handle (user) from inside the gather. */
static int close_it(void *user, const struct sockaddr *from, socklen_t len,
                    int status, const void *reply, size_t reply_len)
{
    (void)from, (void)len, (void)status, (void)reply, (void)reply_len;
    udprr_client_close(user);
    return 0;
}

START_TEST(gather_callback_may_close_the_handle)
{
    struct fixture_server fs;
    test_server_start(&fs, "127.0.0.1", NULL, test_echo_handler, NULL);
    udprr_client *c = gather_client(fs.port, 1000, UDPRR_FRAMING_NATIVE);
    uint64_t t0 = test_now_us();
    /* Ends at once, the handle freed (ASan and valgrind watch this). */
    ck_assert_int_eq(udprr_client_gather(c, "bye", 3, DEADLINE_MS, 0,
                                         close_it, c),
                     UDPRR_ECANCELED);
    ck_assert_uint_lt(test_now_us() - t0, (uint64_t)DEADLINE_MS * 1000);
    test_server_stop(&fs, NULL);
}
END_TEST

struct inner {
    udprr_client *c;
    int done, rc;
};

static void gather_from_done(void *user, int status, const void *reply,
                             size_t len)
{
    struct inner *in = user;
    (void)status, (void)reply, (void)len;
    struct gathered g = {0};
    in->rc = udprr_client_gather(in->c, "x", 1, 10, 0, on_answer, &g);
    in->done = 1;
}

static int inner_done(void *arg)
{
    return ((struct inner *)arg)->done;
}

START_TEST(gather_from_a_done_callback_is_refused)
{
    struct fixture_server fs;
    test_server_start(&fs, "127.0.0.1", NULL, test_echo_handler, NULL);
    struct inner in = {gather_client(fs.port, 1000, UDPRR_FRAMING_NATIVE), 0,
                       0};
    ck_assert_int_eq(udprr_client_send(in.c, "a", 1, gather_from_done, &in),
                     UDPRR_OK);
    ck_assert(test_pump_until(in.c, inner_done, &in, DEADLINE_MS, -1));
    ck_assert_int_eq(in.rc, UDPRR_EINVAL);
    udprr_client_close(in.c);
    test_server_stop(&fs, NULL);
}
END_TEST

START_TEST(gather_refuses_bad_arguments)
{
    struct gathered g = {0};
    udprr_client *c = gather_client("9", 20, UDPRR_FRAMING_NATIVE);
    ck_assert_int_eq(udprr_client_gather(NULL, "x", 1, 10, 0, on_answer, &g),
                     UDPRR_EINVAL);
    ck_assert_int_eq(udprr_client_gather(c, "x", 1, 10, 0, NULL, &g),
                     UDPRR_EINVAL);
    ck_assert_int_eq(udprr_client_gather(c, NULL, 1, 10, 0, on_answer, &g),
                     UDPRR_EINVAL);
    ck_assert_int_eq(udprr_client_gather(c, "x", 1, 0, 0, on_answer, &g),
                     UDPRR_EINVAL);
    ck_assert_int_eq(udprr_client_gather(c, "x", 1, 3600001, 0, on_answer, &g),
                     UDPRR_EINVAL);
    ck_assert_int_eq(udprr_client_gather(c, "x", 1, 10, UDPRR_GATHER_MAX + 1,
                                         on_answer, &g),
                     UDPRR_EINVAL);
    static char big[UDPRR_MAX_PAYLOAD + 1];
    ck_assert_int_eq(udprr_client_gather(c, big, sizeof big, 10, 0, on_answer,
                                         &g),
                     UDPRR_ETOOBIG);
    ck_assert_int_eq(g.calls, 0);
    udprr_client_close(c);
    /* DNS framing: the ID's two bytes at offset 0 must fit. */
    c = gather_client("9", 20, UDPRR_FRAMING_ID_AT_OFFSET);
    ck_assert_int_eq(udprr_client_gather(c, "x", 1, 10, 0, on_answer, &g),
                     UDPRR_EINVAL);
    udprr_client_close(c);
}
END_TEST

/* --- path MTU ------------------------------------------------------------ */

START_TEST(mtu_of_loopback)
{
    int want = lo_mtu();
    ck_assert_int_gt(want, 0);
    udprr_client_opts o;
    udprr_client_opts_init(&o);
    o.dont_fragment = 1;
    udprr_client *c = test_client_open("9", &o);
    unsigned mtu = 0;
    ck_assert_int_eq(udprr_client_mtu(c, &mtu), UDPRR_OK);
    /* The route's MTU is capped at the largest IPv4 packet, 65535. */
    ck_assert_uint_eq(mtu, want < 65535 ? (unsigned)want : 65535u);
    ck_assert_int_eq(udprr_client_mtu(c, NULL), UDPRR_EINVAL);
    ck_assert_int_eq(udprr_client_mtu(NULL, &mtu), UDPRR_EINVAL);
    udprr_client_close(c);
}
END_TEST

START_TEST(dont_fragment_still_carries_the_largest_request)
{
    /* Loopback's MTU holds the largest IPv4 datagram: with Don't
     * Fragment, the largest native request still goes through. */
    struct fixture_server fs;
    test_server_start(&fs, "127.0.0.1", NULL, test_echo_handler, NULL);
    udprr_client_opts o;
    udprr_client_opts_init(&o);
    o.dont_fragment = 1;
    udprr_client *c = test_client_open(fs.port, &o);
    static char req[UDPRR_MAX_PAYLOAD], reply[UDPRR_MAX_PAYLOAD];
    memset(req, 'm', sizeof req);
    size_t len = 0;
    ck_assert_int_eq(udprr_client_request(c, req, sizeof req, reply,
                                          sizeof reply, &len),
                     UDPRR_OK);
    ck_assert_uint_eq(len, sizeof req);
    udprr_client_close(c);
    test_server_stop(&fs, NULL);
}
END_TEST

/* --- option checks --------------------------------------------------------- */

START_TEST(options_are_checked)
{
    udprr_client_opts o;
    udprr_client *c = NULL;
    udprr_client_opts_init(&o);
    ck_assert_uint_eq(o.multicast_ttl, 1);
    o.multicast_ttl = 256;
    ck_assert_int_eq(udprr_client_open(&c, "127.0.0.1", "9", &o),
                     UDPRR_EINVAL);
    o.multicast_ttl = 0; /* the default */
    o.interface = "udprr-no-such0";
    ck_assert_int_eq(udprr_client_open(&c, "127.0.0.1", "9", &o),
                     UDPRR_ERESOLVE);
    o.interface = NULL;
    o.local_service = "udprr-no-such-service";
    ck_assert_int_eq(udprr_client_open(&c, "127.0.0.1", "9", &o),
                     UDPRR_ERESOLVE);
    ck_assert_ptr_null(c);

    udprr_server_opts so;
    udprr_server *s = NULL;
    udprr_server_opts_init(&so);
    so.interface = "udprr-no-such0";
    ck_assert_int_eq(udprr_server_open(&s, "127.0.0.1", "0", &so),
                     UDPRR_ERESOLVE);
    ck_assert_int_eq(udprr_server_open(&s, NULL, "0", &so), UDPRR_ERESOLVE);
    ck_assert_ptr_null(s);
}
END_TEST

START_TEST(broadcast_needs_the_option)
{
    /* The kernel refuses to connect to a broadcast address without
     * SO_BROADCAST (EACCES): the option is what makes it work. Loopback's
     * own broadcast address, which every host routes. */
    udprr_client_opts o;
    udprr_client *c = NULL;
    udprr_client_opts_init(&o);
    errno = 0;
    ck_assert_int_eq(udprr_client_open(&c, "127.255.255.255", "9", &o),
                     UDPRR_ESYS);
    ck_assert_int_eq(errno, EACCES);
    o.broadcast = 1;
    ck_assert_int_eq(udprr_client_open(&c, "127.255.255.255", "9", &o),
                     UDPRR_OK);
    udprr_client_close(c);
}
END_TEST

START_TEST(gather_over_loopback_broadcast)
{
    /* A server on every interface hears loopback's broadcast address; its
     * answer leaves from a unicast address (PKTINFO's ipi_spec_dst), not
     * from the broadcast address, which no socket could send from. */
    atomic_store(&handled, 0);
    struct fixture_server fs;
    test_server_start(&fs, NULL, NULL, counting_echo, NULL);
    udprr_client_opts o;
    udprr_client_opts_init(&o);
    o.broadcast = 1;
    o.initial_rto_ms = 20;
    o.fixed_rto = 1;
    o.backoff_pct = 100;
    udprr_client *c = NULL;
    ck_assert_int_eq(udprr_client_open(&c, "127.255.255.255", fs.port, &o),
                     UDPRR_OK);
    struct gathered g = {0};
    ck_assert_int_eq(udprr_client_gather(c, "all of you", 10, 150, 0,
                                         on_answer, &g),
                     UDPRR_OK);
    ck_assert_int_eq(g.calls, 1);
    ck_assert_mem_eq(g.reply, "all of you", 10);
    char text[INET6_ADDRSTRLEN];
    const struct sockaddr *from = (const struct sockaddr *)&g.from;
    const void *addr =
        from->sa_family == AF_INET6
            ? (const void *)&((const struct sockaddr_in6 *)from)->sin6_addr
            : (const void *)&((const struct sockaddr_in *)from)->sin_addr;
    ck_assert_ptr_nonnull(inet_ntop(from->sa_family, addr, text, sizeof text));
    ck_assert_str_eq(text, "127.0.0.1");
    struct udprr_server_stats st;
    test_server_stop(&fs, &st);
    ck_assert_int_eq(atomic_load(&handled), 1);
    ck_assert_uint_ge(st.cache_hits, 1);
    udprr_client_close(c);
}
END_TEST

static int sockopt(int fd, int level, int name)
{
    int v = -1;
    socklen_t len = sizeof v;
    ck_assert_int_eq(getsockopt(fd, level, name, &v, &len), 0);
    return v;
}

START_TEST(socket_options_reach_the_socket)
{
    /* An IPv4 handle, and an IPv6 one connected to a v4-mapped address,
     * which sends IPv4 and so reads the IPv4 options. */
    const char *hosts[2] = {"127.0.0.1", "::ffff:127.0.0.1"};
    for (int i = 0; i < 2; i++) {
        udprr_client_opts o;
        udprr_client_opts_init(&o);
        udprr_client *c = test_client_open("9", &o);
        int fd = udprr_client_fd(c);
        ck_assert_int_ne(sockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER),
                         IP_PMTUDISC_DO);
        ck_assert_int_eq(sockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL), 1);
        ck_assert_int_eq(sockopt(fd, SOL_SOCKET, SO_BROADCAST), 0);
        udprr_client_close(c);
        o.dont_fragment = 1;
        o.multicast_ttl = 7;
        o.broadcast = 1;
        c = NULL;
        ck_assert_int_eq(udprr_client_open(&c, hosts[i], "9", &o), UDPRR_OK);
        fd = udprr_client_fd(c);
        ck_assert_int_eq(sockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER),
                         IP_PMTUDISC_DO);
        ck_assert_int_eq(sockopt(fd, IPPROTO_IP, IP_MULTICAST_TTL), 7);
        ck_assert_int_eq(sockopt(fd, SOL_SOCKET, SO_BROADCAST), 1);
        udprr_client_close(c);
    }
    /* IPv6 proper. */
    udprr_client_opts o;
    udprr_client_opts_init(&o);
    o.dont_fragment = 1;
    o.multicast_ttl = 9;
    udprr_client *c = NULL;
    ck_assert_int_eq(udprr_client_open(&c, "::1", "9", &o), UDPRR_OK);
    int fd = udprr_client_fd(c);
    ck_assert_int_eq(sockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER),
                     IPV6_PMTUDISC_DO);
    ck_assert_int_eq(sockopt(fd, IPPROTO_IPV6, IPV6_DONTFRAG), 1);
    ck_assert_int_eq(sockopt(fd, IPPROTO_IPV6, IPV6_MULTICAST_HOPS), 9);
    udprr_client_close(c);
}
END_TEST

START_TEST(interface_binding_on_loopback)
{
    /* SO_BINDTODEVICE takes CAP_NET_RAW (before Linux 5.7, and still
     * where the socket is already bound): as root it must work. */
    struct fixture_server fs;
    udprr_server_opts so;
    udprr_server_opts_init(&so);
    so.interface = "lo";
    int rc = fixture_server_start(&fs, "127.0.0.1", &so, test_echo_handler,
                                  NULL);
    if (geteuid() != 0 && rc == UDPRR_ESYS && errno == EPERM) {
        fprintf(stderr, "interface_binding_on_loopback: not root, "
                        "SO_BINDTODEVICE refused; checked as root in CI\n");
        return;
    }
    ck_assert_int_eq(rc, UDPRR_OK);
    udprr_client_opts o;
    udprr_client_opts_init(&o);
    o.interface = "lo";
    udprr_client *c = test_client_open(fs.port, &o);
    request_ok(c, "bound to lo");
    udprr_client_close(c);
    test_server_stop(&fs, NULL);
}
END_TEST

START_TEST(join_is_checked)
{
    udprr_server *s = NULL;
    ck_assert_int_eq(udprr_server_open(&s, NULL, "0", NULL), UDPRR_OK);
    ck_assert_int_eq(udprr_server_join(NULL, "239.255.18.1", NULL),
                     UDPRR_EINVAL);
    ck_assert_int_eq(udprr_server_join(s, NULL, NULL), UDPRR_EINVAL);
    ck_assert_int_eq(udprr_server_join(s, "127.0.0.1", NULL), UDPRR_EINVAL);
    ck_assert_int_eq(udprr_server_join(s, "239.255.18.1", "udprr-no-such0"),
                     UDPRR_ERESOLVE);
    udprr_server_close(s);
    udprr_server_opts so;
    udprr_server_opts_init(&so);
    so.workers = 2;
    ck_assert_int_eq(udprr_server_open(&s, "127.0.0.1", "0", &so), UDPRR_OK);
    ck_assert_int_eq(udprr_server_join(s, "239.255.18.1", NULL), UDPRR_EINVAL);
    udprr_server_close(s);
}
END_TEST

static Suite *network_suite(void)
{
    Suite *s = suite_create("network");
    TCase *tc = tcase_create("loopback");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, wildcard_server_answers_from_second_address);
    tcase_add_test(tc, deferred_answer_from_second_address);
    tcase_add_test(tc, control_plain_server_is_not_heard_from_second_address);
    tcase_add_test(tc, client_source_address_and_port);
    tcase_add_test(tc, client_source_of_other_family_is_skipped);
    tcase_add_test(tc, gather_one_server_retransmits_with_one_id);
    tcase_add_test(tc, gather_stops_at_max_replies_and_when_asked);
    tcase_add_test(tc, gather_reports_a_decline);
    tcase_add_test(tc, gather_answers_an_echo);
    tcase_add_test(tc, gather_in_raw_framing);
    tcase_add_test(tc, gather_nobody_answers);
    tcase_add_test(tc, gather_refuses_bad_arguments);
    tcase_add_test(tc, mtu_of_loopback);
    tcase_add_test(tc, dont_fragment_still_carries_the_largest_request);
    tcase_add_test(tc, options_are_checked);
    tcase_add_test(tc, broadcast_needs_the_option);
    tcase_add_test(tc, interface_binding_on_loopback);
    tcase_add_test(tc, gather_over_loopback_broadcast);
    tcase_add_test(tc, socket_options_reach_the_socket);
    tcase_add_test(tc, gather_callback_may_close_the_handle);
    tcase_add_test(tc, gather_from_a_done_callback_is_refused);
    tcase_add_test(tc, join_is_checked);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return udprr_test_run(network_suite());
}
