/*
 * admission: see admission.h.
 *
 * Threads. A pool's admission (struct admission) is shared by every worker and
 * guarded by its own mutex: counts, the table of tenant keys, their queues and
 * the round-robin ring. A request's ticket is touched by its own worker only,
 * except for one transition: a slot freed on any thread (or a reload raising
 * the cap, on the main thread) turns the next queued ticket into GRANTED and
 * posts it to its worker's mailbox (mutex-guarded list + eventfd read by an
 * event on that worker's base: the bases are built without locks, so another
 * thread must not touch their events). The worker then resumes the request, or
 * gives the slot back if the request ended meanwhile.
 *
 * Races. Every change of a ticket's state happens under its admission's mutex,
 * and a grant writes the eventfd before it releases that mutex. The worker side
 * (mailbox, queue timer, leave / cancel) takes the same mutex before it lets go
 * of a ticket's mailbox reference, so a mailbox is freed only when no granter
 * can still be writing to it, and a ticket only when no list holds it:
 *  - grant vs timeout: the timer sees GRANTED and does nothing; the mailbox resumes it.
 *  - grant vs cancel: leave sees GRANTED, takes the ticket off the mailbox and gives
 *    the slot to the next in line.
 *  - timeout or cancel vs grant: the ticket is off the queue; no grant can find it.
 */
#include "upstream/admission.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>

#include "config/config.h"
#include "core/services.h"
#include "core/snapshot.h"
#include "http/request.h"
#include "observe/audit.h"
#include "observe/log.h"
#include "observe/metrics.h"
#include "upstream/upstream_state.h"
#include "util/jsonw.h"
#include "util/monotime.h"

#define KEY_BUCKETS 256
#define KEY_MAX (SESSION_FIELD_MAX + 8) /* "t:" + a tenant, "ip:" + an address, "r:" + a number */
#define LABELS_MAX 64                   /* tenants with their own metric series, at most */
#define LABEL_ANON 0
#define LABEL_OTHER 1
#define AUDIT_EVERY_MS 1000 /* one upstream_shed event per tenant label and second, at most */

enum shed_reason { SHED_TENANT_LIMIT = 0, SHED_QUEUE_FULL, SHED_QUEUE_TIMEOUT, SHED_REASONS };

static const char *const shed_reason_names[SHED_REASONS] = {"tenant_limit", "queue_full",
                                                            "queue_timeout"};

enum ticket_state {
    TICKET_RUNNING = 0, /* holds a slot: the exchange is on */
    TICKET_QUEUED,      /* waits in its key's queue */
    TICKET_GRANTED,     /* holds a slot, waits in its worker's mailbox to be resumed */
};

struct mailbox;
struct tkey;

struct admission_ticket {
    struct admission *a;
    struct tkey *key;
    struct request *r;
    void (*go)(struct request *);
    enum ticket_state state;                /* a->lock */
    struct admission_ticket *qprev, *qnext; /* key's queue (a->lock) */
    struct admission_ticket *mprev, *mnext; /* mailbox (mb->lock) */
    struct mailbox *mb;                     /* while queued or granted */
    struct event *timer;                    /* queue timeout */
};

/* A tenant key with requests in flight or queued (an entry exists only then). */
struct tkey {
    struct tkey *next;              /* hash chain */
    struct tkey *rr_prev, *rr_next; /* the ring of keys with queued requests */
    struct admission_ticket *qhead, *qtail;
    size_t in_flight, queued;
    uint32_t hash;
    char name[];
};

struct tenant_limit {
    char *name;
    size_t limit; /* 0: none */
};

/* A metric label: a named tenant, "anonymous" or "other". Counters never go back. */
struct label {
    char name[SESSION_FIELD_MAX];
    unsigned long long queued;
    unsigned long long shed[SHED_REASONS];
    unsigned long long unreported; /* sheds since the last audit event */
    uint64_t last_audit_ms;
};

struct admission {
    pthread_mutex_t lock;
    atomic_bool limited; /* any limit set: the hot path's one test */
    char pool[72];
    /* limits, copied from the latest config */
    size_t max_in_flight, per_tenant, queue_size;
    uint64_t queue_timeout_ms;
    enum config_anonymous anonymous;
    struct tenant_limit *overrides; /* sorted by name */
    size_t num_overrides;
    /* the state of the instance */
    size_t in_flight, queued;
    struct tkey *keys[KEY_BUCKETS];
    struct tkey *rr; /* the key served next */
    unsigned long long admitted_total, queued_total, shed_total, timed_out_total;
    struct label labels[LABELS_MAX];
    size_t num_labels;
};

