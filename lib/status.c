/* SPDX-License-Identifier: MIT */
/*
 * status.c - status codes: their messages and names.
 *
 * Both functions are generated from UDPRR_STATUS_MAP in udprr.h, the one
 * table that also defines the enum.
 */
#include "udprr.h"

const char *udprr_strerror(int status)
{
    switch (status) {
#define UDPRR__STATUS_MESSAGE(name, value, message)                            \
    case UDPRR_##name:                                                         \
        return message;
        UDPRR_STATUS_MAP(UDPRR__STATUS_MESSAGE)
#undef UDPRR__STATUS_MESSAGE
    }
    return "unknown libudprr status";
}

const char *udprr_status_name(int status)
{
    switch (status) {
#define UDPRR__STATUS_NAME(name, value, message)                               \
    case UDPRR_##name:                                                         \
        return "UDPRR_" #name;
        UDPRR_STATUS_MAP(UDPRR__STATUS_NAME)
#undef UDPRR__STATUS_NAME
    }
    return "UDPRR_UNKNOWN";
}

const char *udprr_version(void)
{
    return UDPRR_VERSION_STRING;
}
