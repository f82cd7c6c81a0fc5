/* SPDX-License-Identifier: MIT */
/*
 * net_failover.c - a client with several servers, over real sockets on
 * loopback (the engine's exact rules are in unit_exchange's "endpoints"):
 *
 *   - the first server's port closed: the answer comes from the second at
 *     once (the refusal moves the request, no RTO waited);
 *   - the first a blackhole: the request moves after the first's RTO;
 *   - the first back up: used again once its back-off has run out;
 *   - the "localhost" case (::1 refusing, 127.0.0.1 answering), by name
 *     and as a list;
 *   - UDPRR_FAILOVER_REFUSED never reaches the second after a timeout;
 *   - with several endpoints udprr_client_fd is one descriptor to poll;
 *   - local_service with several endpoints binds every socket to it.
 */
#include <errno.h>
#include <stdatomic.h>

#include "netutil.h"
#include "testutil.h"

#define DEADLINE_MS 5000

/* A handler that answers with its server's name (user). */
struct named {
    const char *name;
    atomic_int handled;
    atomic_uint peer_port; /* the source port of the last request */
};

static int answer_name(void *user, const udprr_request *req, void *reply,
                       size_t cap, size_t *reply_len)
{
    struct named *n = user;
    atomic_fetch_add(&n->handled, 1);
    if (req->peer->sa_family == AF_INET)
        atomic_store(&n->peer_port,
                     ntohs(((const struct sockaddr_in *)req->peer)->sin_port));
    size_t len = strlen(n->name);
    ck_assert_uint_le(len, cap);
    memcpy(reply, n->name, len);
    *reply_len = len;
    return UDPRR_REPLY;
}

/* A port of 127.0.0.1 that nothing listens on (it was free a moment ago:
 * the kernel answers a datagram sent there with port unreachable). */
static void closed_port(char port[16])
{
    close(test_plain_socket("127.0.0.1", port));
}

static udprr_client *open_two(const char *port_a, const char *port_b,
                              udprr_client_opts *o)
{
    udprr_endpoint list[2] = {{"127.0.0.1", port_a}, {"127.0.0.1", port_b}};
    udprr_client *c = NULL;
    ck_assert_int_eq(udprr_client_open_list(&c, list, 2, o), UDPRR_OK);
    ck_assert_uint_eq(udprr_client_endpoints(c), 2);
    return c;
}

/* Sends one request; returns the answering server's name in who. */
static int ask(udprr_client *c, char *who, size_t cap)
{
    size_t len = 0;
    int rc = udprr_client_request(c, "who?", 4, who, cap - 1, &len);
    who[rc == UDPRR_OK ? len : 0] = '\0';
    return rc;
}

static struct udprr_endpoint_stats endpoint_stats(udprr_client *c, size_t i)
{
    struct udprr_endpoint_stats es = {.size = sizeof es};
    ck_assert_int_eq(udprr_client_endpoint_stats(c, i, &es), UDPRR_OK);
    return es;
}

static udprr_client_opts opts_rto(unsigned rto_ms)
{
    udprr_client_opts o;
    udprr_client_opts_init(&o);
    o.initial_rto_ms = rto_ms;
    o.deadline_ms = DEADLINE_MS;
    return o;
}

/* Starts server B (it answers "B") on 127.0.0.1, and makes A's port
 * beside it: closed (nothing listens there: a refusal), or with
 * blackhole a plain socket that never answers, whose descriptor is
 * returned (-1 when closed). */
static int start_b_beside_a(struct fixture_server *fb, struct named *b,
                            char port_a[16], int blackhole)
{
    *b = (struct named){"B", 0, 0};
    test_server_start(fb, "127.0.0.1", NULL, answer_name, b);
    if (blackhole)
        return test_plain_socket("127.0.0.1", port_a);
    closed_port(port_a);
    return -1;
}

START_TEST(first_closed_answers_from_second_at_once)
{
    struct named b;
    struct fixture_server fb;
    char port_a[16];
    start_b_beside_a(&fb, &b, port_a, 0);
    /* An RTO of 5 s: only a refusal can move the request in time. */
    udprr_client_opts o = opts_rto(DEADLINE_MS);
    udprr_client *c = open_two(port_a, fb.port, &o);
    char who[16];
    uint64_t t0 = test_now_us();
    ck_assert_int_eq(ask(c, who, sizeof who), UDPRR_OK);
    ck_assert_str_eq(who, "B");
    ck_assert_uint_lt(test_now_us() - t0, 1000000);
    struct udprr_endpoint_stats a = endpoint_stats(c, 0);
    ck_assert_uint_eq(a.refusals, 1);
    ck_assert_uint_eq(a.failures, 1);
    ck_assert_uint_eq(a.timeouts, 0);
    ck_assert_uint_eq(endpoint_stats(c, 1).answers, 1);
    struct udprr_client_stats st = test_client_stats(c);
    ck_assert_uint_eq(st.completed, 1);
    ck_assert_uint_eq(st.refused, 0);
    udprr_client_close(c);
    test_server_stop(&fb, NULL);
}
END_TEST

