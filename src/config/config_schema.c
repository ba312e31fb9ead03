/*
 * config_schema: the key tables (config_schema.h). A default is written once,
 * in its row; the TLS ones are config.h's CONFIG_TLS_*, which tls.c shares.
 */
#include "config/config_schema.h"

#include <math.h>
#include <stdio.h>

#include <openssl/ssl.h>

#include "config/config_value.h"
#include "http/http1.h"

#define OFF(type, field) offsetof(type, field)

#define CK_END                                                                                     \
    {                                                                                              \
        .name = NULL                                                                               \
    }

static const struct config_enum tls_versions[] = {{"TLSv1", TLS1_VERSION},
                                                  {"TLSv1.1", TLS1_1_VERSION},
                                                  {"TLSv1.2", TLS1_2_VERSION},
                                                  {"TLSv1.3", TLS1_3_VERSION},
                                                  {NULL, 0}};
static const struct config_enum balances[] = {{"round_robin", BALANCE_ROUND_ROBIN},
                                              {"least_conn", BALANCE_LEAST_CONN},
                                              {"tenant_hash", BALANCE_TENANT_HASH},
                                              {NULL, 0}};
static const struct config_enum anonymous_keys[] = {
    {"route", ANON_PER_ROUTE}, {"ip", ANON_PER_IP}, {NULL, 0}};
static const struct config_enum auth_modes[] = {
    {"none", AUTH_NONE}, {"optional", AUTH_OPTIONAL}, {"required", AUTH_REQUIRED}, {NULL, 0}};
static const struct config_enum mfa_modes[] = {{"required", 1}, {"optional", 0}, {NULL, 0}};
static const struct config_enum rl_keys[] = {{"ip", RL_KEY_IP},
                                             {"session", RL_KEY_SESSION},
                                             {"tenant", RL_KEY_TENANT},
                                             {"header:", RL_KEY_HEADER},
                                             {NULL, 0}};
static const struct config_enum rl_scopes[] = {
    {"local", RL_SCOPE_LOCAL}, {"global", RL_SCOPE_GLOBAL}, {NULL, 0}};
static const struct config_enum rl_on_error[] = {{"local", RL_ON_ERROR_LOCAL},
                                                 {"deny", RL_ON_ERROR_DENY},
                                                 {"allow", RL_ON_ERROR_ALLOW},
                                                 {NULL, 0}};
static const struct config_enum rl_missing[] = {
    {"ip", RL_MISSING_IP}, {"skip", RL_MISSING_SKIP}, {"deny", RL_MISSING_DENY}, {NULL, 0}};
static const struct config_enum log_levels[] = {
    {"debug", 0}, {"info", 0}, {"warn", 0}, {"error", 0}, {NULL, 0}};
static const struct config_enum log_formats[] = {{"text", 0}, {"json", 1}, {NULL, 0}};
static const struct config_enum referrer_policies[] = {{"no-referrer", 0},
                                                       {"no-referrer-when-downgrade", 0},
                                                       {"origin", 0},
                                                       {"origin-when-cross-origin", 0},
                                                       {"same-origin", 0},
                                                       {"strict-origin", 0},
                                                       {"strict-origin-when-cross-origin", 0},
                                                       {"unsafe-url", 0},
                                                       {NULL, 0}};

#define PP_ struct config_proxy_protocol
static const struct config_key proxy_protocol_keys[] = {
    {"enabled", CK_BOOL, OFF(PP_, enabled), .def = "false"},
    {"sources", CK_STRS, OFF(PP_, sources), OFF(PP_, num_sources), .flags = CK_NULL,
     .check = config_check_cidr},
    CK_END};
#undef PP_

#define L_ struct config_listen
static const struct config_key listen_keys[] = {
    {"https", CK_ADDR_ARRAY, OFF(L_, https), OFF(L_, num_https), .max = CONFIG_MAX_LISTEN,
     .def = "0.0.0.0:8443"},
    {"http", CK_ADDR_ARRAY, OFF(L_, http), OFF(L_, num_http), .max = CONFIG_MAX_LISTEN,
     .def = "0.0.0.0:8080"},
    {"admin", CK_ADDR, OFF(L_, admin), .def = "127.0.0.1:9901", .flags = CK_NULL},
    {"admin_mode", CK_STR, OFF(L_, admin_mode), .check = config_check_socket_mode, .def = "0600"},
    {"redirect_https_port", CK_INT, OFF(L_, redirect_https_port), .min = 1, .max = 65535,
     .def = "443"},
    {"proxy_protocol", CK_SECTION, OFF(L_, proxy_protocol), .keys = proxy_protocol_keys},
    CK_END};
