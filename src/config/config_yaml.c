/*
 * config_yaml: libyaml document to schema walk (config_yaml.h).
 */
#include "config/config_yaml.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "config/config_schema.h"
#include "config/config_store.h"

static struct config_pos node_pos(const yaml_node_t *node)
{
    return (struct config_pos){(int)node->start_mark.line + 1, (int)node->start_mark.column + 1};
}

static bool node_is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE)
        return false;
    struct config_scalar sc = {(const char *)n->data.scalar.value,
                               n->data.scalar.length,
                               n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE,
                               {0, 0}};
    return config_scalar_is_null(&sc);
}

/* Counts a visited node; false once the budget is spent (reported once). */
static bool visit(struct config_loader *L, const yaml_node_t *n, size_t count)
{
    if (L->over_budget)
        return false;
    L->nodes += count;
    if (L->nodes <= CONFIG_MAX_NODES)
        return true;
    L->over_budget = true;
    config_loader_error(L, node_pos(n), "",
                        "configuration too large: more than %d YAML nodes (alias expansion?)",
                        CONFIG_MAX_NODES);
    return false;
}

static bool get_scalar(struct config_loader *L, const yaml_node_t *n, const char *path,
                       struct config_scalar *sc)
{
    if (n->type != YAML_SCALAR_NODE) {
        config_loader_error(L, node_pos(n), path, "expected a scalar");
        return false;
    }
    *sc = (struct config_scalar){(const char *)n->data.scalar.value, n->data.scalar.length,
                                 n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE, node_pos(n)};
    if (strlen(sc->s) != sc->len) {
        config_loader_error(L, sc->pos, path, "must not contain a NUL byte");
        return false;
    }
    return true;
}

static void set_list_node(struct config_loader *L, const struct config_key *k, void *base,
                          yaml_node_t *node, const char *path)
{
    char sub[CONFIG_PATH_MAX];
    if (node_is_null(node) && (k->flags & CK_NULL)) {
        config_store_list_clear(k, base);
        return;
    }
    if (node->type != YAML_SEQUENCE_NODE) {
        config_loader_error(L, node_pos(node), path, "expected a sequence");
        return;
    }
    size_t n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    if (!visit(L, node, n))
        return;
    struct config_scalar *items = calloc(n ? n : 1, sizeof *items);
    if (!items) {
        config_loader_oom(L);
        return;
    }
    size_t m = 0;
    bool bad = false;
    for (size_t i = 0; i < n; i++) {
        yaml_node_t *it = yaml_document_get_node(L->doc, node->data.sequence.items.start[i]);
        config_path_index(sub, path, i);
        if (it && get_scalar(L, it, sub, &items[m]))
            m++;
        else
            bad = true;
    }
    if (!bad) /* a list with a nested mapping is not worth half-storing */
        config_store_list(L, k, base, items, m, node_pos(node), path);
    free(items);
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), row[40];
    if (la >= 39 || lb >= 39)
        return 99;
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diag = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t up = row[j];
            size_t best = diag + (a[i - 1] != b[j - 1]);
            if (up + 1 < best)
                best = up + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diag = up;
        }
    }
    return row[lb];
}

static void unknown_key(struct config_loader *L, const struct config_key *keys, const char *name,
                        struct config_pos pos, const char *path)
{
    const char *best = NULL;
    size_t bd = 3;
    for (const struct config_key *k = keys; k->name; k++) {
        size_t d = edit_distance(name, k->name);
        if (d < bd && d < strlen(k->name)) {
            bd = d;
            best = k->name;
        }
    }
    if (best)
        config_loader_error(L, pos, path, "unknown key (did you mean %s?)", best);
    else
        config_loader_error(L, pos, path, "unknown key");
}

/* Stores the mapping node into base following keys; path is the dotted prefix. */
static void parse_mapping(struct config_loader *L, const struct config_key *keys, void *base,
                          yaml_node_t *node, const char *path);

static void parse_elem(struct config_loader *L, const struct config_key *k, char *elem,
                       size_t index, yaml_node_t *node, const char *path)
{
    struct config_pos pos = node_pos(node);
    if (node->type != YAML_MAPPING_NODE) {
        /* line stays 0: later cross-checks skip an element that was never read */
        config_loader_error(L, pos, path, "expected a mapping");
        return;
    }
    if (k->flags & CK_POS) {
        *(int *)(elem + k->pos_off) = pos.line;
        *(int *)(elem + k->pos_off + sizeof(int)) = pos.column;
    }
    config_loader_remember(L, elem, 1, pos);
    parse_mapping(L, k->keys, elem, node, path);
    if (k->finish && !L->over_budget)
        k->finish(L, elem, index, path);
}

