/* sluice: service-mesh data-plane proxy. Command line entry. */
#include "bufmem.h"
#include "conf.h"
#include "log.h"
#include "server.h"

#include <getopt.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* /proc/self/exe names the running file even when started through a
 * symlink or a relative path; the built-in filter directory depends on it. */
#define SELF_EXE "/proc/self/exe"

enum { OPT_FILTER_DIR = 256 }; /* long only: past every short option's char */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sluice [-c FILE] [--filter-dir DIR] [--validate] [--help] [--version]\n"
            "\n"
            "  -c, --config FILE     configuration file (default /etc/sluice/sluice.yaml)\n"
            "      --filter-dir DIR  where bare module names resolve when the configuration\n"
            "                        has no filter_dir key (default: $SLUICE_FILTER_DIR,\n"
            "                        else %s)\n"
            "      --validate        check the configuration (filters loaded and configured),\n"
            "                        print every error, exit 1 if there is any\n"
            "  -h, --help            this text\n"
            "  -V, --version         version and filter ABI\n"
            "\n"
            "Signals: SIGHUP reloads the configuration (a bad one is refused and the\n"
            "running one keeps serving); SIGTERM or SIGINT drains and exits.\n",
            conf_builtin_filter_dir(SELF_EXE));
}

int main(int argc, char **argv)
{
    const char *config = "/etc/sluice/sluice.yaml";
    const char *filter_dir = NULL;
    bool validate = false;
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"filter-dir", required_argument, NULL, OPT_FILTER_DIR},
        {"validate", no_argument, NULL, 't'},
        {"help", no_argument, NULL, 'h'},
        {"version", no_argument, NULL, 'V'},
        {NULL, 0, NULL, 0},
    };
    int c;
    while ((c = getopt_long(argc, argv, "c:thV", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            config = optarg;
            break;
        case OPT_FILTER_DIR:
            if (!*optarg) {
                fprintf(stderr, "sluice: --filter-dir needs a directory\n");
                usage(stderr);
                return 2;
            }
            filter_dir = optarg;
            break;
        case 't':
            validate = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            printf("sluice %s (filter ABI %d.%d)\n", SLUICE_VERSION, SLC_ABI_MAJOR, SLC_ABI_MINOR);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sluice: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    char *dir = conf_pick_filter_dir(filter_dir, getenv("SLUICE_FILTER_DIR"), SELF_EXE);
    conf_set_default_filter_dir(dir);
    free(dir);
    /* Before any libevent call: buffer chains live apart from the heap
     * (bufmem.h). Without it (sanitizer builds) they are malloc'd. */
    bufmem_install();
    if (validate)
        return server_validate(config);
    /* Buffers come and go with every request. With glibc's default trim
     * threshold a worker's heap top was handed back to the kernel (madvise)
     * and faulted in again a few requests later: about one page fault per
     * request. Keeping up to 64 MiB of free heap per arena costs nothing
     * under load and little when idle. */
    mallopt(M_TRIM_THRESHOLD, 64 * 1024 * 1024);
    return server_run(config);
}
