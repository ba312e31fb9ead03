/*
 * server_state: the main thread's state, shared by server.c (config, signals,
 * reload, drain) and server_control.c (the control socket and the binary
 * upgrade). Private to src/core: nothing else includes it.
 */
#ifndef MOAT_SERVER_STATE_H
#define MOAT_SERVER_STATE_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "core/listener_set.h"

#define MAX_WORKERS 256
/* SIGHUP, SIGTERM, SIGINT, SIGQUIT, SIGUSR1, SIGUSR2 and the ignored ones (server.c:
 * handled_signals) */
#define NUM_SIGNALS 14

struct event_base;
struct event;
struct snapshot;
struct worker;
struct metrics;
struct admin;
struct tls_ticket_store;
struct ocsp_updater;
struct health_checker;
struct control;
struct control_req;
struct upgrade;

struct server {
    struct event_base *base;
    char *path;
    struct snapshot *snap;
    struct worker *workers[MAX_WORKERS];
    struct metrics *metrics[MAX_WORKERS];
    int num_workers;
    struct admin *admin;
    struct event *ev_sig[NUM_SIGNALS], *ev_rotate, *ev_sweep;
    struct event *ev_exit; /* while draining: polls the workers (EXIT_POLL_MS) */
    bool draining;
    struct tls_ticket_store *tickets; /* shared by every generation: resumption survives reloads */
    struct ocsp_updater *ocsp;        /* when tls.ocsp_fetch */
    struct health_checker *checker;   /* active upstream health checks */
    uint64_t rotate_ms;
    unsigned long generation;
    time_t cert_check_at; /* next daily check for certificates near their end (cert_audit.h) */
    struct lset lset;     /* every worker's listening sockets, per address (listener_set.h) */
    struct worker *retired[MAX_WORKERS]; /* removed by a reload, draining; joined by on_sweep */
    int num_retired;
    char result[4096]; /* the last reload's outcome: what changed, or every error */
    bool result_ok;
    struct control *control;         /* control_socket, for `moat -s` */
    struct upgrade *upgrade;         /* a binary upgrade in progress */
    struct control_req *upgrade_req; /* who asked for it (`moat -s upgrade`), or NULL */
    int upgrade_fd;   /* started by an upgrade: the socketpair to the old process, until ready */
    bool handed_over; /* a new process took the sockets: drain without refusing anyone */
};

/* server.c: a reload (SIGHUP, `moat -s reload`) with its service-manager notifications;
 * its outcome is in s->result (s->result_ok). */
void server_reload(struct server *s);
/* server.c: stop accepting, finish what is in flight, exit 0 (sig names the cause). */
void server_drain(struct server *s, int sig);

/* server_control.c: SIGUSR2 or `moat -s upgrade` (req, answered when it is over). */
void server_upgrade(struct server *s, struct control_req *req);
/* server_control.c: listens at control_socket when it is set; -1 (logged) on failure. */
int server_start_control(struct server *s);

#endif
