/* conf: the native sluice.yaml schema bound into typed structs.
 *
 * OWNERSHIP: a conf_t owns its cfg_tree_t; every string and node pointer in
 * it is tree-arena memory, valid until conf_free. Main thread only.
 */
#ifndef SLUICE_CONF_H
#define SLUICE_CONF_H

#include "cfgtree.h"

#include <sys/socket.h>

enum { CONF_PROTO_HTTP = 0, CONF_PROTO_TCP = 1 };
enum { CONF_RES_STATIC = 0, CONF_RES_DNS = 1 };

typedef struct conf_filter {
    const char *name;
    const char *module;
    const slc_cfg_node_t *config; /* may be NULL */
    const slc_cfg_node_t *node;   /* the list item, for diagnostics */
} conf_filter_t;

typedef struct conf_cluster {
    const char *name;
    const slc_cfg_node_t *endpoints_node;
    const char **endpoints; /* "ip:port", or "host:port" with resolution dns */
    size_t nendpoints;
    int resolution;          /* CONF_RES_* */
    uint64_t dns_refresh_ms; /* how often dns endpoints are looked up again */
    uint64_t connect_timeout_ms;
    uint64_t idle_timeout_ms;
    uint32_t max_idle;
    /* active HTTP health checking; path == NULL: off */
    struct conf_health {
        const char *path;
        const char *host;
        uint64_t interval_ms, timeout_ms;
        uint32_t healthy_threshold, unhealthy_threshold;
    } hc;
    const slc_cfg_node_t *node;
} conf_cluster_t;

typedef struct conf_listener {
    const char *name;
    const char *address;
    int protocol;
    const slc_cfg_node_t *chain_node;
    const char **chain; /* filter instance names, in order */
    size_t nchain;
    uint32_t max_request_line;
    uint32_t max_header_bytes;
    uint32_t max_headers;
    uint64_t header_timeout_ms;
    uint64_t idle_timeout_ms;
    /* A client EOF while its response is pending cancels the stream (as
     * Envoy and nginx do); false serves half-closed clients instead. */
    bool abort_on_client_close;
    /* X-Forwarded-For as Envoy's connection manager treats it: append the
     * peer (use_remote_address) and trust that many hops' addresses and
     * x-forwarded-proto. */
    bool use_remote_address;
    uint32_t xff_num_trusted_hops;
    const slc_cfg_node_t *node;
} conf_listener_t;

typedef struct conf {
    cfg_tree_t *tree;
    char *text; /* malloc'd: the YAML it was parsed from (DNS rebuilds reuse it) */
    size_t text_len;
    const char **nameservers; /* dns.nameservers (tree-arena); none: the system's */
    size_t nnameservers;
    char *path;       /* malloc'd: the file it was loaded from */
    char *dir;        /* malloc'd: its directory, for relative paths */
    char *filter_dir; /* malloc'd: resolved filter directory */
    uint32_t workers;
    int log_level;
    const char *admin_address;
    uint64_t drain_timeout_ms;
    conf_filter_t *filters;
    size_t nfilters;
    conf_cluster_t *clusters;
    size_t nclusters;
    conf_listener_t *listeners;
    size_t nlisteners;
} conf_t;

/* Where bare module names resolve, highest precedence first:
 *   1. the configuration's filter_dir key (relative: to the config file's
 *      directory);
 *   2. --filter-dir DIR;
 *   3. the SLUICE_FILTER_DIR environment variable;
 *   4. the built-in default (conf_builtin_filter_dir).
 * The key wins so that one configuration file loads the same code however
 * sluice is started; the flag and the variable only say where a binary's
 * filters are when the configuration does not. main resolves 2-4 once, at
 * start, and hands the result to conf_set_default_filter_dir: a reload
 * must not change its mind because the binary was rebuilt meanwhile. */

/* conf_builtin_filter_dir is SLUICE_BUILD_FILTER_DIR when |exe| is the very
 * file the build tree linked (SLUICE_BUILD_BINARY, compared by device and
 * inode), else the install's SLUICE_DEFAULT_FILTER_DIR. |exe| may be NULL. */
const char *conf_builtin_filter_dir(const char *exe);
/* conf_pick_filter_dir applies 2-4 above: |flag|, else |env|, else the
 * built-in default for |exe|. NULL or empty strings count as absent. A
 * relative |flag| or |env| is made absolute against the working directory,
 * as -c is read. Returns a malloc'd path. */
char *conf_pick_filter_dir(const char *flag, const char *env, const char *exe);
/* conf_set_default_filter_dir sets the directory used by every later
 * conf_load whose configuration has no filter_dir key (copied; NULL goes
 * back to SLUICE_DEFAULT_FILTER_DIR). */
void conf_set_default_filter_dir(const char *dir);
/* conf_default_filter_dir is what conf_set_default_filter_dir set. */
const char *conf_default_filter_dir(void);

/* conf_load reads and checks |path|. Every problem goes to |d| (which must
 * be initialised by the caller and is bound to the new tree here). Returns
 * NULL if any error was recorded. */
conf_t *conf_load(const char *path, slc_diag_t *d);
/* conf_load_text is conf_load over YAML already in memory (copied). */
conf_t *conf_load_text(const char *path, const char *text, size_t len, slc_diag_t *d);
/* conf_dns_names lists the distinct host names of `resolution: dns`
 * clusters (malloc'd array of tree-arena strings; free the array only). */
const char **conf_dns_names(const conf_t *c, size_t *n);
/* conf_split_hostport splits "host:port" / "[v6]:port". */
int conf_split_hostport(const char *s, char *host, size_t hostlen, int *port);
void conf_free(conf_t *c);

const conf_filter_t *conf_find_filter(const conf_t *c, const char *name);
const conf_cluster_t *conf_find_cluster(const conf_t *c, const char *name);

/* conf_parse_address parses "ip:port" / "[v6]:port" / "localhost:port". */
int conf_parse_address(const char *s, struct sockaddr_storage *out, int *out_len);

#endif
