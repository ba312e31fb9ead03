/*
 * config: YAML in, a validated immutable snapshot out (or every error found).
 *
 * The loader is pure: no exit(), no sockets, no threads; reload uses it too.
 * A snapshot is reference counted: each worker holds one reference to the
 * generation it currently hands to new connections, and each connection holds
 * one to the generation it started on, so a reload never changes the rules
 * under an in-flight request.
 *
 * Durations are stored in milliseconds. Rates are stored as events per second
 * (a double) plus the burst. Every key's default is in its row of the schema
 * (config_schema.c), written once.
 */
#ifndef MOAT_CONFIG_H
#define MOAT_CONFIG_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_MAX_LISTEN 16

/*
 * The TLS defaults, defined once: the schema rows of tls.ciphers, tls.ciphersuites
 * and tls.groups use them, and tls_policy_build() falls back to them when a
 * struct config_tls built by hand leaves the field NULL.
 */
#define CONFIG_TLS_CIPHERS                                                                         \
    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256:"                                   \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-AES256-GCM-SHA384:"                                   \
    "ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-CHACHA20-POLY1305"
#define CONFIG_TLS_CIPHERSUITES                                                                    \
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define CONFIG_TLS_GROUPS "X25519:P-256"

struct config_addr {
    char *text; /* as written, for logs: "0.0.0.0:8443", "[::1]:8443", "unix:/path" */
    char *host; /* "0.0.0.0", "::1"; NULL for unix */
    char *path; /* unix socket path, or NULL */
    uint16_t port;
    unsigned weight; /* upstream servers: "addr weight=N" (1..1000), else 1 */
};

struct config_tls_cert {
    char *cert; /* PEM chain file: leaf first, then intermediates */
    char *key;  /* PEM private key file */
    char *ocsp; /* DER OCSP response file, or NULL */
    int line;   /* YAML line, for later error messages */
    int column; /* YAML column (1-based), ditto */
};

struct config_tls {
    struct config_tls_cert *certs;
    size_t num_certs;
    int min_version;    /* TLS1_2_VERSION or TLS1_3_VERSION (openssl constants) */
    char *ciphers;      /* TLS 1.2 cipher list */
    char *ciphersuites; /* TLS 1.3 suites */
    char *groups;
    bool allow_weak;
    bool tickets_enabled;
    uint64_t ticket_rotate_ms;
    char *ticket_key_file; /* or NULL: keys generated in memory */
    bool session_cache;    /* server-side session cache for TLS 1.2 resumption */
    char *client_ca;       /* PEM CA bundle for mTLS, or NULL */
    bool client_verify;    /* require a client certificate on the https listener */
    bool ocsp_fetch;       /* fetch staples from the AIA responder */
    uint64_t ocsp_refresh_ms;
    char **alpn; /* offered protocols in preference order: "h2", "http/1.1" */
    size_t num_alpn;
};

struct config_hsts {
    uint64_t max_age; /* seconds */
    bool include_subdomains;
    bool preload;
};

struct config_tls_client { /* TLS from moat to Redis or an upstream */
    bool enabled;
    char *ca;          /* PEM bundle; NULL: system default store */
    char *server_name; /* SNI + hostname to verify; NULL: the address host */
    bool verify;
    char *cert; /* optional client certificate */
    char *key;
};

#define CONFIG_MAX_SENTINELS 16

#define CONFIG_MAX_CLUSTER_SEEDS 16

/* How moat finds its Redis; values stored by the redis.mode row. */
enum config_redis_mode { REDIS_MODE_SINGLE = 0, REDIS_MODE_SENTINEL = 1, REDIS_MODE_CLUSTER = 2 };

struct config_redis_cluster {
    struct config_addr seeds[CONFIG_MAX_CLUSTER_SEEDS];
    size_t num_seeds;
    int max_redirects; /* MOVED / ASK followed per command */
};

struct config_redis_sentinel {
    struct config_addr addresses[CONFIG_MAX_SENTINELS];
    size_t num_addresses;
    char *master_name;
    char *username; /* sentinel ACL user, or NULL */
    char *password_file;
    char *password_env;
    struct config_tls_client tls; /* used when tls_set; else the data connection's */
    bool tls_set;                 /* a redis.sentinel.tls: mapping was given */
};

