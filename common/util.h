/*
 * util.h - small helpers shared by every component.
 */
#ifndef SERVE_UTIL_H
#define SERVE_UTIL_H

#include <malloc.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* Seconds on the monotonic clock: for measuring spans, never dates. */
static inline double util_mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* splitmix64's finaliser: a bijection on 64 bits that spreads a counter
   into ids that look random (request and replica ids). */
static inline uint64_t util_mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* A bijection on 32 bits (Wellons' lowbias32): distinct inputs give
   distinct outputs, so a counter gives unique ids that look random. */
static inline uint32_t util_mix32(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352du;
    x ^= x >> 15;
    x *= 0x846ca68bu;
    x ^= x >> 16;
    return x;
}

/*
 * Request bodies and batches come and go at tens to hundreds of KiB each.
 * glibc's defaults hand such memory back to the kernel when it is freed
 * (heap trimming, munmap) and fault it in again for the next request,
 * which cost 40% of the v2 throughput here. The working set of a serving
 * process is steady: keep up to 32 MiB of freed heap instead.
 */
static inline void util_keep_freed_heap(void)
{
    mallopt(M_TRIM_THRESHOLD, 32 << 20);
    mallopt(M_MMAP_THRESHOLD, 32 << 20);
}

/* Is the `len` bytes at `item` one of the entries of the ':'-separated
   `list` (which may be NULL)? */
static inline int util_list_has(const char *list, const char *item, size_t len)
{
    for (const char *p = list; p && *p;) {
        size_t n = strcspn(p, ":");
        if (n == len && memcmp(p, item, len) == 0) return 1;
        p += n + (p[n] == ':');
    }
    return 0;
}

#define UTIL_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

#endif
