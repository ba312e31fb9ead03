/*
 * config_files: the checks of the files a config names (config_load() only).
 *
 * Certificates and keys are read as PEM and each key must match its
 * certificate; other files (OCSP, ticket keys, passwords, signing keys) must be
 * regular files of a minimum size, and are never read here.
 */
#ifndef MOAT_CONFIG_FILES_H
#define MOAT_CONFIG_FILES_H

#include "config/config.h"
#include "config/config_errors.h"

void config_check_files(struct config_loader *L, const struct config *c);

#endif