struct config_redis {
    int mode;                   /* enum config_redis_mode */
    struct config_addr address; /* single mode only */
    char *username;
    char *password_file;
    char *password_env;
    struct config_tls_client tls;
    uint64_t timeout_ms;
    uint64_t connect_timeout_ms;
    int database;
    struct config_redis_sentinel sentinel; /* mode sentinel only */
    struct config_redis_cluster cluster;   /* mode cluster only */
};

struct config_sessions {
    char *cookie; /* cookie name, or NULL to not read cookies */
    bool bearer;
    char *key_prefix;
    uint64_t cache_ttl_ms;
    uint64_t negative_cache_ttl_ms;
    size_t cache_size; /* entries per worker */
    uint64_t stale_grace_ms;
    size_t token_min_len;
    size_t token_max_len;
    bool push_revocation; /* CLIENT TRACKING invalidation */
    char *login_url;      /* 302 target for browser routes, or NULL */
};

struct config_identity {
    char **trusted_proxies; /* CIDR strings as written */
    size_t num_trusted_proxies;
    char *signing_key_file;
    char *previous_signing_key_file; /* documented for upstreams during rotation */
    char **strip_response_headers;
    size_t num_strip_response_headers;
    char *referrer_policy; /* NULL: not added */
    bool nosniff;
};

#define UPSTREAM_MAX_SERVERS 256 /* per pool */

enum config_balance { BALANCE_ROUND_ROBIN = 0, BALANCE_LEAST_CONN, BALANCE_TENANT_HASH };
enum config_anonymous { ANON_PER_ROUTE = 0, ANON_PER_IP };

/* upstreams.<name>.health: active checks (upstream/health_check.c). */
struct config_health {
    char *path; /* NULL: no active checks */
    uint64_t interval_ms;
    uint64_t fast_interval_ms; /* while a server is changing state */
    uint64_t timeout_ms;
    size_t rise, fall;
    char *status;               /* "200-399" as written */
    int status_min, status_max; /* parsed from status by validation */
    char *host;                 /* Host header; NULL: the server's address */
};

/* upstreams.<name>.outlier: passive ejection (upstream/upstream_state.c). */
struct config_outlier {
    size_t consecutive_errors; /* 0: off */
    uint64_t base_ejection_ms;
    uint64_t max_ejection_ms;
    size_t max_ejected_percent;
};

/* upstreams.<name>.retry: the retry budget. */
struct config_retry {
    bool idempotent; /* PUT/DELETE may be replayed like GET (opt-in) */
    size_t budget_percent;
    size_t min_retries; /* per window, whatever the share */
    uint64_t window_ms;
};

/* upstreams.<name>.admission: tenant-fair admission (upstream/admission.c). */
struct config_admission {
    size_t max_in_flight;            /* per instance; 0: unlimited (no queue) */
    size_t max_in_flight_per_tenant; /* 0: unlimited */
    char **tenant_limits;            /* "name=N" overrides of the per-tenant limit */
    size_t num_tenant_limits;
    size_t queue_size;
    uint64_t queue_timeout_ms;
    enum config_anonymous anonymous;
};

struct config_upstream {
    char *name;
    uint16_t metrics_slot; /* label slot of name (metrics_registry.h) */
    struct config_addr *servers;
    size_t num_servers;
    enum config_balance balance;
    uint64_t slow_start_ms; /* 0: a re-admitted server gets its full weight at once */
    size_t panic_threshold; /* percent of servers available below which all are used */
    struct config_health health;
    struct config_outlier outlier;
    struct config_retry retry;
    struct config_admission admission;
    struct config_tls_client tls;
    size_t keepalive; /* idle connections kept per server per worker */
    int line;
    int column;
};

struct config_tenant {
    char *name;
    char *upstream;                   /* dedicated upstream name */
    const struct config_upstream *up; /* resolved */
};

enum config_rl_key { RL_KEY_IP = 0, RL_KEY_SESSION, RL_KEY_TENANT, RL_KEY_HEADER };
enum config_rl_scope { RL_SCOPE_LOCAL = 0, RL_SCOPE_GLOBAL };
enum config_rl_on_error { RL_ON_ERROR_LOCAL = 0, RL_ON_ERROR_DENY, RL_ON_ERROR_ALLOW };
enum config_rl_missing { RL_MISSING_IP = 0, RL_MISSING_SKIP, RL_MISSING_DENY };

