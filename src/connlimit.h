/*
 * connlimit: concurrent connection caps for the whole instance and per client
 * IP (limits.max_connections, limits.max_connections_per_ip), shared by all
 * workers. The excess is closed right after accept, before any TLS work.
 */
#ifndef MOAT_CONNLIMIT_H
#define MOAT_CONNLIMIT_H

#include <stdbool.h>
#include <sys/socket.h>

struct worker;

bool connlimit_admit(struct worker *w, const struct sockaddr *sa);
void connlimit_release(struct worker *w, const struct sockaddr *sa);

#endif
