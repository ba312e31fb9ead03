/*
 * metrics_process: the standard process_* families (read from /proc/self at
 * scrape time) and moat_build_info.
 */
#ifndef MOAT_METRICS_PROCESS_H
#define MOAT_METRICS_PROCESS_H

#include <stdint.h>

struct evbuffer;

void metrics_process_render(struct evbuffer *out);
/* Unix time the process started (from /proc/self/stat and the boot time). */
uint64_t metrics_process_start_time(void);

#endif
