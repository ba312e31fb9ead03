#include "policy/request_limits.h"

#include <string.h>

#include "config/config.h"
#include "http/path.h"
#include "http/request.h"
#include "core/snapshot.h"

/* The rules live with the canonical path they define (path.h, docs/routing.md). */
const char *limits_path_problem(struct http1_str path)
{
    return path_problem(path);
}

enum phase_result limits_phase(struct request *r)
{
    const struct config *cfg = r->cfg;
    int status = 0;
    if (r->h.method_id == HTTP1_M_CONNECT || r->h.method_id == HTTP1_M_TRACE) {
        status = 405;
        r->error = "method not allowed";
    } else if (r->h.framing.body == HTTP1_BODY_LENGTH && cfg->limits.max_body_bytes &&
               r->h.framing.content_length > cfg->limits.max_body_bytes) {
        status = 413;
        r->error = "request body too large";
    } else if ((r->error = limits_path_problem(r->h.path)) != NULL) {
        status = 400;
    }
    if (!status)
        return PHASE_CONTINUE;
    request_respond(
        r, status, status == 405 ? "Allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n" : NULL,
        r->error, status != 405);
    return PHASE_RESPOND;
}