#undef L_

#define T_ struct config_tls
#define C_ struct config_tls_cert
static const struct config_key cert_keys[] = {
    {"cert", CK_STR, OFF(C_, cert), .flags = CK_REQUIRED | CK_NONEMPTY | CK_PATH,
     .check = config_check_no_controls},
    {"key", CK_STR, OFF(C_, key), .flags = CK_REQUIRED | CK_NONEMPTY | CK_PATH,
     .check = config_check_no_controls},
    {"ocsp", CK_STR, OFF(C_, ocsp), .flags = CK_NULL | CK_NONEMPTY | CK_PATH,
     .check = config_check_no_controls},
    CK_END};
static const struct config_key tickets_keys[] = {
    {"enabled", CK_BOOL, OFF(T_, tickets_enabled), .def = "true"},
    {"rotate", CK_DURATION, OFF(T_, ticket_rotate_ms), .min = MS_M, .max = 7 * MS_D, .def = "12h"},
    {"key_file", CK_STR, OFF(T_, ticket_key_file), .flags = CK_NULL | CK_NONEMPTY | CK_PATH,
     .check = config_check_no_controls},
    CK_END};
static const struct config_key tls_keys[] = {
    {"certificates", CK_LIST, OFF(T_, certs), OFF(T_, num_certs), .keys = cert_keys,
     .elem_size = sizeof(C_), .pos_off = OFF(C_, line), .flags = CK_NULL | CK_POS},
    {"min_version", CK_ENUM, OFF(T_, min_version), .choices = tls_versions, .def = "TLSv1.2"},
    {"ciphers", CK_STR, OFF(T_, ciphers), .flags = CK_NONEMPTY, .check = config_check_no_controls,
     .def = CONFIG_TLS_CIPHERS},
    {"ciphersuites", CK_STR, OFF(T_, ciphersuites), .flags = CK_NONEMPTY,
     .check = config_check_no_controls, .def = CONFIG_TLS_CIPHERSUITES},
    {"groups", CK_STR, OFF(T_, groups), .flags = CK_NONEMPTY, .check = config_check_no_controls,
     .def = CONFIG_TLS_GROUPS},
    {"allow_weak", CK_BOOL, OFF(T_, allow_weak), .def = "false"},
    {"session_tickets", CK_SECTION, 0, .keys = tickets_keys},
    {"session_cache", CK_BOOL, OFF(T_, session_cache), .def = "true"},
    {"client_ca", CK_STR, OFF(T_, client_ca), .flags = CK_NULL | CK_NONEMPTY | CK_PATH,
     .check = config_check_no_controls},
    {"client_verify", CK_BOOL, OFF(T_, client_verify), .def = "false"},
    {"ocsp_fetch", CK_BOOL, OFF(T_, ocsp_fetch), .def = "false"},
    {"ocsp_refresh", CK_DURATION, OFF(T_, ocsp_refresh_ms), .min = MS_M, .max = 7 * MS_D,
     .def = "1h"},
    {"alpn", CK_STRS, OFF(T_, alpn), OFF(T_, num_alpn), .flags = CK_NONEMPTY,
     .check = config_check_alpn, .def = "h2,http/1.1"},
    CK_END};
#undef T_
#undef C_

#define H_ struct config_hsts
static const struct config_key hsts_keys[] = {
    {"max_age", CK_U64, OFF(H_, max_age), .min = 0, .max = 2 * 31536000, .def = "31536000"},
    {"include_subdomains", CK_BOOL, OFF(H_, include_subdomains), .def = "true"},
    {"preload", CK_BOOL, OFF(H_, preload), .def = "false"},
    CK_END};
#undef H_

#define TC_ struct config_tls_client
static const struct config_key tls_client_keys[] = {
    {"enabled", CK_BOOL, OFF(TC_, enabled), .def = "false"},
    {"ca", CK_STR, OFF(TC_, ca), .flags = CK_NULL | CK_NONEMPTY | CK_PATH,
     .check = config_check_no_controls},
    {"server_name", CK_STR, OFF(TC_, server_name), .flags = CK_NULL,
     .check = config_check_hostname},
    {"verify", CK_BOOL, OFF(TC_, verify), .def = "true"},
    {"cert", CK_STR, OFF(TC_, cert), .flags = CK_NULL | CK_NONEMPTY | CK_PATH,
     .check = config_check_no_controls},
    {"key", CK_STR, OFF(TC_, key), .flags = CK_NULL | CK_NONEMPTY | CK_PATH,
     .check = config_check_no_controls},
    CK_END};
