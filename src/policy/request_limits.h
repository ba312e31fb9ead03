/*
 * limits: the first phase. Refuses what must never reach an upstream:
 * bodies above max_body_bytes (413), methods moat does not proxy (CONNECT,
 * TRACE: 405), request targets that are not origin-form and paths whose
 * meaning could differ between moat's routing and the upstream's (anything
 * but a canonical path, see path.h: 400), so a route rule cannot be bypassed
 * by spelling a path differently.
 */
#ifndef MOAT_REQUEST_LIMITS_H
#define MOAT_REQUEST_LIMITS_H

#include <stdbool.h>

#include "http/http1.h"
#include "policy/pipeline.h"

/* Returns NULL if the path is unambiguous, else the reason it is refused. */
const char *limits_path_problem(struct http1_str path);

enum phase_result limits_phase(struct request *r);

#endif
