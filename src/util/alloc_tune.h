#ifndef MOAT_UTIL_ALLOC_TUNE_H
#define MOAT_UTIL_ALLOC_TUNE_H

/*
 * glibc's heap trimming, set for a proxy: each thread's heap keeps up to
 * ALLOC_KEEP_BYTES of freed memory at its top instead of handing it back to the
 * kernel (madvise) after every large response, only to fault the same pages in
 * again for the next one (17 page faults per 256 KiB response; now 1).
 * Call once, before any thread starts.
 */
#define ALLOC_KEEP_BYTES (4u << 20)

void alloc_tune(void);

#endif