START_TEST(first_blackhole_moves_after_its_rto)
{
    struct named b;
    struct fixture_server fb;
    char port_a[16];
    int blackhole = start_b_beside_a(&fb, &b, port_a, 1);
    udprr_client_opts o = opts_rto(100);
    udprr_client *c = open_two(port_a, fb.port, &o);
    char who[16];
    uint64_t t0 = test_now_us();
    ck_assert_int_eq(ask(c, who, sizeof who), UDPRR_OK);
    uint64_t took = test_now_us() - t0;
    ck_assert_str_eq(who, "B");
    ck_assert_uint_ge(took, 100000); /* A's RTO was waited out */
    struct udprr_endpoint_stats a = endpoint_stats(c, 0);
    ck_assert_uint_eq(a.attempts, 1);
    ck_assert_uint_eq(a.timeouts, 1);
    ck_assert_uint_eq(a.failovers, 1);
    ck_assert_uint_eq(a.refusals, 0);
    /* The next request goes straight to B: A is backing off. */
    t0 = test_now_us();
    ck_assert_int_eq(ask(c, who, sizeof who), UDPRR_OK);
    ck_assert_str_eq(who, "B");
    ck_assert_uint_eq(endpoint_stats(c, 0).attempts, 1);
    udprr_client_close(c);
    close(blackhole);
    test_server_stop(&fb, NULL);
}
END_TEST

START_TEST(first_back_up_is_used_again_after_its_backoff)
{
    struct named a = {"A", 0, 0}, b = {"B", 0, 0};
    struct fixture_server fa, fb;
    test_server_start(&fb, "127.0.0.1", NULL, answer_name, &b);
    char port_a[16];
    closed_port(port_a);
    udprr_client_opts o = opts_rto(DEADLINE_MS);
    o.endpoint_retry_ms = 100;
    udprr_client *c = open_two(port_a, fb.port, &o);
    char who[16];
    /* The refusal comes after this, so A's back-off ends 100 ms after it
     * at the earliest. */
    uint64_t refused_at = test_now_us();
    ck_assert_int_eq(ask(c, who, sizeof who), UDPRR_OK);
    ck_assert_str_eq(who, "B");
    /* A comes back on its port. */
    udprr_server *sa = NULL;
    ck_assert_int_eq(udprr_server_open(&sa, "127.0.0.1", port_a, NULL),
                     UDPRR_OK);
    test_server_serve(&fa, sa, answer_name, &a);
    /* Requests go to B until A's back-off (100 ms) has run out; then one
     * tries A, which answers, and A is healthy again. */
    int asked = 0;
    while (strcmp(who, "A") != 0 &&
           test_now_us() - refused_at < (uint64_t)DEADLINE_MS * 1000) {
        ck_assert_int_eq(ask(c, who, sizeof who), UDPRR_OK);
        asked++;
    }
    ck_assert_str_eq(who, "A");
    ck_assert_uint_ge(test_now_us() - refused_at, 100000);
    struct udprr_endpoint_stats es = endpoint_stats(c, 0);
    ck_assert_uint_eq(es.failures, 0);
    ck_assert_uint_eq(es.answers, 1);
    ck_assert_uint_eq(es.refusals, 1);
    ck_assert_int_eq(atomic_load(&a.handled), 1);
    ck_assert_int_eq(atomic_load(&b.handled), asked);
    udprr_client_close(c);
    test_server_stop(&fa, NULL);
    test_server_stop(&fb, NULL);
}
END_TEST

