#include "observe/cert_audit.h"

#include "observe/audit.h"
#include "observe/log.h"
#include "tls/tls.h"
#include "util/jsonw.h"

static void add_cert(struct jsonw *j, const struct tls_cert_info *ci, time_t now)
{
    char when[32];
    struct tm tm;
    gmtime_r(&ci->not_after, &tm);
    strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    jsonw_str(j, "file", ci->path);
    jsonw_str(j, "name", ci->name);
    jsonw_str(j, "not_after", when);
    /* floor: a certificate with 12 hours left has 0 days, not 1 */
    jsonw_int(j, "days_left", (ci->not_after - now) / 86400 - (ci->not_after < now));
}

void cert_audit_loaded(const struct tls_policy *p, unsigned long generation, time_t now)
{
    for (size_t i = 0; i < tls_policy_num_certs(p); i++) {
        struct tls_cert_info ci;
        if (tls_policy_cert_info(p, i, &ci) < 0)
            continue;
        char buf[1024];
        struct jsonw j;
        audit_begin(&j, buf, sizeof buf, "certificate_loaded", NULL);
        jsonw_uint(&j, "generation", generation);
        add_cert(&j, &ci, now);
        audit_emit(&j);
    }
    cert_audit_expiry(p, now);
}

void cert_audit_expiry(const struct tls_policy *p, time_t now)
{
    for (size_t i = 0; i < tls_policy_num_certs(p); i++) {
        struct tls_cert_info ci;
        if (tls_policy_cert_info(p, i, &ci) < 0 ||
            ci.not_after - now >= (time_t)CERT_EXPIRY_WARN_DAYS * 86400)
            continue;
        char buf[1024];
        struct jsonw j;
        audit_begin(&j, buf, sizeof buf, "certificate_expiring", NULL);
        add_cert(&j, &ci, now);
        audit_emit(&j);
        log_msg(LOG_WARN, "tls: %s (%s) expires within %d days", ci.path, ci.name,
                CERT_EXPIRY_WARN_DAYS);
    }
}
