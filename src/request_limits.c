#include "request_limits.h"

#include <ctype.h>
#include <string.h>

#include "config.h"
#include "conn.h"
#include "request.h"
#include "snapshot.h"
#include "worker.h"

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = (char)tolower((unsigned char)c);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* Characters an upstream may decode from %XX and then route on differently. */
static bool decoded_is_ambiguous(int v)
{
    return isalnum(v) || v == '-' || v == '.' || v == '_' || v == '~' || v == '/' ||
           v == '\\' || v == 0;
}

static bool is_dot_segment(const char *seg, size_t n)
{
    return (n == 1 && seg[0] == '.') || (n == 2 && seg[0] == '.' && seg[1] == '.');
}

const char *limits_path_problem(struct http1_str path)
{
    if (path.len == 0 || path.p[0] != '/')
        return "request target must be an absolute path";
    size_t seg = 1;
    for (size_t i = 0; i < path.len; i++) {
        char c = path.p[i];
        if (c == '\\')
            return "backslash in path";
        if (c == '%') {
            int hi = i + 2 < path.len ? hexval(path.p[i + 1]) : -1;
            int lo = hi >= 0 ? hexval(path.p[i + 2]) : -1;
            if (lo < 0)
                return "invalid percent-encoding in path";
            if (decoded_is_ambiguous(hi * 16 + lo))
                return "needlessly percent-encoded character in path";
        }
        if (c == '/' && i > 0) {
            if (i == seg)
                return "empty path segment";
            if (is_dot_segment(path.p + seg, i - seg))
                return "dot segment in path";
            seg = i + 1;
        }
    }
    if (is_dot_segment(path.p + seg, path.len - seg))
        return "dot segment in path";
    return NULL;
}

enum phase_result limits_phase(struct request *r)
{
    const struct config *cfg = r->conn->gen->snap->cfg;
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
    conn_respond(r->conn, status, status == 405 ? "Allow: GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS\r\n" : NULL,
                 r->error, status != 405);
    return PHASE_RESPOND;
}