#undef TC_

static const struct config_enum redis_modes[] = {{"single", REDIS_MODE_SINGLE},
                                                 {"sentinel", REDIS_MODE_SENTINEL},
                                                 {"cluster", REDIS_MODE_CLUSTER},
                                                 {NULL, 0}};

#define RC_ struct config_redis_cluster
static const struct config_key redis_cluster_keys[] = {
    {"seeds", CK_ADDR_ARRAY, OFF(RC_, seeds), OFF(RC_, num_seeds), .max = CONFIG_MAX_CLUSTER_SEEDS},
    {"max_redirects", CK_INT, OFF(RC_, max_redirects), .min = 1, .max = 16, .def = "3"},
    CK_END};
#undef RC_

#define RS_ struct config_redis_sentinel
static const struct config_key redis_sentinel_keys[] = {
    {"addresses", CK_ADDR_ARRAY, OFF(RS_, addresses), OFF(RS_, num_addresses),
     .max = CONFIG_MAX_SENTINELS},
    {"master_name", CK_STR, OFF(RS_, master_name), .flags = CK_NULL, .check = config_check_name},
    {"username", CK_STR, OFF(RS_, username), .flags = CK_NULL | CK_NONEMPTY,
     .check = config_check_no_controls},
    {"password", CK_REJECT, 0,
     .reject = "inline passwords are not accepted: use password_file or password_env"},
    {"password_file", CK_STR, OFF(RS_, password_file), .flags = CK_NULL | CK_NONEMPTY | CK_PATH,
     .check = config_check_no_controls},
    {"password_env", CK_STR, OFF(RS_, password_env), .flags = CK_NULL,
     .check = config_check_env_name},
    {"tls", CK_SECTION, OFF(RS_, tls), OFF(RS_, tls_set), .keys = tls_client_keys,
     .flags = CK_PRESENT},
    CK_END};
#undef RS_

#define R_ struct config_redis
static const struct config_key redis_keys[] = {
    {"mode", CK_ENUM, OFF(R_, mode), .choices = redis_modes, .def = "single"},
    {"address", CK_ADDR, OFF(R_, address), .def = "127.0.0.1:6379"},
    {"username", CK_STR, OFF(R_, username), .flags = CK_NULL | CK_NONEMPTY,
     .check = config_check_no_controls},
    {"password", CK_REJECT, 0,
     .reject = "inline passwords are not accepted: use password_file or password_env"},
    {"password_file", CK_STR, OFF(R_, password_file), .flags = CK_NULL | CK_NONEMPTY | CK_PATH,
     .check = config_check_no_controls},
    {"password_env", CK_STR, OFF(R_, password_env), .flags = CK_NULL,
     .check = config_check_env_name},
    {"tls", CK_SECTION, OFF(R_, tls), .keys = tls_client_keys},
    {"timeout", CK_DURATION, OFF(R_, timeout_ms), .min = 1, .max = MS_M, .def = "250ms"},
    {"connect_timeout", CK_DURATION, OFF(R_, connect_timeout_ms), .min = 1, .max = MS_M,
     .def = "1s"},
    {"database", CK_INT, OFF(R_, database), .min = 0, .max = 1023, .def = "0"},
    {"sentinel", CK_SECTION, OFF(R_, sentinel), .keys = redis_sentinel_keys},
    {"cluster", CK_SECTION, OFF(R_, cluster), .keys = redis_cluster_keys},
    CK_END};
#undef R_

#define S_ struct config_sessions
static const struct config_key sessions_keys[] = {
    {"cookie", CK_STR, OFF(S_, cookie), .flags = CK_NULL, .check = config_check_header_name,
     .def = "session"},
    {"bearer", CK_BOOL, OFF(S_, bearer), .def = "true"},
    {"key_prefix", CK_STR, OFF(S_, key_prefix), .check = config_check_key_prefix,
     .def = "moat:sess:"},
    {"cache_ttl", CK_DURATION, OFF(S_, cache_ttl_ms), .min = 0, .max = MS_H, .def = "5s"},
    {"negative_cache_ttl", CK_DURATION, OFF(S_, negative_cache_ttl_ms), .min = 0, .max = MS_H,
     .def = "1s"},
    {"cache_size", CK_SIZE, OFF(S_, cache_size), .min = 0, .max = 10000000, .def = "10000"},
    {"stale_grace", CK_DURATION, OFF(S_, stale_grace_ms), .min = 0, .max = MS_H, .def = "0s"},
    {"token_min_len", CK_SIZE, OFF(S_, token_min_len), .min = 1, .max = 4096, .def = "16"},
    {"token_max_len", CK_SIZE, OFF(S_, token_max_len), .min = 1, .max = 4096, .def = "256"},
    {"push_revocation", CK_BOOL, OFF(S_, push_revocation), .def = "false"},
    {"login_url", CK_STR, OFF(S_, login_url), .flags = CK_NULL, .check = config_check_login_url},
    CK_END};
