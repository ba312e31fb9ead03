/*
 * notify: the service manager's readiness protocol (systemd's sd_notify, Type=notify).
 * moat says READY=1 once it serves, RELOADING=1 ... READY=1 around a reload (whatever
 * its result: the old generation keeps serving when the new one is refused), STOPPING=1
 * when it starts draining, and a STATUS= line for `systemctl status`.
 * Every call is a no-op when NOTIFY_SOCKET is unset (not started by systemd, or a
 * container), and never fails the caller: a lost notification is logged at debug level.
 */
#ifndef MOAT_NOTIFY_H
#define MOAT_NOTIFY_H

/* READY=1: startup or a reload is over. */
void notify_ready(void);
/* RELOADING=1 (with MONOTONIC_USEC=, which Type=notify-reload wants): a reload begins. */
void notify_reloading(void);
/* STOPPING=1: draining has begun; the process exits when it is done. */
void notify_stopping(void);
/* MAINPID=<pid>: a binary upgrade's new process becomes the service's main process.
 * Sent by the old one, still main (systemd's default NotifyAccess=main accepts nothing
 * else), when it hands over; the new one's messages count from then on. */
void notify_mainpid(int pid);
/* STATUS=<text>: one line for `systemctl status` (newlines become spaces). */
void notify_status(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
