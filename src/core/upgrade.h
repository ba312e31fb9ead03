/*
 * upgrade: binary upgrade without a refused connection (SIGUSR2, `moat -s upgrade`).
 *
 * The old process forks and execs the binary it was started from (the path of
 * /proc/self/exe at start, same arguments) with every listening socket it has:
 * each worker's SO_REUSEPORT socket of each address, in MOAT_INHERIT_FDS
 * ("https|ADDR=fd,fd;http|ADDR=fd;"), and a socketpair in MOAT_UPGRADE_FD. The
 * new process reads its config, adopts the inherited sockets of the addresses
 * it still has (no probe: they are already ours; a stranger still cannot join),
 * opens the others, starts its workers and says "ready PID". Until then the old
 * process keeps accepting on the very same sockets: both share each accept
 * queue, so nothing queued is lost, and the old one closes its copies (the
 * sockets live on in the new process) only after "ready". It then closes its
 * admin and control listeners and answers "go", upon which the new one opens
 * them, and drains (the SIGQUIT path) and exits 0.
 * If the new process fails (bad config, a crash, no "ready" within
 * UPGRADE_TIMEOUT_MS), the old one keeps serving and reports why (the new
 * process's errors come through the socketpair).
 */
#ifndef MOAT_UPGRADE_H
#define MOAT_UPGRADE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "core/listener_set.h"

#define UPGRADE_TIMEOUT_MS 30000

struct event_base;
struct upgrade;

/* ok: the new process (pid) is ready; else msg says why it failed (it is stopped). */
typedef void (*upgrade_done_cb)(void *arg, bool ok, pid_t pid, const char *msg);

/* At start: remembers the binary (/proc/self/exe) and the arguments to run again. */
void upgrade_init(void);

/* Old process: starts the new one with ls's sockets and extra "name=fd" sockets. */
struct upgrade *upgrade_start(struct event_base *base, const struct lset *ls, upgrade_done_cb cb,
                              void *arg, char *err, size_t errlen);
/* After a successful callback: tells the new process to open the admin/control listeners
 * (the old process has closed them); frees u. */
void upgrade_go(struct upgrade *u);
/* Frees u (after a failure callback; the child has been reaped or signalled). */
void upgrade_free(struct upgrade *u);
/* Reaps the new processes a timeout stopped, once they have exited (call now and then). */
void upgrade_reap(void);
/* Shutdown during an upgrade: stops the new process (SIGTERM: it drains) and frees u. */
void upgrade_abort(struct upgrade *u);

/* New process: the socketpair fd, or -1 when not started by an upgrade. Reads
 * MOAT_INHERIT_FDS into inh (inh->n = 0 when none). */
int upgrade_child_begin(struct lset_inherit *inh, char *err, size_t errlen);
/* New process: "ready PID", then waits (bounded) for "go"; then watches fd on base
 * for the old process's exit (until then both append to the audit chain: audit_chain.h). */
void upgrade_child_ready(int fd, struct event_base *base);
/* New process: stops watching (at shutdown; also when the old process is gone). */
void upgrade_child_done(void);
/* New process: reports its failure (the errors, one per line) and closes fd. */
void upgrade_child_failed(int fd, const char *msg);

#endif
