#include "util/alloc_tune.h"

#include <malloc.h>

void alloc_tune(void)
{
    /* Only the trim threshold. Setting it also pins the mmap threshold at its
     * default (128 KiB; glibc stops raising it), which is wanted: the large tables
     * calloc'd at start (rate limits, session cache) stay mapped and untouched
     * until used, instead of being cleared, and so resident, on a heap. */
    mallopt(M_TRIM_THRESHOLD, (int)ALLOC_KEEP_BYTES);
}
