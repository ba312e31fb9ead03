#include "tls/ocsp_updater.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <time.h>

#include "observe/log.h"
#include "tls/tls.h"

/* A responder gets this long per fetch; retries come on the next pass. */
#define FETCH_TIMEOUT_S 10
/* Floor between passes, so a failing responder is not hammered. */
#define MIN_PASS_S 30

struct ocsp_updater {
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cond;
    struct tls_policy *policy;
    bool stop;
    bool kick;
};

static void warn(const char *msg, void *arg)
{
    log_msg(LOG_WARN, "ocsp: %s (keeping the last good staple)", msg);
}

static void *run(void *arg)
{
    struct ocsp_updater *u = arg;
    pthread_mutex_lock(&u->lock);
    while (!u->stop) {
        struct tls_policy *p = u->policy ? tls_policy_ref(u->policy) : NULL;
        u->kick = false;
        pthread_mutex_unlock(&u->lock);
        time_t next = time(NULL) + 3600;
        if (p) {
            tls_policy_ocsp_refresh(p, FETCH_TIMEOUT_S, &next, warn, NULL);
            tls_policy_unref(p);
        }
        if (next < time(NULL) + MIN_PASS_S)
            next = time(NULL) + MIN_PASS_S;
        struct timespec until = {next, 0};
        pthread_mutex_lock(&u->lock);
        while (!u->stop && !u->kick &&
               pthread_cond_timedwait(&u->cond, &u->lock, &until) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&u->lock);
    return NULL;
}

struct ocsp_updater *ocsp_updater_start(struct tls_policy *p)
{
    struct ocsp_updater *u = calloc(1, sizeof *u);
    if (!u)
        return NULL;
    pthread_mutex_init(&u->lock, NULL);
    pthread_cond_init(&u->cond, NULL); /* CLOCK_REALTIME, matching time() above */
    u->policy = p ? tls_policy_ref(p) : NULL;
    if (pthread_create(&u->thread, NULL, run, u) != 0) {
        if (u->policy)
            tls_policy_unref(u->policy);
        free(u);
        return NULL;
    }
    return u;
}

void ocsp_updater_set(struct ocsp_updater *u, struct tls_policy *p)
{
    pthread_mutex_lock(&u->lock);
    struct tls_policy *old = u->policy;
    u->policy = p ? tls_policy_ref(p) : NULL;
    u->kick = true;
    pthread_cond_signal(&u->cond);
    pthread_mutex_unlock(&u->lock);
    if (old)
        tls_policy_unref(old);
}

void ocsp_updater_stop(struct ocsp_updater *u)
{
    if (!u)
        return;
    pthread_mutex_lock(&u->lock);
    u->stop = true;
    pthread_cond_signal(&u->cond);
    pthread_mutex_unlock(&u->lock);
    pthread_join(u->thread, NULL); /* at most one fetch timeout */
    if (u->policy)
        tls_policy_unref(u->policy);
    free(u);
}