START_TEST(localhost_answers_whatever_comes_first)
{
    struct named v4 = {"v4", 0, 0};
    struct fixture_server fs;
    test_server_start(&fs, "127.0.0.1", NULL, answer_name, &v4);
    udprr_client_opts o = opts_rto(DEADLINE_MS);
    char who[16];
    /* As a list: ::1 first, where nothing listens on that port. */
    udprr_endpoint list[2] = {{"::1", fs.port}, {"127.0.0.1", fs.port}};
    udprr_client *c = NULL;
    ck_assert_int_eq(udprr_client_open_list(&c, list, 2, &o), UDPRR_OK);
    uint64_t t0 = test_now_us();
    ck_assert_int_eq(ask(c, who, sizeof who), UDPRR_OK);
    ck_assert_str_eq(who, "v4");
    ck_assert_uint_lt(test_now_us() - t0, 1000000);
    ck_assert_uint_eq(endpoint_stats(c, 0).refusals, 1);
    udprr_client_close(c);
    /* By name, whatever this host's /etc/hosts lists for it. */
    c = NULL;
    ck_assert_int_eq(udprr_client_open(&c, "localhost", fs.port, &o),
                     UDPRR_OK);
    ck_assert_int_eq(ask(c, who, sizeof who), UDPRR_OK);
    ck_assert_str_eq(who, "v4");
    udprr_client_close(c);
    test_server_stop(&fs, NULL);
}
END_TEST

START_TEST(refused_only_never_reaches_the_second_after_a_timeout)
{
    struct named b;
    struct fixture_server fb;
    char port_a[16];
    int blackhole = start_b_beside_a(&fb, &b, port_a, 1);
    udprr_client_opts o = opts_rto(50);
    o.failover = UDPRR_FAILOVER_REFUSED;
    o.deadline_ms = 400;
    udprr_client *c = open_two(port_a, fb.port, &o);
    char who[16];
    ck_assert_int_eq(ask(c, who, sizeof who), UDPRR_ETIMEDOUT);
    struct udprr_endpoint_stats a = endpoint_stats(c, 0);
    ck_assert_uint_ge(a.attempts, 3); /* retransmitted to A, 50+100+200 */
    ck_assert_uint_eq(a.failovers, 0);
    ck_assert_uint_eq(endpoint_stats(c, 1).attempts, 0);
    struct udprr_server_stats st;
    test_server_stop(&fb, &st);
    ck_assert_uint_eq(st.received, 0);
    ck_assert_int_eq(atomic_load(&b.handled), 0);
    /* A refusal does move it: nothing ran. */
    struct fixture_server fb2;
    test_server_start(&fb2, "127.0.0.1", NULL, answer_name, &b);
    udprr_client_close(c);
    char port_closed[16];
    closed_port(port_closed);
    c = open_two(port_closed, fb2.port, &o);
    ck_assert_int_eq(ask(c, who, sizeof who), UDPRR_OK);
    ck_assert_str_eq(who, "B");
    udprr_client_close(c);
    close(blackhole);
    test_server_stop(&fb2, NULL);
}
END_TEST

struct pending {
    int done, status;
};

static void on_done(void *user, int status, const void *reply, size_t len)
{
    struct pending *p = user;
    (void)reply, (void)len;
    p->done = 1;
    p->status = status;
}

static int is_done(void *arg)
{
    return ((struct pending *)arg)->done;
}

START_TEST(one_descriptor_to_poll_for_several_endpoints)
{
    struct named b;
    struct fixture_server fb;
    char port_a[16];
    start_b_beside_a(&fb, &b, port_a, 0);
    udprr_client_opts o = opts_rto(DEADLINE_MS);
    udprr_client *c = open_two(port_a, fb.port, &o);
    int fd = udprr_client_fd(c);
    ck_assert_int_ge(fd, 0);
    struct pending p = {0, 0};
    ck_assert_int_eq(udprr_client_send(c, "x", 1, on_done, &p), UDPRR_OK);
    ck_assert(test_pump_until(c, is_done, &p, DEADLINE_MS, -1));
    ck_assert_int_eq(p.status, UDPRR_OK);
    ck_assert_int_eq(udprr_client_fd(c), fd); /* the same for its life */
    udprr_client_close(c);
    test_server_stop(&fb, NULL);
}
END_TEST

