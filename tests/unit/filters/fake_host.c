/* fake_host: see fake_host.h. The config side is not a fake: nodes,
 * accessors, cfg_bind, durations and the diag are the core's (cfgtree.h),
 * so a filter's configuration binds here exactly as in sluice; only the
 * build context behind the diag's hooks (clusters, cfg_alloc, metrics) is
 * modelled below. */
#define SLC_NO_WRAPPERS
#include "fake_host.h"

#include "cfgtree.h"

#include <sluice/util.h>

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- small helpers ---------------------------------------------------------- */

static void *xcalloc(size_t n, size_t size)
{
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p == NULL) {
        fprintf(stderr, "fake_host: out of memory\n");
        abort();
    }
    return p;
}

static void *xrealloc(void *p, size_t size)
{
    p = realloc(p, size ? size : 1);
    if (p == NULL) {
        fprintf(stderr, "fake_host: out of memory\n");
        abort();
    }
    return p;
}

static char *xstrndup(const char *s, size_t len)
{
    char *d = xcalloc(1, len + 1);
    if (len > 0) {
        memcpy(d, s, len);
    }
    return d;
}

static char *xstrdup(const char *s)
{
    return s == NULL ? NULL : xstrndup(s, strlen(s));
}

/* The fake host uses the util library's case rule, as the core does; config
 * binding and durations are the core's own functions (cfgtree.c). */
static bool str_ieq(slc_str_t a, slc_str_t b)
{
    return slcu_caseeq(a, b);
}

static slc_str_t str_of(const char *s)
{
    return s == NULL ? SLC_STR_NULL : (slc_str_t){s, strlen(s)};
}

/* ---- logging ------------------------------------------------------------ */

static size_t g_log_count;
static char g_log_last[1024];
static slc_log_level_t g_log_min = SLC_LOG_DEBUG;

static void fh_log(slc_log_level_t level, const char *filter, const char *fmt, va_list ap)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    char msg[900];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    snprintf(g_log_last, sizeof(g_log_last), "level=%s filter=%s msg=\"%s\"",
             (unsigned)level < 4 ? names[level] : "?", filter ? filter : "-", msg);
    g_log_count++;
    const char *env = getenv("FAKE_HOST_LOG");
    if (env != NULL && *env != '\0' && *env != '0') {
        fprintf(stderr, "fake_host: %s\n", g_log_last);
    }
}

static bool fh_log_enabled(slc_log_level_t level)
{
    return level >= g_log_min;
}

size_t fake_log_count(void)
{
    return g_log_count;
}

const char *fake_log_last(void)
{
    return g_log_last;
}

void fake_log_set_level(slc_log_level_t min)
{
    g_log_min = min;
}

/* ---- config trees --------------------------------------------------------- */

/* Nodes are the core's own (cfgtree.h), allocated by cfg_node_new in one
 * tree the fake host owns (g_tree, "fake.yaml"), so cfg_bind and the node
 * accessors see exactly what they see in sluice. Builders run bottom-up
 * (children before their parent), so a node's path, line and column are
 * (re)assigned by layout() each time a map or sequence adopts it, as a
 * block-style YAML file of the final tree would place them.
 *
 * OWNERSHIP: every node, key, text and path lives in g_tree's arena until
 * fake_cfg_free_all(); g_adopted (malloc'd) only remembers which nodes have a
 * parent, to refuse a second one. */
static cfg_tree_t *g_tree;
static const slc_cfg_node_t **g_adopted;
static size_t g_nadopted, g_adopted_cap;

/* fake_tree returns the node tree, made on first use from "{}" like the core
 * would load a file (its root is unused). */
static cfg_tree_t *fake_tree(void)
{
    if (g_tree == NULL) {
        slc_diag_t d;
        diag_init(&d, NULL);
        g_tree = cfg_tree_load_string("fake.yaml", "{}", 2, &d);
        if (d.nerrors != 0) {
            diag_print(&d, stderr);
            abort();
        }
        diag_cleanup(&d);
    }
    return g_tree;
}

static slc_cfg_node_t *node_new(slc_cfg_type_t type)
{
    return cfg_node_new(fake_tree(), type, 1, 1, "");
}

static void node_adopt(const slc_cfg_node_t *child)
{
    for (size_t i = 0; i < g_nadopted; i++) {
        if (g_adopted[i] == child) {
            fprintf(stderr, "fake_host: a config node was given two parents\n");
            abort();
        }
    }
    if (g_nadopted == g_adopted_cap) {
        g_adopted_cap = g_adopted_cap ? 2 * g_adopted_cap : 64;
        g_adopted = xrealloc(g_adopted, g_adopted_cap * sizeof(*g_adopted));
    }
    g_adopted[g_nadopted++] = child;
}

/* is_block: a non-empty map or sequence, written on the lines below its key. */
static bool is_block(const slc_cfg_node_t *n)
{
    return (n->type == SLC_CFG_MAP || n->type == SLC_CFG_SEQ) && n->n > 0;
}

/* layout places |n| (key path |path|) with its first token at *line:col and
 * leaves *line at the next free line: a map puts one key per line at |col|,
 * a scalar value after "key: ", a block value on the next lines indented by
 * two; a sequence puts "- " at |col| and each item after it. */
static void layout(slc_cfg_node_t *n, const char *path, unsigned *line, unsigned col)
{
    cfg_tree_t *t = fake_tree();
    n->path = cfg_tree_strdup(t, path);
    n->line = *line;
    n->col = col;
    if (!is_block(n)) {
        (*line)++;
        return;
    }
    for (size_t i = 0; i < n->n; i++) {
        slc_cfg_node_t *v = n->items[i];
        char *sub;
        if (n->type == SLC_CFG_MAP) {
            size_t need = strlen(path) + strlen(n->keys[i]) + 2;
            sub = xcalloc(1, need);
            snprintf(sub, need, "%s%s%s", path, path[0] ? "." : "", n->keys[i]);
            if (is_block(v)) {
                (*line)++; /* "key:" alone on its line */
                layout(v, sub, line, col + 2);
            } else {
                layout(v, sub, line, col + (unsigned)strlen(n->keys[i]) + 2);
            }
        } else {
            size_t need = strlen(path) + 24;
            sub = xcalloc(1, need);
            snprintf(sub, need, "%s[%zu]", path, i);
            layout(v, sub, line, col + 2);
        }
        free(sub);
    }
}

static void relayout(slc_cfg_node_t *root)
{
    unsigned line = 1;
    layout(root, "", &line, 1);
}

slc_cfg_node_t *fake_scalar(const char *text)
{
    slc_cfg_node_t *n = node_new(SLC_CFG_SCALAR);
    n->text = cfg_tree_strdup(fake_tree(), text ? text : "");
    n->text_len = strlen(n->text);
    return n;
}

slc_cfg_node_t *fake_null(void)
{
    return node_new(SLC_CFG_NULL);
}

slc_cfg_node_t *fake_map(const char *key, ...)
{
    slc_cfg_node_t *n = node_new(SLC_CFG_MAP);
    const char **keys = NULL;
    slc_cfg_node_t **items = NULL;
    size_t cnt = 0;
    va_list ap;
    va_start(ap, key);
    for (const char *k = key; k != NULL; k = va_arg(ap, const char *)) {
        slc_cfg_node_t *v = va_arg(ap, slc_cfg_node_t *);
        if (v == NULL) {
            v = fake_null();
        }
        node_adopt(v);
        keys = xrealloc(keys, (cnt + 1) * sizeof(*keys));
        items = xrealloc(items, (cnt + 1) * sizeof(*items));
        keys[cnt] = cfg_tree_strdup(fake_tree(), k);
        items[cnt] = v;
        cnt++;
    }
    va_end(ap);
    /* The node's arrays live in the tree like a parsed map's. */
    if (cnt > 0) {
        n->keys = cfg_tree_alloc(fake_tree(), cnt * sizeof(*n->keys));
        n->items = cfg_tree_alloc(fake_tree(), cnt * sizeof(*n->items));
        memcpy(n->keys, keys, cnt * sizeof(*keys));
        memcpy(n->items, items, cnt * sizeof(*items));
        n->n = cnt;
    }
    free(keys);
    free(items);
    relayout(n);
    return n;
}

