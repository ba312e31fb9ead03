/*
 * topology: the workers and their listening sockets as a reload changes them.
 * The main thread's arrays of workers (server.c) are passed in; the changes
 * reach the workers through their mailboxes (worker_post_listen, _stop), so a
 * worker never sees a half-applied change: it applies a whole batch in one
 * wake-up, the new snapshot first.
 */
#ifndef MOAT_TOPOLOGY_H
#define MOAT_TOPOLOGY_H

#include <stddef.h>

#include "core/listener_set.h"

struct worker;
struct metrics;
struct snapshot;

/*
 * Creates and starts workers [from, to) on snap with their sockets from ls
 * (workers[i], metrics[i]). On failure (-1, err) the ones started here are
 * stopped and joined and every socket of ls owned by [from, to) is closed.
 */
int topology_spawn(struct worker **workers, struct metrics **metrics, const struct lset *ls,
                   struct snapshot *snap, int from, int to, char *err, size_t errlen);

/*
 * Posts the listener changes from cur to next to the workers that exist in both
 * (index < min(old_n, next's)): sockets of removed addresses are closed by
 * their worker, added ones handed over, those of retiring workers (index >=
 * new_n) handed to a remaining worker before the retiring one lets go of them.
 */
void topology_commit(struct worker **workers, int old_n, int new_n, const struct lset *cur,
                     const struct lset *next);

#endif