static void set_elem_list(struct config_loader *L, const struct config_key *k, void *base,
                          yaml_node_t *node, const char *path)
{
    char sub[CONFIG_PATH_MAX];
    config_store_elems_clear(k, base);
    if (node_is_null(node) && (k->flags & CK_NULL))
        return;
    if (node->type != YAML_SEQUENCE_NODE) {
        config_loader_error(L, node_pos(node), path, "expected a sequence");
        return;
    }
    size_t n = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
    if (!visit(L, node, n))
        return;
    char *arr = config_store_elems_alloc(L, k, base, node_pos(node), n);
    for (size_t i = 0; arr && i < n && !L->over_budget; i++) {
        yaml_node_t *it = yaml_document_get_node(L->doc, node->data.sequence.items.start[i]);
        config_path_index(sub, path, i);
        if (it)
            parse_elem(L, k, arr + i * k->elem_size, i, it, sub);
    }
}

struct named {
    const char *name;
    size_t index;
};

static int named_cmp(const void *a, const void *b)
{
    const struct named *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->index > y->index) - (x->index < y->index);
}

/* Reports names given twice in a map (at the later one), in n log n. */
static void map_duplicates(struct config_loader *L, const char **names,
                           const struct config_pos *pos, size_t n, const char *path)
{
    char sub[CONFIG_PATH_MAX];
    struct named *v = malloc((n ? n : 1) * sizeof *v);
    size_t m = 0;
    if (!v) {
        config_loader_oom(L);
        return;
    }
    for (size_t i = 0; i < n; i++)
        if (names[i])
            v[m++] = (struct named){names[i], i};
    qsort(v, m, sizeof *v, named_cmp);
    for (size_t i = 1; i < m; i++) {
        if (!strcmp(v[i].name, v[i - 1].name)) {
            config_path_join(sub, path, v[i].name);
            config_loader_error(L, pos[v[i].index], sub, "duplicate key");
        }
    }
    free(v);
}

static void set_elem_map(struct config_loader *L, const struct config_key *k, void *base,
                         yaml_node_t *node, const char *path)
{
    char sub[CONFIG_PATH_MAX], q[80];
    config_store_elems_clear(k, base);
    if (node_is_null(node) && (k->flags & CK_NULL))
        return;
    if (node->type != YAML_MAPPING_NODE) {
        config_loader_error(L, node_pos(node), path, "expected a mapping");
        return;
    }
    yaml_node_pair_t *pairs = node->data.mapping.pairs.start;
    size_t n = (size_t)(node->data.mapping.pairs.top - pairs);
    if (!visit(L, node, 2 * n))
        return;
    char *arr = config_store_elems_alloc(L, k, base, node_pos(node), n);
    const char **names = n ? calloc(n, sizeof *names) : NULL;
    struct config_pos *kpos = n ? calloc(n, sizeof *kpos) : NULL;
    if (n && (!names || !kpos))
        config_loader_oom(L);
    for (size_t i = 0; arr && names && kpos && i < n && !L->over_budget; i++) {
        yaml_node_t *kn = yaml_document_get_node(L->doc, pairs[i].key);
        yaml_node_t *vn = yaml_document_get_node(L->doc, pairs[i].value);
        char *elem = arr + i * k->elem_size;
        struct config_scalar sc;
        if (!kn || !vn || !get_scalar(L, kn, path, &sc))
            continue;
        config_path_join(sub, path, sc.s);
        const char *why = k->check ? k->check(sc.s) : NULL;
        if (why) {
            config_loader_error(L, sc.pos, sub, "invalid name %s: %s",
                                config_quote(sc.s, q, sizeof q), why);
            continue;
        }
        names[i] = sc.s;
        kpos[i] = sc.pos;
        *(char **)(elem + k->name_off) = config_loader_strdup(L, sc.s);
        parse_elem(L, k, elem, i, vn, sub);
    }
    if (names && kpos)
        map_duplicates(L, names, kpos, n, path);
    free(names);
    free(kpos);
}

static void set_value(struct config_loader *L, const struct config_key *k, void *base,
                      yaml_node_t *v, const char *path)
{
    struct config_scalar sc;
    switch (k->type) {
    case CK_SECTION:
        if ((k->flags & CK_NULL) && node_is_null(v)) {
            if (k->flags & CK_PRESENT)
                *(bool *)((char *)base + k->off2) = false;
            return;
        }
        config_loader_remember(L, (char *)base + k->off, 1, node_pos(v));
        if ((k->flags & CK_PRESENT) && v->type == YAML_MAPPING_NODE)
            *(bool *)((char *)base + k->off2) = true;
        parse_mapping(L, k->keys, (char *)base + k->off, v, path);
        return;
    case CK_LIST:
        set_elem_list(L, k, base, v, path);
        return;
    case CK_MAP:
        set_elem_map(L, k, base, v, path);
        return;
    case CK_STRS:
    case CK_ADDRS:
    case CK_ADDR_ARRAY:
        set_list_node(L, k, base, v, path);
        return;
    case CK_REJECT:
        config_loader_error(L, node_pos(v), path, "%s", k->reject);
        return;
    default:
        if (visit(L, v, 1) && get_scalar(L, v, path, &sc))
            config_store_scalar(L, k, base, &sc, path);
        return;
    }
}

