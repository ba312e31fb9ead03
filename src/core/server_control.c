/* The operator's commands to the running instance: `moat -s` on the control socket and the
 * binary upgrade (SIGUSR2). control.h and upgrade.h hold the mechanics. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/control.h"
#include "core/notify.h"
#include "core/server_state.h"
#include "core/snapshot.h"
#include "core/upgrade.h"
#include "config/config.h"
#include "observe/admin.h"
#include "observe/audit.h"
#include "observe/log.h"
#include "util/jsonw.h"

/* An operation on the audit trail, by the old process: who serves from now on. */
static void audit_upgrade(bool ok, pid_t pid, const char *detail)
{
    char buf[5120];
    struct jsonw j;
    audit_begin(&j, buf, sizeof buf, "upgrade", NULL);
    jsonw_str(&j, "result", ok ? "success" : "failure");
    jsonw_int(&j, "old_pid", getpid());
    if (ok)
        jsonw_int(&j, "new_pid", pid);
    jsonw_str(&j, "detail", detail);
    audit_emit(&j);
}

/* The new process is ready (or failed): the old one hands over and drains, or keeps serving. */
static void on_upgrade_done(void *arg, bool ok, pid_t pid, const char *msg)
{
    struct server *s = arg;
    char line[4700];
    if (ok)
        snprintf(line, sizeof line, "upgrade: process %d serves; process %d drains and exits",
                 (int)pid, (int)getpid());
    else
        snprintf(line, sizeof line, "upgrade failed; process %d keeps serving: %s", (int)getpid(),
                 msg);
    log_msg(ok ? LOG_INFO : LOG_ERROR, "%s", line);
    audit_upgrade(ok, pid, line);
    if (s->upgrade_req)
        control_reply(s->upgrade_req, ok, line);
    s->upgrade_req = NULL;
    if (!ok) {
        upgrade_free(s->upgrade);
        s->upgrade = NULL;
        return;
    }
    /* systemd: the new process is the main one from now on; this one's exit, later, and
     * its drain (no STOPPING=1, see server_drain) are no longer the service's */
    notify_status("upgraded: process %d serves", (int)pid);
    notify_mainpid((int)pid);
    admin_stop(s->admin); /* the new process opens these once told "go" */
    s->admin = NULL;
    control_stop(s->control);
    s->control = NULL;
    upgrade_go(s->upgrade);
    s->upgrade = NULL;
    s->handed_over = true;
    server_drain(s, SIGUSR2);
}

/* SIGUSR2 or `moat -s upgrade` (req): starts the new binary with our listening sockets. */
void server_upgrade(struct server *s, struct control_req *req)
{
    char err[256];
    const char *refuse = s->draining ? "draining" : s->upgrade ? "an upgrade is in progress" : NULL;
    if (!refuse &&
        !(s->upgrade = upgrade_start(s->base, &s->lset, on_upgrade_done, s, err, sizeof err)))
        refuse = err;
    if (refuse) {
        char line[512];
        snprintf(line, sizeof line, "upgrade refused: %s", refuse);
        log_msg(LOG_ERROR, "%s", line);
        if (req)
            control_reply(req, false, line);
        return;
    }
    s->upgrade_req = req;
}

/* A `moat -s` command on the control socket. */
static void on_control(void *arg, const char *cmd, struct control_req *req)
{
    struct server *s = arg;
    if (!strcmp(cmd, "upgrade")) {
        server_upgrade(s, req);
    } else if (strcmp(cmd, "reload")) {
        control_reply(req, false, "unknown command (reload, upgrade)");
    } else if (s->draining || s->upgrade) {
        control_reply(req, false,
                      s->draining ? "reload refused: draining"
                                  : "reload refused: an upgrade is in progress");
    } else {
        server_reload(s);
        char msg[sizeof s->result + 128];
        if (s->result_ok)
            snprintf(msg, sizeof msg, "%s", s->result);
        else
            snprintf(msg, sizeof msg, "reload failed; generation %lu keeps serving:\n%s",
                     s->generation, s->result);
        control_reply(req, s->result_ok, msg);
    }
}

int server_start_control(struct server *s)
{
    const char *path = s->snap->cfg->control_socket;
    char err[512];
    if (!path)
        return 0;
    s->control = control_start(s->base, path, on_control, s, err, sizeof err);
    if (!s->control)
        log_msg(LOG_ERROR, "control_socket: %s", err);
    return s->control ? 0 : -1;
}
