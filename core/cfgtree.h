/* cfgtree: YAML -> node tree with source marks, diagnostics, and the
 * field-table binder that both the core schema and filters use.
 *
 * OWNERSHIP: every node, string and diagnostic of a tree lives in the tree's
 * own arena (cfg_tree_free releases all of it). Scalars are NUL-terminated.
 * Main thread only.
 */
#ifndef SLUICE_CFGTREE_H
#define SLUICE_CFGTREE_H

#define SLC_NO_WRAPPERS
#include <sluice/host.h>
#include <sluice/types.h>
#include <stdarg.h>
#include <stdio.h>

typedef struct cfg_tree cfg_tree_t;

/* slc_cfg_node is public-opaque (slc_cfg_node_t); its layout is core-only. */
struct slc_cfg_node {
    slc_cfg_type_t type;
    unsigned line, col; /* 1-based */
    const char *path;   /* key path, e.g. "filters[2].config.routes" */
    const char *text;   /* SCALAR: NUL-terminated value */
    size_t text_len;
    bool quoted;                 /* SCALAR: was quoted in the source */
    size_t n;                    /* MAP: pairs, SEQ: items */
    const char **keys;           /* MAP: keys[i] */
    struct slc_cfg_node **items; /* MAP: values, SEQ: items */
    const cfg_tree_t *tree;
};

/* One recorded problem. */
typedef struct cfg_diag_msg {
    bool is_error;
    char *text; /* "file:line:col: path: message" */
    /* msg_off: where the message proper starts in |text|, after the location
     * and any "warning: " (so a test can compare the filter's own words). */
    size_t msg_off;
    /* node: what the message was reported against (NULL: no node, e.g. a
     * YAML syntax error). Borrowed from the tree, so only valid while the
     * tree lives; the filter unit tests' fake host asserts on it. */
    const slc_cfg_node_t *node;
} cfg_diag_msg_t;

/* slc_diag is the build context handed to filters as slc_diag_t. */
struct slc_diag {
    cfg_tree_t *tree;
    cfg_diag_msg_t *msgs;
    size_t nmsgs, cap;
    size_t nerrors;
    /* Set by the core while a filter instance is built: */
    void *build;          /* opaque to cfgtree: the generation being built */
    const char *instance; /* filter instance name, for metric labels */
    /* module_abi: the SLC_ABI_VERSION the calling module was compiled with
     * (module_t.abi), so cfg_bind walks its field tables with that minor's
     * stride. 0 for the core's own tables (this build's layout). */
    uint32_t module_abi;
    const slc_cluster_t *(*cluster_lookup)(void *build, slc_str_t name);
    void *(*instance_alloc)(void *build, size_t size);
    slc_metric_t *(*metric_new)(void *build, slc_metric_kind_t kind, const char *name,
                                const char *help);
    slc_metric_t *(*metric_new_labeled)(void *build, slc_metric_kind_t kind, const char *name,
                                        const char *help, const char *label, const char *value);
    slc_status_t (*cluster_pool)(void *build, const slc_cluster_t *c, const slc_pool_options_t *o);
};

/* cfg_tree_load parses |path| (file) into a tree. On a YAML syntax error it
 * still returns a tree with no root and one error in |d|. Never NULL.
 * Anchors/aliases are rejected (errors), multi-document files too. */
cfg_tree_t *cfg_tree_load(const char *path, slc_diag_t *d);
/* cfg_tree_load_string is cfg_tree_load over a buffer; |name| is used as the
 * file name in messages. */
cfg_tree_t *cfg_tree_load_string(const char *name, const char *yaml, size_t len, slc_diag_t *d);
const slc_cfg_node_t *cfg_tree_root(const cfg_tree_t *t);
const char *cfg_tree_file(const cfg_tree_t *t);
/* cfg_tree_alloc: zeroed tree-arena memory. cfg_tree_strdup likewise. */
void *cfg_tree_alloc(cfg_tree_t *t, size_t n);
char *cfg_tree_strdup(cfg_tree_t *t, const char *s);
void cfg_tree_free(cfg_tree_t *t);
/* cfg_node_new allocates a zeroed node of |type| in |t|'s arena, as the
 * loader would have made it at |line|:|col| with key path |path| (copied;
 * NULL = ""); scalars get text "". For hosts that build trees in C rather
 * than from YAML (the filter unit tests' fake host), so that their nodes are
 * the binder's own. The caller fills text/keys/items from the same arena. */
