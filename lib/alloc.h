/* SPDX-License-Identifier: MIT */
/*
 * alloc.h - every allocation in the library goes through these, so tests
 * can inject failures (the allocator hook of hiredis's test suite).
 */
#ifndef UDPRR_ALLOC_H
#define UDPRR_ALLOC_H

#include <stddef.h>

struct udprr__allocator {
    void *(*malloc_fn)(size_t size);
    void *(*calloc_fn)(size_t count, size_t size);
    void *(*realloc_fn)(void *ptr, size_t size);
    void (*free_fn)(void *ptr);
};

/* Installs hooks (NULL restores libc's). For tests; not thread-safe: call it
 * while no other thread uses the library. Returns the previous hooks. */
struct udprr__allocator udprr__set_allocator(const struct udprr__allocator *a);

void *udprr__malloc(size_t size);
void *udprr__calloc(size_t count, size_t size);
void *udprr__realloc(void *ptr, size_t size);
void udprr__free(void *ptr);

#endif /* UDPRR_ALLOC_H */
