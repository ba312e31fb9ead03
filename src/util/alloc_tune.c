#include "util/alloc_tune.h"

#include <malloc.h>

void alloc_tune(void)
{
    /* Setting the trim threshold also fixes the mmap threshold (glibc stops
     * moving it), so that one is set too: buffers up to 1 MiB come from the
     * heap, larger ones are mapped and unmapped as before. */
    mallopt(M_TRIM_THRESHOLD, (int)ALLOC_KEEP_BYTES);
    mallopt(M_MMAP_THRESHOLD, 1 << 20);
}
