/* SPDX-License-Identifier: MIT */
/*
 * list.h - an intrusive doubly linked list, oldest first: append at the
 * new end, unlink anywhere, both O(1). The reply cache's age lists, the
 * deferred table's expiry order and the client's queue are all one.
 *
 * A struct that goes on a list embeds a struct udprr__link and gets back
 * from it with udprr__container_of.
 */
#ifndef UDPRR_LIST_H
#define UDPRR_LIST_H

#include <stddef.h>

struct udprr__link {
    struct udprr__link *older, *newer;
};

struct udprr__list {
    struct udprr__link *oldest, *newest;
};

#define udprr__container_of(ptr, type, member)                                 \
    ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

static inline void udprr__list_append(struct udprr__list *l,
                                      struct udprr__link *n)
{
    n->newer = NULL;
    n->older = l->newest;
    if (l->newest != NULL)
        l->newest->newer = n;
    else
        l->oldest = n;
    l->newest = n;
}

static inline void udprr__list_unlink(struct udprr__list *l,
                                      struct udprr__link *n)
{
    if (n->older != NULL)
        n->older->newer = n->newer;
    else
        l->oldest = n->newer;
    if (n->newer != NULL)
        n->newer->older = n->older;
    else
        l->newest = n->older;
}

#endif /* UDPRR_LIST_H */
