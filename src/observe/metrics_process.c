#include "observe/metrics_process.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <openssl/crypto.h>

#include "observe/metrics.h"

/* The fields of /proc/self/stat moat reports. */
struct proc_stat {
    unsigned long long utime, stime, starttime; /* clock ticks */
    unsigned long long vsize;                   /* bytes */
    long long rss;                              /* pages */
};

/* Parses /proc/self/stat; the command name may hold spaces and parentheses. */
static int read_stat(struct proc_stat *st)
{
    char buf[1024];
    FILE *f = fopen("/proc/self/stat", "r");
    if (!f)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    /* after ") ": state(3) ... utime(14) stime(15) ... starttime(22) vsize(23) rss(24) */
    if (!p || sscanf(p + 2,
                     "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d "
                     "%*d %llu %llu %lld",
                     &st->utime, &st->stime, &st->starttime, &st->vsize, &st->rss) != 5)
        return -1;
    return 0;
}

static unsigned long long boot_time(void)
{
    char line[256];
    unsigned long long bt = 0;
    FILE *f = fopen("/proc/stat", "r");
    if (!f)
        return 0;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "btime %llu", &bt) == 1)
            break;
    fclose(f);
    return bt;
}

uint64_t metrics_process_start_time(void)
{
    static uint64_t cached; /* main thread only */
    struct proc_stat st;
    long hz = sysconf(_SC_CLK_TCK);
    if (!cached && hz > 0 && read_stat(&st) == 0)
        cached = boot_time() + st.starttime / (unsigned long long)hz;
    return cached;
}

static long open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    long n = 0;
    if (!d)
        return -1;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (e->d_name[0] != '.')
            n++;
    closedir(d);
    return n - 1; /* the directory's own descriptor */
}

static void gauge(struct evbuffer *out, const char *name, const char *type, const char *help,
                  double v)
{
    metrics_family(out, name, type, help);
    evbuffer_add_printf(out, "%s %.17g\n", name, v);
}

static void render_build_info(struct evbuffer *out)
{
    metrics_family(out, "moat_build_info", "gauge",
                   "1, labelled with moat's version and the library versions it runs with");
    evbuffer_add_printf(out, "moat_build_info{version=\"");
    metrics_label_value(out, MOAT_VERSION);
    evbuffer_add_printf(out, "\",openssl=\"");
    metrics_label_value(out, OpenSSL_version(OPENSSL_VERSION_STRING));
    evbuffer_add_printf(out, "\",libevent=\"");
    metrics_label_value(out, event_get_version());
    evbuffer_add_printf(out, "\"} 1\n");
}

void metrics_process_render(struct evbuffer *out)
{
    render_build_info(out);
    struct proc_stat st;
    long hz = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
    if (hz > 0 && page > 0 && read_stat(&st) == 0) {
        gauge(out, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent",
              (double)(st.utime + st.stime) / (double)hz);
        gauge(out, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes",
              (double)st.rss * (double)page);
        gauge(out, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes",
              (double)st.vsize);
        gauge(out, "process_start_time_seconds", "gauge",
              "Start time of the process since unix epoch in seconds",
              (double)metrics_process_start_time());
    }
    long fds = open_fds();
    if (fds >= 0)
        gauge(out, "process_open_fds", "gauge", "Number of open file descriptors", (double)fds);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        gauge(out, "process_max_fds", "gauge", "Maximum number of open file descriptors",
              rl.rlim_cur == RLIM_INFINITY ? -1.0 : (double)rl.rlim_cur);
}
