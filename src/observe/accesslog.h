/* accesslog: one JSON line per finished request, buffered per worker. */
#ifndef MOAT_ACCESSLOG_H
#define MOAT_ACCESSLOG_H

struct request;

void accesslog_request(struct request *r);

#endif