/* ---- mailboxes: one per worker base while it has tickets queued or granted ---- */

struct mailbox {
    struct mailbox *next; /* registry */
    struct event_base *base;
    struct event *ev;
    int fd;
    unsigned refs; /* registry lock: tickets holding it, and a running callback */
    pthread_mutex_t lock;
    struct admission_ticket *head, *tail; /* granted, to resume */
};

static pthread_mutex_t mailboxes_lock = PTHREAD_MUTEX_INITIALIZER;
static struct mailbox *mailboxes;

static void mailbox_cb(evutil_socket_t fd, short what, void *arg);

static struct mailbox *mailbox_new(struct event_base *base)
{
    struct mailbox *mb = calloc(1, sizeof *mb);
    if (!mb)
        return NULL;
    mb->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (mb->fd >= 0)
        mb->ev = event_new(base, mb->fd, EV_READ | EV_PERSIST, mailbox_cb, mb);
    if (!mb->ev || event_add(mb->ev, NULL) < 0) {
        if (mb->ev)
            event_free(mb->ev);
        if (mb->fd >= 0)
            close(mb->fd);
        free(mb);
        return NULL;
    }
    pthread_mutex_init(&mb->lock, NULL);
    mb->base = base;
    return mb;
}

/* The mailbox of base (the calling worker's), with a reference; NULL when out of memory. */
static struct mailbox *mailbox_get(struct event_base *base)
{
    pthread_mutex_lock(&mailboxes_lock);
    struct mailbox *mb = mailboxes;
    while (mb && mb->base != base)
        mb = mb->next;
    if (!mb && (mb = mailbox_new(base))) {
        mb->next = mailboxes;
        mailboxes = mb;
    }
    if (mb)
        mb->refs++;
    pthread_mutex_unlock(&mailboxes_lock);
    return mb;
}

static void mailbox_ref(struct mailbox *mb)
{
    pthread_mutex_lock(&mailboxes_lock);
    mb->refs++;
    pthread_mutex_unlock(&mailboxes_lock);
}

/* On its worker's side only (or once the worker stopped): the event belongs to that base. */
static void mailbox_put(struct mailbox *mb)
{
    pthread_mutex_lock(&mailboxes_lock);
    bool last = --mb->refs == 0;
    if (last) {
        struct mailbox **pp = &mailboxes;
        while (*pp != mb)
            pp = &(*pp)->next;
        *pp = mb->next;
    }
    pthread_mutex_unlock(&mailboxes_lock);
    if (!last)
        return;
    event_free(mb->ev);
    close(mb->fd);
    pthread_mutex_destroy(&mb->lock);
    free(mb);
}

/* Any thread, with t's admission locked (which keeps mb alive until it is unlocked). */
static void mailbox_post(struct mailbox *mb, struct admission_ticket *t)
{
    pthread_mutex_lock(&mb->lock);
    t->mnext = NULL;
    t->mprev = mb->tail;
    if (mb->tail)
        mb->tail->mnext = t;
    else
        mb->head = t;
    mb->tail = t;
    pthread_mutex_unlock(&mb->lock);
    uint64_t one = 1;
    ssize_t n = write(mb->fd, &one, sizeof one);
    (void)n; /* EAGAIN: the counter is far from zero, the event fires anyway */
}

static void mailbox_unlink_locked(struct mailbox *mb, struct admission_ticket *t)
{
    if (t->mprev)
        t->mprev->mnext = t->mnext;
    else
        mb->head = t->mnext;
    if (t->mnext)
        t->mnext->mprev = t->mprev;
    else
        mb->tail = t->mprev;
    t->mprev = t->mnext = NULL;
}

static void mailbox_remove(struct mailbox *mb, struct admission_ticket *t)
{
    pthread_mutex_lock(&mb->lock);
    mailbox_unlink_locked(mb, t);
    pthread_mutex_unlock(&mb->lock);
}

static struct admission_ticket *mailbox_pop(struct mailbox *mb)
{
    pthread_mutex_lock(&mb->lock);
    struct admission_ticket *t = mb->head;
    if (t)
        mailbox_unlink_locked(mb, t);
    pthread_mutex_unlock(&mb->lock);
    return t;
}

