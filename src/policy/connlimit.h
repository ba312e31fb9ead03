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

struct worker;

/* A TLS connection: also limits.handshakes_per_ip. */
bool connlimit_admit(struct worker *w, const struct sockaddr *sa);
/* A plain-HTTP (redirect) connection: the connection caps only. */
bool connlimit_admit_plain(struct worker *w, const struct sockaddr *sa);
void connlimit_release(struct worker *w, const struct sockaddr *sa);

#endif
