/*
 * config_value: one scalar's text to a value, and the checks of single values.
 *
 * Pure functions, no loader state: durations, rates and addresses (the public
 * ones are declared in config.h), booleans, integers, and the checks a schema
 * row names in .check (host names, header names, paths...). A check returns
 * NULL when the value is fine, else the reason as a static string.
 */
#ifndef MOAT_CONFIG_VALUE_H
#define MOAT_CONFIG_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config/config.h"

/* Milliseconds, for duration bounds in the schema. */
#define MS_S 1000
#define MS_M (60 * MS_S)
#define MS_H (60 * MS_M)
#define MS_D (24 * (int64_t)MS_H)

/* config_parse_addr() with the reason for a failure (a static string). */
int config_addr_parse(const char *s, struct config_addr *out, const char **why);
/* "64KiB", "10MB", "512B" (KiB/MiB/GiB: powers of 1024; KB/MB/GB: of 1000); false if not. */
bool config_parse_bytes(const char *s, int64_t *out);
/* An upstream server: "address" or "address weight=N" (N in 1..1000; default 1). */
int config_server_parse(const char *s, struct config_addr *out, const char **why);
/* "200" or "200-399", within 100-599. */
const char *config_check_status_range(const char *s);
/* "tenant=N": a per-tenant override of admission.max_in_flight_per_tenant. */
const char *config_check_tenant_limit(const char *s);
/* true/True/TRUE, false/False/FALSE; false if s is neither. */
bool config_parse_bool(const char *s, bool *out);
/* Plain decimal, optional '-'; too large saturates so the bounds check reports it. */
bool config_parse_i64(const char *s, int64_t *out);
/* ms as the largest exact unit: "12h", "5m", "10s", "250ms". */
const char *config_format_duration(int64_t ms, char *buf, size_t len);

const char *config_check_header_name(const char *s);
/* A header name, or a prefix pattern ending in '*' ("X-Moat-*"). */
const char *config_check_header_pattern(const char *s);
const char *config_check_hostname(const char *s);
/* Exact host name or "*.suffix". */
const char *config_check_host_pattern(const char *s);
const char *config_check_path(const char *s);
/* A route prefix that is not a canonical path could never match (path.h). */
const char *config_check_path_prefix(const char *s);
/* Upstream and rule names: 1 to 64 of A-Z a-z 0-9 - _ . */
const char *config_check_name(const char *s);
const char *config_check_tenant_name(const char *s);
const char *config_check_key_prefix(const char *s);
/* An octal file mode for the admin socket: never open to other users. */
const char *config_check_socket_mode(const char *s);
const char *config_check_env_name(const char *s);
const char *config_check_login_url(const char *s);
/* Exactly what the identity phase will parse: netutil decides, not a second parser. */
const char *config_check_cidr(const char *s);
/* An ALPN protocol moat speaks: "h2" or "http/1.1". */
const char *config_check_alpn(const char *s);
const char *config_check_no_controls(const char *s);
/* log.syslog: an RFC 5424 APP-NAME (1..48 printable ASCII) and a stream name. */
const char *config_check_syslog_name(const char *s);
const char *config_check_syslog_stream(const char *s);

#endif