/* ---- tickets ----------------------------------------------------------------- */

static void ticket_free(struct admission_ticket *t)
{
    if (t->timer)
        event_free(t->timer);
    if (t->mb)
        mailbox_put(t->mb);
    free(t);
}

/* The ticket no longer waits: the request's pending operation is over. */
static void ticket_stop_waiting(struct admission_ticket *t)
{
    struct request *r = t->r;
    if (r->pending == t) {
        r->pending = NULL;
        r->cancel_pending = NULL;
    }
    if (t->timer) {
        event_free(t->timer);
        t->timer = NULL;
    }
    if (t->mb) {
        mailbox_put(t->mb);
        t->mb = NULL;
    }
}

/* ---- keys, queues and the ring (a->lock held) ---------------------------------- */

static uint32_t key_hash(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static void key_name(const struct admission *a, const struct request *r, char out[KEY_MAX])
{
    if (r->ident.tenant[0])
        snprintf(out, KEY_MAX, "t:%s", r->ident.tenant);
    else if (a->anonymous == ANON_PER_IP)
        snprintf(out, KEY_MAX, "ip:%s", request_client_ip(r));
    else
        snprintf(out, KEY_MAX, "r:%zu", r->route ? (size_t)(r->route - r->cfg->routes) : 0);
}

static struct tkey *key_get(struct admission *a, const char *name)
{
    uint32_t h = key_hash(name);
    struct tkey **head = &a->keys[h % KEY_BUCKETS];
    for (struct tkey *k = *head; k; k = k->next)
        if (k->hash == h && !strcmp(k->name, name))
            return k;
    size_t len = strlen(name) + 1;
    struct tkey *k = calloc(1, sizeof *k + len);
    if (!k)
        return NULL;
    memcpy(k->name, name, len);
    k->hash = h;
    k->next = *head;
    *head = k;
    return k;
}

static void key_maybe_free(struct admission *a, struct tkey *k)
{
    if (k->in_flight || k->queued)
        return;
    struct tkey **pp = &a->keys[k->hash % KEY_BUCKETS];
    while (*pp != k)
        pp = &(*pp)->next;
    *pp = k->next;
    free(k);
}

/* A key with a first queued request joins the ring just before the one served next. */
static void ring_insert(struct admission *a, struct tkey *k)
{
    if (!a->rr) {
        k->rr_prev = k->rr_next = k;
        a->rr = k;
        return;
    }
    k->rr_next = a->rr;
    k->rr_prev = a->rr->rr_prev;
    k->rr_prev->rr_next = k;
    a->rr->rr_prev = k;
}

static void ring_remove(struct admission *a, struct tkey *k)
{
    if (k->rr_next == k) {
        a->rr = NULL;
    } else {
        k->rr_prev->rr_next = k->rr_next;
        k->rr_next->rr_prev = k->rr_prev;
        if (a->rr == k)
            a->rr = k->rr_next;
    }
    k->rr_prev = k->rr_next = NULL;
}

static void queue_push(struct admission *a, struct tkey *k, struct admission_ticket *t)
{
    t->qnext = NULL;
    t->qprev = k->qtail;
    if (k->qtail)
        k->qtail->qnext = t;
    else
        k->qhead = t;
    k->qtail = t;
    if (k->queued++ == 0)
        ring_insert(a, k);
    a->queued++;
}

/* Takes t off its key's queue (the key stays: the caller decides). */
static void queue_unlink(struct admission *a, struct admission_ticket *t)
{
    struct tkey *k = t->key;
    if (t->qprev)
        t->qprev->qnext = t->qnext;
    else
        k->qhead = t->qnext;
    if (t->qnext)
        t->qnext->qprev = t->qprev;
    else
        k->qtail = t->qprev;
    t->qprev = t->qnext = NULL;
    k->queued--;
    a->queued--;
}

static bool pool_has_room(const struct admission *a)
{
    return a->max_in_flight == 0 || a->in_flight < a->max_in_flight;
}

/*
 * Hands free slots to queued requests, one per key in ring order (round robin
 * between tenants, FIFO within one), each posted to its worker.
 */
static void grant_locked(struct admission *a)
{
    while (a->rr && pool_has_room(a)) {
        struct tkey *k = a->rr;
        struct admission_ticket *t = k->qhead;
        queue_unlink(a, t);
        a->rr = k->rr_next; /* the next tenant goes next */
        if (!k->queued)
            ring_remove(a, k);
        k->in_flight++;
        a->in_flight++;
        a->admitted_total++;
        t->state = TICKET_GRANTED;
        mailbox_post(t->mb, t);
    }
}

static void release_locked(struct admission *a, struct tkey *k)
{
    k->in_flight--;
    a->in_flight--;
    key_maybe_free(a, k);
    grant_locked(a);
}

/* ---- limits and labels (a->lock held) ------------------------------------------- */

static int limit_cmp(const void *x, const void *y)
{
    return strcmp(((const struct tenant_limit *)x)->name, ((const struct tenant_limit *)y)->name);
}

static size_t tenant_limit(const struct admission *a, const char *tenant)
{
    if (tenant[0] && a->num_overrides) {
        struct tenant_limit probe = {.name = (char *)tenant};
        const struct tenant_limit *o =
            bsearch(&probe, a->overrides, a->num_overrides, sizeof probe, limit_cmp);
        if (o)
            return o->limit;
    }
    return a->per_tenant;
}

static size_t label_find(const struct admission *a, const char *name)
{
    for (size_t i = LABEL_OTHER + 1; i < a->num_labels; i++)
        if (!strcmp(a->labels[i].name, name))
            return i;
    return 0;
}

static size_t label_add(struct admission *a, const char *name)
{
    if (a->num_labels == LABELS_MAX || strlen(name) >= sizeof a->labels[0].name)
        return LABEL_OTHER;
    struct label *l = &a->labels[a->num_labels];
    memset(l, 0, sizeof *l);
    snprintf(l->name, sizeof l->name, "%s", name);
    return a->num_labels++;
}

/* r's metric label: a configured tenant or one of tenant_limits by name, else "other". */
static struct label *label_of(struct admission *a, const struct request *r)
{
    const char *t = r->ident.tenant;
    if (!t[0])
        return &a->labels[LABEL_ANON];
    size_t i = label_find(a, t);
    if (!i && config_find_tenant(r->cfg, t, strlen(t)))
        i = label_add(a, t);
    return &a->labels[i ? i : LABEL_OTHER];
}

/* ---- shedding -------------------------------------------------------------------- */

/* What to tell the client and the audit log, gathered under the lock. */
struct shed_note {
    enum shed_reason why;
    uint64_t retry_after_s;
    bool audit;
    unsigned long long count; /* sheds of this label since the last event */
    char pool[72];
    char label[SESSION_FIELD_MAX];
    char key[KEY_MAX];
};

static void shed_count_locked(struct admission *a, const struct request *r, const struct tkey *k,
                              enum shed_reason why, struct shed_note *n)
{
    a->shed_total++;
    if (why == SHED_QUEUE_TIMEOUT)
        a->timed_out_total++;
    struct label *l = label_of(a, r);
    l->shed[why]++;
    l->unreported++;
    uint64_t now = mono_ms();
    n->why = why;
    n->retry_after_s = 1;
    if (why == SHED_QUEUE_TIMEOUT && a->queue_timeout_ms > 1000)
        n->retry_after_s = (a->queue_timeout_ms + 999) / 1000;
    n->audit = !l->last_audit_ms || now - l->last_audit_ms >= AUDIT_EVERY_MS;
    if (!n->audit)
        return;
    n->count = l->unreported;
    l->unreported = 0;
    l->last_audit_ms = now ? now : 1;
    snprintf(n->pool, sizeof n->pool, "%s", a->pool);
    snprintf(n->label, sizeof n->label, "%s", l->name);
    snprintf(n->key, sizeof n->key, "%s", k->name);
}

/* Answers 503 (r may be gone afterwards). */
static void shed_respond(struct request *r, const struct shed_note *n)
{
    static const char *const why[SHED_REASONS] = {"tenant over its in-flight limit",
                                                  "upstream queue full", "upstream queue timeout"};
    if (n->audit) {
        char buf[2048];
        struct jsonw j;
        audit_begin(&j, buf, sizeof buf, "upstream_shed", r);
        jsonw_str(&j, "pool", n->pool);
        jsonw_str(&j, "tenant", n->label);
        jsonw_str(&j, "key", n->key); /* the request at hand's: "t:name", "r:route", "ip:addr" */
        jsonw_str(&j, "reason", shed_reason_names[n->why]);
        jsonw_uint(&j, "shed", n->count);
        audit_emit(&j);
    }
    char extra[48];
    snprintf(extra, sizeof extra, "Retry-After: %llu\r\n", (unsigned long long)n->retry_after_s);
    r->error = why[n->why];
    request_respond(r, 503, extra, why[n->why], false);
}

/* ---- the request's side ------------------------------------------------------------ */

static void cancel_wait(struct request *r)
{
    admission_leave(r);
}

static void on_queue_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct admission_ticket *t = arg;
    struct admission *a = t->a;
    struct request *r = t->r;
    pthread_mutex_lock(&a->lock);
    if (t->state != TICKET_QUEUED) { /* granted just now: its mailbox resumes it */
        pthread_mutex_unlock(&a->lock);
        return;
    }
    struct shed_note note;
    shed_count_locked(a, r, t->key, SHED_QUEUE_TIMEOUT, &note);
    queue_unlink(a, t);
    if (!t->key->queued)
        ring_remove(a, t->key);
    key_maybe_free(a, t->key);
    pthread_mutex_unlock(&a->lock);
    r->adm = NULL;
    ticket_stop_waiting(t);
    ticket_free(t);
    struct stream_hold hold = request_hold(r);
    shed_respond(r, &note);
    stream_release(hold);
}

