/*
 * config_validate: the checks that involve several keys.
 *
 * Run after a clean parse: listener addresses against each other, the TLS
 * policy against OpenSSL, references between sections (routes and tenants to
 * upstreams), what auth and global limits need (redis, sessions), rule ids.
 * Resolves the references it checks (route->up, tenant->up).
 */
#ifndef MOAT_CONFIG_VALIDATE_H
#define MOAT_CONFIG_VALIDATE_H

#include "config/config.h"
#include "config/config_errors.h"

void config_validate(struct config_loader *L, struct config *c);

#endif
