#include "observe/audit.h"

#include "util/jsonw.h"
#include "observe/audit_chain.h"
#include "http/request.h"

void audit_begin(struct jsonw *j, char *buf, unsigned long cap, const char *event,
                 const struct request *r)
{
    jsonw_begin(j, buf, cap);
    jsonw_time(j, "time");
    jsonw_str(j, "event", event);
    if (!r)
        return;
    jsonw_str(j, "request_id", r->id);
    if (r->trace_id[0])
        jsonw_str(j, "trace_id", r->trace_id);
    jsonw_str(j, "client_ip", request_client_ip(r));
    jsonw_str(j, "protocol", request_protocol(r));
    jsonw_strn(j, "method", r->h.method.p, r->h.method.len);
    jsonw_strn(j, "host", r->h.host.p, r->h.host.len);
    jsonw_strn(j, "path", r->h.path.p, r->h.path.len);
}

void audit_emit(struct jsonw *j)
{
    audit_chain_write(j);
}

void audit_simple(const char *event, const struct request *r, const char *detail)
{
    char buf[2048];
    struct jsonw j;
    audit_begin(&j, buf, sizeof buf, event, r);
    if (detail)
        jsonw_str(&j, "detail", detail);
    audit_emit(&j);
}