/* A granted ticket's request goes on, on its own worker. */
static void resume(struct admission_ticket *t)
{
    struct admission *a = t->a;
    pthread_mutex_lock(&a->lock); /* the granter is done with the mailbox after this */
    t->state = TICKET_RUNNING;
    pthread_mutex_unlock(&a->lock);
    ticket_stop_waiting(t);
    struct request *r = t->r;
    struct stream_hold hold = request_hold(r);
    t->go(r);
    stream_release(hold);
}

static void mailbox_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    struct mailbox *mb = arg;
    uint64_t n;
    ssize_t got = read(fd, &n, sizeof n);
    (void)got;
    mailbox_ref(mb); /* the last ticket's reference may go in the loop */
    struct admission_ticket *t;
    while ((t = mailbox_pop(mb)))
        resume(t);
    mailbox_put(mb);
}

/* Queues t; -1 when out of memory. */
static int enqueue_locked(struct admission *a, struct tkey *k, struct admission_ticket *t,
                          struct request *r)
{
    t->mb = mailbox_get(r->svc->base);
    t->timer = t->mb ? evtimer_new(r->svc->base, on_queue_timeout, t) : NULL;
    if (!t->timer)
        return -1;
    struct timeval tv = {(time_t)(a->queue_timeout_ms / 1000),
                         (suseconds_t)(a->queue_timeout_ms % 1000) * 1000};
    evtimer_add(t->timer, &tv);
    t->state = TICKET_QUEUED;
    queue_push(a, k, t);
    a->queued_total++;
    label_of(a, r)->queued++;
    r->pending = t;
    r->cancel_pending = cancel_wait;
    return 0;
}

