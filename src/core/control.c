#include "core/control.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>

#include "config/config.h"
#include "core/listener.h"
#include "observe/log.h"

#define CONTROL_MODE 0600
#define MAX_LINE 64
/* How long `moat -s` waits for the answer: an upgrade waits up to 30 s for the new process. */
#define CLIENT_TIMEOUT_MS 60000

struct control {
    struct evconnlistener *lev;
    char *path;
    unsigned long ino;
    control_cb cb;
    void *arg;
    struct control_req *reqs; /* connections whose command is not handed over yet */
};

struct control_req {
    struct control *c; /* NULL once the command is handed over (or c stopped) */
    struct control_req *next;
    struct bufferevent *bev;
    bool asked;   /* the command was read and handed to the callback */
    bool replied; /* the answer is queued: free once written */
    bool gone;    /* the client closed: free at the reply */
};

/* Takes r off its control's list: the command was handed over, or r is freed. */
static void req_detach(struct control_req *r)
{
    struct control_req **pp = r->c ? &r->c->reqs : NULL;
    while (pp && *pp && *pp != r)
        pp = &(*pp)->next;
    if (pp && *pp)
        *pp = r->next;
    r->c = NULL;
}

static void req_free(struct control_req *r)
{
    req_detach(r);
    bufferevent_free(r->bev);
    free(r);
}

static void on_written(struct bufferevent *bev, void *arg)
{
    struct control_req *r = arg;
    if (r->replied && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        req_free(r);
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct control_req *r = arg;
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT)))
        return;
    if (r->replied || !r->asked)
        req_free(r); /* nobody else holds it */
    else
        r->gone = true;
}

static void on_read(struct bufferevent *bev, void *arg)
{
    struct control_req *r = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t n;
    char *line = evbuffer_readln(in, &n, EVBUFFER_EOL_LF);
    if (!line && evbuffer_get_length(in) <= MAX_LINE)
        return;
    bufferevent_disable(bev, EV_READ);
    struct control *c = r->c;
    req_detach(r);
    r->asked = true;
    if (line)
        c->cb(c->arg, line, r);
    else
        control_reply(r, false, "command line too long");
    free(line);
}

static void on_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int len,
                      void *arg)
{
    struct control *c = arg;
    struct control_req *r = calloc(1, sizeof *r);
    struct bufferevent *bev =
        r ? bufferevent_socket_new(evconnlistener_get_base(l), fd, BEV_OPT_CLOSE_ON_FREE) : NULL;
    if (!bev) {
        free(r);
        close(fd);
        return;
    }
    r->c = c;
    r->next = c->reqs;
    c->reqs = r;
    r->bev = bev;
    bufferevent_setcb(bev, on_read, on_written, on_event, r);
    struct timeval tv = {5, 0}; /* for the command line only */
    bufferevent_set_timeouts(bev, &tv, NULL);
    bufferevent_enable(bev, EV_READ);
}

void control_reply(struct control_req *r, bool ok, const char *msg)
{
    if (r->gone) {
        req_free(r);
        return;
    }
    r->replied = true;
    evbuffer_add_printf(bufferevent_get_output(r->bev), "%s\n%s\n", ok ? "ok" : "error", msg);
}

struct control *control_start(struct event_base *base, const char *path, control_cb cb, void *arg,
                              char *err, size_t errlen)
{
    struct control *c = calloc(1, sizeof *c);
    bool stale = false;
    if (!c || !(c->path = strdup(path))) {
        free(c);
        snprintf(err, errlen, "control_socket: out of memory");
        return NULL;
    }
    c->cb = cb;
    c->arg = arg;
    int fd = listener_open_unix(path, CONTROL_MODE, &stale, &c->ino, err, errlen);
    if (fd >= 0)
        c->lev = evconnlistener_new(base, on_accept, c,
                                    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, -1, fd);
    if (!c->lev) {
        if (fd >= 0) {
            listener_unix_remove(path, c->ino);
            close(fd);
            snprintf(err, errlen, "control_socket: cannot listen on %s", path);
        }
        free(c->path);
        free(c);
        return NULL;
    }
    if (stale)
        log_msg(LOG_INFO, "control_socket: replaced the stale socket file %s", path);
    return c;
}

