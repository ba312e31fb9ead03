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

#include "core/server.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: moat [-c FILE] [-t] [-V] [-h]\n"
               "  -c FILE  configuration (default conf/moat.yaml)\n"
               "  -t       validate the configuration (files included) and exit 0/1\n"
               "  -V       print the version and the library versions in use\n"
               "signals: SIGHUP reloads, SIGTERM/SIGINT drain and exit\n");
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
    const char *path = "conf/moat.yaml";
    int check = 0, opt;
    while ((opt = getopt(argc, argv, "c:tVh")) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            check = 1;
            break;
        case 'V':
            print_versions();
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 1;
        }
    }
    if (optind < argc) {
        usage(stderr);
        return 1;
    }
    return check ? server_check(path) : server_run(path);
}