/* admission_enter() for a pool with limits. */
static enum admission_verdict enter_limited(struct request *r, struct admission *a,
                                            void (*go)(struct request *))
{
    struct admission_ticket *t = calloc(1, sizeof *t);
    if (!t)
        return ADMIT_GO; /* out of memory: let it through uncounted rather than refuse it */
    t->a = a;
    t->r = r;
    t->go = go;
    char name[KEY_MAX];
    enum shed_reason why;
    pthread_mutex_lock(&a->lock);
    key_name(a, r, name);
    struct tkey *k = key_get(a, name);
    if (!k) {
        pthread_mutex_unlock(&a->lock);
        free(t);
        return ADMIT_GO;
    }
    t->key = k;
    size_t limit = tenant_limit(a, r->ident.tenant);
    if (limit && k->in_flight + k->queued >= limit) {
        why = SHED_TENANT_LIMIT;
    } else if (pool_has_room(a)) {
        k->in_flight++;
        a->in_flight++;
        a->admitted_total++;
        t->state = TICKET_RUNNING;
        r->adm = t;
        pthread_mutex_unlock(&a->lock);
        return ADMIT_GO;
    } else if (a->queued >= a->queue_size) {
        why = SHED_QUEUE_FULL;
    } else {
        r->adm = t;
        if (enqueue_locked(a, k, t, r) == 0) {
            pthread_mutex_unlock(&a->lock);
            return ADMIT_WAIT;
        }
        r->adm = NULL;
        why = SHED_QUEUE_FULL;
    }
    struct shed_note note;
    shed_count_locked(a, r, k, why, &note);
    key_maybe_free(a, k);
    pthread_mutex_unlock(&a->lock);
    ticket_free(t);
    shed_respond(r, &note);
    return ADMIT_SHED;
}