void control_stop(struct control *c)
{
    if (!c)
        return;
    while (c->reqs) /* no command yet: closed (a handed-over one is answered later) */
        req_free(c->reqs);
    evconnlistener_free(c->lev);
    listener_unix_remove(c->path, c->ino);
    free(c->path);
    free(c);
}

/* ---- the client: moat -s ------------------------------------------------------------------ */

/* The value of a top-level "control_socket: PATH" line (YAML or JSON style), or NULL. */
static char *scan_line(const char *line)
{
    const char *p = line + strspn(line, " \t\"'");
    if (strncmp(p, "control_socket", 14))
        return NULL;
    p += 14;
    p += strspn(p, "\"' \t");
    if (*p++ != ':')
        return NULL;
    p += strspn(p, " \t");
    char q = *p == '"' || *p == '\'' ? *p++ : '\0';
    size_t n = q ? strcspn(p, (char[]){q, '\0'}) : strcspn(p, " \t,#\r\n");
    if (n == 0 || (!q && n == 4 && !strncmp(p, "null", 4)))
        return NULL;
    return strndup(p, n);
}

/* The control_socket of the file, also when the file is invalid (a reload of it must still be
 * asked for, to report its errors): then from a "control_socket: PATH" line. */
static char *find_socket(const char *config_path)
{
    struct config_errors errs = {0};
    struct config *cfg = config_load(config_path, &errs);
    config_errors_free(&errs);
    if (cfg) {
        char *p = cfg->control_socket ? strdup(cfg->control_socket) : NULL;
        config_unref(cfg);
        return p;
    }
    FILE *f = fopen(config_path, "r");
    char line[1024], *found = NULL;
    while (f && !found && fgets(line, sizeof line, f))
        found = scan_line(line);
    if (f)
        fclose(f);
    return found;
}

static int client_connect(const char *path)
{
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sun.sun_path)
        return -1;
    memcpy(sun.sun_path, path, strlen(path) + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sun, sizeof sun) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Reads the answer to the end; returns 0 for "ok", 1 otherwise, printing the message. */
static int client_answer(int fd)
{
    char buf[16384];
    size_t n = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (n < sizeof buf - 1 && poll(&p, 1, CLIENT_TIMEOUT_MS) > 0) {
        ssize_t k = read(fd, buf + n, sizeof buf - 1 - n);
        if (k <= 0)
            break;
        n += (size_t)k;
    }
    buf[n] = '\0';
    bool ok = !strncmp(buf, "ok\n", 3);
    const char *msg = strchr(buf, '\n') ? strchr(buf, '\n') + 1 : "no answer";
    fprintf(ok ? stdout : stderr, "%s%s", msg, n && buf[n - 1] == '\n' ? "" : "\n");
    return ok ? 0 : 1;
}

int control_client(const char *config_path, const char *cmd)
{
    char *path = find_socket(config_path);
    if (!path) {
        fprintf(stderr,
                "moat: %s sets no control_socket: set one (and restart or upgrade), or send "
                "SIGHUP / SIGUSR2\n",
                config_path);
        return 1;
    }
    int fd = client_connect(path);
    if (fd < 0) {
        fprintf(stderr, "moat: control_socket %s: %s (is moat running?)\n", path, strerror(errno));
        free(path);
        return 1;
    }
    free(path);
    char line[MAX_LINE];
    int len = snprintf(line, sizeof line, "%s\n", cmd);
    int rc = write(fd, line, (size_t)len) == len ? client_answer(fd) : 1;
    close(fd);
    return rc;
}
