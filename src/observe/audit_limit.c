#include "observe/audit_limit.h"

#include <string.h>

#include "http/request.h"
#include "observe/audit.h"
#include "util/jsonw.h"
#include "util/monotime.h"
#include "util/netutil.h"

/* Collisions only make two clients share a budget: never more events than the bound. */
#define SLOTS 1024

struct slot {
    uint64_t window_start;
    uint32_t hash;
    uint32_t count;
    uint64_t suppressed;
};

struct thread_budget {
    struct slot slots[SLOTS];
    uint64_t second;
    uint32_t in_second;
    uint64_t suppressed; /* refused by the thread's cap, reported with the next event */
};

/* Static per thread (24 KiB): nothing to allocate or free on the refusal path. */
static _Thread_local struct thread_budget budget;

static uint32_t hash_ip(const char *ip)
{
    uint32_t h = 2166136261u; /* FNV-1a: cheap and good enough for spreading addresses */
    for (; *ip; ip++)
        h = (h ^ (uint8_t)*ip) * 16777619u;
    return h | 1; /* 0 marks a free slot */
}

static bool thread_admit(struct thread_budget *b, uint64_t now_ms)
{
    if (now_ms / 1000 != b->second) {
        b->second = now_ms / 1000;
        b->in_second = 0;
    }
    if (b->in_second >= AUDIT_THREAD_PER_SEC) {
        b->suppressed++;
        return false;
    }
    b->in_second++;
    return true;
}

bool audit_limit_admit(const char *client_ip, uint64_t now_ms, uint64_t *suppressed)
{
    uint32_t h = hash_ip(client_ip ? client_ip : "");
    struct slot *s = &budget.slots[h % SLOTS];
    if (s->hash != h || now_ms - s->window_start >= AUDIT_CLIENT_WINDOW_MS) {
        uint64_t carried = s->hash == h ? s->suppressed : 0;
        *s = (struct slot){.window_start = now_ms, .hash = h, .suppressed = carried};
    }
    if (s->count >= AUDIT_CLIENT_BURST) {
        s->suppressed++;
        return false;
    }
    if (!thread_admit(&budget, now_ms))
        return false; /* counted once, in the thread's budget */
    s->count++;
    *suppressed = s->suppressed + budget.suppressed;
    s->suppressed = 0;
    budget.suppressed = 0;
    return true;
}

/*
 * One refusal event, if the client's budget allows it: r gives the request's fields
 * (NULL: a connection, named by client_ip alone); status 0 is left out.
 */
static void emit_refusal(const char *event, const struct request *r, const char *client_ip,
                         int status, const char *reason)
{
    uint64_t left_out;
    if (!audit_limit_admit(client_ip, mono_ms(), &left_out))
        return;
    char buf[2048];
    struct jsonw j;
    audit_begin(&j, buf, sizeof buf, event, r);
    if (!r)
        jsonw_str(&j, "client_ip", client_ip);
    if (status)
        jsonw_int(&j, "status", status);
    jsonw_str(&j, "reason", reason);
    if (left_out)
        jsonw_uint(&j, "suppressed", left_out);
    audit_emit(&j);
}

void audit_request_refused(const struct request *r, int status, const char *reason)
{
    emit_refusal("request_refused", r, request_client_ip(r), status, reason);
}

void audit_connection_refused(const struct sockaddr *client, const char *reason)
{
    char client_ip[64];
    netutil_addr_to_str(client, client_ip, sizeof client_ip);
    emit_refusal("connection_refused", NULL, client_ip, 0, reason);
}
