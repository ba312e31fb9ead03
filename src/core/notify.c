#include "core/notify.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <systemd/sd-daemon.h>

#include "observe/log.h"

/* STATUS= text longer than this is cut: systemctl shows one line. */
#define NOTIFY_STATUS_MAX 256

static void send_state(const char *state)
{
    if (!getenv("NOTIFY_SOCKET"))
        return;
    /* unset_environment 0: every later reload and the drain notify too */
    int rc = sd_notify(0, state);
    if (rc < 0)
        log_msg(LOG_DEBUG, "notify: %.40s: %s", state, strerror(-rc));
}

void notify_ready(void)
{
    send_state("READY=1");
}

void notify_reloading(void)
{
    struct timespec ts;
    char msg[64];
    clock_gettime(CLOCK_MONOTONIC, &ts);
    snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
             (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
    send_state(msg);
}

void notify_stopping(void)
{
    send_state("STOPPING=1");
}

void notify_mainpid(int pid)
{
    char msg[32];
    snprintf(msg, sizeof msg, "MAINPID=%d", pid);
    send_state(msg);
}

void notify_status(const char *fmt, ...)
{
    if (!getenv("NOTIFY_SOCKET"))
        return;
    char msg[sizeof "STATUS=" + NOTIFY_STATUS_MAX];
    memcpy(msg, "STATUS=", sizeof "STATUS=" - 1);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + sizeof "STATUS=" - 1, sizeof msg - (sizeof "STATUS=" - 1), fmt, ap);
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' '; /* one assignment per line in the protocol */
    send_state(msg);
}
