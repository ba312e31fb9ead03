#include "ratelimit.h"

#include "config.h"
#include "conn.h"
#include "request.h"

enum phase_result ratelimit_ip_phase(struct request *r)
{
    return PHASE_CONTINUE;
}

enum phase_result ratelimit_identity_phase(struct request *r)
{
    return PHASE_CONTINUE;
}
