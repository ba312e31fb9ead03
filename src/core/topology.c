#include "core/topology.h"

#include <stdio.h>
#include <unistd.h>

#include "core/worker.h"

int topology_spawn(struct worker **workers, struct metrics **metrics, const struct lset *ls,
                   struct snapshot *snap, int from, int to, char *err, size_t errlen)
{
    static struct listen_fd fds[LSET_MAX_FDS]; /* main thread only */
    int i;
    for (i = from; i < to; i++) {
        size_t n = lset_worker_fds(ls, i, fds, LSET_MAX_FDS);
        struct worker *w = worker_new(i, snap, fds, n, err, errlen); /* closes fds on failure */
        if (!w)
            goto fail;
        if (worker_start(w) < 0) {
            snprintf(err, errlen, "cannot start worker thread %d", i);
            worker_join_and_free(w);
            goto fail;
        }
        workers[i] = w;
        metrics[i] = &w->metrics;
    }
    return 0;
fail:
    for (int k = i + 1; k < to; k++) {
        size_t n = lset_worker_fds(ls, k, fds, LSET_MAX_FDS);
        for (size_t j = 0; j < n; j++)
            close(fds[j].fd);
    }
    while (i-- > from) {
        worker_post_stop(workers[i]);
        worker_join_and_free(workers[i]);
        workers[i] = NULL;
        metrics[i] = NULL;
    }
    return -1;
}

static struct listen_fd entry_fd(const struct lset_addr *e, size_t k)
{
    struct listen_fd lf = {.fd = e->fds[k], .https = e->https};
    snprintf(lf.name, sizeof lf.name, "%s", e->text);
    return lf;
}

void topology_commit(struct worker **workers, int old_n, int new_n, const struct lset *cur,
                     const struct lset *next)
{
    for (size_t i = 0; i < cur->n; i++) {
        const struct lset_addr *e = &cur->addrs[i];
        for (size_t k = 0; k < e->nfds; k++) {
            struct listen_fd lf = entry_fd(e, k);
            int now = lset_owner(next, lf.fd);
            if (now < 0) {
                worker_post_listen(workers[e->owner[k]], WL_CLOSE, &lf);
            } else if (now != e->owner[k]) {
                worker_post_listen(workers[now], WL_ADD, &lf);
                worker_post_listen(workers[e->owner[k]], WL_RELEASE, &lf);
            }
        }
    }
    for (size_t i = 0; i < next->n; i++) {
        const struct lset_addr *e = &next->addrs[i];
        for (size_t k = 0; k < e->nfds; k++) {
            struct listen_fd lf = entry_fd(e, k);
            if (e->owner[k] < old_n && lset_owner(cur, lf.fd) < 0)
                worker_post_listen(workers[e->owner[k]], WL_ADD, &lf);
        }
    }
    (void)new_n;
}
