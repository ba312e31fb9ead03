/*
 * server: the main thread. Loads the config, opens the listeners, starts the
 * workers and the admin listener, and handles signals: SIGHUP reloads (a new
 * snapshot is built and validated; if anything is wrong the old one stays),
 * SIGTERM, SIGINT and SIGQUIT drain (stop accepting, finish in-flight requests
 * up to limits.drain_timeout; the admin listener keeps answering, /readyz 503)
 * and exit 0, SIGUSR1 reopens the log files, SIGUSR2 upgrades the binary
 * (upgrade.h). A reload also applies listen addresses, the worker count and the
 * admin address (topology.h); control_socket takes `moat -s` (control.h).
 * A listen address something else is bound to fails the start (exit 1).
 */
#ifndef MOAT_SERVER_H
#define MOAT_SERVER_H

/* Runs until drained; returns the process exit status. */
int server_run(const char *config_path);

/* Loads and fully validates a config (as -t does); prints every error; returns 0/1. */
int server_check(const char *config_path);

#endif