struct config_rate_rule {
    char *id; /* stable rule name used in Redis keys and logs */
    enum config_rl_key key;
    char *header;    /* for RL_KEY_HEADER */
    double rate;     /* events per second */
    char *rate_text; /* as written: "100/s" */
    uint64_t burst;
    enum config_rl_scope scope;
    enum config_rl_on_error on_store_error;
    enum config_rl_missing missing; /* RL_KEY_HEADER: a request without the header */
    uint16_t metrics_slot;          /* label slot of id (metrics_registry.h) */
};

enum config_auth_mode { AUTH_NONE = 0, AUTH_OPTIONAL, AUTH_REQUIRED };

struct config_route {
    char *id;              /* metrics label; default "<host><path_prefix>" as written */
    uint16_t metrics_slot; /* label slot of id (metrics_registry.h) */
    char *host;            /* exact, "*.suffix", or NULL for any */
    char *path_prefix;     /* "/" matches all */
    enum config_auth_mode auth;
    bool mfa_required;
    bool browser; /* 302 to login instead of 401 */
    char *upstream;
    const struct config_upstream *up; /* resolved */
    char **tenants;                   /* restrict to these tenants; NULL = any */
    size_t num_tenants;
    struct config_rate_rule *rate_limits;
    size_t num_rate_limits;
    bool ratelimit_headers; /* add RateLimit headers to allowed responses */
    int line;
    int column;
};

struct config_limits {
    size_t max_header_bytes;
    size_t max_headers;
    uint64_t max_body_bytes;
    uint64_t header_timeout_ms;
    uint64_t body_timeout_ms;
    uint64_t idle_timeout_ms;
    uint64_t upstream_connect_timeout_ms;
    uint64_t upstream_timeout_ms;
    uint64_t drain_timeout_ms;
    uint64_t tunnel_drain_timeout_ms; /* a WebSocket whose route a reload removed */
    size_t max_connections;           /* total per instance, 0 = unlimited */
    size_t max_connections_per_ip;    /* 0 = unlimited */
    double handshakes_per_ip;         /* new TLS handshakes per IP per second, 0 = off */
    /* memory budget (docs/limits.md) */
    size_t connection_buffer;       /* output watermark per connection and direction */
    uint64_t max_memory;            /* buffered bytes per instance, 0 = unlimited */
    uint64_t max_connection_age_ms; /* 0 = unlimited */
};

/* HTTP/2 on the HTTPS listener (http/h2_conn.c), each defence with its bound. */
struct config_http2 {
    size_t max_concurrent_streams;
    size_t header_table_size;   /* HPACK dynamic table the client may use towards moat */
    size_t initial_window_size; /* per stream, request bodies */
    size_t max_glitches;        /* resets and protocol errors before GOAWAY(ENHANCE_YOUR_CALM) */
    size_t max_streams_per_read;
    uint64_t settings_timeout_ms; /* SETTINGS without ACK */
    uint64_t send_timeout_ms;     /* output pending without progress (zero window) */
};

struct config_ratelimit {
    size_t max_keys; /* bound on the local key table */
    uint64_t redis_timeout_ms;
    uint64_t heartbeat_ms;
    char *key_prefix; /* prefix of the Redis keys */
};

enum syslog_transport { SYSLOG_UDP, SYSLOG_TCP, SYSLOG_TLS };

/* log.syslog: a copy of the access and audit streams to an RFC 5424 receiver
 * (observe/syslog.h, docs/logging.md). */
struct config_syslog {
    struct config_addr address;  /* host:port */
    int transport;               /* enum syslog_transport */
    char *ca_file;               /* TLS: PEM CA bundle; NULL: the system store */
    char *server_name;           /* TLS: the name verified; NULL: the address host */
    char *cert_file;             /* TLS client certificate, or NULL */
    char *key_file;              /* its key */
    int facility;                /* 0..23 (local0 = 16) */
    char *app_name;              /* APP-NAME */
    char *hostname;              /* HOSTNAME; NULL: gethostname() */
    char **streams;              /* "access", "audit" */
    size_t num_streams;          /* 0: none (the section is then only validated) */
    size_t queue;                /* bytes held in memory */
    char *spool_dir;             /* NULL: no disk spool */
    uint64_t spool_max;          /* bytes on disk */
    size_t max_datagram;         /* UDP: longer messages are cut */
    uint64_t connect_timeout_ms; /* TCP connect + TLS handshake */
    uint64_t write_timeout_ms;   /* output pending without progress */
};

