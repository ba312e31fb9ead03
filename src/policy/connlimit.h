/*
 * connlimit: concurrent connection caps for the whole instance and per client
 * IP (limits.max_connections, limits.max_connections_per_ip), shared by all
 * workers and every listener. The excess is closed right after accept, before any
 * TLS work. Each admitted connection is released exactly once.
 */
#ifndef MOAT_CONNLIMIT_H
#define MOAT_CONNLIMIT_H

#include <stdbool.h>
#include <sys/socket.h>

struct config_limits;

/* A TLS connection: also limits.handshakes_per_ip. */
bool connlimit_admit(const struct config_limits *lim, const struct sockaddr *sa);
/* A plain-HTTP (redirect) connection: the connection caps only. */
bool connlimit_admit_plain(const struct config_limits *lim, const struct sockaddr *sa);
void connlimit_release(const struct sockaddr *sa);

#endif
