/*
 * auth: the session authentication phase (DESIGN.md "Redis contract").
 * Routes with auth: none pass untouched; others look the session token up in
 * Redis (through the worker's cache) and fail closed.
 */
#ifndef MOAT_AUTH_H
#define MOAT_AUTH_H

#include "policy/pipeline.h"

enum phase_result auth_phase(struct request *r);

#endif