struct config_log {
    char *access; /* "stdout", "stderr", a path, or NULL/"off" */
    char *audit;
    char *audit_key_file; /* HMAC key of the audit chain (observe/audit_chain.h); NULL: no chain */
    bool syslog_enabled;  /* a log.syslog section is given */
    struct config_syslog syslog;
    char *level;       /* "info" | "debug" | "warn" | "error" */
    char *format;      /* operational messages: "text" | "json" */
    bool access_query; /* the query string in access-log lines (it may carry secrets) */
};

/* listen.proxy_protocol: a PROXY header first, from these sources (docs/identity.md). */
struct config_proxy_protocol {
    bool enabled;
    char **sources; /* CIDR strings as written */
    size_t num_sources;
};

struct config_listen {
    struct config_addr https[CONFIG_MAX_LISTEN];
    size_t num_https;
    struct config_addr http[CONFIG_MAX_LISTEN];
    size_t num_http;
    struct config_addr admin; /* text NULL: no admin listener */
    char *admin_mode;         /* octal file mode of a unix: admin socket */
    uint16_t redirect_https_port;
    char **acme_challenge_dir; /* unused placeholder kept NULL */
    /* on the https listeners */
    struct config_proxy_protocol proxy_protocol;
};

struct config {
    atomic_int refs;
    char *path;           /* the file it came from */
    int workers;          /* resolved: "auto" -> number of cores */
    char *control_socket; /* unix socket for `moat -s`, or NULL (none) */
    struct config_listen listen;
    struct config_tls tls;
    struct config_hsts hsts;
    bool redis_enabled; /* a redis: section is present */
    struct config_redis redis;
    struct config_sessions sessions;
    struct config_identity identity;
    struct config_upstream *upstreams;
    size_t num_upstreams;
    struct config_tenant *tenants; /* sorted by name (config_find_tenant bisects) */
    size_t num_tenants;
    struct config_route *routes;
    size_t num_routes;
    struct config_limits limits;
    struct config_http2 http2;
    struct config_ratelimit ratelimit;
    struct config_log log;
};

/* Errors collected while loading: each "file:line:column: key.path: message". */
struct config_errors {
    char **msgs;
    size_t count;
    char **warnings; /* also after a successful load: worth an operator's look */
    size_t num_warnings;
};

/*
 * Loads and validates a config file. Returns a snapshot with refs == 1, or NULL
 * with every problem found appended to errs (never stops at the first).
 * Paths inside the file (certificates, keys) are resolved relative to the
 * current directory, as ops run moat from its install directory.
 * check_files: also open certificate/key files and check they match
 * (config_load always does; tests of pure parsing may pass false).
 */
struct config *config_load(const char *path, struct config_errors *errs);
struct config *config_load_string(const char *name, const char *yaml, bool check_files,
                                  struct config_errors *errs);

void config_errors_free(struct config_errors *errs);

struct config *config_ref(struct config *c);
void config_unref(struct config *c);

/* Lookups on a validated snapshot. */
const struct config_upstream *config_find_upstream(const struct config *c, const char *name);
const struct config_tenant *config_find_tenant(const struct config *c, const char *name,
                                               size_t len);

/* Parses "10s", "250ms", "5m", "1h" into milliseconds; -1 on error. Exposed for tests. */
int config_parse_duration(const char *s, uint64_t *ms);
/* Parses "100/s", "10/m", "5/h" into events per second; -1 on error. */
int config_parse_rate(const char *s, double *per_sec);
/*
 * Parses "host:port", "[v6]:port", "unix:/path"; -1 on error (out untouched).
 * On success out owns new strings: release them with config_addr_clear().
 */
int config_parse_addr(const char *s, struct config_addr *out);
/* Frees the strings of an address and zeroes it. */
void config_addr_clear(struct config_addr *a);

#endif