slc_cfg_node_t *fake_empty_map(void)
{
    return node_new(SLC_CFG_MAP);
}

slc_cfg_node_t *fake_empty_seq(void)
{
    return node_new(SLC_CFG_SEQ);
}

slc_cfg_node_t *fake_seq(slc_cfg_node_t *item, ...)
{
    slc_cfg_node_t *n = node_new(SLC_CFG_SEQ);
    slc_cfg_node_t **items = NULL;
    size_t cnt = 0;
    va_list ap;
    va_start(ap, item);
    for (slc_cfg_node_t *v = item; v != NULL; v = va_arg(ap, slc_cfg_node_t *)) {
        node_adopt(v);
        items = xrealloc(items, (cnt + 1) * sizeof(*items));
        items[cnt++] = v;
    }
    va_end(ap);
    if (cnt > 0) {
        n->items = cfg_tree_alloc(fake_tree(), cnt * sizeof(*n->items));
        memcpy(n->items, items, cnt * sizeof(*items));
        n->n = cnt;
    }
    free(items);
    relayout(n);
    return n;
}

/* Trees fake_yaml loaded, freed with the rest by fake_cfg_free_all. */
static cfg_tree_t **g_loaded;
static size_t g_nloaded, g_loaded_cap;

const slc_cfg_node_t *fake_yaml(const char *file, const char *text)
{
    slc_diag_t d;
    diag_init(&d, NULL);
    cfg_tree_t *t = cfg_tree_load_string(file, text, strlen(text), &d);
    if (d.nerrors != 0) {
        diag_print(&d, stderr);
        fprintf(stderr, "fake_yaml: test YAML does not parse: %s\n", text);
        abort();
    }
    diag_cleanup(&d);
    if (g_nloaded == g_loaded_cap) {
        g_loaded_cap = g_loaded_cap ? g_loaded_cap * 2 : 16;
        g_loaded = realloc(g_loaded, g_loaded_cap * sizeof(*g_loaded));
        if (g_loaded == NULL) {
            abort();
        }
    }
    g_loaded[g_nloaded++] = t;
    return cfg_tree_root(t);
}

void fake_cfg_free_all(void)
{
    for (size_t i = 0; i < g_nloaded; i++) {
        cfg_tree_free(g_loaded[i]);
    }
    free(g_loaded);
    g_loaded = NULL;
    g_nloaded = g_loaded_cap = 0;
    cfg_tree_free(g_tree);
    g_tree = NULL;
    free(g_adopted);
    g_adopted = NULL;
    g_nadopted = g_adopted_cap = 0;
}

const char *fake_cfg_path(const slc_cfg_node_t *n, char *buf, size_t size)
{
    if (size > 0) {
        snprintf(buf, size, "%s", n == NULL ? "(none)" : n->path ? n->path : "");
    }
    return buf;
}

const slc_cfg_node_t *fake_cfg_find(const slc_cfg_node_t *root, const char *path)
{
    const slc_cfg_node_t *n = root;
    const char *p = path;
    while (n != NULL && *p != '\0') {
        if (*p == '.') {
            p++;
        }
        size_t klen = strcspn(p, ".[");
        if (klen > 0) {
            const slc_cfg_node_t *next = NULL;
            if (n->type == SLC_CFG_MAP) {
                for (size_t i = 0; i < n->n; i++) {
                    if (strlen(n->keys[i]) == klen && memcmp(n->keys[i], p, klen) == 0) {
                        next = n->items[i];
                        break;
                    }
                }
            }
            n = next;
            p += klen;
        }
        while (n != NULL && *p == '[') {
            char *end;
            unsigned long idx = strtoul(p + 1, &end, 10);
            if (*end != ']' || n->type != SLC_CFG_SEQ || idx >= n->n) {
                return NULL;
            }
            n = n->items[idx];
            p = end + 1;
        }
    }
    return n;
}

/* ---- generations ---------------------------------------------------------- */

struct slc_endpoint {
    char *addr;
    bool healthy;
    uint32_t active;
    uint64_t ejected_until; /* fake clock, see fake_set_now_ms */
    size_t index;
    const struct slc_cluster *cluster;
};

struct slc_cluster {
    char *name;
    size_t n;
    struct slc_endpoint *eps;
    struct slc_cluster *next;
    bool pool_set;
    slc_pool_options_t pool;
};

/* The fake's monotonic clock for now_ms and ejections (tests set it). */
static uint64_t fake_clock_ms = 1000000;

void fake_set_now_ms(uint64_t ms)
{
    fake_clock_ms = ms;
}

uint64_t fake_get_now_ms(void)
{
    return fake_clock_ms;
}

struct fake_gen {
    slc_cluster_t *clusters;
};

fake_gen_t *fake_gen_new(void)
{
    return xcalloc(1, sizeof(fake_gen_t));
}

void fake_gen_free(fake_gen_t *g)
{
    if (g == NULL) {
        return;
    }
    while (g->clusters != NULL) {
        slc_cluster_t *c = g->clusters;
        g->clusters = c->next;
        for (size_t i = 0; i < c->n; i++) {
            free(c->eps[i].addr);
        }
        free(c->eps);
        free(c->name);
        free(c);
    }
    free(g);
}

slc_cluster_t *fake_cluster_add(fake_gen_t *g, const char *name, ...)
{
    slc_cluster_t *c = xcalloc(1, sizeof(*c));
    c->name = xstrdup(name);
    va_list ap;
    va_start(ap, name);
    for (const char *a = va_arg(ap, const char *); a != NULL; a = va_arg(ap, const char *)) {
        c->eps = xrealloc(c->eps, (c->n + 1) * sizeof(*c->eps));
        c->eps[c->n] = (struct slc_endpoint){.addr = xstrdup(a), .healthy = true};
        c->n++;
    }
    va_end(ap);
    for (size_t i = 0; i < c->n; i++) {
        c->eps[i].index = i;
        c->eps[i].cluster = c;
    }
    /* Append so that lookups see clusters in declaration order. */
    slc_cluster_t **tail = &g->clusters;
    while (*tail != NULL) {
        tail = &(*tail)->next;
    }
    *tail = c;
    return c;
}

slc_endpoint_t *fake_endpoint(slc_cluster_t *c, size_t i)
{
    return i < c->n ? &c->eps[i] : NULL;
}

void fake_endpoint_set_healthy(slc_endpoint_t *e, bool healthy)
{
    e->healthy = healthy;
}

void fake_endpoint_set_active(slc_endpoint_t *e, uint32_t active)
{
    e->active = active;
}

static const slc_cluster_t *gen_lookup(const fake_gen_t *g, slc_str_t name)
{
    if (g == NULL) {
        return NULL;
    }
    for (const slc_cluster_t *c = g->clusters; c != NULL; c = c->next) {
        if (strlen(c->name) == name.len && memcmp(c->name, name.ptr, name.len) == 0) {
            return c;
        }
    }
    return NULL;
}

static slc_str_t fh_cluster_name(const slc_cluster_t *c)
{
    return str_of(c->name);
}

static size_t fh_cluster_endpoint_count(const slc_cluster_t *c)
{
    return c->n;
}

static const slc_endpoint_t *fh_cluster_endpoint(const slc_cluster_t *c, size_t i)
{
    return i < c->n ? &c->eps[i] : NULL;
}

static slc_str_t fh_endpoint_address(const slc_endpoint_t *e)
{
    return str_of(e->addr);
}

static uint32_t fh_endpoint_active_requests(const slc_endpoint_t *e)
{
    return e->active;
}

static bool fh_endpoint_healthy(const slc_endpoint_t *e)
{
    /* As the core: healthy and not ejected right now. */
    return e->healthy && e->ejected_until <= fake_clock_ms;
}