#undef S_

#define I_ struct config_identity
static const struct config_key identity_keys[] = {
    {"trusted_proxies", CK_STRS, OFF(I_, trusted_proxies), OFF(I_, num_trusted_proxies),
     .flags = CK_NULL, .check = config_check_cidr},
    {"signing_key_file", CK_STR, OFF(I_, signing_key_file),
     .flags = CK_NULL | CK_NONEMPTY | CK_PATH, .check = config_check_no_controls},
    {"previous_signing_key_file", CK_STR, OFF(I_, previous_signing_key_file),
     .flags = CK_NULL | CK_NONEMPTY | CK_PATH, .check = config_check_no_controls},
    {"strip_response_headers", CK_STRS, OFF(I_, strip_response_headers),
     OFF(I_, num_strip_response_headers), .flags = CK_NULL, .check = config_check_header_pattern,
     .def = "X-Moat-*,Server,X-Powered-By"},
    {"referrer_policy", CK_STR, OFF(I_, referrer_policy), .flags = CK_NULL,
     .choices = referrer_policies, .def = "strict-origin-when-cross-origin"},
    {"nosniff", CK_BOOL, OFF(I_, nosniff), .def = "true"},
    CK_END};
#undef I_

#define U_ struct config_upstream
#define HC_ struct config_health
static const struct config_key health_keys[] = {
    {"path", CK_STR, OFF(HC_, path), .flags = CK_NULL, .check = config_check_path},
    {"interval", CK_DURATION, OFF(HC_, interval_ms), .min = 100, .max = MS_H, .def = "2s"},
    {"fast_interval", CK_DURATION, OFF(HC_, fast_interval_ms), .min = 100, .max = MS_H,
     .def = "500ms"},
    {"timeout", CK_DURATION, OFF(HC_, timeout_ms), .min = 10, .max = MS_M, .def = "1s"},
    {"rise", CK_SIZE, OFF(HC_, rise), .min = 1, .max = 100, .def = "2"},
    {"fall", CK_SIZE, OFF(HC_, fall), .min = 1, .max = 100, .def = "3"},
    {"status", CK_STR, OFF(HC_, status), .check = config_check_status_range, .def = "200-399"},
    {"host", CK_STR, OFF(HC_, host), .flags = CK_NULL, .check = config_check_hostname},
    CK_END};
#undef HC_
#define OD_ struct config_outlier
static const struct config_key outlier_keys[] = {
    {"consecutive_errors", CK_SIZE, OFF(OD_, consecutive_errors), .min = 0, .max = 1000,
     .def = "5"},
    {"base_ejection", CK_DURATION, OFF(OD_, base_ejection_ms), .min = 100, .max = MS_H,
     .def = "30s"},
    {"max_ejection", CK_DURATION, OFF(OD_, max_ejection_ms), .min = 100, .max = MS_D,
     .def = "300s"},
    {"max_ejected_percent", CK_SIZE, OFF(OD_, max_ejected_percent), .min = 0, .max = 100,
     .def = "50"},
    CK_END};
#undef OD_
#define RB_ struct config_retry
static const struct config_key retry_keys[] = {
    {"budget_percent", CK_SIZE, OFF(RB_, budget_percent), .min = 0, .max = 100, .def = "20"},
    {"min_retries", CK_SIZE, OFF(RB_, min_retries), .min = 0, .max = 1000000, .def = "10"},
    {"window", CK_DURATION, OFF(RB_, window_ms), .min = MS_S, .max = MS_H, .def = "10s"},
    CK_END};
