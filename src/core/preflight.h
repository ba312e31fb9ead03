/*
 * preflight: `moat -t --preflight -c FILE`. After the checks of -t, what only the
 * running peers can tell: whether Redis lets moat's user run every command this
 * config will send (sessions, push revocation, global rate limits, sentinel,
 * cluster), probed with commands that change nothing, and whether every upstream
 * server accepts a connection (and a TLS handshake when configured). One line per
 * check on stdout ("ok", "warning: ..." or "FAIL: ..." naming what to add to the
 * ACL), then a summary. Every network wait is bounded (PREFLIGHT_TIMEOUT_MS).
 *
 * preflight.c drives the run and checks the upstreams; preflight_redis.c checks
 * Redis. The struct below is shared by the two files only.
 */
#ifndef MOAT_PREFLIGHT_H
#define MOAT_PREFLIGHT_H

#include <stdbool.h>
#include <stddef.h>

#define PREFLIGHT_TIMEOUT_MS 2000

struct config;
struct event_base;
struct event;

/* Loads path and runs every check; 0 when all passed, 1 otherwise (also when the
 * config does not load: -t has printed why). */
int preflight_run(const char *path);

/* ---- for preflight*.c -------------------------------------------------------------- */

struct preflight {
    const struct config *cfg;
    struct event_base *base;
    struct event *deadline; /* bounds one wait in the event loop */
    bool expired;
    unsigned checks, failed, warnings;
};

enum preflight_result { PF_OK, PF_WARN, PF_FAIL };

/* Prints "<where>: <what>: ok" / "warning: <detail>" / "FAIL: <detail>" and counts it. */
void preflight_report(struct preflight *pf, const char *where, const char *what,
                      enum preflight_result res, const char *detail);

/* Runs the event loop until *done or PREFLIGHT_TIMEOUT_MS (plus a margin) passed;
 * returns *done. */
bool preflight_wait(struct preflight *pf, const bool *done);

/* Every Redis check the config calls for (nothing without a redis: section). */
void preflight_redis(struct preflight *pf);

#endif