/* ---- diagnostics --------------------------------------------------------- */

/* A fake diag is the core's slc_diag_t (messages, error count, the tree
 * defaults are copied into) plus what gen.c's build context would hold: the
 * generation clusters are looked up in, cfg_alloc memory and metrics. The
 * core's hooks point back here through |build|, and the host table's
 * cfg_cluster, cfg_alloc, metric_new(_labeled) and cfg_cluster_pool dispatch through those
 * hooks exactly as core/hostapi.c does.
 *
 * OWNERSHIP: the fake_diag owns its messages (diag_cleanup), allocs and
 * metrics; its core.tree is the shared node tree (fake_tree), borrowed, so
 * diags are freed before fake_cfg_free_all (as the tests' teardowns do). */
struct alloc_blk {
    struct alloc_blk *next;
    max_align_t data[];
};

struct slc_metric {
    char *name;
    char *help;
    slc_metric_kind_t kind;
    int64_t value;
    struct slc_metric *next;
};

typedef struct fake_diag {
    slc_diag_t core; /* first: an slc_diag_t * of ours is a fake_diag_t * */
    fake_gen_t *gen;
    struct alloc_blk *allocs;
    slc_metric_t *metrics;
} fake_diag_t;

static fake_diag_t *fdiag(const slc_diag_t *d)
{
    return (fake_diag_t *)d;
}

static const slc_cluster_t *fd_cluster_lookup(void *build, slc_str_t name)
{
    return gen_lookup(((fake_diag_t *)build)->gen, name);
}

static void *fd_instance_alloc(void *build, size_t size)
{
    fake_diag_t *fd = build;
    struct alloc_blk *b = xcalloc(1, sizeof(*b) + size);
    b->next = fd->allocs;
    fd->allocs = b;
    return b->data;
}

static bool metric_name_ok(const char *name)
{
    if (name == NULL || !((*name >= 'a' && *name <= 'z') || *name == '_')) {
        return false;
    }
    for (const char *p = name; *p; p++) {
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_')) {
            return false;
        }
    }
    return true;
}

/* fd_metric_new never returns NULL: a bad or duplicate name is a config
 * error, and the filter still gets a metric it can add to. */
static slc_metric_t *fd_metric_new(void *build, slc_metric_kind_t kind, const char *name,
                                   const char *help)
{
    fake_diag_t *fd = build;
    if (!metric_name_ok(name)) {
        diag_errorf(&fd->core, NULL, "invalid metric name '%s'", name ? name : "(null)");
    } else if (fake_metric(&fd->core, name) != NULL) {
        diag_errorf(&fd->core, NULL, "metric '%s' registered twice", name);
    }
    slc_metric_t *m = xcalloc(1, sizeof(*m));
    m->name = xstrdup(name ? name : "");
    m->help = xstrdup(help ? help : "");
    m->kind = kind;
    m->next = fd->metrics;
    fd->metrics = m;
    return m;
}

static slc_metric_t *fd_metric_new_labeled(void *build, slc_metric_kind_t kind, const char *name,
                                           const char *help, const char *label, const char *value)
{
    /* Registered as "name{label=value}" so tests can find each series. */
    slc_metric_t *m = fd_metric_new(build, kind, name, help);
    char buf[256];
    snprintf(buf, sizeof(buf), "%s{%s=%s}", name, label ? label : "", value ? value : "");
    free(m->name);
    m->name = xstrdup(buf);
    return m;
}

static slc_status_t fd_cluster_pool(void *build, const slc_cluster_t *c,
                                    const slc_pool_options_t *o)
{
    (void)build;
    slc_cluster_t *m = (slc_cluster_t *)c;
    if (m->pool_set)
        return SLC_EINVAL;
    m->pool_set = true;
    m->pool = *o;
    return SLC_OK;
}

slc_diag_t *fake_diag_new(fake_gen_t *g)
{
    fake_diag_t *fd = xcalloc(1, sizeof(*fd));
    diag_init(&fd->core, fake_tree());
    fd->core.build = fd;
    fd->core.instance = "test";
    fd->core.cluster_lookup = fd_cluster_lookup;
    fd->core.instance_alloc = fd_instance_alloc;
    fd->core.metric_new = fd_metric_new;
    fd->core.metric_new_labeled = fd_metric_new_labeled;
    fd->core.cluster_pool = fd_cluster_pool;
    fd->gen = g;
    return &fd->core;
}

void fake_diag_free(slc_diag_t *d)
{
    if (d == NULL) {
        return;
    }
    fake_diag_t *fd = fdiag(d);
    diag_cleanup(&fd->core);
    while (fd->allocs != NULL) {
        struct alloc_blk *b = fd->allocs;
        fd->allocs = b->next;
        free(b);
    }
    while (fd->metrics != NULL) {
        slc_metric_t *m = fd->metrics;
        fd->metrics = m->next;
        free(m->name);
        free(m->help);
        free(m);
    }
    free(fd);
}

size_t fake_diag_count(const slc_diag_t *d)
{
    return d->nmsgs;
}

size_t fake_diag_errors(const slc_diag_t *d)
{
    return d->nerrors;
}

const char *fake_diag_msg(const slc_diag_t *d, size_t i)
{
    return i < d->nmsgs ? d->msgs[i].text + d->msgs[i].msg_off : NULL;
}

const slc_cfg_node_t *fake_diag_node(const slc_diag_t *d, size_t i)
{
    return i < d->nmsgs ? d->msgs[i].node : NULL;
}

const char *fake_diag_path(const slc_diag_t *d, size_t i)
{
    if (i >= d->nmsgs) {
        return NULL;
    }
    const slc_cfg_node_t *n = d->msgs[i].node;
    return n == NULL ? "(none)" : n->path ? n->path : "";
}

bool fake_diag_is_error(const slc_diag_t *d, size_t i)
{
    return i < d->nmsgs && d->msgs[i].is_error;
}

int fake_diag_find(const slc_diag_t *d, const char *needle)
{
    for (size_t i = 0; i < d->nmsgs; i++) {
        if (strstr(fake_diag_msg(d, i), needle) != NULL) {
            return (int)i;
        }
    }
    return -1;
}

void fake_diag_dump(const slc_diag_t *d)
{
    for (size_t i = 0; i < d->nmsgs; i++) {
        fprintf(stderr, "  [%zu] %s\n", i, d->msgs[i].text);
    }
}

slc_metric_t *fake_metric(const slc_diag_t *d, const char *name)
{
    for (slc_metric_t *m = fdiag(d)->metrics; m != NULL; m = m->next) {
        if (strcmp(m->name, name) == 0) {
            return m;
        }
    }
    return NULL;
}

int64_t fake_metric_value(const slc_metric_t *m)
{
    return m->value;
}

slc_metric_kind_t fake_metric_kind(const slc_metric_t *m)
{
    return m->kind;
}

static void fh_metric_add(slc_req_t *r, slc_metric_t *m, int64_t v)
{
    (void)r;
    if (m != NULL) {
        m->value += v;
    }
}

/* ---- connections ----------------------------------------------------------- */

struct byte_buf {
    char *p;
    size_t len, cap;
};

struct slc_conn {
    char *peer, *local;
    char *identity, *sni, *alpn;
    const slc_transport_t *t;
    void *tctx;
    bool ready;
    struct byte_buf out[2]; /* by slc_emit_t */
    char *taken[2];         /* last buffer handed out by fake_conn_emitted */
    /* ABI 1.4: a peer certificate's identity (principal NULL: none) and
     * whether the transport is secure (-1: as the transport says). */
    char *cert_principal, *cert_td, *cert_ns, *cert_spiffe;
    int secure;
};

slc_conn_t *fake_conn_new(const char *peer, const char *local)
{
    slc_conn_t *c = xcalloc(1, sizeof(*c));
    c->peer = xstrdup(peer ? peer : "127.0.0.1:40000");
    c->local = xstrdup(local ? local : "127.0.0.1:8080");
    c->secure = -1;
    return c;
}