#undef RB_
#define AD_ struct config_admission
static const struct config_key admission_keys[] = {
    {"max_in_flight", CK_SIZE, OFF(AD_, max_in_flight), .min = 0, .max = 1000000, .def = "0"},
    {"max_in_flight_per_tenant", CK_SIZE, OFF(AD_, max_in_flight_per_tenant), .min = 0,
     .max = 1000000, .def = "0"},
    {"tenant_limits", CK_STRS, OFF(AD_, tenant_limits), OFF(AD_, num_tenant_limits),
     .check = config_check_tenant_limit},
    {"queue_size", CK_SIZE, OFF(AD_, queue_size), .min = 0, .max = 1000000, .def = "1000"},
    {"queue_timeout", CK_DURATION, OFF(AD_, queue_timeout_ms), .min = 1, .max = MS_M, .def = "5s"},
    {"anonymous", CK_ENUM, OFF(AD_, anonymous), .choices = anonymous_keys, .def = "route"},
    CK_END};
#undef AD_
static const struct config_key upstream_keys[] = {
    {"servers", CK_ADDRS, OFF(U_, servers), OFF(U_, num_servers),
     .flags = CK_REQUIRED | CK_NONEMPTY | CK_WEIGHT},
    {"balance", CK_ENUM, OFF(U_, balance), .choices = balances, .def = "round_robin"},
    {"slow_start", CK_DURATION, OFF(U_, slow_start_ms), .min = 0, .max = MS_H, .def = "0s"},
    {"panic_threshold", CK_SIZE, OFF(U_, panic_threshold), .min = 0, .max = 100, .def = "50"},
    {"health", CK_SECTION, OFF(U_, health), .keys = health_keys},
    {"outlier", CK_SECTION, OFF(U_, outlier), .keys = outlier_keys},
    {"retry", CK_SECTION, OFF(U_, retry), .keys = retry_keys},
    {"admission", CK_SECTION, OFF(U_, admission), .keys = admission_keys},
    {"tls", CK_SECTION, OFF(U_, tls), .keys = tls_client_keys},
    {"keepalive", CK_SIZE, OFF(U_, keepalive), .min = 0, .max = 10000, .def = "32"},
    {"retry_idempotent", CK_BOOL, OFF(U_, retry.idempotent), .def = "false"},
    CK_END};
#undef U_

#define TN_ struct config_tenant
static const struct config_key tenant_keys[] = {
    {"upstream", CK_STR, OFF(TN_, upstream), .flags = CK_REQUIRED, .check = config_check_name},
    CK_END};
#undef TN_

#define RR_ struct config_rate_rule
static void rate_rule_finish(struct config_loader *L, void *elem, size_t index, const char *path)
{
    struct config_rate_rule *r = elem;
    if (r->burst == 0) { /* not given: one second's worth, at least one request */
        double b = ceil(r->rate);
        r->burst = b < 1 ? 1 : (uint64_t)b;
    }
}
static const struct config_key rate_rule_keys[] = {
    {"key", CK_ENUM, OFF(RR_, key), OFF(RR_, header), .choices = rl_keys,
     .flags = CK_REQUIRED | CK_ARG, .check = config_check_header_name},
    {"rate", CK_RATE, OFF(RR_, rate), OFF(RR_, rate_text), .max = 1000000000,
     .flags = CK_REQUIRED | CK_TEXT},
    {"burst", CK_U64, OFF(RR_, burst), .min = 1, .max = 1000000000},
    {"scope", CK_ENUM, OFF(RR_, scope), .choices = rl_scopes, .def = "local"},
    {"on_store_error", CK_ENUM, OFF(RR_, on_store_error), .choices = rl_on_error, .def = "local"},
    {"missing", CK_ENUM, OFF(RR_, missing), .choices = rl_missing, .def = "ip"},
    {"id", CK_STR, OFF(RR_, id), .flags = CK_NULL, .check = config_check_name},
    CK_END};
#undef RR_

#define RT_ struct config_route
static void route_finish(struct config_loader *L, void *elem, size_t index, const char *path)
{
    struct config_route *r = elem;
    for (size_t j = 0; j < r->num_rate_limits; j++) {
        char id[48];
        if (r->rate_limits[j].id)
            continue;
        snprintf(id, sizeof id, "r%zu_%zu", index, j);
        r->rate_limits[j].id = config_loader_strdup(L, id);
    }
    if (!r->id) { /* the metrics label: the match as written */
        char id[1024];
        snprintf(id, sizeof id, "%s%s", r->host ? r->host : "",
                 r->path_prefix ? r->path_prefix : "/");
        r->id = config_loader_strdup(L, id);
    }
}
static const struct config_key match_keys[] = {
    {"host", CK_STR, OFF(RT_, host), .flags = CK_NULL, .check = config_check_host_pattern},
    {"path_prefix", CK_STR, OFF(RT_, path_prefix), .check = config_check_path_prefix, .def = "/"},
    CK_END};