enum admission_verdict admission_enter(struct request *r, void (*go)(struct request *))
{
    const struct upstream_states *us = r->snap->ustates;
    size_t i = (size_t)(r->upstream - r->cfg->upstreams);
    if (!us || i >= us->num_pools || r->adm)
        return ADMIT_GO;
    struct admission *a = __atomic_load_n(&us->pools[i]->admission, __ATOMIC_ACQUIRE);
    if (!a || !atomic_load_explicit(&a->limited, memory_order_relaxed))
        return ADMIT_GO;
    return enter_limited(r, a, go);
}

void admission_leave(struct request *r)
{
    struct admission_ticket *t = r->adm;
    if (!t)
        return;
    r->adm = NULL;
    struct admission *a = t->a;
    pthread_mutex_lock(&a->lock);
    if (t->state == TICKET_QUEUED) {
        queue_unlink(a, t);
        if (!t->key->queued)
            ring_remove(a, t->key);
        key_maybe_free(a, t->key);
    } else {
        if (t->state == TICKET_GRANTED) /* granted while its client went away: give it back */
            mailbox_remove(t->mb, t);
        release_locked(a, t->key);
    }
    pthread_mutex_unlock(&a->lock);
    ticket_stop_waiting(t);
    ticket_free(t);
}

/* ---- configuration ----------------------------------------------------------------- */

static void overrides_free(struct tenant_limit *o, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(o[i].name);
    free(o);
}

/* "name=N" strings (checked by the config loader) into a sorted table; -1 when out of memory. */
static int overrides_build(const struct config_admission *c, struct tenant_limit **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (!c->num_tenant_limits)
        return 0;
    struct tenant_limit *o = calloc(c->num_tenant_limits, sizeof *o);
    if (!o)
        return -1;
    for (size_t i = 0; i < c->num_tenant_limits; i++) {
        const char *s = c->tenant_limits[i];
        const char *eq = strrchr(s, '=');
        size_t len = eq ? (size_t)(eq - s) : strlen(s);
        o[i].name = strndup(s, len);
        o[i].limit = eq ? strtoull(eq + 1, NULL, 10) : 0;
        if (!o[i].name) {
            overrides_free(o, i);
            return -1;
        }
    }
    qsort(o, c->num_tenant_limits, sizeof *o, limit_cmp);
    *out = o;
    *n = c->num_tenant_limits;
    return 0;
}

static bool config_limited(const struct config_admission *c, const struct tenant_limit *o, size_t n)
{
    if (c->max_in_flight || c->max_in_flight_per_tenant)
        return true;
    for (size_t i = 0; i < n; i++)
        if (o[i].limit)
            return true;
    return false;
}

static struct admission *admission_new(const char *pool)
{
    struct admission *a = calloc(1, sizeof *a);
    if (!a)
        return NULL;
    pthread_mutex_init(&a->lock, NULL);
    snprintf(a->pool, sizeof a->pool, "%s", pool);
    snprintf(a->labels[LABEL_ANON].name, sizeof a->labels[0].name, "anonymous");
    snprintf(a->labels[LABEL_OTHER].name, sizeof a->labels[0].name, "other");
    a->num_labels = LABEL_OTHER + 1;
    return a;
}

