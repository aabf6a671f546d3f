/*
 * alloc_count.h - count heap allocations in a test by interposing glibc's
 * malloc family (the "no malloc per record/packet" checks).
 *
 * Include once, in the test's .c file. Set `counting` to 1 around the code
 * under test and read `allocs`. Define ALLOC_COUNT_STORAGE before including
 * to choose what is counted: `static __thread` (the default: only the
 * calling thread, e.g. a client beside a server thread) or `static volatile`
 * (every thread). Where interposition cannot work (not glibc, or under ASan,
 * whose allocator replaces malloc) HAVE_INTERPOSE stays undefined and the
 * test should exit 77 saying so.
 */
#ifndef FIRN_TEST_ALLOC_COUNT_H
#define FIRN_TEST_ALLOC_COUNT_H

#include <stddef.h>

#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)
#define HAVE_INTERPOSE 1

#ifndef ALLOC_COUNT_STORAGE
#define ALLOC_COUNT_STORAGE static __thread
#endif

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);

ALLOC_COUNT_STORAGE int counting;
ALLOC_COUNT_STORAGE unsigned long allocs;

void *
malloc(size_t n)
{
	if (counting)
		allocs++;
	return __libc_malloc(n);
}

void *
calloc(size_t a, size_t b)
{
	if (counting)
		allocs++;
	return __libc_calloc(a, b);
}

void *
realloc(void *p, size_t n)
{
	if (counting)
		allocs++;
	return __libc_realloc(p, n);
}

void
free(void *p)
{
	__libc_free(p);
}
#endif

#endif /* FIRN_TEST_ALLOC_COUNT_H */
