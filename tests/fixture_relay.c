/* SPDX-License-Identifier: MIT */
/*
 * fixture_relay.c - the impairment relay in front of a fixture server
 * (fixture.h): the half of the fixture that links the relay.
 */
#include "fixture.h"

#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "relay.h"

struct relay *fixture_relay_in_front(const struct fixture_server *fs,
                                     const struct impair_config *to_server,
                                     const struct impair_config *to_client,
                                     uint64_t seed, char port[16])
{
    struct sockaddr_storage server;
    memcpy(&server, &fs->addr, fs->addr_len);
    /* Bound to every interface: the relay takes loopback servers only. */
    if (server.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&server;
        if (IN6_IS_ADDR_UNSPECIFIED(&a->sin6_addr))
            a->sin6_addr = in6addr_loopback;
    } else if (server.ss_family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&server;
        if (a->sin_addr.s_addr == htonl(INADDR_ANY))
            a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    }
    struct relay *relay = relay_start((const struct sockaddr *)&server,
                                      fs->addr_len, to_server, to_client,
                                      seed);
    if (relay == NULL)
        return NULL;
    struct sockaddr_storage ra;
    socklen_t ra_len = sizeof ra;
    relay_addr(relay, &ra, &ra_len);
    unsigned p = ra.ss_family == AF_INET6
                     ? ntohs(((struct sockaddr_in6 *)&ra)->sin6_port)
                     : ntohs(((struct sockaddr_in *)&ra)->sin_port);
    snprintf(port, 16, "%u", p);
    return relay;
}