static const struct config_key route_keys[] = {
    {"match", CK_SECTION, 0, .keys = match_keys},
    {"id", CK_STR, OFF(RT_, id), .flags = CK_NULL, .check = config_check_name},
    {"auth", CK_ENUM, OFF(RT_, auth), .choices = auth_modes, .def = "required"},
    {"mfa", CK_ENUM, OFF(RT_, mfa_required), .choices = mfa_modes, .flags = CK_ENUM_BOOL,
     .def = "optional"},
    {"browser", CK_BOOL, OFF(RT_, browser), .def = "false"},
    {"upstream", CK_STR, OFF(RT_, upstream), .flags = CK_REQUIRED, .check = config_check_name},
    {"tenants", CK_STRS, OFF(RT_, tenants), OFF(RT_, num_tenants), .flags = CK_NONEMPTY,
     .check = config_check_tenant_name},
    {"rate_limit", CK_LIST, OFF(RT_, rate_limits), OFF(RT_, num_rate_limits),
     .keys = rate_rule_keys, .elem_size = sizeof(struct config_rate_rule),
     .finish = rate_rule_finish, .flags = CK_NULL},
    {"ratelimit_headers", CK_BOOL, OFF(RT_, ratelimit_headers), .def = "false"},
    CK_END};
#undef RT_

#define LM_ struct config_limits
static const struct config_key limits_keys[] = {
    {"max_header_bytes", CK_SIZE, OFF(LM_, max_header_bytes), .min = 1024, .max = 1048576,
     .def = "16384", .flags = CK_BYTES},
    {"max_headers", CK_SIZE, OFF(LM_, max_headers), .min = 1, .max = HTTP1_MAX_HEADERS_CAP,
     .def = "100"},
    {"max_body_bytes", CK_U64, OFF(LM_, max_body_bytes), .min = 0, .max = (int64_t)1 << 40,
     .def = "10485760", .flags = CK_BYTES},
    {"header_timeout", CK_DURATION, OFF(LM_, header_timeout_ms), .min = 1, .max = MS_H,
     .def = "10s"},
    {"body_timeout", CK_DURATION, OFF(LM_, body_timeout_ms), .min = 1, .max = MS_H, .def = "60s"},
    {"idle_timeout", CK_DURATION, OFF(LM_, idle_timeout_ms), .min = 1, .max = MS_H, .def = "60s"},
    {"upstream_connect_timeout", CK_DURATION, OFF(LM_, upstream_connect_timeout_ms), .min = 1,
     .max = 5 * MS_M, .def = "2s"},
    {"upstream_timeout", CK_DURATION, OFF(LM_, upstream_timeout_ms), .min = 1, .max = MS_H,
     .def = "30s"},
    {"drain_timeout", CK_DURATION, OFF(LM_, drain_timeout_ms), .min = 0, .max = MS_H, .def = "30s"},
    {"tunnel_drain_timeout", CK_DURATION, OFF(LM_, tunnel_drain_timeout_ms), .min = 0, .max = MS_H,
     .def = "30s"},
    {"max_connections", CK_SIZE, OFF(LM_, max_connections), .min = 0, .max = 10000000, .def = "0"},
    {"max_connections_per_ip", CK_SIZE, OFF(LM_, max_connections_per_ip), .min = 0, .max = 10000000,
     .def = "0"},
    {"handshakes_per_ip", CK_RATE, OFF(LM_, handshakes_per_ip), .max = 1000000, .flags = CK_ZERO,
     .def = "0"},
    {"connection_buffer", CK_SIZE, OFF(LM_, connection_buffer), .min = 16384, .max = 1 << 26,
     .def = "65536", .flags = CK_BYTES},
    {"max_memory", CK_U64, OFF(LM_, max_memory), .min = 0, .max = (int64_t)1 << 40,
     .def = "536870912", .flags = CK_BYTES},
    {"max_connection_age", CK_DURATION, OFF(LM_, max_connection_age_ms), .min = 0,
     .max = 7 * 24 * MS_H, .def = "1h"},
    CK_END};
#undef LM_

