/*
 * control: the control socket (config key control_socket) and `moat -s CMD`.
 *
 * A unix stream socket, owner-only (0600): whoever may connect may reload or
 * upgrade moat, as whoever may signal it. The client sends one line, "reload"
 * or "upgrade"; the server answers "ok" or "error" on the first line, then the
 * message (what changed, or every error with its position), and closes. The
 * answer may come later than the request (an upgrade waits for the new process).
 */
#ifndef MOAT_CONTROL_H
#define MOAT_CONTROL_H

#include <stdbool.h>
#include <stddef.h>

struct event_base;
struct control;
struct control_req;

/* A command arrived; answer it with control_reply(), now or later (exactly once). */
typedef void (*control_cb)(void *arg, const char *cmd, struct control_req *req);

/*
 * Listens at path (a stale socket file is replaced, a live one refused: another
 * moat; at a binary upgrade the old process removes its socket before the new
 * one opens its own). NULL with err.
 */
struct control *control_start(struct event_base *base, const char *path, control_cb cb, void *arg,
                              char *err, size_t errlen);
/* Sends the answer and closes the client's connection (also when it has gone). */
void control_reply(struct control_req *req, bool ok, const char *msg);
/* Stops listening and removes the socket file; commands already read are still answered. */
void control_stop(struct control *c);

/* `moat -s CMD -c FILE`: sends CMD to the instance FILE's control_socket names,
 * prints the answer; returns the exit status (0 ok, 1 refused or unreachable). */
int control_client(const char *config_path, const char *cmd);

#endif
