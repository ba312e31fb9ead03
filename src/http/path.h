/*
 * path: the canonical request path, the only spelling moat routes on.
 *
 * moat matches routes on the path as received, never decoded or normalized
 * (what it forwards is what it matched). So a path is accepted only when no
 * upstream can read it as another path than the one moat matched: every
 * spelling that common servers and frameworks normalize (Tomcat and Spring
 * strip ";params" and read "..;" as "..", IIS drops trailing dots, many decode
 * twice, trim spaces, or fold case and compatibility characters) is refused
 * with 400 instead of guessed. The rules, checked by path_problem():
 *
 *  - an absolute path ("/..."), no '\', no empty segment ("//"), no "." or
 *    ".." segment and no segment ending in '.' ("/admin.", "/a../");
 *  - no ';' (path parameters);
 *  - percent-encoding is "%" + two hex digits, and never of: an unreserved
 *    character (A-Z a-z 0-9 - . _ ~), '/', '\', ';', '%' (double decoding),
 *    a control character or space (0x00-0x20, 0x7f);
 *  - encoded bytes >= 0x80 form valid, shortest-form UTF-8 (no overlong
 *    "%c0%af"), and no character that case folding or compatibility
 *    normalization turns into ASCII (dotless i, long s, Kelvin sign,
 *    fullwidth forms, one/two dot leaders...).
 *
 * Route prefixes are compared case-insensitively (ASCII) on such a path: see
 * route.h. Pure functions, no allocation.
 */
#ifndef MOAT_PATH_H
#define MOAT_PATH_H

#include "http/http1.h"

/* NULL when path is canonical, else a static reason (for the 400 and the log). */
const char *path_problem(struct http1_str path);

/* path_problem() for a NUL-terminated string (config: routes' path_prefix). */
const char *path_problem_str(const char *path);

#endif