#define RL_ struct config_ratelimit
static const struct config_key ratelimit_keys[] = {
    {"max_keys", CK_SIZE, OFF(RL_, max_keys), .min = 1, .max = 100000000, .def = "100000"},
    {"redis_timeout", CK_DURATION, OFF(RL_, redis_timeout_ms), .min = 1, .max = 10 * MS_S,
     .def = "50ms"},
    {"heartbeat", CK_DURATION, OFF(RL_, heartbeat_ms), .min = 100, .max = MS_M, .def = "1s"},
    {"key_prefix", CK_STR, OFF(RL_, key_prefix), .check = config_check_key_prefix,
     .def = "moat:rl:"},
    CK_END};
#undef RL_

#define LG_ struct config_log
#define SL_ struct config_syslog
static const struct config_enum syslog_transports[] = {
    {"udp", SYSLOG_UDP}, {"tcp", SYSLOG_TCP}, {"tls", SYSLOG_TLS}, {NULL, 0}};
static const struct config_enum syslog_facilities[] = {
    {"kern", 0},      {"user", 1},    {"mail", 2},    {"daemon", 3},  {"auth", 4},
    {"syslog", 5},    {"lpr", 6},     {"news", 7},    {"uucp", 8},    {"cron", 9},
    {"authpriv", 10}, {"ftp", 11},    {"local0", 16}, {"local1", 17}, {"local2", 18},
    {"local3", 19},   {"local4", 20}, {"local5", 21}, {"local6", 22}, {"local7", 23},
    {NULL, 0}};
static const struct config_key syslog_keys[] = {
    {"address", CK_ADDR, OFF(SL_, address), .flags = CK_REQUIRED},
    {"transport", CK_ENUM, OFF(SL_, transport), .choices = syslog_transports, .def = "tls"},
    {"ca_file", CK_STR, OFF(SL_, ca_file), .flags = CK_NULL | CK_NONEMPTY | CK_PATH,
     .check = config_check_no_controls},
    {"server_name", CK_STR, OFF(SL_, server_name), .flags = CK_NULL,
     .check = config_check_hostname},
    {"cert_file", CK_STR, OFF(SL_, cert_file), .flags = CK_NULL | CK_NONEMPTY | CK_PATH,
     .check = config_check_no_controls},
    {"key_file", CK_STR, OFF(SL_, key_file), .flags = CK_NULL | CK_NONEMPTY | CK_PATH,
     .check = config_check_no_controls},
    {"facility", CK_ENUM, OFF(SL_, facility), .choices = syslog_facilities, .def = "local0"},
    {"app_name", CK_STR, OFF(SL_, app_name), .check = config_check_syslog_name, .def = "moat"},
    {"hostname", CK_STR, OFF(SL_, hostname), .flags = CK_NULL, .check = config_check_hostname},
    {"streams", CK_STRS, OFF(SL_, streams), OFF(SL_, num_streams), .flags = CK_NULL,
     .check = config_check_syslog_stream, .def = "access,audit"},
    {"queue", CK_SIZE, OFF(SL_, queue), .min = 65536, .max = (int64_t)1 << 30, .def = "4MiB",
     .flags = CK_BYTES},
    {"spool_dir", CK_STR, OFF(SL_, spool_dir), .flags = CK_NULL | CK_NONEMPTY | CK_PATH,
     .check = config_check_no_controls},
    {"spool_max", CK_U64, OFF(SL_, spool_max), .min = 1 << 20, .max = (int64_t)1 << 40,
     .def = "64MiB", .flags = CK_BYTES},
    {"max_datagram", CK_SIZE, OFF(SL_, max_datagram), .min = 480, .max = 65000, .def = "2048",
     .flags = CK_BYTES},
    {"connect_timeout", CK_DURATION, OFF(SL_, connect_timeout_ms), .min = 100, .max = 5 * MS_M,
     .def = "5s"},
    {"write_timeout", CK_DURATION, OFF(SL_, write_timeout_ms), .min = 100, .max = 5 * MS_M,
     .def = "10s"},
    CK_END};
#undef SL_
static const struct config_key log_keys[] = {
    {"access", CK_STR, OFF(LG_, access), .flags = CK_NULL | CK_NONEMPTY | CK_PATH,
     .check = config_check_no_controls, .def = "stdout"},
    {"audit", CK_STR, OFF(LG_, audit), .flags = CK_NULL | CK_NONEMPTY | CK_PATH,
     .check = config_check_no_controls, .def = "/var/log/moat/audit.log"},
    {"audit_key_file", CK_STR, OFF(LG_, audit_key_file), .flags = CK_NULL | CK_NONEMPTY | CK_PATH,
     .check = config_check_no_controls},
    {"syslog", CK_SECTION, OFF(LG_, syslog), OFF(LG_, syslog_enabled), .keys = syslog_keys,
     .flags = CK_NULL | CK_PRESENT},
    {"level", CK_STR, OFF(LG_, level), .choices = log_levels, .def = "info"},
    {"format", CK_STR, OFF(LG_, format), .choices = log_formats, .def = "text"},
    {"access_query", CK_BOOL, OFF(LG_, access_query), .def = "false"},
    CK_END};