void fake_conn_free(slc_conn_t *c)
{
    if (c == NULL) {
        return;
    }
    if (c->t != NULL && c->t->free != NULL) {
        c->t->free(c->tctx);
    }
    free(c->peer);
    free(c->local);
    free(c->identity);
    free(c->sni);
    free(c->alpn);
    free(c->cert_principal);
    free(c->cert_td);
    free(c->cert_ns);
    free(c->cert_spiffe);
    for (int i = 0; i < 2; i++) {
        free(c->out[i].p);
        free(c->taken[i]);
    }
    free(c);
}

void fake_conn_set_tls(slc_conn_t *c, const char *peer_identity, const char *sni, const char *alpn)
{
    free(c->identity);
    free(c->sni);
    free(c->alpn);
    c->identity = xstrdup(peer_identity);
    c->sni = xstrdup(sni);
    c->alpn = xstrdup(alpn);
}

const slc_transport_t *fake_conn_transport(const slc_conn_t *c)
{
    return c->t;
}

void *fake_conn_transport_ctx(const slc_conn_t *c)
{
    return c->tctx;
}

bool fake_conn_ready(const slc_conn_t *c)
{
    return c->ready;
}

slc_str_t fake_conn_emitted(slc_conn_t *c, slc_emit_t dir)
{
    int i = dir == SLC_EMIT_WIRE ? 1 : 0;
    free(c->taken[i]);
    c->taken[i] = c->out[i].p;
    slc_str_t s = {c->out[i].p, c->out[i].len};
    c->out[i] = (struct byte_buf){0};
    return s;
}

static slc_str_t fh_conn_peer(slc_conn_t *c)
{
    return str_of(c->peer);
}

static slc_str_t fh_conn_local(slc_conn_t *c)
{
    return str_of(c->local);
}

static slc_status_t fh_conn_set_transport(slc_conn_t *c, const slc_transport_t *t, void *ctx)
{
    if (c->t != NULL || t == NULL) {
        return SLC_ESTATE;
    }
    c->t = t;
    c->tctx = ctx;
    return SLC_OK;
}

static slc_status_t fh_conn_emit(slc_conn_t *c, slc_emit_t dir, const uint8_t *data, size_t len)
{
    struct byte_buf *b = &c->out[dir == SLC_EMIT_WIRE ? 1 : 0];
    if (b->len + len + 1 > b->cap) {
        b->cap = (b->len + len + 1) * 2;
        b->p = xrealloc(b->p, b->cap);
    }
    if (len > 0) {
        memcpy(b->p + b->len, data, len);
    }
    b->len += len;
    b->p[b->len] = '\0';
    return SLC_OK;
}

static void fh_conn_transport_ready(slc_conn_t *c)
{
    c->ready = true;
}

static slc_str_t fh_conn_peer_identity(slc_conn_t *c)
{
    if (c->identity != NULL) {
        return str_of(c->identity);
    }
    if (c->t != NULL && c->t->peer_identity != NULL) {
        return c->t->peer_identity(c->tctx);
    }
    return SLC_STR_NULL;
}

static slc_str_t fh_conn_sni(slc_conn_t *c)
{
    if (c->sni != NULL) {
        return str_of(c->sni);
    }
    if (c->t != NULL && c->t->sni != NULL) {
        return c->t->sni(c->tctx);
    }
    return SLC_STR_NULL;
}

static slc_str_t fh_conn_alpn(slc_conn_t *c)
{
    if (c->alpn != NULL) {
        return str_of(c->alpn);
    }
    if (c->t != NULL && c->t->alpn != NULL) {
        return c->t->alpn(c->tctx);
    }
    return SLC_STR_NULL;
}

/* ---- ABI 1.4: peer certificates and secure transports ---------------------- */

void fake_conn_set_peer_cert(slc_conn_t *c, const char *principal)
{
    free(c->cert_principal);
    free(c->cert_td);
    free(c->cert_ns);
    free(c->cert_spiffe);
    c->cert_principal = c->cert_td = c->cert_ns = c->cert_spiffe = NULL;
    if (principal == NULL) {
        return;
    }
    c->cert_principal = xstrdup(principal);
    if (principal[0] == '\0') {
        return; /* a certificate without a SPIFFE identity */
    }
    const char *slash = strchr(principal, '/');
    c->cert_td = slash ? xstrndup(principal, (size_t)(slash - principal)) : xstrdup(principal);
    const char *ns = strstr(principal, "/ns/");
    if (ns != NULL) {
        ns += 4;
        const char *e = strchr(ns, '/');
        c->cert_ns = e ? xstrndup(ns, (size_t)(e - ns)) : xstrdup(ns);
    }
    size_t n = strlen(principal) + sizeof("spiffe://");
    c->cert_spiffe = xcalloc(1, n);
    snprintf(c->cert_spiffe, n, "spiffe://%s", principal);
}

void fake_conn_set_secure(slc_conn_t *c, int secure)
{
    c->secure = secure;
}

static slc_str_t str_or_null(const char *s)
{
    return s ? str_of(s) : SLC_STR_NULL;
}

static slc_status_t fh_conn_peer_cert(slc_conn_t *c, slc_peer_cert_t *out)
{
    if (c->cert_principal != NULL) {
        slc_peer_cert_t pc = {.struct_size = sizeof(pc)};
        if (c->cert_principal[0] != '\0') {
            pc.principal = str_of(c->cert_principal);
            pc.trust_domain = str_or_null(c->cert_td);
            pc.ns = str_or_null(c->cert_ns);
            pc.spiffe_id = str_of(c->cert_spiffe);
        }
        uint32_t keep = out->struct_size < sizeof(pc) ? out->struct_size : (uint32_t)sizeof(pc);
        memcpy(out, &pc, keep);
        out->struct_size = keep;
        return SLC_OK;
    }
    if (c->t != NULL && slc_transport_has(c->t, peer_cert)) {
        return c->t->peer_cert(c->tctx, out);
    }
    return SLC_ENOENT;
}

static bool fh_conn_secure(slc_conn_t *c)
{
    if (c->secure >= 0) {
        return c->secure != 0;
    }
    if (c->t == NULL) {
        return false;
    }
    return slc_transport_has(c->t, secure) ? c->t->secure(c->tctx) : true;
}

/* ---- requests ------------------------------------------------------------ */

struct hdr {
    char *name, *value;
    size_t name_len, value_len;
};

struct hdr_list {
    struct hdr *v;
    size_t n, cap;
};

struct defer {
    slc_defer_fn fn;
    void *arg;
    struct defer *next;
};

struct slc_timer {
    slc_req_t *r;
    uint64_t due_ms, seq;
    slc_timer_fn fn;
    void *arg;
    bool pending;
    struct slc_timer *next;
};

struct slc_req {
    fake_gen_t *gen;
    int worker;
    slc_conn_t *conn;
    char *pseudo[4];
    struct hdr_list hdrs[2];
    struct alloc_blk *arena;
    size_t arena_bytes, arena_budget;
    struct defer *defers;
    int reply_status;
    char *reply_body, *reply_ctype;
    int response_status;
    const slc_cluster_t *cluster;
    const slc_endpoint_t *endpoint;
    bool timeout_set;
    uint64_t timeout_ms;
    uint32_t flags;
    unsigned resumed;
    slc_stream_info_t info;
    struct slc_timer *timers;
    uint64_t now_ms, timer_seq;
    /* fake_inst_* */
    fake_inst_t *inst;
    void *ctx;
    /* ABI 1.1 */
    bool retry_set;
    slc_retry_policy_t retry;
    uint16_t *retry_statuses; /* the copy retry.statuses points at (malloc) */
    /* bit (1 << slc_hdrs_t) while header_iterate walks that block: changes
     * to it are SLC_ESTATE, as in the core (hostapi.c). */
    unsigned iterating;
    const slc_endpoint_t *tried[8];
    size_t ntried;
    const slc_cluster_t *mirror;
    uint32_t attempts;
    /* ABI 1.3 */
    bool in_result, keep_body;
    uint64_t try_timeout_ms, retry_backoff_ms;
    uint32_t retry_asks;
    /* ABI 1.4: stream facts, malloc'd name/value pairs. */
    char **fact_names, **fact_values;
    size_t nfacts;
};

