/*
 * connlimit: concurrent connection caps for the whole instance and per client
 * IP (limits.max_connections, limits.max_connections_per_ip), shared by all
 * workers and every listener. The excess is closed right after accept, before any
 * TLS work. Each admitted connection is released exactly once.
 * The admit functions return NULL when admitted, else the name of the limit that
 * refused (the config key: "max_connections", "max_connections_per_ip",
 * "handshakes_per_ip"), for the audit event.
 */
#ifndef MOAT_CONNLIMIT_H
#define MOAT_CONNLIMIT_H

#include <stdbool.h>
#include <sys/socket.h>

struct config_limits;

/* A TLS connection: also limits.handshakes_per_ip. */
const char *connlimit_admit(const struct config_limits *lim, const struct sockaddr *sa);
/* A plain-HTTP (redirect) connection: the connection caps only. */
const char *connlimit_admit_plain(const struct config_limits *lim, const struct sockaddr *sa);
void connlimit_release(const struct sockaddr *sa);

/*
 * A PROXY-protocol connection is accepted before its client is known: reserve()
 * counts it in the instance total only (limits.max_connections: a flood from a
 * trusted balancer is capped like any other); once the header names the client,
 * admit_reserved() applies handshakes_per_ip and max_connections_per_ip to that
 * address. A reservation not admitted (refused, or never that far) is ended with
 * unreserve(); an admitted one with connlimit_release().
 */
bool connlimit_reserve(const struct config_limits *lim);
const char *connlimit_admit_reserved(const struct config_limits *lim, const struct sockaddr *sa);
void connlimit_unreserve(void);

#endif
