/*
 * libFuzzer target for the config loader (pure mode: no file checks).
 *
 * Beyond "no crash, no leak, no UB" it checks the loader's contract: a snapshot
 * xor at least one error, and every error formatted "fuzz.yaml:..." so the
 * caller can print it as is.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    struct config_errors errs = {0};
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    struct config *c = config_load_string("fuzz.yaml", text, false, &errs);
    if (!c == !errs.count) {
        fprintf(stderr, "contract broken: config %p with %zu errors\n", (void *)c, errs.count);
        abort();
    }
    for (size_t i = 0; i < errs.count; i++) {
        if (strncmp(errs.msgs[i], "fuzz.yaml", 9) != 0)
            abort();
    }
    if (c) {
        /* lookups on whatever was loaded */
        for (size_t i = 0; i < c->num_tenants; i++)
            if (config_find_tenant(c, c->tenants[i].name, strlen(c->tenants[i].name)) !=
                &c->tenants[i])
                abort();
        for (size_t i = 0; i < c->num_routes; i++)
            if (!c->routes[i].up || !c->routes[i].path_prefix)
                abort();
        config_unref(config_ref(c));
    }
    config_unref(c);
    config_errors_free(&errs);
    free(text);
    return 0;
}
