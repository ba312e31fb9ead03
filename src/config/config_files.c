/*
 * config_files: certificate, key and secret file checks (config_files.h).
 */
#include "config/config_files.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#define SIGNING_KEY_MIN 32

/*
 * A secret (private key, password, signing or ticket key) that other local users can
 * read is as good as leaked; nginx and HAProxy accept it silently, moat says so (a
 * warning: a deployment may have reasons, e.g. a group shared with a key manager).
 */
static void warn_if_exposed(struct config_loader *L, struct config_pos pos, const char *path,
                            const char *file, mode_t mode)
{
    char q[80];
    if (mode & (S_IRWXG | S_IRWXO))
        config_loader_warning(L, pos, path,
                              "warning: %s is accessible by group or others (mode %04o): "
                              "chmod 600 it (or 640 for a group that must read it)",
                              config_quote(file, q, sizeof q), (unsigned)(mode & 07777));
}

/* Opens a regular file at least min bytes long; -1 (reported) otherwise. */
static int open_checked(struct config_loader *L, struct config_pos pos, const char *path,
                        const char *file, size_t min, bool secret)
{
    struct stat st;
    char q[80];
    int fd = open(file, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        config_loader_error(L, pos, path, "cannot open %s: %s", config_quote(file, q, sizeof q),
                            strerror(errno));
        return -1;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        config_loader_error(L, pos, path, "%s is not a regular file",
                            config_quote(file, q, sizeof q));
    } else if ((size_t)st.st_size < min) {
        config_loader_error(L, pos, path, "%s is too short: %lld bytes, at least %zu needed",
                            config_quote(file, q, sizeof q), (long long)st.st_size, min);
    } else {
        if (secret)
            warn_if_exposed(L, pos, path, file, st.st_mode);
        return fd;
    }
    close(fd);
    return -1;
}

static void check_file(struct config_loader *L, const void *field, const void *container,
                       const char *path, size_t min, bool secret)
{
    const char *file = *(char *const *)field;
    struct config_pos pos = config_pos_of(L, field, container, CONFIG_POS_ROOT);
    int fd = file ? open_checked(L, pos, path, file, min, secret) : -1;
    if (fd >= 0)
        close(fd); /* contents stay where they are: a password is never read here */
}

static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    return -1; /* never prompt: an encrypted key is an error, not a question */
}

/* Reads the first certificate (or the key) from a PEM file; NULL is reported. */
static void *read_pem(struct config_loader *L, const void *field, const void *container,
                      const char *path, bool key)
{
    const char *file = *(char *const *)field;
    struct config_pos pos = config_pos_of(L, field, container, CONFIG_POS_ROOT);
    char q[80];
    void *obj = NULL;
    int fd = file ? open_checked(L, pos, path, file, 1, key) : -1;
    FILE *f = fd >= 0 ? fdopen(fd, "r") : NULL;
    if (fd >= 0 && !f)
        close(fd);
    if (!f)
        return NULL;
    obj = key ? (void *)PEM_read_PrivateKey(f, NULL, no_passphrase, NULL)
              : (void *)PEM_read_X509(f, NULL, no_passphrase, NULL);
    fclose(f);
    ERR_clear_error();
    if (!obj)
        config_loader_error(L, pos, path, "no %s in %s",
                            key ? "usable PEM private key "
                                  "(unencrypted)"
                                : "PEM certificate",
                            config_quote(file, q, sizeof q));
    return obj;
}

/* A certificate and its key: both readable PEM, and the key matching the certificate. */
static void check_pair(struct config_loader *L, char *const *cert, char *const *key,
                       const void *container, struct config_pos item, const char *path)
{
    char cp[128], kp[128], q[80];
    snprintf(cp, sizeof cp, "%s.cert", path);
    snprintf(kp, sizeof kp, "%s.key", path);
    X509 *x = *cert ? read_pem(L, cert, container, cp, false) : NULL;
    EVP_PKEY *k = *key ? read_pem(L, key, container, kp, true) : NULL;
    if (x && k && X509_check_private_key(x, k) != 1)
        config_loader_error(L, item, kp, "does not match certificate %s",
                            config_quote(*cert, q, sizeof q));
    ERR_clear_error();
    X509_free(x);
    EVP_PKEY_free(k);
}

static void check_ca(struct config_loader *L, char *const *ca, const void *container,
                     const char *path)
{
    X509 *x = *ca ? read_pem(L, ca, container, path, false) : NULL;
    X509_free(x);
}

static void check_tls_client(struct config_loader *L, const struct config_tls_client *t,
                             const char *path)
{
    char p[128];
    snprintf(p, sizeof p, "%s.ca", path);
    check_ca(L, &t->ca, t, p);
    if (t->cert && t->key)
        check_pair(L, &t->cert, &t->key, t, config_pos_of(L, &t->key, t, CONFIG_POS_ROOT), path);
}

/* A password named by an environment variable: the variable must be set and not empty. */
static void check_env(struct config_loader *L, const void *field, const void *container,
                      const char *path)
{
    const char *name = *(char *const *)field;
    const char *v = name ? getenv(name) : NULL;
    if (name && (!v || !*v))
        config_loader_error(L, config_pos_of(L, field, container, CONFIG_POS_ROOT), path,
                            "the environment variable %s is not set or empty", name);
}

void config_check_files(struct config_loader *L, const struct config *c)
{
    char path[128];
    const struct config_tls *t = &c->tls;
    for (size_t i = 0; i < t->num_certs; i++) {
        const struct config_tls_cert *tc = &t->certs[i];
        struct config_pos item = {tc->line ? tc->line : 1, tc->line ? tc->column : 1};
        snprintf(path, sizeof path, "tls.certificates[%zu]", i);
        check_pair(L, &tc->cert, &tc->key, tc, item, path);
        snprintf(path, sizeof path, "tls.certificates[%zu].ocsp", i);
        check_file(L, &tc->ocsp, tc, path, 1, false);
    }
    check_ca(L, &t->client_ca, t, "tls.client_ca");
    check_file(L, &t->ticket_key_file, t, "tls.session_tickets.key_file", 1, true);
    if (c->redis_enabled) {
        check_tls_client(L, &c->redis.tls, "redis.tls");
        check_file(L, &c->redis.password_file, &c->redis, "redis.password_file", 1, true);
        check_env(L, &c->redis.password_env, &c->redis, "redis.password_env");
        check_file(L, &c->redis.sentinel.password_file, &c->redis.sentinel,
                   "redis.sentinel.password_file", 1, true);
        check_env(L, &c->redis.sentinel.password_env, &c->redis.sentinel,
                  "redis.sentinel.password_env");
    }
    for (size_t i = 0; i < c->num_upstreams; i++) {
        snprintf(path, sizeof path, "upstreams.%s.tls",
                 c->upstreams[i].name ? c->upstreams[i].name : "?");
        check_tls_client(L, &c->upstreams[i].tls, path);
    }
    check_file(L, &c->identity.signing_key_file, &c->identity, "identity.signing_key_file",
               SIGNING_KEY_MIN, true);
    check_file(L, &c->identity.previous_signing_key_file, &c->identity,
               "identity.previous_signing_key_file", SIGNING_KEY_MIN, true);
    check_file(L, &c->log.audit_key_file, &c->log, "log.audit_key_file", SIGNING_KEY_MIN, true);
}
