/*
 * Internal to clib, not part of its API: the counted allocator of ib_matrix.c, shared with
 * ib_stream.c so that ib_live_allocations() and ib_fail_allocations_after() cover every
 * allocation of the library. Not exported from a shared build (hidden visibility).
 */
#ifndef IB_ALLOC_H
#define IB_ALLOC_H

#include <stddef.h>

#if defined(__GNUC__)
#define IB_INTERNAL __attribute__((visibility("hidden")))
#else
#define IB_INTERNAL
#endif

/* calloc(n, size) counted by ib_live_allocations(): NULL if n or size is 0, if n * size
 * overflows, if fault injection says so, or if calloc fails (the counter does not move). */
IB_INTERNAL void *ib_calloc(size_t n, size_t size);

/* free(p) counted by ib_live_allocations(); NULL is allowed (and not counted). */
IB_INTERNAL void ib_free(void *p);

#endif /* IB_ALLOC_H */
