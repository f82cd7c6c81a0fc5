/*
 * udprr.h - libudprr: reliable request/reply over UDP.
 *
 * This header is the whole public API. Everything it exports starts with
 * udprr_ or UDPRR_; nothing else is part of the interface.
 *
 * Thread rules, unless a declaration says otherwise: functions that take no
 * handle (udprr_strerror, udprr_status_name, udprr_version) are safe to call
 * from any thread at any time and return pointers to static, read-only
 * storage that stays valid for the life of the process.
 */
#ifndef UDPRR_H
#define UDPRR_H

#ifdef __cplusplus
extern "C" {
#endif

/* The version lives here once; the Makefile and udprr.pc read it from these
 * three lines. udprr_version() reports the version of the library actually
 * linked, which can differ from these macros when a program was built against
 * an older header. */
#define UDPRR_VERSION_MAJOR 0
#define UDPRR_VERSION_MINOR 1
#define UDPRR_VERSION_PATCH 0

#define UDPRR__STR2(x) #x
#define UDPRR__STR(x) UDPRR__STR2(x)
#define UDPRR_VERSION_STRING                                                   \
    UDPRR__STR(UDPRR_VERSION_MAJOR)                                            \
    "." UDPRR__STR(UDPRR_VERSION_MINOR) "." UDPRR__STR(UDPRR_VERSION_PATCH)

/* Only symbols marked UDPRR_API leave the shared library; the build hides
 * everything else with -fvisibility=hidden. */
#if defined(__GNUC__) || defined(__clang__)
#define UDPRR_API __attribute__((visibility("default")))
#else
#define UDPRR_API
#endif

/*
 * Status codes.
 *
 * Every function that can fail returns an int: UDPRR_OK (0) on success, one
 * of the negative codes below on failure. The numeric values are part of the
 * ABI: they are never renumbered, and new codes are only ever appended with
 * the next free negative number.
 *
 * This one table generates the enum, udprr_strerror() and
 * udprr_status_name(), so the three cannot drift apart.
 *
 *   XX(name, value, message)
 */
#define UDPRR_STATUS_MAP(XX)                                                   \
    XX(OK, 0, "success")                                                       \
    XX(ETIMEDOUT, -1, "request timed out: no reply before the deadline or "    \
                      "after the last attempt")                                \
    XX(EREFUSED, -2, "connection refused: nothing listens at the server's "    \
                     "address (ICMP port unreachable)")                        \
    XX(ETOOBIG, -3, "message too big for one datagram")                        \
    XX(ETRUNC, -4, "reply larger than the caller's buffer")                    \
    XX(ERESOLVE, -5, "host or service could not be resolved")                  \
    XX(EINVAL, -6, "invalid argument")                                         \
    XX(ENOMEM, -7, "out of memory")                                            \
    XX(ESYS, -8, "system call failed (errno has the reason)")                  \
    XX(EREMOTE, -9, "the server's handler declined the request")              \
    XX(ECANCELED, -10, "request canceled")

typedef enum udprr_status {
#define UDPRR__STATUS_ENUM(name, value, message) UDPRR_##name = (value),
    UDPRR_STATUS_MAP(UDPRR__STATUS_ENUM)
#undef UDPRR__STATUS_ENUM
} udprr_status;

/*
 * udprr_strerror - a fixed, human-readable sentence for a status code.
 *
 * Every code has its own distinct message. A value that is not a libudprr
 * status (a positive number, an errno value, a code from a newer library)
 * gets a generic "unknown libudprr status" message. Never returns NULL. The
 * string is static: do not free or modify it.
 *
 * This is the fixed text of a code. It does not describe a particular
 * handle's last failure; after UDPRR_ESYS, errno says which system call
 * failed and why.
 */
UDPRR_API const char *udprr_strerror(int status);

/*
 * udprr_status_name - the code's name as a string, e.g. "UDPRR_ETIMEDOUT",
 * for logs and tests. Unknown values give "UDPRR_UNKNOWN". Never returns
 * NULL; the string is static.
 */
UDPRR_API const char *udprr_status_name(int status);

/*
 * udprr_version - the version of the linked library as "MAJOR.MINOR.PATCH".
 * Never returns NULL; the string is static.
 */
UDPRR_API const char *udprr_version(void);

#ifdef __cplusplus
}
#endif

#endif /* UDPRR_H */
