/*
 * headername: does a received header name denote, for some upstream, the same
 * header as a name moat owns? Used by the identity phase to strip spoofable
 * identity headers (X-Tenant-ID, X-User-ID, X-Moat-*, ...) in every spelling.
 *
 * Why "loose": upstreams do not all read names byte for byte. CGI, WSGI (PEP 3333),
 * Rack, PHP-FPM behind nginx and friends expose headers as HTTP_<NAME> with the name
 * upper-cased and '-' turned into '_', so "X_Tenant_ID: evil" arrives as
 * HTTP_X_TENANT_ID just like "X-Tenant-ID". Some (lighttpd's CGI/FastCGI env, older
 * Apache mod_cgi) turn *every* non-alphanumeric byte into '_', so "X.Tenant.ID" does
 * too. These functions therefore compare names after folding: ASCII letters are
 * case-folded and every byte that is not [A-Za-z0-9] is one and the same separator.
 * Surrounding SP/HTAB is ignored. Separators are not collapsed ("X--Tenant-ID" maps
 * to HTTP_X__TENANT_ID, a different variable) and nothing is ignored inside the name.
 *
 * Over-matching only strips a header whose name differs from a moat-owned one in
 * punctuation, which no legitimate client needs; under-matching would let a client
 * set its own tenant. No allocation, no locale.
 */
#ifndef MOAT_HEADERNAME_H
#define MOAT_HEADERNAME_H

#include <stdbool.h>

#include "http/http1.h"

/*
 * True if name, folded as above, equals canonical folded the same way
 * ("X-Tenant-ID" matches "x-tenant-id", "X_Tenant_ID", " X-Tenant-Id ", "X.TENANT.ID";
 * not "X-Tenant-IDs" nor "XTenantID"). canonical is a NUL-terminated literal.
 */
bool headername_eq_loose(struct http1_str name, const char *canonical);

/*
 * True if name, folded, starts with prefix folded ("X-Moat-" matches "x_moat_sig",
 * "X-MOAT-" and "X.Moat.Anything"; not "X-Moatx" nor "X-Moat").
 */
bool headername_has_prefix_loose(struct http1_str name, const char *prefix);

#endif