int admission_configure(struct pool_state *p, const struct config_upstream *u)
{
    const struct config_admission *c = &u->admission;
    struct admission *a = __atomic_load_n(&p->admission, __ATOMIC_ACQUIRE);
    struct tenant_limit *o;
    size_t n;
    if (overrides_build(c, &o, &n) < 0)
        return -1;
    bool limited = config_limited(c, o, n);
    bool fresh = !a;
    if (fresh && (!limited || !(a = admission_new(u->name)))) {
        overrides_free(o, n);
        return limited ? -1 : 0; /* no limits and never had any: nothing to keep */
    }
    pthread_mutex_lock(&a->lock);
    struct tenant_limit *old = a->overrides;
    size_t old_n = a->num_overrides;
    a->overrides = o;
    a->num_overrides = n;
    a->max_in_flight = c->max_in_flight;
    a->per_tenant = c->max_in_flight_per_tenant;
    a->queue_size = c->queue_size;
    a->queue_timeout_ms = c->queue_timeout_ms;
    a->anonymous = c->anonymous;
    for (size_t i = 0; i < n; i++)
        if (!label_find(a, o[i].name))
            label_add(a, o[i].name);
    atomic_store(&a->limited, limited);
    grant_locked(a); /* a higher cap, or none, lets waiting requests in now */
    pthread_mutex_unlock(&a->lock);
    overrides_free(old, old_n);
    if (fresh)
        __atomic_store_n(&p->admission, a, __ATOMIC_RELEASE);
    return 0;
}

void admission_free(struct admission *a)
{
    if (!a)
        return;
    for (size_t b = 0; b < KEY_BUCKETS; b++) { /* none: every request has left */
        while (a->keys[b]) {
            struct tkey *k = a->keys[b];
            a->keys[b] = k->next;
            free(k);
        }
    }
    overrides_free(a->overrides, a->num_overrides);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

/* ---- figures ------------------------------------------------------------------------ */

void admission_stats(const struct admission *a, struct admission_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!a)
        return;
    struct admission *m = (struct admission *)a; /* the mutex only */
    pthread_mutex_lock(&m->lock);
    out->in_flight = a->in_flight;
    out->queued = a->queued;
    out->admitted_total = a->admitted_total;
    out->queued_total = a->queued_total;
    out->shed_total = a->shed_total;
    out->timed_out_total = a->timed_out_total;
    pthread_mutex_unlock(&m->lock);
}

/* A copy of a's labels (taken under its lock, rendered without it); NULL when out of memory. */
static struct label *labels_copy(const struct admission *a, size_t *n)
{
    struct admission *m = (struct admission *)a;
    pthread_mutex_lock(&m->lock);
    *n = a->num_labels;
    struct label *l = malloc(*n * sizeof *l);
    if (l)
        memcpy(l, a->labels, *n * sizeof *l);
    pthread_mutex_unlock(&m->lock);
    return l;
}

static void series_start(struct evbuffer *out, const char *name, const char *pool,
                         const char *tenant)
{
    evbuffer_add_printf(out, "%s{pool=\"", name);
    metrics_label_value(out, pool);
    evbuffer_add_printf(out, "\",tenant=\"");
    metrics_label_value(out, tenant);
    evbuffer_add(out, "\"", 1);
}

static void render_pool(struct evbuffer *out, const struct admission *a, const char *pool,
                        bool shed)
{
    size_t n;
    struct label *l = labels_copy(a, &n);
    if (!l)
        return;
    for (size_t i = 0; i < n; i++) {
        if (!shed) {
            series_start(out, "moat_upstream_admission_queued_total", pool, l[i].name);
            evbuffer_add_printf(out, "} %llu\n", l[i].queued);
            continue;
        }
        for (int k = 0; k < SHED_REASONS; k++) {
            series_start(out, "moat_upstream_admission_shed_total", pool, l[i].name);
            evbuffer_add_printf(out, ",reason=\"%s\"} %llu\n", shed_reason_names[k], l[i].shed[k]);
        }
    }
    free(l);
}

void admission_render_metrics_pools(struct evbuffer *out, const struct admission *const *as,
                                    const char *const *pools, size_t n)
{
    size_t limited = 0;
    for (size_t i = 0; i < n; i++)
        limited += as[i] != NULL;
    if (!limited)
        return;
    evbuffer_add_printf(out, "# HELP moat_upstream_admission_queued_total Requests that waited "
                             "for admission to the upstream pool, by tenant\n"
                             "# TYPE moat_upstream_admission_queued_total counter\n");
    for (size_t i = 0; i < n; i++)
        if (as[i])
            render_pool(out, as[i], pools[i], false);
    evbuffer_add_printf(out, "# HELP moat_upstream_admission_shed_total Requests refused with "
                             "503 by the upstream pool's admission, by tenant and reason\n"
                             "# TYPE moat_upstream_admission_shed_total counter\n");
    for (size_t i = 0; i < n; i++)
        if (as[i])
            render_pool(out, as[i], pools[i], true);
}
