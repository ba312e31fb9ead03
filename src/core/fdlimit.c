#include "core/fdlimit.h"

#include <errno.h>
#include <string.h>
#include <sys/resource.h>

#include "config/config.h"
#include "observe/log.h"

/* stdio, log and audit files, syslog, the main loop, signals, admin, OCSP, OpenSSL. */
#define FD_BASE 64
/* Per worker: event loop, mailbox, Redis (sessions, revocation) and some slack. */
#define FD_PER_WORKER 8
/* Fewer connections than this fit: worth a warning. */
#define FD_FEW_CONNECTIONS 100
/* The kernel's default fs.nr_open: a soft limit above it is refused even for root. */
#define FD_NR_OPEN_DEFAULT (1u << 20)

/* Everything but the client connections: the process, and per worker its loop, Redis,
 * listening sockets and the upstream keep-alive connections it may park. */
static uint64_t fixed_need(const struct config *cfg)
{
    uint64_t idle = 0;
    for (size_t i = 0; i < cfg->num_upstreams; i++)
        idle += (uint64_t)cfg->upstreams[i].keepalive * cfg->upstreams[i].num_servers;
    uint64_t workers = cfg->workers > 0 ? (uint64_t)cfg->workers : 1;
    return FD_BASE +
           workers * (FD_PER_WORKER + cfg->listen.num_https + cfg->listen.num_http + idle);
}

uint64_t fdlimit_need(const struct config *cfg)
{
    if (cfg->limits.max_connections == 0)
        return 0;
    /* a client socket and, while proxied, an upstream one per connection */
    return fixed_need(cfg) + 2 * (uint64_t)cfg->limits.max_connections;
}

void fdlimit_apply(const struct config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return;
    uint64_t need = fdlimit_need(cfg);
    uint64_t hard = rl.rlim_max == RLIM_INFINITY ? FD_NR_OPEN_DEFAULT : rl.rlim_max;
    uint64_t want = need == 0 || need > hard ? hard : need;
    uint64_t was = rl.rlim_cur;
    if (rl.rlim_cur != RLIM_INFINITY && want > rl.rlim_cur) {
        rl.rlim_cur = (rlim_t)want;
        if (setrlimit(RLIMIT_NOFILE, &rl) < 0)
            log_msg(LOG_WARN, "RLIMIT_NOFILE: cannot raise the soft limit from %llu to %llu: %s",
                    (unsigned long long)was, (unsigned long long)want, strerror(errno));
        else
            log_msg(LOG_INFO,
                    "RLIMIT_NOFILE: soft limit raised from %llu to %llu (hard limit "
                    "%llu)",
                    (unsigned long long)was, (unsigned long long)want, (unsigned long long)hard);
    }
    if (need > hard) {
        log_msg(LOG_WARN,
                "RLIMIT_NOFILE: the hard limit %llu is below the %llu file descriptors this "
                "configuration needs (limits.max_connections %zu: a client and an upstream "
                "socket each, plus listeners, pools and logs); connections past the limit wait "
                "in the backlog: raise the hard limit (ulimit -Hn, systemd LimitNOFILE=) or lower "
                "limits.max_connections",
                (unsigned long long)hard, (unsigned long long)need, cfg->limits.max_connections);
    } else if (need == 0 && getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        uint64_t cur = rl.rlim_cur == RLIM_INFINITY ? hard : rl.rlim_cur;
        uint64_t fixed = fixed_need(cfg), fit = cur > fixed ? (cur - fixed) / 2 : 0;
        log_msg(fit < FD_FEW_CONNECTIONS ? LOG_WARN : LOG_INFO,
                "RLIMIT_NOFILE: %llu file descriptors (hard limit %llu); limits.max_connections "
                "is unlimited: about %llu connections fit%s",
                (unsigned long long)cur, (unsigned long long)hard, (unsigned long long)fit,
                fit < FD_FEW_CONNECTIONS ? ": raise the hard limit (ulimit -Hn, LimitNOFILE=)"
                                         : "");
    }
}
