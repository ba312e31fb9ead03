/* moat: wires the modules together; all behaviour lives in them. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <openssl/crypto.h>
#include <nghttp2/nghttp2.h>
#include <yaml.h>

#include "core/control.h"
#include "core/preflight.h"
#include "core/server.h"
#include "observe/audit_verify.h"
#include "observe/healthcheck.h"

/* Exit status for a command-line error (as BSD's EX_USAGE family and GNU tools: 2). */
#define EXIT_USAGE 2

static void usage(FILE *f)
{
    fprintf(f, "usage: moat -c FILE [-t [--preflight]]\n"
               "       moat -s reload|upgrade -c FILE\n"
               "       moat --healthcheck -c FILE\n"
               "       moat audit-verify [--key FILE]... FILE...\n"
               "       moat -V | -h\n"
               "  -c, --config FILE  the configuration file (required: there is no default)\n"
               "  -t, --test         validate the configuration (files included) and exit 0/1\n"
               "  --preflight        with -t: also connect to Redis as configured and check\n"
               "                     the ACL for every command this config sends, and connect\n"
               "                     to every upstream server (2 s each); one line per check\n"
               "  -s, --signal CMD   tell the moat running with FILE's control_socket to\n"
               "                     reload (it reads its own config file again) or upgrade\n"
               "                     (start the binary again, hand over the sockets, drain);\n"
               "                     prints what changed or every error, exit 0/1\n"
               "  --healthcheck      ask the running moat's listen.admin for /readyz (2 s):\n"
               "                     exit 0 when ready, 1 with the reason otherwise\n"
               "  -V, --version      print the version and the library versions in use\n"
               "  -h, --help         print this help\n"
               "signals: SIGHUP reloads; SIGTERM, SIGINT and SIGQUIT drain and exit 0;\n"
               "SIGUSR1 reopens the log files; SIGUSR2 upgrades the binary (as -s upgrade)\n");
}

static void print_versions(void)
{
    printf("moat %s\n", MOAT_VERSION);
    printf("libevent %s\n", event_get_version());
    printf("OpenSSL %s\n", OpenSSL_version(OPENSSL_FULL_VERSION_STRING));
    printf("hiredis %d.%d.%d\n", HIREDIS_MAJOR, HIREDIS_MINOR, HIREDIS_PATCH);
    printf("libyaml %s\n", yaml_get_version_string());
    printf("nghttp2 %s\n", nghttp2_version(0)->version_str);
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"config", required_argument, NULL, 'c'}, {"test", no_argument, NULL, 't'},
        {"signal", required_argument, NULL, 's'}, {"healthcheck", no_argument, NULL, 'H'},
        {"preflight", no_argument, NULL, 'P'},    {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},         {NULL, 0, NULL, 0}};
    const char *path = NULL, *cmd = NULL;
    int check = 0, health = 0, preflight = 0, opt;
    if (argc > 1 && !strcmp(argv[1], "audit-verify"))
        return audit_verify_main(argc - 2, argv + 2);
    while ((opt = getopt_long(argc, argv, "c:ts:Vh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            check = 1;
            break;
        case 's':
            cmd = optarg;
            if (strcmp(cmd, "reload") && strcmp(cmd, "upgrade")) {
                fprintf(stderr, "moat: -s takes reload or upgrade, not '%s'\n", cmd);
                return EXIT_USAGE;
            }
            break;
        case 'H':
            health = 1;
            break;
        case 'P':
            preflight = 1;
            break;
        case 'V':
            print_versions();
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "moat: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return EXIT_USAGE;
    }
    /* No default file: a moat started by mistake must not serve a sample config. */
    if (!path) {
        fprintf(stderr, "moat: -c FILE is required (the configuration file; there is no "
                        "default)\n");
        usage(stderr);
        return EXIT_USAGE;
    }
    if (preflight && !check) {
        fprintf(stderr, "moat: --preflight goes with -t\n");
        return EXIT_USAGE;
    }
    if (check && health) {
        fprintf(stderr, "moat: -t and --healthcheck exclude each other\n");
        return EXIT_USAGE;
    }
    if (health)
        return healthcheck_run(path);
    if (cmd)
        return control_client(path, cmd);
    if (check && preflight && server_check(path) == 0)
        return preflight_run(path);
    if (check && preflight)
        return 1;
    return check ? server_check(path) : server_run(path);
}
