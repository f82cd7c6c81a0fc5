/* SPDX-License-Identifier: MIT */
/*
 * alloc.c - the allocator hook (see alloc.h).
 */
#include "alloc.h"

#include <stdlib.h>

static struct udprr__allocator hooks = {malloc, calloc, realloc, free};

struct udprr__allocator udprr__set_allocator(const struct udprr__allocator *a)
{
    struct udprr__allocator previous = hooks;
    if (a == NULL) {
        hooks.malloc_fn = malloc;
        hooks.calloc_fn = calloc;
        hooks.realloc_fn = realloc;
        hooks.free_fn = free;
    } else {
        hooks = *a;
    }
    return previous;
}

void *udprr__malloc(size_t size)
{
    return hooks.malloc_fn(size);
}

void *udprr__calloc(size_t count, size_t size)
{
    return hooks.calloc_fn(count, size);
}

void *udprr__realloc(void *ptr, size_t size)
{
    return hooks.realloc_fn(ptr, size);
}

void udprr__free(void *ptr)
{
    hooks.free_fn(ptr);
}