#undef LG_

#define H2_ struct config_http2
static const struct config_key http2_keys[] = {
    {"max_concurrent_streams", CK_SIZE, OFF(H2_, max_concurrent_streams), .min = 1, .max = 1000,
     .def = "100"},
    {"header_table_size", CK_SIZE, OFF(H2_, header_table_size), .min = 0, .max = 65536,
     .def = "4096"},
    {"initial_window_size", CK_SIZE, OFF(H2_, initial_window_size), .min = 1024,
     .max = 16 * 1024 * 1024, .def = "65535"},
    {"max_glitches", CK_SIZE, OFF(H2_, max_glitches), .min = 1, .max = 100000, .def = "100"},
    {"max_streams_per_read", CK_SIZE, OFF(H2_, max_streams_per_read), .min = 1, .max = 1000,
     .def = "16"},
    {"settings_timeout", CK_DURATION, OFF(H2_, settings_timeout_ms), .min = 100, .max = MS_M,
     .def = "10s"},
    {"send_timeout", CK_DURATION, OFF(H2_, send_timeout_ms), .min = 100, .max = MS_H, .def = "30s"},
    CK_END};
#undef H2_

#define CF_ struct config
const struct config_key config_root_keys[] = {
    {"workers", CK_INT, OFF(CF_, workers), .min = 1, .max = 1024, .flags = CK_AUTO, .def = "auto"},
    {"listen", CK_SECTION, OFF(CF_, listen), .keys = listen_keys},
    {"control_socket", CK_STR, OFF(CF_, control_socket), .flags = CK_NULL | CK_NONEMPTY | CK_PATH},
    {"tls", CK_SECTION, OFF(CF_, tls), .keys = tls_keys},
    {"hsts", CK_SECTION, OFF(CF_, hsts), .keys = hsts_keys},
    {"redis", CK_SECTION, OFF(CF_, redis), OFF(CF_, redis_enabled), .keys = redis_keys,
     .flags = CK_NULL | CK_PRESENT},
    {"sessions", CK_SECTION, OFF(CF_, sessions), .keys = sessions_keys},
    {"identity", CK_SECTION, OFF(CF_, identity), .keys = identity_keys},
    {"upstreams", CK_MAP, OFF(CF_, upstreams), OFF(CF_, num_upstreams), .keys = upstream_keys,
     .elem_size = sizeof(struct config_upstream), .check = config_check_name,
     .name_off = OFF(struct config_upstream, name), .pos_off = OFF(struct config_upstream, line),
     .flags = CK_NULL | CK_POS},
    {"tenants", CK_MAP, OFF(CF_, tenants), OFF(CF_, num_tenants), .keys = tenant_keys,
     .elem_size = sizeof(struct config_tenant), .check = config_check_tenant_name,
     .name_off = OFF(struct config_tenant, name), .flags = CK_NULL},
    {"routes", CK_LIST, OFF(CF_, routes), OFF(CF_, num_routes), .keys = route_keys,
     .elem_size = sizeof(struct config_route), .pos_off = OFF(struct config_route, line),
     .finish = route_finish, .flags = CK_NULL | CK_POS},
    {"limits", CK_SECTION, OFF(CF_, limits), .keys = limits_keys},
    {"http2", CK_SECTION, OFF(CF_, http2), .keys = http2_keys},
    {"ratelimit", CK_SECTION, OFF(CF_, ratelimit), .keys = ratelimit_keys},
    {"log", CK_SECTION, OFF(CF_, log), .keys = log_keys},
    CK_END};
#undef CF_

_Static_assert(offsetof(struct config_tls_cert, column) ==
                   offsetof(struct config_tls_cert, line) + sizeof(int),
               "CK_POS needs int line; int column;");
_Static_assert(offsetof(struct config_upstream, column) ==
                   offsetof(struct config_upstream, line) + sizeof(int),
               "CK_POS needs int line; int column;");
_Static_assert(offsetof(struct config_route, column) ==
                   offsetof(struct config_route, line) + sizeof(int),
               "CK_POS needs int line; int column;");
