/*
 * request_fixture: requests built in a unit test, for running policy phases
 * without a connection or a worker. A request gets a config snapshot built by
 * the real loader from YAML text, a head parsed by the real parser, a peer
 * address, and a recording client stream: respond() records what it was asked
 * to send, every other operation fails the test (a phase under test does no
 * I/O).
 */
#ifndef MOAT_TEST_REQUEST_FIXTURE_H
#define MOAT_TEST_REQUEST_FIXTURE_H

#include <stdbool.h>
#include <stddef.h>

#include "http/request.h"

/* The id every fixture request carries (32 characters, as REQUEST_ID_LEN). */
#define FIXTURE_REQUEST_ID "0123456789abcdef0123456789abcdef"

/* What the phase asked the client stream to do. */
struct fixture_stream {
    int responses; /* respond() calls */
    int status;
    bool close;
    bool has_extra, has_body;
    char extra[1024];
    char body[1024];
};

struct fixture {
    struct snapshot *snap;
    struct client_peer peer;
    struct fixture_stream stream;
    struct request_pool pool;
    struct request *r;
};

/*
 * Loads yaml with the real config loader (no file checks) and builds a snapshot
 * from it (no https listener: no TLS policy). Fails the test, printing every
 * loader error, if either step fails.
 */
struct snapshot *fixture_snapshot(const char *yaml);

/* Sets up fx on snap (the fixture takes the reference) with a peer at ip (numeric). */
void fixture_init(struct fixture *fx, struct snapshot *snap, const char *ip);
/* Changes the peer's address (numeric IPv4 or IPv6). */
void fixture_set_peer(struct fixture *fx, const char *ip);

/*
 * A new request (replacing the previous one) on fx: head is a whole request
 * head ("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), scanned and parsed with the
 * config's limits; the test fails if it does not parse. The stream's record
 * is cleared.
 */
struct request *fixture_request(struct fixture *fx, const char *head);

/* Frees the request, the pool and the snapshot. */
void fixture_clear(struct fixture *fx);

/*
 * The head moat would forward upstream for r, NUL-terminated in buf: the
 * client's fields the phases did not drop, minus the hop-by-hop ones proxy.c
 * never forwards, plus moat's added lines (request_head.h). Fails the test if
 * it does not fit.
 */
void fixture_forwarded_head(const struct request *r, char *buf, size_t cap);

/* Number of fields named exactly name (ASCII case aside) in a head. */
int fixture_count_field(const char *head, const char *name);
/* Number of fields whose name is name in any spelling (headername_eq_loose). */
int fixture_count_field_loose(const char *head, const char *name);
/* The value of the first field named name (case aside) in a head, copied into
 * out; false if there is none. */
bool fixture_field_value(const char *head, const char *name, char *out, size_t cap);

#endif