static void parse_mapping(struct config_loader *L, const struct config_key *keys, void *base,
                          yaml_node_t *node, const char *path)
{
    char sub[CONFIG_PATH_MAX];
    uint64_t seen = 0; /* one bit per row: a table has fewer than 64 keys */
    if (!visit(L, node, 1))
        return;
    for (size_t i = 0; keys[i].name; i++) {
        if (i >= 64) {
            config_loader_error(L, node_pos(node), path,
                                "internal error: key table "
                                "too long");
            return;
        }
    }
    if (node->type != YAML_MAPPING_NODE) {
        config_loader_error(L, node_pos(node), path, "expected a mapping");
        return;
    }
    for (yaml_node_pair_t *pr = node->data.mapping.pairs.start;
         pr < node->data.mapping.pairs.top && !L->over_budget; pr++) {
        yaml_node_t *kn = yaml_document_get_node(L->doc, pr->key);
        yaml_node_t *vn = yaml_document_get_node(L->doc, pr->value);
        struct config_scalar name;
        if (!kn || !vn || !visit(L, kn, 1) || !get_scalar(L, kn, path, &name))
            continue;
        size_t i = 0;
        while (keys[i].name && strcmp(keys[i].name, name.s) != 0)
            i++;
        config_path_join(sub, path, name.s);
        if (!keys[i].name)
            unknown_key(L, keys, name.s, name.pos, sub);
        else if (seen & ((uint64_t)1 << i))
            config_loader_error(L, name.pos, sub, "duplicate key");
        else {
            seen |= (uint64_t)1 << i;
            set_value(L, &keys[i], base, vn, sub);
        }
    }
    for (size_t i = 0; keys[i].name && !L->over_budget; i++) {
        if ((keys[i].flags & CK_REQUIRED) && !(seen & ((uint64_t)1 << i))) {
            config_path_join(sub, path, keys[i].name);
            config_loader_error(L, node_pos(node), sub, "required key is missing");
        }
    }
}

/* libyaml reader errors carry a byte offset, not a mark. */
static struct config_pos offset_pos(const char *buf, size_t len, size_t off)
{
    struct config_pos p = {1, 1};
    for (size_t i = 0; i < off && i < len; i++) {
        if (buf[i] == '\n') {
            p.line++;
            p.column = 1;
        } else
            p.column++;
    }
    return p;
}

static void yaml_error(struct config_loader *L, const yaml_parser_t *p, const char *buf, size_t len)
{
    const char *problem = p->problem ? p->problem : "syntax error";
    struct config_pos pos = {(int)p->problem_mark.line + 1, (int)p->problem_mark.column + 1};
    switch (p->error) {
    case YAML_MEMORY_ERROR:
        config_loader_error(L, (struct config_pos){0, 0}, "", "out of memory");
        return;
    case YAML_READER_ERROR:
        pos = offset_pos(buf, len, p->problem_offset);
        if (p->problem_value != -1)
            config_loader_error(L, pos, "yaml", "%s: #%X", problem, (unsigned)p->problem_value);
        else
            config_loader_error(L, pos, "yaml", "%s", problem);
        return;
    default:
        if (p->context)
            config_loader_error(L, pos, "yaml", "%s (%s at line %d, column %d)", problem,
                                p->context, (int)p->context_mark.line + 1,
                                (int)p->context_mark.column + 1);
        else
            config_loader_error(L, pos, "yaml", "%s", problem);
    }
}

/* Parses the one document in buf into c; false on a YAML syntax error. */
bool config_yaml_load(struct config_loader *L, struct config *c, const char *buf, size_t len)
{
    yaml_parser_t p;
    yaml_document_t doc, next;
    bool ok = false;

    if (!yaml_parser_initialize(&p)) {
        config_loader_error(L, (struct config_pos){0, 0}, "", "out of memory");
        return false;
    }
    yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
    if (!yaml_parser_load(&p, &doc)) {
        yaml_error(L, &p, buf, len);
        goto out_parser;
    }
    L->doc = &doc;
    yaml_node_t *root = yaml_document_get_root_node(&doc);
    if (root) {
        parse_mapping(L, config_root_keys, c, root, "");
        if (root->type != YAML_MAPPING_NODE)
            goto out_doc; /* nothing was read: cross-checks would only add noise */
        if (!yaml_parser_load(&p, &next)) {
            yaml_error(L, &p, buf, len);
            goto out_doc;
        }
        yaml_node_t *extra = yaml_document_get_root_node(&next);
        if (extra)
            config_loader_error(L, node_pos(extra), "", "only one YAML document is allowed");
        yaml_document_delete(&next);
    }
    ok = !L->over_budget; /* half-walked: cross-checks would only add noise */
out_doc:
    L->doc = NULL;
    yaml_document_delete(&doc);
out_parser:
    yaml_parser_delete(&p);
    return ok;
}
