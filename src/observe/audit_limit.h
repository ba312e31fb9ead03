/*
 * audit_limit: events a client can cause at will (a malformed request, a
 * connection over a limit) are audited, but a client sending them in a loop must
 * not fill the audit log or spend the worker's time writing it. Per thread, each
 * client address may cause AUDIT_CLIENT_BURST such events per
 * AUDIT_CLIENT_WINDOW_MS, and the thread at most AUDIT_THREAD_PER_SEC per second
 * (a flood from many addresses); the next event let through carries "suppressed",
 * how many were left out before it.
 */
#ifndef MOAT_AUDIT_LIMIT_H
#define MOAT_AUDIT_LIMIT_H

#include <stdbool.h>
#include <stdint.h>

struct request;
struct sockaddr;

#define AUDIT_CLIENT_BURST 5
#define AUDIT_CLIENT_WINDOW_MS 10000
#define AUDIT_THREAD_PER_SEC 50

/* True when an event from client_ip may be written now; *suppressed: left out before. */
bool audit_limit_admit(const char *client_ip, uint64_t now_ms, uint64_t *suppressed);

/* {"event":"request_refused", the request's fields, "status", "reason"}, bounded. */
void audit_request_refused(const struct request *r, int status, const char *reason);

/* {"event":"connection_refused","client_ip","reason"} (the limit), bounded. */
void audit_connection_refused(const struct sockaddr *client, const char *reason);

#endif
