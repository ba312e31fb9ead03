#include "auth.h"

#include "config.h"
#include "conn.h"
#include "request.h"

/*
 * Until session lookups are wired, a route that needs a session is refused
 * (fail closed), never passed.
 */
enum phase_result auth_phase(struct request *r)
{
    if (r->route->auth == AUTH_NONE)
        return PHASE_CONTINUE;
    r->error = "session authentication unavailable";
    conn_respond(r->conn, 503, "Retry-After: 5\r\n", NULL, false);
    return PHASE_RESPOND;
}