slc_req_t *fake_req_new(fake_gen_t *g, const char *method, const char *authority, const char *path)
{
    slc_req_t *r = xcalloc(1, sizeof(*r));
    r->gen = g;
    r->pseudo[SLC_PSEUDO_METHOD] = xstrdup(method ? method : "GET");
    r->pseudo[SLC_PSEUDO_PATH] = xstrdup(path ? path : "/");
    r->pseudo[SLC_PSEUDO_AUTHORITY] = xstrdup(authority ? authority : "");
    r->pseudo[SLC_PSEUDO_SCHEME] = xstrdup("http");
    r->info.struct_size = sizeof(r->info);
    r->info.protocol = SLC_STR("HTTP/1.1");
    return r;
}

static void hdr_list_free(struct hdr_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].name);
        free(l->v[i].value);
    }
    free(l->v);
    *l = (struct hdr_list){0};
}

void fake_req_free(slc_req_t *r)
{
    if (r == NULL) {
        return;
    }
    while (r->defers != NULL) {
        struct defer *df = r->defers;
        r->defers = df->next;
        df->fn(df->arg);
        free(df);
    }
    while (r->timers != NULL) {
        struct slc_timer *t = r->timers;
        r->timers = t->next;
        free(t);
    }
    while (r->arena != NULL) {
        struct alloc_blk *b = r->arena;
        r->arena = b->next;
        free(b);
    }
    for (int i = 0; i < 4; i++) {
        free(r->pseudo[i]);
    }
    free(r->retry_statuses);
    hdr_list_free(&r->hdrs[0]);
    hdr_list_free(&r->hdrs[1]);
    free(r->reply_body);
    free(r->reply_ctype);
    for (size_t i = 0; i < r->nfacts; i++) {
        free(r->fact_names[i]);
        free(r->fact_values[i]);
    }
    free(r->fact_names);
    free(r->fact_values);
    free(r);
}

void fake_req_set_worker(slc_req_t *r, int worker)
{
    r->worker = worker;
}

void fake_req_set_conn(slc_req_t *r, slc_conn_t *c)
{
    r->conn = c;
}

void fake_req_set_arena_budget(slc_req_t *r, size_t bytes)
{
    r->arena_budget = bytes;
}

static struct hdr_list *req_hdrs(slc_req_t *r, slc_hdrs_t which)
{
    return &r->hdrs[which == SLC_RESPONSE_HEADERS ? 1 : 0];
}

static void hdr_append(struct hdr_list *l, slc_str_t name, slc_str_t value)
{
    if (l->n == l->cap) {
        l->cap = l->cap ? 2 * l->cap : 8;
        l->v = xrealloc(l->v, l->cap * sizeof(*l->v));
    }
    l->v[l->n++] = (struct hdr){xstrndup(name.ptr, name.len), xstrndup(value.ptr, value.len),
                                name.len, value.len};
}

void fake_req_add_header(slc_req_t *r, slc_hdrs_t which, const char *name, const char *value)
{
    hdr_append(req_hdrs(r, which), str_of(name), str_of(value));
}

const char *fake_req_header(slc_req_t *r, slc_hdrs_t which, const char *name)
{
    struct hdr_list *l = req_hdrs(r, which);
    for (size_t i = 0; i < l->n; i++) {
        if (str_ieq((slc_str_t){l->v[i].name, l->v[i].name_len}, str_of(name))) {
            return l->v[i].value;
        }
    }
    return NULL;
}

size_t fake_req_header_count(slc_req_t *r, slc_hdrs_t which, const char *name)
{
    struct hdr_list *l = req_hdrs(r, which);
    size_t count = 0;
    for (size_t i = 0; i < l->n; i++) {
        if (name == NULL || str_ieq((slc_str_t){l->v[i].name, l->v[i].name_len}, str_of(name))) {
            count++;
        }
    }
    return count;
}

void fake_req_set_response_status(slc_req_t *r, int status)
{
    r->response_status = status;
}

slc_stream_info_t *fake_req_info(slc_req_t *r)
{
    return &r->info;
}

int fake_req_reply_status(const slc_req_t *r)
{
    return r->reply_status;
}

const char *fake_req_reply_body(const slc_req_t *r)
{
    return r->reply_body;
}

const char *fake_req_reply_content_type(const slc_req_t *r)
{
    return r->reply_ctype;
}

const slc_cluster_t *fake_req_cluster(const slc_req_t *r)
{
    return r->cluster;
}

const slc_endpoint_t *fake_req_endpoint(const slc_req_t *r)
{
    return r->endpoint;
}

bool fake_req_timeout_set(const slc_req_t *r)
{
    return r->timeout_set;
}

uint64_t fake_req_timeout(const slc_req_t *r)
{
    return r->timeout_ms;
}

uint32_t fake_req_flags(const slc_req_t *r)
{
    return r->flags;
}

unsigned fake_req_resumed(const slc_req_t *r)
{
    return r->resumed;
}

size_t fake_req_arena_bytes(const slc_req_t *r)
{
    return r->arena_bytes;
}

static void *fh_arena_alloc(slc_req_t *r, size_t size)
{
    if (r->arena_budget != 0 && r->arena_bytes + size > r->arena_budget) {
        return NULL;
    }
    struct alloc_blk *b = xcalloc(1, sizeof(*b) + size);
    b->next = r->arena;
    r->arena = b;
    r->arena_bytes += size;
    return b->data;
}

static slc_status_t fh_arena_defer(slc_req_t *r, slc_defer_fn fn, void *arg)
{
    if (fn == NULL) {
        return SLC_EINVAL;
    }
    struct defer *df = xcalloc(1, sizeof(*df));
    df->fn = fn;
    df->arg = arg;
    df->next = r->defers;
    r->defers = df;
    return SLC_OK;
}

