#include "policy/connlimit.h"

#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "policy/ratelimit.h"
#include "core/snapshot.h"

#define STRIPES 64
#define BUCKETS_PER_STRIPE 256

struct ip_count {
    struct ip_count *next;
    uint8_t ip[16];
    unsigned count;
};

struct stripe {
    pthread_mutex_t lock;
    struct ip_count *buckets[BUCKETS_PER_STRIPE];
};

static struct stripe stripes[STRIPES];
static atomic_size_t total;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init_stripes(void)
{
    for (int i = 0; i < STRIPES; i++)
        pthread_mutex_init(&stripes[i].lock, NULL);
}

/* The client address as 16 bytes; IPv4 and IPv4-mapped IPv6 share a key. */
static void ip_key(const struct sockaddr *sa, uint8_t out[16])
{
    memset(out, 0, 16);
    if (sa->sa_family == AF_INET) {
        out[10] = out[11] = 0xff;
        memcpy(out + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
    } else if (sa->sa_family == AF_INET6) {
        memcpy(out, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
    }
}

static uint32_t ip_hash(const uint8_t ip[16])
{
    uint32_t h = 2166136261u; /* FNV-1a: the key is the peer's address, not attacker-chosen bytes */
    for (int i = 0; i < 16; i++)
        h = (h ^ ip[i]) * 16777619u;
    return h;
}

static struct ip_count **find(struct stripe *s, uint32_t h, const uint8_t ip[16])
{
    struct ip_count **pp = &s->buckets[(h / STRIPES) % BUCKETS_PER_STRIPE];
    while (*pp && memcmp((*pp)->ip, ip, 16) != 0)
        pp = &(*pp)->next;
    return pp;
}

static bool admit_ip(const struct sockaddr *sa, size_t max)
{
    uint8_t ip[16];
    ip_key(sa, ip);
    uint32_t h = ip_hash(ip);
    struct stripe *s = &stripes[h % STRIPES];
    bool ok = true;
    pthread_mutex_lock(&s->lock);
    struct ip_count **pp = find(s, h, ip);
    if (!*pp) {
        *pp = calloc(1, sizeof **pp);
        if (*pp)
            memcpy((*pp)->ip, ip, 16);
    }
    if (!*pp || (*pp)->count >= max)
        ok = false;
    else
        (*pp)->count++;
    if (*pp && (*pp)->count == 0) {
        struct ip_count *dead = *pp;
        *pp = dead->next;
        free(dead);
    }
    pthread_mutex_unlock(&s->lock);
    return ok;
}

static void release_ip(const struct sockaddr *sa)
{
    uint8_t ip[16];
    ip_key(sa, ip);
    uint32_t h = ip_hash(ip);
    struct stripe *s = &stripes[h % STRIPES];
    pthread_mutex_lock(&s->lock);
    struct ip_count **pp = find(s, h, ip);
    if (*pp && (*pp)->count > 0 && --(*pp)->count == 0) {
        struct ip_count *dead = *pp;
        *pp = dead->next;
        free(dead);
    }
    pthread_mutex_unlock(&s->lock);
}

/* New TLS handshakes per client IP per second, so a handshake flood cannot burn the CPU. */
static bool admit_handshake(const struct sockaddr *sa, double rate)
{
    uint8_t ip[16];
    ip_key(sa, ip);
    uint64_t burst = rate < 1 ? 1 : (uint64_t)rate;
    return ratelimit_local("@handshake", ip, sizeof ip, rate, burst).allowed;
}

static bool admit_total(const struct config_limits *lim)
{
    size_t now = atomic_fetch_add_explicit(&total, 1, memory_order_relaxed) + 1;
    if (lim->max_connections && now > lim->max_connections) {
        atomic_fetch_sub_explicit(&total, 1, memory_order_relaxed);
        return false;
    }
    return true;
}

/* The two caps, shared by every listener: one count per open client socket. */
static const char *admit_counts(const struct config_limits *lim, const struct sockaddr *sa)
{
    if (!admit_total(lim))
        return "max_connections";
    /* Counted even without a per-IP cap: connlimit_release() always uncounts, and a
     * reload may set the cap while connections admitted without it are still open. */
    if (!admit_ip(sa, lim->max_connections_per_ip ? lim->max_connections_per_ip : SIZE_MAX)) {
        atomic_fetch_sub_explicit(&total, 1, memory_order_relaxed);
        return "max_connections_per_ip";
    }
    return NULL;
}

const char *connlimit_admit(const struct config_limits *lim, const struct sockaddr *sa)
{
    pthread_once(&once, init_stripes);
    if (lim->handshakes_per_ip > 0 && !admit_handshake(sa, lim->handshakes_per_ip))
        return "handshakes_per_ip";
    return admit_counts(lim, sa);
}

const char *connlimit_admit_plain(const struct config_limits *lim, const struct sockaddr *sa)
{
    pthread_once(&once, init_stripes);
    return admit_counts(lim, sa);
}

void connlimit_release(const struct sockaddr *sa)
{
    pthread_once(&once, init_stripes);
    atomic_fetch_sub_explicit(&total, 1, memory_order_relaxed);
    release_ip(sa);
}

bool connlimit_reserve(const struct config_limits *lim)
{
    pthread_once(&once, init_stripes);
    return admit_total(lim);
}

const char *connlimit_admit_reserved(const struct config_limits *lim, const struct sockaddr *sa)
{
    pthread_once(&once, init_stripes);
    if (lim->handshakes_per_ip > 0 && !admit_handshake(sa, lim->handshakes_per_ip))
        return "handshakes_per_ip";
    if (!admit_ip(sa, lim->max_connections_per_ip ? lim->max_connections_per_ip : SIZE_MAX))
        return "max_connections_per_ip";
    return NULL;
}

void connlimit_unreserve(void)
{
    pthread_once(&once, init_stripes);
    atomic_fetch_sub_explicit(&total, 1, memory_order_relaxed);
}