slc_cfg_node_t *cfg_node_new(cfg_tree_t *t, slc_cfg_type_t type, unsigned line, unsigned col,
                             const char *path);

/* cfg_tree_dump writes the tree back as YAML (for /config). */
void cfg_tree_dump(const slc_cfg_node_t *n, FILE *out);

void diag_init(slc_diag_t *d, cfg_tree_t *t);
void diag_cleanup(slc_diag_t *d); /* frees msgs (they are malloc'd, not tree) */
__attribute__((format(printf, 3, 4))) void diag_errorf(slc_diag_t *d, const slc_cfg_node_t *n,
                                                       const char *fmt, ...);
__attribute__((format(printf, 3, 4))) void diag_warnf(slc_diag_t *d, const slc_cfg_node_t *n,
                                                      const char *fmt, ...);
void diag_verror(slc_diag_t *d, const slc_cfg_node_t *n, const char *fmt, va_list ap);
void diag_vwarn(slc_diag_t *d, const slc_cfg_node_t *n, const char *fmt, va_list ap);
/* diag_print writes every message, one per line, to |out|. */
void diag_print(const slc_diag_t *d, FILE *out);

/* Node accessors (also the host table's cfg_* entries). NULL-safe: a NULL
 * node is SLC_CFG_NULL with length 0. */
slc_cfg_type_t cfg_type(const slc_cfg_node_t *n);
slc_str_t cfg_scalar(const slc_cfg_node_t *n);
size_t cfg_len(const slc_cfg_node_t *n);
const slc_cfg_node_t *cfg_at(const slc_cfg_node_t *n, size_t i);
slc_str_t cfg_key_at(const slc_cfg_node_t *n, size_t i);
const slc_cfg_node_t *cfg_get(const slc_cfg_node_t *n, const char *key);

/* cfg_field_stride: the size of one slc_cfg_field_t in a table compiled
 * against ABI |abi| (0 = this build). */
size_t cfg_field_stride(uint32_t abi);
/* cfg_bind: see slc_host_t.cfg_bind. Unknown keys get "did you mean 'x'?"
 * when a field name is within edit distance 2 (or a case-insensitive match).
 * An absent map (NULL node) binds defaults. */
slc_status_t cfg_bind(slc_diag_t *d, const slc_cfg_node_t *n, const slc_cfg_field_t *fields,
                      void *out);
/* The host-table entries that need the build context (config_new only),
 * dispatched through |d|'s hooks: the core's generation build and the
 * filter tests' fake host install different hooks and share these. */
const slc_cluster_t *cfg_build_cluster(slc_diag_t *d, slc_str_t name);
/* cfg_build_alloc: zeroed memory living as long as the filter instance
 * (the hook's), or as long as the tree when no instance is being built. */
void *cfg_build_alloc(slc_diag_t *d, size_t size);
slc_metric_t *cfg_build_metric(slc_diag_t *d, slc_metric_kind_t kind, const char *name,
                               const char *help);
slc_metric_t *cfg_build_metric_labeled(slc_diag_t *d, slc_metric_kind_t kind, const char *name,
                                       const char *help, const char *label, const char *value);
slc_status_t cfg_build_cluster_pool(slc_diag_t *d, const slc_cluster_t *c,
                                    const slc_pool_options_t *o);

/* cfg_duration_ms: Istio durations: integer or decimal number followed by
 * h, m, s, ms, us or ns ("1h", "1.5s", "100ms"); sums like "1m30s" too. */
slc_status_t cfg_duration_ms(slc_str_t text, uint64_t *out_ms);
/* cfg_suggest returns the candidate closest to |word| (edit distance <= 2,
 * case-insensitive), or NULL. */
const char *cfg_suggest(const char *word, const char *const *candidates, size_t n);

#endif