/* RFC 9110 token characters. */
static bool is_tchar(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool header_name_ok(slc_str_t n)
{
    if (n.ptr == NULL || n.len == 0) {
        return false;
    }
    for (size_t i = 0; i < n.len; i++) {
        if (!is_tchar((unsigned char)n.ptr[i])) {
            return false;
        }
    }
    return true;
}

/* header_value_ok: RFC 9110 field-value: VCHAR, obs-text, SP and HTAB
 * inside, no leading or trailing whitespace. */
static bool header_value_ok(slc_str_t v)
{
    if (v.len == 0) {
        return true;
    }
    if (v.ptr == NULL || v.ptr[0] == ' ' || v.ptr[0] == '\t' || v.ptr[v.len - 1] == ' ' ||
        v.ptr[v.len - 1] == '\t') {
        return false;
    }
    for (size_t i = 0; i < v.len; i++) {
        unsigned char c = (unsigned char)v.ptr[i];
        if (c < 0x20 ? c != '\t' : c == 0x7f) {
            return false;
        }
    }
    return true;
}

static slc_status_t fh_header_get(slc_req_t *r, slc_hdrs_t which, slc_str_t name, slc_str_t *out)
{
    struct hdr_list *l = req_hdrs(r, which);
    for (size_t i = 0; i < l->n; i++) {
        if (str_ieq((slc_str_t){l->v[i].name, l->v[i].name_len}, name)) {
            *out = (slc_str_t){l->v[i].value, l->v[i].value_len};
            return SLC_OK;
        }
    }
    *out = SLC_STR_NULL;
    return SLC_ENOENT;
}

static bool fh_iterating(const slc_req_t *r, slc_hdrs_t which)
{
    return r->iterating & (1u << (which == SLC_RESPONSE_HEADERS));
}

static slc_status_t fh_header_remove(slc_req_t *r, slc_hdrs_t which, slc_str_t name)
{
    if (fh_iterating(r, which)) {
        return SLC_ESTATE;
    }
    struct hdr_list *l = req_hdrs(r, which);
    size_t kept = 0;
    bool found = false;
    for (size_t i = 0; i < l->n; i++) {
        if (str_ieq((slc_str_t){l->v[i].name, l->v[i].name_len}, name)) {
            free(l->v[i].name);
            free(l->v[i].value);
            found = true;
        } else {
            l->v[kept++] = l->v[i];
        }
    }
    l->n = kept;
    return found ? SLC_OK : SLC_ENOENT;
}

static slc_status_t fh_header_add(slc_req_t *r, slc_hdrs_t which, slc_str_t name, slc_str_t value)
{
    if (fh_iterating(r, which)) {
        return SLC_ESTATE;
    }
    if (!header_name_ok(name) || !header_value_ok(value)) {
        return SLC_EINVAL;
    }
    hdr_append(req_hdrs(r, which), name, value);
    return SLC_OK;
}

static slc_status_t fh_header_set(slc_req_t *r, slc_hdrs_t which, slc_str_t name, slc_str_t value)
{
    if (fh_iterating(r, which)) {
        return SLC_ESTATE;
    }
    if (!header_name_ok(name) || !header_value_ok(value)) {
        return SLC_EINVAL;
    }
    (void)fh_header_remove(r, which, name);
    hdr_append(req_hdrs(r, which), name, value);
    return SLC_OK;
}

static void fh_header_iterate(slc_req_t *r, slc_hdrs_t which, slc_header_fn fn, void *arg)
{
    struct hdr_list *l = req_hdrs(r, which);
    unsigned was = r->iterating;
    r->iterating |= 1u << (which == SLC_RESPONSE_HEADERS);
    for (size_t i = 0; i < l->n; i++) {
        if (!fn(arg, (slc_str_t){l->v[i].name, l->v[i].name_len},
                (slc_str_t){l->v[i].value, l->v[i].value_len})) {
            break;
        }
    }
    r->iterating = was;
}

static slc_str_t fh_pseudo(slc_req_t *r, slc_pseudo_t which)
{
    if ((unsigned)which > SLC_PSEUDO_SCHEME) {
        return SLC_STR_NULL;
    }
    return str_of(r->pseudo[which]);
}

static slc_status_t fh_set_pseudo(slc_req_t *r, slc_pseudo_t which, slc_str_t value)
{
    if ((unsigned)which > SLC_PSEUDO_SCHEME || value.ptr == NULL ||
        memchr(value.ptr, '\0', value.len) != NULL) {
        return SLC_EINVAL;
    }
    free(r->pseudo[which]);
    r->pseudo[which] = xstrndup(value.ptr, value.len);
    return SLC_OK;
}

static int fh_response_status(slc_req_t *r)
{
    return r->reply_status ? r->reply_status : r->response_status;
}

static slc_status_t fh_set_response_status(slc_req_t *r, int status)
{
    if (status < 100 || status > 999) {
        return SLC_EINVAL;
    }
    if (r->reply_status) {
        r->reply_status = status;
    } else {
        r->response_status = status;
    }
    return SLC_OK;
}

static slc_status_t fh_send_local_reply(slc_req_t *r, int status, slc_str_t content_type,
                                        slc_str_t body)
{
    if (status < 100 || status > 999) {
        return SLC_EINVAL;
    }
    if (r->reply_status != 0) {
        return SLC_ESTATE; /* one local reply per stream */
    }
    r->reply_status = status;
    r->reply_body = xstrndup(body.ptr, body.ptr ? body.len : 0);
    r->reply_ctype = content_type.ptr ? xstrndup(content_type.ptr, content_type.len) : NULL;
    return SLC_OK;
}

static void fh_resume(slc_req_t *r)
{
    r->resumed++;
}

/* fh_route_set_cluster refuses a cluster of another generation, as the
 * core does (a filter instance and its streams share one generation). */
static slc_status_t fh_route_set_cluster(slc_req_t *r, const slc_cluster_t *c)
{
    bool ours = false;
    for (const slc_cluster_t *x = r->gen ? r->gen->clusters : NULL; x != NULL && !ours;
         x = x->next) {
        ours = x == c;
    }
    if (!ours) {
        return SLC_EINVAL;
    }
    r->cluster = c;
    r->endpoint = NULL;
    return SLC_OK;
}

static const slc_cluster_t *fh_route_cluster(slc_req_t *r)
{
    return r->cluster;
}

static void fh_route_set_timeout(slc_req_t *r, uint64_t ms)
{
    r->timeout_set = true;
    r->timeout_ms = ms;
}

static unsigned g_cluster_gets;

unsigned fake_cluster_get_calls(void)
{
    return g_cluster_gets;
}

static const slc_cluster_t *fh_cluster_get(slc_req_t *r, slc_str_t name)
{
    g_cluster_gets++;
    return gen_lookup(r->gen, name);
}

/* fh_upstream_set_endpoint insists that |e| belongs to the routed cluster,
 * which catches an lb picking from the wrong generation. */
static slc_status_t fh_upstream_set_endpoint(slc_req_t *r, const slc_endpoint_t *e)
{
    if (r->cluster == NULL || e == NULL || e < r->cluster->eps ||
        e >= r->cluster->eps + r->cluster->n) {
        return SLC_EINVAL;
    }
    r->endpoint = e;
    return SLC_OK;
}

static void fh_stream_info(slc_req_t *r, slc_stream_info_t *out)
{
    *out = r->info;
    out->struct_size = sizeof(*out);
    out->response_flags = r->flags;
    out->status = fh_response_status(r);
    out->cluster = r->cluster ? str_of(r->cluster->name) : SLC_STR_NULL;
    out->upstream = r->endpoint ? str_of(r->endpoint->addr) : SLC_STR_NULL;
}

static void fh_set_response_flag(slc_req_t *r, uint32_t flag)
{
    r->flags |= flag;
}

static slc_conn_t *fh_req_conn(slc_req_t *r)
{
    return r->conn;
}

static int fh_req_worker(slc_req_t *r)
{
    return r->worker;
}

static slc_timer_t *fh_timer_add(slc_req_t *r, uint64_t ms, slc_timer_fn fn, void *arg)
{
    if (fn == NULL) {
        return NULL;
    }
    slc_timer_t *t = xcalloc(1, sizeof(*t));
    t->r = r;
    t->due_ms = r->now_ms + ms;
    t->seq = r->timer_seq++;
    t->fn = fn;
    t->arg = arg;
    t->pending = true;
    t->next = r->timers;
    r->timers = t;
    return t;
}

static void fh_timer_cancel(slc_timer_t *t)
{
    if (t != NULL) {
        t->pending = false;
    }
}

static slc_timer_t *earliest_timer(const slc_req_t *r)
{
    slc_timer_t *best = NULL;
    for (slc_timer_t *t = r->timers; t != NULL; t = t->next) {
        if (t->pending && (best == NULL || t->due_ms < best->due_ms ||
                           (t->due_ms == best->due_ms && t->seq < best->seq))) {
            best = t;
        }
    }
    return best;
}

size_t fake_req_timers_pending(const slc_req_t *r)
{
    size_t n = 0;
    for (const slc_timer_t *t = r->timers; t != NULL; t = t->next) {
        n += t->pending;
    }
    return n;
}

bool fake_req_fire_next(slc_req_t *r)
{
    slc_timer_t *t = earliest_timer(r);
    if (t == NULL) {
        return false;
    }
    t->pending = false;
    if (t->due_ms > r->now_ms) {
        r->now_ms = t->due_ms;
    }
    t->fn(r, t->arg);
    return true;
}

size_t fake_req_fire_all(slc_req_t *r, size_t max)
{
    size_t n = 0;
    while (n < max && fake_req_fire_next(r)) {
        n++;
    }
    return n;
}

uint64_t fake_req_now_ms(const slc_req_t *r)
{
    return r->now_ms;
}

uint64_t fake_req_next_timer_ms(const slc_req_t *r)
{
    const slc_timer_t *t = earliest_timer(r);
    return t == NULL ? UINT64_MAX : t->due_ms - r->now_ms;
}

/* ---- the table ------------------------------------------------------------ */

/* ---- ABI 1.1 --------------------------------------------------------------- */

static slc_status_t fh_route_set_retry(slc_req_t *r, const slc_retry_policy_t *p)
{
    r->retry_set = p != NULL;
    if (p) {
        r->retry = *p;
        /* As the core: the statuses are copied, the caller's array may be
         * gone once the call returns (fake_req_retry hands out this copy). */
        if (p->statuses != NULL && p->nstatuses != 0) {
            /* malloc, not the fake arena: tests count the filter's own
             * arena use, and this copy is the host's. */
            free(r->retry_statuses);
            r->retry_statuses = malloc(p->nstatuses * sizeof(*r->retry_statuses));
            if (r->retry_statuses == NULL) {
                abort();
            }
            memcpy(r->retry_statuses, p->statuses, p->nstatuses * sizeof(*r->retry_statuses));
            r->retry.statuses = r->retry_statuses;
        }
    }
    return SLC_OK;
}

static bool fh_upstream_tried(slc_req_t *r, const slc_endpoint_t *e)
{
    for (size_t i = 0; i < r->ntried; i++)
        if (r->tried[i] == e)
            return true;
    return false;
}

static slc_status_t fh_route_set_mirror(slc_req_t *r, const slc_cluster_t *c)
{
    r->mirror = c;
    return SLC_OK;
}

static void fh_endpoint_eject(const slc_endpoint_t *e, uint64_t until_ms)
{
    ((slc_endpoint_t *)e)->ejected_until = until_ms;
}

static uint64_t fh_endpoint_ejected_until(const slc_endpoint_t *e)
{
    return e->ejected_until > fake_clock_ms ? e->ejected_until : 0;
}

static uint64_t fh_now_ms(void)
{
    return fake_clock_ms;
}

static void fh_metric_add_global(int worker_id, slc_metric_t *m, int64_t v)
{
    (void)worker_id;
    if (m != NULL)
        m->value += v;
}

static void fh_metric_set_global(int worker_id, slc_metric_t *m, int64_t v)
{
    (void)worker_id; /* one shard: the fake has no per-worker sums */
    if (m != NULL)
        m->value = v;
}

static size_t fh_endpoint_index(const slc_endpoint_t *e)
{
    return e->index;
}

static const slc_cluster_t *fh_endpoint_cluster(const slc_endpoint_t *e)
{
    return e->cluster;
}

bool fake_cluster_pool(const slc_cluster_t *c, slc_pool_options_t *out)
{
    if (c->pool_set && out)
        *out = c->pool;
    return c->pool_set;
}

static uint32_t fh_req_attempts(slc_req_t *r)
{
    return r->attempts;
}

bool fake_req_retry(const slc_req_t *r, slc_retry_policy_t *out)
{
    if (r->retry_set && out)
        *out = r->retry;
    return r->retry_set;
}

const slc_cluster_t *fake_req_mirror(const slc_req_t *r)
{
    return r->mirror;
}

void fake_req_mark_tried(slc_req_t *r, const slc_endpoint_t *e)
{
    if (r->ntried < 8)
        r->tried[r->ntried++] = e;
    r->attempts++;
}

void fake_endpoint_set_ejected_until(slc_endpoint_t *e, uint64_t until_ms)
{
    e->ejected_until = until_ms;
}

uint64_t fake_endpoint_get_ejected_until(const slc_endpoint_t *e)
{
    return e->ejected_until;
}

void fake_inst_result(fake_inst_t *inst, slc_req_t *r, const slc_endpoint_t *e,
                      slc_attempt_result_t res, int status)
{
    if (r->inst == inst &&
        inst->desc->struct_size >= offsetof(slc_filter_desc_t, on_upstream_result) +
                                       sizeof(inst->desc->on_upstream_result) &&
        inst->desc->on_upstream_result != NULL) {
        r->in_result = true; /* attempt_retry is only for this hook */
        inst->desc->on_upstream_result(r->ctx, r, e, res, status);
        r->in_result = false;
    }
}

/* ---- ABI 1.3 ------------------------------------------------------------- */

static slc_status_t fh_attempt_retry(slc_req_t *r, uint64_t backoff_ms)
{
    if (!r->in_result) {
        return SLC_ESTATE;
    }
    r->retry_asks++;
    if (backoff_ms > r->retry_backoff_ms) {
        r->retry_backoff_ms = backoff_ms;
    }
    return SLC_OK;
}

static slc_status_t fh_route_keep_body(slc_req_t *r)
{
    r->keep_body = true;
    return SLC_OK;
}

static slc_status_t fh_route_set_try_timeout(slc_req_t *r, uint64_t ms)
{
    r->try_timeout_ms = ms;
    return SLC_OK;
}

static uint32_t fh_cluster_usable_count(const slc_cluster_t *c)
{
    uint32_t n = 0;
    for (size_t i = 0; i < c->n; i++) {
        n += fh_endpoint_healthy(&c->eps[i]);
    }
    return n;
}

uint32_t fake_req_retry_asks(const slc_req_t *r, uint64_t *max_backoff_ms)
{
    if (max_backoff_ms) {
        *max_backoff_ms = r->retry_backoff_ms;
    }
    return r->retry_asks;
}

bool fake_req_keep_body(const slc_req_t *r)
{
    return r->keep_body;
}

uint64_t fake_req_try_timeout(const slc_req_t *r)
{
    return r->try_timeout_ms;
}

static slc_status_t fh_req_fact_set(slc_req_t *r, slc_str_t name, slc_str_t value)
{
    if (name.ptr == NULL || name.len == 0) {
        return SLC_EINVAL;
    }
    for (size_t i = 0; i < r->nfacts; i++) {
        if (strlen(r->fact_names[i]) == name.len &&
            memcmp(r->fact_names[i], name.ptr, name.len) == 0) {
            free(r->fact_values[i]);
            r->fact_values[i] = xstrndup(value.ptr ? value.ptr : "", value.ptr ? value.len : 0);
            return SLC_OK;
        }
    }
    r->fact_names = xrealloc(r->fact_names, (r->nfacts + 1) * sizeof(char *));
    r->fact_values = xrealloc(r->fact_values, (r->nfacts + 1) * sizeof(char *));
    r->fact_names[r->nfacts] = xstrndup(name.ptr, name.len);
    r->fact_values[r->nfacts] = xstrndup(value.ptr ? value.ptr : "", value.ptr ? value.len : 0);
    r->nfacts++;
    return SLC_OK;
}

static slc_str_t fh_req_fact_get(slc_req_t *r, slc_str_t name)
{
    for (size_t i = 0; i < r->nfacts; i++) {
        if (strlen(r->fact_names[i]) == name.len &&
            memcmp(r->fact_names[i], name.ptr, name.len) == 0) {
            return str_of(r->fact_values[i]);
        }
    }
    return SLC_STR_NULL;
}

const char *fake_req_fact(slc_req_t *r, const char *name)
{
    slc_str_t v = fh_req_fact_get(r, str_of(name));
    return v.ptr;
}

const slc_host_t fake_host_table = {
    .abi_version = SLC_ABI_VERSION,
    .struct_size = sizeof(slc_host_t),
    .log = fh_log,
    .log_enabled = fh_log_enabled,
    .cfg_type = cfg_type,
    .cfg_scalar = cfg_scalar,
    .cfg_len = cfg_len,
    .cfg_at = cfg_at,
    .cfg_key_at = cfg_key_at,
    .cfg_get = cfg_get,
    .cfg_bind = cfg_bind,
    .cfg_duration_ms = cfg_duration_ms,
    .diag_error = diag_verror,
    .diag_warn = diag_vwarn,
    .cfg_cluster = cfg_build_cluster,
    .cfg_alloc = cfg_build_alloc,
    .metric_new = cfg_build_metric,
    .cluster_name = fh_cluster_name,
    .cluster_endpoint_count = fh_cluster_endpoint_count,
    .cluster_endpoint = fh_cluster_endpoint,
    .endpoint_address = fh_endpoint_address,
    .endpoint_active_requests = fh_endpoint_active_requests,
    .endpoint_healthy = fh_endpoint_healthy,
    .arena_alloc = fh_arena_alloc,
    .arena_defer = fh_arena_defer,
    .header_get = fh_header_get,
    .header_set = fh_header_set,
    .header_add = fh_header_add,
    .header_remove = fh_header_remove,
    .header_iterate = fh_header_iterate,
    .pseudo = fh_pseudo,
    .set_pseudo = fh_set_pseudo,
    .response_status = fh_response_status,
    .set_response_status = fh_set_response_status,
    .send_local_reply = fh_send_local_reply,
    .resume = fh_resume,
    .route_set_cluster = fh_route_set_cluster,
    .route_cluster = fh_route_cluster,
    .route_set_timeout = fh_route_set_timeout,
    .cluster_get = fh_cluster_get,
    .upstream_set_endpoint = fh_upstream_set_endpoint,
    .stream_info = fh_stream_info,
    .set_response_flag = fh_set_response_flag,
    .req_conn = fh_req_conn,
    .req_worker = fh_req_worker,
    .timer_add = fh_timer_add,
    .timer_cancel = fh_timer_cancel,
    .metric_add = fh_metric_add,
    .conn_peer = fh_conn_peer,
    .conn_local = fh_conn_local,
    .conn_set_transport = fh_conn_set_transport,
    .conn_emit = fh_conn_emit,
    .conn_transport_ready = fh_conn_transport_ready,
    .conn_peer_identity = fh_conn_peer_identity,
    .conn_sni = fh_conn_sni,
    .conn_alpn = fh_conn_alpn,
    .route_set_retry = fh_route_set_retry,
    .upstream_tried = fh_upstream_tried,
    .route_set_mirror = fh_route_set_mirror,
    .endpoint_eject = fh_endpoint_eject,
    .endpoint_ejected_until = fh_endpoint_ejected_until,
    .now_ms = fh_now_ms,
    .metric_new_labeled = cfg_build_metric_labeled,
    .metric_add_global = fh_metric_add_global,
    .endpoint_index = fh_endpoint_index,
    .endpoint_cluster = fh_endpoint_cluster,
    .req_attempts = fh_req_attempts,
    .cfg_cluster_pool = cfg_build_cluster_pool,
    .attempt_retry = fh_attempt_retry,
    .route_keep_body = fh_route_keep_body,
    .route_set_try_timeout = fh_route_set_try_timeout,
    .cluster_usable_count = fh_cluster_usable_count,
    .conn_peer_cert = fh_conn_peer_cert,
    .conn_secure = fh_conn_secure,
    .req_fact_set = fh_req_fact_set,
    .req_fact_get = fh_req_fact_get,
    .metric_set_global = fh_metric_set_global,
};

/* ---- filter instances ------------------------------------------------------ */

fake_inst_t *fake_inst_new(const slc_filter_desc_t *desc, fake_gen_t *g,
                           const slc_cfg_node_t *config, int nworkers)
{
    fake_inst_t *inst = xcalloc(1, sizeof(*inst));
    inst->desc = desc;
    inst->diag = fake_diag_new(g);
    inst->status = SLC_OK;
    if (config == NULL) {
        config = fake_empty_map();
    }
    if (desc->config_new != NULL) {
        /* As gen.c does: cfg_bind walks the filter's field tables with the
         * stride of the ABI it was compiled against. */
        inst->diag->module_abi = desc->abi_version;
        inst->status = desc->config_new(&fake_host_table, config, &inst->cfg, inst->diag);
        const char *env = getenv("FAKE_HOST_LOG");
        if (env != NULL && *env != '\0' && *env != '0') {
            fake_diag_dump(inst->diag);
        }
        if (inst->status == SLC_OK && fake_diag_errors(inst->diag) > 0) {
            /* The real host fails the config on any recorded error too. */
            inst->status = SLC_EINVAL;
        }
        if (inst->status != SLC_OK) {
            if (inst->cfg != NULL && desc->config_free != NULL) {
                desc->config_free(inst->cfg);
            }
            inst->cfg = NULL;
            return inst;
        }
    }
    if (nworkers > FAKE_MAX_WORKERS) {
        nworkers = FAKE_MAX_WORKERS;
    }
    for (int w = 0; w < nworkers; w++) {
        if (desc->worker_init != NULL) {
            slc_status_t st = desc->worker_init(inst->cfg, w, &inst->wctx[w]);
            if (st != SLC_OK) {
                inst->status = st;
                break;
            }
        }
        inst->nworkers = w + 1;
    }
    return inst;
}

void fake_inst_free(fake_inst_t *inst)
{
    if (inst == NULL) {
        return;
    }
    for (int w = 0; w < inst->nworkers; w++) {
        if (inst->desc->worker_fini != NULL) {
            inst->desc->worker_fini(inst->cfg, inst->wctx[w]);
        }
    }
    if (inst->cfg != NULL && inst->desc->config_free != NULL) {
        inst->desc->config_free(inst->cfg);
    }
    fake_diag_free(inst->diag);
    free(inst);
}

/* inst_ctx runs request_new on first use and returns the stream context, or
 * NULL with *failed set when request_new fails. */
static void *inst_ctx(fake_inst_t *inst, slc_req_t *r, bool *failed)
{
    *failed = false;
    if (r->inst == inst) {
        return r->ctx;
    }
    if (r->inst != NULL) {
        fprintf(stderr, "fake_host: a request was run through two instances\n");
        abort();
    }
    r->inst = inst;
    r->ctx = inst->cfg;
    if (inst->desc->request_new != NULL) {
        void *wctx = (r->worker >= 0 && r->worker < inst->nworkers) ? inst->wctx[r->worker] : NULL;
        r->ctx = NULL;
        if (inst->desc->request_new(inst->cfg, wctx, r, &r->ctx) != SLC_OK) {
            *failed = true;
        }
    }
    return r->ctx;
}

slc_action_t fake_inst_run(fake_inst_t *inst, slc_req_t *r, fake_phase_t phase)
{
    bool failed;
    void *ctx = inst_ctx(inst, r, &failed);
    if (failed) {
        /* The core answers 500 when a filter cannot set up its stream. */
        fh_send_local_reply(r, 500, SLC_STR_NULL, SLC_STR("internal error\n"));
        return SLC_STOP;
    }
    slc_action_t (*hook)(void *, slc_req_t *) = NULL;
    switch (phase) {
    case FAKE_REQUEST_HEADERS:
        hook = inst->desc->on_request_headers;
        break;
    case FAKE_UPSTREAM_SELECT:
        hook = inst->desc->on_upstream_select;
        break;
    case FAKE_RESPONSE_HEADERS:
        hook = inst->desc->on_response_headers;
        break;
    }
    return hook != NULL ? hook(ctx, r) : SLC_CONTINUE;
}

slc_action_t fake_inst_body(fake_inst_t *inst, slc_req_t *r, slc_hdrs_t which, const char *chunk,
                            bool end)
{
    bool failed;
    void *ctx = inst_ctx(inst, r, &failed);
    if (failed) {
        return SLC_STOP;
    }
    slc_action_t (*hook)(void *, slc_req_t *, slc_str_t, bool) =
        which == SLC_RESPONSE_HEADERS ? inst->desc->on_response_body : inst->desc->on_request_body;
    return hook != NULL ? hook(ctx, r, str_of(chunk ? chunk : ""), end) : SLC_CONTINUE;
}

void fake_inst_complete(fake_inst_t *inst, slc_req_t *r)
{
    if (r->inst == inst && inst->desc->on_complete != NULL) {
        inst->desc->on_complete(r->ctx, r);
    }
}
