/* SPDX-License-Identifier: MIT */
/*
 * big_sender.c - the textbook's too-big datagram, redone on libudprr.
 *
 * The client sets Don't Fragment (opts.dont_fragment: path MTU discovery,
 * IP_MTU_DISCOVER set to DO), asks the library for the path MTU the kernel
 * knows (udprr_client_mtu), and sends one request of SIZE bytes. A request
 * whose datagram is larger than the path MTU is not fragmented: it fails
 * with UDPRR_ETOOBIG, and the example reports the MTU and the largest
 * request body that would fit. With --fragment it sends without DF, and
 * the IP layer splits the datagram into fragments that the server's
 * kernel puts together again.
 *
 * The server is udp_remote's (native framing), which answers
 * "Your data was N bytes long":
 *
 *   udp_remote server -p 1060 &
 *   big_sender HOST SIZE [-p PORT] [--fragment] [--deadline MS]
 *
 * Build: cc big_sender.c $(pkg-config --cflags --libs udprr)
 */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <udprr.h>

#include "example_util.h"

/* What one request carries on top of its body: IPv4 or IPv6 and UDP
 * headers, and libudprr's native header. */
#define IPV4_UDP_HEADERS 28u
#define IPV6_UDP_HEADERS 48u
#define NATIVE_HEADER 20u
/* SIZE on the command line: anything up to a megabyte, so that a request
 * too big for any datagram shows the library's own refusal. */
#define MAX_SIZE 1048576u

static void usage(FILE *out)
{
    fprintf(out,
            "usage: big_sender HOST SIZE [-p PORT] [--fragment] "
            "[--deadline MS]\n"
            "\n"
            "Sends one request of SIZE bytes (0..%u) to udp_remote's server\n"
            "at HOST, with Don't Fragment set, after printing the path MTU\n"
            "the kernel knows. A request larger than the path MTU fails:\n"
            "the example says so and prints the MTU and the largest body\n"
            "that fits. --fragment sends without Don't Fragment, so that\n"
            "IP fragments a large datagram. --deadline bounds the request\n"
            "(default 5000 ms). -p PORT defaults to 1060.\n"
            "Exits 0 when the server answered, 1 when no reply came before\n"
            "the deadline, 2 on any other error (a request too big for the\n"
            "path among them).\n",
            MAX_SIZE);
}

/* The IP and UDP headers in front of the socket's datagrams. */
static unsigned ip_udp_headers(const udprr_client *c)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getpeername(udprr_client_fd(c), (struct sockaddr *)&ss, &len) == 0 &&
        ss.ss_family == AF_INET6)
        return IPV6_UDP_HEADERS;
    return IPV4_UDP_HEADERS;
}

/* Prints the path MTU and what fits in it; 0 when the kernel knows none. */
static unsigned print_mtu(const udprr_client *c, const char *when)
{
    unsigned mtu = 0;
    int rc = udprr_client_mtu(c, &mtu);
    if (rc != UDPRR_OK) {
        printf("The kernel reports no path MTU %s: %s%s%s\n", when,
               udprr_strerror(rc), rc == UDPRR_ESYS ? ": " : "",
               rc == UDPRR_ESYS ? strerror(errno) : "");
        return 0;
    }
    unsigned overhead = ip_udp_headers(c) + NATIVE_HEADER;
    printf("Path MTU %s: %u bytes; the largest request body that fits in "
           "one unfragmented datagram: %u bytes\n",
           when, mtu, mtu > overhead ? mtu - overhead : 0);
    return mtu;
}

static int run(const char *host, const char *port, unsigned size,
               int fragment, unsigned deadline_ms)
{
    udprr_client_opts opts;
    udprr_client_opts_init(&opts);
    opts.dont_fragment = !fragment;
    opts.deadline_ms = deadline_ms;
    udprr_client *c;
    int rc = udprr_client_open(&c, host, port, &opts);
    if (rc != UDPRR_OK) {
        fprintf(stderr, "big_sender: cannot reach %s port %s: %s%s%s\n", host,
                port, udprr_strerror(rc), rc == UDPRR_ESYS ? ": " : "",
                rc == UDPRR_ESYS ? strerror(errno) : "");
        return 2;
    }
    print_mtu(c, "to the server");

    char *body = malloc(size > 0 ? size : 1);
    if (body == NULL) {
        fprintf(stderr, "big_sender: out of memory\n");
        udprr_client_close(c);
        return 2;
    }
    for (unsigned i = 0; i < size; i++)
        body[i] = (char)('a' + i % 26);
    printf("Sending a request of %u bytes", size);
    if (size <= UDPRR_MAX_PAYLOAD)
        printf(" (a %u-byte IP packet)", size + NATIVE_HEADER +
                                             ip_udp_headers(c));
    printf(" %s\n",
           fragment ? "that IP may fragment" : "with Don't Fragment set");

    char reply[256];
    size_t reply_len = 0;
    rc = udprr_client_request(c, body, size, reply, sizeof reply - 1,
                              &reply_len);
    free(body);
    int status = 2;
    if (rc == UDPRR_OK) {
        reply[reply_len] = '\0';
        printf("The server says '%s'\n", reply);
        status = 0;
    } else if (rc == UDPRR_ETOOBIG && size > UDPRR_MAX_PAYLOAD) {
        printf("%s: %u bytes do not fit in any UDP datagram (at most %u "
               "bytes of body)\n",
               udprr_status_name(rc), size, (unsigned)UDPRR_MAX_PAYLOAD);
    } else if (rc == UDPRR_ETOOBIG) {
        printf("%s: the datagram is too big for the path, and Don't "
               "Fragment forbids splitting it\n",
               udprr_status_name(rc));
        /* An ICMP "fragmentation needed" from a router may have lowered
         * the MTU since the first look: ask again. */
        print_mtu(c, "the kernel now reports");
    } else if (rc == UDPRR_ETIMEDOUT) {
        printf("%s: no reply within %u ms\n", udprr_status_name(rc),
               deadline_ms);
        status = 1;
    } else {
        printf("%s: %s%s%s\n", udprr_status_name(rc), udprr_strerror(rc),
               rc == UDPRR_ESYS ? ": " : "",
               rc == UDPRR_ESYS ? strerror(errno) : "");
    }
    udprr_client_close(c);
    return status;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"port", required_argument, NULL, 'p'},
        {"fragment", no_argument, NULL, 'f'},
        {"deadline", required_argument, NULL, 'D'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    const char *port = "1060";
    unsigned size = 0, deadline_ms = 5000;
    int fragment = 0, opt;

    setvbuf(stdout, NULL, _IOLBF, 0);
    while ((opt = getopt_long(argc, argv, "p:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'p': port = optarg; break;
        case 'f': fragment = 1; break;
        case 'D':
            if (example_parse_uint(optarg, 1, 3600000, &deadline_ms) != 0) {
                usage(stderr);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind + 2 != argc ||
        example_parse_uint(argv[optind + 1], 0, MAX_SIZE, &size) != 0) {
        usage(stderr);
        return 2;
    }
    return run(argv[optind], port, size, fragment, deadline_ms);
}