START_TEST(one_source_port_for_every_endpoint)
{
    struct named a = {"A", 0, 0}, b = {"B", 0, 0};
    struct fixture_server fa, fb;
    test_server_start(&fa, "127.0.0.1", NULL, answer_name, &a);
    test_server_start(&fb, "127.0.0.1", NULL, answer_name, &b);
    udprr_client_opts o = opts_rto(DEADLINE_MS);
    char local[16];
    udprr_client *c = NULL;
    int rc = UDPRR_ESYS;
    for (int tries = 0; tries < 10 && rc != UDPRR_OK; tries++) {
        closed_port(local);
        o.local_service = local;
        udprr_endpoint list[2] = {{"127.0.0.1", fa.port},
                                  {"127.0.0.1", fb.port}};
        rc = udprr_client_open_list(&c, list, 2, &o);
    }
    ck_assert_int_eq(rc, UDPRR_OK);
    ck_assert_uint_eq(udprr_client_endpoints(c), 2);
    char who[16];
    ck_assert_int_eq(ask(c, who, sizeof who), UDPRR_OK);
    ck_assert_str_eq(who, "A");
    /* A goes away: the next request is refused there and answered by B,
     * through the other socket, from the same port. */
    test_server_stop(&fa, NULL);
    ck_assert_int_eq(ask(c, who, sizeof who), UDPRR_OK);
    ck_assert_str_eq(who, "B");
    ck_assert_uint_eq(atomic_load(&a.peer_port), (unsigned)atoi(local));
    ck_assert_uint_eq(atomic_load(&b.peer_port), (unsigned)atoi(local));
    udprr_client_close(c);
    test_server_stop(&fb, NULL);
}
END_TEST

START_TEST(open_list_is_checked)
{
    udprr_client *c = NULL;
    udprr_endpoint list[UDPRR_MAX_ENDPOINTS + 1];
    for (size_t i = 0; i < UDPRR_MAX_ENDPOINTS + 1; i++)
        list[i] = (udprr_endpoint){"127.0.0.1", "9"};
    ck_assert_int_eq(udprr_client_open_list(&c, NULL, 1, NULL), UDPRR_EINVAL);
    ck_assert_int_eq(udprr_client_open_list(&c, list, 0, NULL), UDPRR_EINVAL);
    ck_assert_int_eq(udprr_client_open_list(&c, list, UDPRR_MAX_ENDPOINTS + 1,
                                            NULL),
                     UDPRR_EINVAL);
    udprr_endpoint bad[2] = {{"127.0.0.1", "9"}, {NULL, "9"}};
    ck_assert_int_eq(udprr_client_open_list(&c, bad, 2, NULL), UDPRR_EINVAL);
    udprr_client_opts o;
    udprr_client_opts_init(&o);
    o.failover = 2;
    ck_assert_int_eq(udprr_client_open_list(&c, list, 1, &o), UDPRR_EINVAL);
    udprr_client_opts_init(&o);
    o.endpoint_retry_ms = 3600001;
    ck_assert_int_eq(udprr_client_open_list(&c, list, 1, &o), UDPRR_EINVAL);
    ck_assert_ptr_null(c);
    /* One entry that does not resolve is left out while another works. */
    udprr_endpoint some[2] = {{"udprr-no-such-host.invalid", "9"},
                              {"127.0.0.1", "9"}};
    ck_assert_int_eq(udprr_client_open_list(&c, some, 2, NULL), UDPRR_OK);
    ck_assert_uint_eq(udprr_client_endpoints(c), 1);
    struct udprr_endpoint_stats es = {.size = sizeof es};
    ck_assert_int_eq(udprr_client_endpoint_stats(c, 1, &es), UDPRR_EINVAL);
    ck_assert_int_eq(udprr_client_endpoint_stats(c, 0, NULL), UDPRR_EINVAL);
    es = endpoint_stats(c, 0);
    ck_assert_int_eq(((struct sockaddr *)&es.addr)->sa_family, AF_INET);
    ck_assert_uint_eq(ntohs(((struct sockaddr_in *)&es.addr)->sin_port), 9);
    udprr_client_close(c);
    /* Sixteen addresses at most. */
    c = NULL;
    ck_assert_int_eq(udprr_client_open_list(&c, list, UDPRR_MAX_ENDPOINTS,
                                            NULL),
                     UDPRR_OK);
    ck_assert_uint_eq(udprr_client_endpoints(c), UDPRR_MAX_ENDPOINTS);
    udprr_client_close(c);
    ck_assert_uint_eq(udprr_client_endpoints(NULL), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("failover");
    TCase *tc = tcase_create("loopback");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, first_closed_answers_from_second_at_once);
    tcase_add_test(tc, first_blackhole_moves_after_its_rto);
    tcase_add_test(tc, first_back_up_is_used_again_after_its_backoff);
    tcase_add_test(tc, localhost_answers_whatever_comes_first);
    tcase_add_test(tc, refused_only_never_reaches_the_second_after_a_timeout);
    tcase_add_test(tc, one_descriptor_to_poll_for_several_endpoints);
    tcase_add_test(tc, one_source_port_for_every_endpoint);
    tcase_add_test(tc, open_list_is_checked);
    suite_add_tcase(s, tc);
    return udprr_test_run(s);
}
