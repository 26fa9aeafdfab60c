/* fake_host: see fake_host.h. */
#define SLC_NO_WRAPPERS
#include "fake_host.h"

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

/* xvasprintf formats into a malloc'd string the caller owns. */
static char *xvasprintf(const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) {
        return xstrdup("(bad format)");
    }
    char *s = xcalloc(1, (size_t)n + 1);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

/* The fake host uses the util library's case rule, duration parser and
 * edit distance, as the core does, so that filter tests see the host's
 * behaviour rather than a second copy of it. */
static bool str_ieq(slc_str_t a, slc_str_t b)
{
    return slcu_caseeq(a, b);
}

static bool cstr_ieq(const char *a, const char *b)
{
    return str_ieq((slc_str_t){a, strlen(a)}, (slc_str_t){b, strlen(b)});
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

struct slc_cfg_node {
    slc_cfg_type_t type;
    char *text; /* SCALAR: NUL-terminated */
    size_t len;
    size_t n;                    /* MAP: pairs, SEQ: items */
    char **keys;                 /* MAP */
    struct slc_cfg_node **items; /* MAP values, SEQ items */
    struct slc_cfg_node *parent;
    size_t index; /* position in parent */
    struct slc_cfg_node *all_next;
};

static slc_cfg_node_t *g_nodes;

static slc_cfg_node_t *node_new(slc_cfg_type_t type)
{
    slc_cfg_node_t *n = xcalloc(1, sizeof(*n));
    n->type = type;
    n->all_next = g_nodes;
    g_nodes = n;
    return n;
}

static void node_adopt(slc_cfg_node_t *parent, slc_cfg_node_t *child, size_t index)
{
    if (child->parent != NULL) {
        fprintf(stderr, "fake_host: a config node was given two parents\n");
        abort();
    }
    child->parent = parent;
    child->index = index;
}

slc_cfg_node_t *fake_scalar(const char *text)
{
    slc_cfg_node_t *n = node_new(SLC_CFG_SCALAR);
    n->text = xstrdup(text ? text : "");
    n->len = strlen(n->text);
    return n;
}

slc_cfg_node_t *fake_null(void)
{
    return node_new(SLC_CFG_NULL);
}

slc_cfg_node_t *fake_map(const char *key, ...)
{
    slc_cfg_node_t *n = node_new(SLC_CFG_MAP);
    va_list ap;
    va_start(ap, key);
    for (const char *k = key; k != NULL; k = va_arg(ap, const char *)) {
        slc_cfg_node_t *v = va_arg(ap, slc_cfg_node_t *);
        if (v == NULL) {
            v = fake_null();
        }
        n->keys = xrealloc(n->keys, (n->n + 1) * sizeof(*n->keys));
        n->items = xrealloc(n->items, (n->n + 1) * sizeof(*n->items));
        n->keys[n->n] = xstrdup(k);
        n->items[n->n] = v;
        node_adopt(n, v, n->n);
        n->n++;
    }
    va_end(ap);
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
    va_list ap;
    va_start(ap, item);
    for (slc_cfg_node_t *v = item; v != NULL; v = va_arg(ap, slc_cfg_node_t *)) {
        n->items = xrealloc(n->items, (n->n + 1) * sizeof(*n->items));
        n->items[n->n] = v;
        node_adopt(n, v, n->n);
        n->n++;
    }
    va_end(ap);
    return n;
}

void fake_cfg_free_all(void)
{
    while (g_nodes != NULL) {
        slc_cfg_node_t *n = g_nodes;
        g_nodes = n->all_next;
        if (n->keys != NULL) {
            for (size_t i = 0; i < n->n; i++) {
                free(n->keys[i]);
            }
        }
        free(n->keys);
        free(n->items);
        free(n->text);
        free(n);
    }
}

const char *fake_cfg_path(const slc_cfg_node_t *n, char *buf, size_t size)
{
    const slc_cfg_node_t *chain[64];
    size_t depth = 0;
    if (size == 0) {
        return buf;
    }
    buf[0] = '\0';
    if (n == NULL) {
        snprintf(buf, size, "(none)");
        return buf;
    }
    for (const slc_cfg_node_t *p = n; p->parent != NULL && depth < 64; p = p->parent) {
        chain[depth++] = p;
    }
    size_t used = 0;
    while (depth > 0 && used < size) {
        const slc_cfg_node_t *c = chain[--depth];
        int w;
        if (c->parent->type == SLC_CFG_MAP) {
            w = snprintf(buf + used, size - used, "%s%s", used ? "." : "",
                         c->parent->keys[c->index]);
        } else {
            w = snprintf(buf + used, size - used, "[%zu]", c->index);
        }
        if (w < 0) {
            break;
        }
        used += (size_t)w;
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

static slc_cfg_type_t fh_cfg_type(const slc_cfg_node_t *n)
{
    return n == NULL ? SLC_CFG_NULL : n->type;
}

static slc_str_t fh_cfg_scalar(const slc_cfg_node_t *n)
{
    if (n == NULL || n->type != SLC_CFG_SCALAR) {
        return SLC_STR_NULL;
    }
    return (slc_str_t){n->text, n->len};
}

static size_t fh_cfg_len(const slc_cfg_node_t *n)
{
    if (n == NULL || (n->type != SLC_CFG_MAP && n->type != SLC_CFG_SEQ)) {
        return 0;
    }
    return n->n;
}

static const slc_cfg_node_t *fh_cfg_at(const slc_cfg_node_t *n, size_t i)
{
    if (i >= fh_cfg_len(n)) {
        return NULL;
    }
    return n->items[i];
}

static slc_str_t fh_cfg_key_at(const slc_cfg_node_t *n, size_t i)
{
    if (n == NULL || n->type != SLC_CFG_MAP || i >= n->n) {
        return SLC_STR_NULL;
    }
    return str_of(n->keys[i]);
}

static const slc_cfg_node_t *fh_cfg_get(const slc_cfg_node_t *n, const char *key)
{
    if (n == NULL || n->type != SLC_CFG_MAP || key == NULL) {
        return NULL;
    }
    for (size_t i = 0; i < n->n; i++) {
        if (strcmp(n->keys[i], key) == 0) {
            return n->items[i];
        }
    }
    return NULL;
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

struct diag_msg {
    bool is_error;
    const slc_cfg_node_t *node;
    char *path;
    char *text;
};

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

struct slc_diag {
    fake_gen_t *gen;
    struct diag_msg *msgs;
    size_t n, cap, nerrors;
    struct alloc_blk *allocs;
    slc_metric_t *metrics;
};

slc_diag_t *fake_diag_new(fake_gen_t *g)
{
    slc_diag_t *d = xcalloc(1, sizeof(*d));
    d->gen = g;
    return d;
}

void fake_diag_free(slc_diag_t *d)
{
    if (d == NULL) {
        return;
    }
    for (size_t i = 0; i < d->n; i++) {
        free(d->msgs[i].path);
        free(d->msgs[i].text);
    }
    free(d->msgs);
    while (d->allocs != NULL) {
        struct alloc_blk *b = d->allocs;
        d->allocs = b->next;
        free(b);
    }
    while (d->metrics != NULL) {
        slc_metric_t *m = d->metrics;
        d->metrics = m->next;
        free(m->name);
        free(m->help);
        free(m);
    }
    free(d);
}

static void diag_record(slc_diag_t *d, bool is_error, const slc_cfg_node_t *n, char *text)
{
    char path[512];
    if (d->n == d->cap) {
        d->cap = d->cap ? 2 * d->cap : 8;
        d->msgs = xrealloc(d->msgs, d->cap * sizeof(*d->msgs));
    }
    fake_cfg_path(n, path, sizeof(path));
    d->msgs[d->n++] = (struct diag_msg){is_error, n, xstrdup(path), text};
    if (is_error) {
        d->nerrors++;
    }
    const char *env = getenv("FAKE_HOST_LOG");
    if (env != NULL && *env != '\0' && *env != '0') {
        fprintf(stderr, "fake_host: diag %s: %s: %s\n", is_error ? "error" : "warning", path, text);
    }
}

__attribute__((format(printf, 3, 4))) static void diag_errf(slc_diag_t *d, const slc_cfg_node_t *n,
                                                            const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    diag_record(d, true, n, xvasprintf(fmt, ap));
    va_end(ap);
}

static void fh_diag_error(slc_diag_t *d, const slc_cfg_node_t *n, const char *fmt, va_list ap)
{
    diag_record(d, true, n, xvasprintf(fmt, ap));
}

static void fh_diag_warn(slc_diag_t *d, const slc_cfg_node_t *n, const char *fmt, va_list ap)
{
    diag_record(d, false, n, xvasprintf(fmt, ap));
}

size_t fake_diag_count(const slc_diag_t *d)
{
    return d->n;
}

size_t fake_diag_errors(const slc_diag_t *d)
{
    return d->nerrors;
}

const char *fake_diag_msg(const slc_diag_t *d, size_t i)
{
    return i < d->n ? d->msgs[i].text : NULL;
}

const slc_cfg_node_t *fake_diag_node(const slc_diag_t *d, size_t i)
{
    return i < d->n ? d->msgs[i].node : NULL;
}

const char *fake_diag_path(const slc_diag_t *d, size_t i)
{
    return i < d->n ? d->msgs[i].path : NULL;
}

bool fake_diag_is_error(const slc_diag_t *d, size_t i)
{
    return i < d->n && d->msgs[i].is_error;
}

int fake_diag_find(const slc_diag_t *d, const char *needle)
{
    for (size_t i = 0; i < d->n; i++) {
        if (strstr(d->msgs[i].text, needle) != NULL) {
            return (int)i;
        }
    }
    return -1;
}

void fake_diag_dump(const slc_diag_t *d)
{
    for (size_t i = 0; i < d->n; i++) {
        fprintf(stderr, "  [%zu] %s: %s: %s\n", i, d->msgs[i].is_error ? "error" : "warning",
                d->msgs[i].path, d->msgs[i].text);
    }
}

static void *fh_cfg_alloc(slc_diag_t *d, size_t size)
{
    struct alloc_blk *b = xcalloc(1, sizeof(*b) + size);
    b->next = d->allocs;
    d->allocs = b;
    return b->data;
}

static char *diag_strdup(slc_diag_t *d, const char *s)
{
    size_t len = strlen(s);
    char *p = fh_cfg_alloc(d, len + 1);
    memcpy(p, s, len);
    return p;
}

static const slc_cluster_t *fh_cfg_cluster(slc_diag_t *d, slc_str_t name)
{
    return gen_lookup(d->gen, name);
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

/* fh_metric_new never returns NULL: a bad or duplicate name is a config
 * error, and the filter still gets a metric it can add to. */
static slc_metric_t *fh_metric_new(slc_diag_t *d, slc_metric_kind_t kind, const char *name,
                                   const char *help)
{
    if (!metric_name_ok(name)) {
        diag_errf(d, NULL, "invalid metric name '%s'", name ? name : "(null)");
    } else if (fake_metric(d, name) != NULL) {
        diag_errf(d, NULL, "metric '%s' registered twice", name);
    }
    slc_metric_t *m = xcalloc(1, sizeof(*m));
    m->name = xstrdup(name ? name : "");
    m->help = xstrdup(help ? help : "");
    m->kind = kind;
    m->next = d->metrics;
    d->metrics = m;
    return m;
}

slc_metric_t *fake_metric(const slc_diag_t *d, const char *name)
{
    for (slc_metric_t *m = d->metrics; m != NULL; m = m->next) {
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

/* ---- durations and the binder -------------------------------------------- */

static slc_status_t fh_cfg_duration_ms(slc_str_t text, uint64_t *out_ms)
{
    return slcu_duration_ms(text, out_ms);
}

static size_t edit_distance(const char *a, const char *b)
{
    return slcu_edit_distance(str_of(a), str_of(b), true);
}

static const char *field_kind_word(slc_field_kind_t k)
{
    switch (k) {
    case SLC_FIELD_STR_:
        return "a string";
    case SLC_FIELD_U32_:
        return "an integer";
    case SLC_FIELD_BOOL_:
        return "true or false";
    case SLC_FIELD_DURATION_:
        return "a duration like '10s'";
    case SLC_FIELD_ENUM_:
        return "one of the listed names";
    default:
        return "a value";
    }
}

/* bind_value stores |text| (from node |n|, or a default when n is NULL) into
 * the field. Returns false after reporting an error. */
static bool bind_value(slc_diag_t *d, const slc_cfg_node_t *where, const slc_cfg_node_t *n,
                       const slc_cfg_field_t *f, const char *text, void *out)
{
    char *dst = (char *)out + f->offset;
    switch (f->kind) {
    case SLC_FIELD_STR_:
        *(char **)dst = n != NULL ? n->text : diag_strdup(d, text);
        return true;
    case SLC_FIELD_U32_: {
        char *end;
        uint64_t max = f->max ? f->max : UINT32_MAX;
        if (text[0] < '0' || text[0] > '9') {
            goto bad_u32;
        }
        unsigned long long v = strtoull(text, &end, 10);
        if (*end != '\0' || v < f->min || v > max) {
            goto bad_u32;
        }
        *(uint32_t *)dst = (uint32_t)v;
        return true;
    bad_u32:
        diag_errf(d, where, "'%s': expected an integer from %llu to %llu, got '%s'", f->key,
                  (unsigned long long)f->min, (unsigned long long)max, text);
        return false;
    }
    case SLC_FIELD_BOOL_:
        if (cstr_ieq(text, "true")) {
            *(bool *)dst = true;
        } else if (cstr_ieq(text, "false")) {
            *(bool *)dst = false;
        } else {
            diag_errf(d, where, "'%s': expected true or false, got '%s'", f->key, text);
            return false;
        }
        return true;
    case SLC_FIELD_DURATION_: {
        uint64_t ms;
        if (fh_cfg_duration_ms(str_of(text), &ms) != SLC_OK) {
            diag_errf(d, where, "'%s': expected a duration like '10s', got '%s'", f->key, text);
            return false;
        }
        if (ms < f->min || (f->max != 0 && ms > f->max)) {
            diag_errf(d, where, "'%s': duration '%s' is out of range", f->key, text);
            return false;
        }
        *(uint64_t *)dst = ms;
        return true;
    }
    case SLC_FIELD_ENUM_:
        for (size_t i = 0; f->names != NULL && f->names[i] != NULL; i++) {
            if (strcmp(f->names[i], text) == 0) {
                *(int *)dst = (int)i;
                return true;
            }
        }
        {
            char list[256] = "";
            size_t used = 0;
            for (size_t i = 0; f->names != NULL && f->names[i] != NULL; i++) {
                int w =
                    snprintf(list + used, sizeof(list) - used, "%s%s", i ? ", " : "", f->names[i]);
                if (w < 0 || (size_t)w >= sizeof(list) - used) {
                    break;
                }
                used += (size_t)w;
            }
            diag_errf(d, where, "'%s': expected one of %s, got '%s'", f->key, list, text);
        }
        return false;
    default:
        return false;
    }
}

static slc_status_t fh_cfg_bind(slc_diag_t *d, const slc_cfg_node_t *n,
                                const slc_cfg_field_t *fields, void *out)
{
    bool ok = true;
    if (n != NULL && n->type != SLC_CFG_MAP && n->type != SLC_CFG_NULL) {
        diag_errf(d, n, "expected a map");
        return SLC_EINVAL;
    }
    /* Unknown keys first, with a hint when a field name is close. */
    for (size_t i = 0; i < fh_cfg_len(n); i++) {
        const char *key = n->keys[i];
        const slc_cfg_field_t *f;
        for (f = fields; f->kind != SLC_FIELD_END_; f++) {
            if (strcmp(f->key, key) == 0) {
                break;
            }
        }
        if (f->kind != SLC_FIELD_END_) {
            continue;
        }
        const char *best = NULL;
        size_t best_d = 3;
        for (f = fields; f->kind != SLC_FIELD_END_; f++) {
            size_t dist = edit_distance(key, f->key);
            if (dist < best_d) {
                best_d = dist;
                best = f->key;
            }
        }
        if (best != NULL) {
            diag_errf(d, n->items[i], "unknown key '%s' (did you mean '%s'?)", key, best);
        } else {
            diag_errf(d, n->items[i], "unknown key '%s'", key);
        }
        ok = false;
    }
    for (const slc_cfg_field_t *f = fields; f->kind != SLC_FIELD_END_; f++) {
        const slc_cfg_node_t *v = fh_cfg_get(n, f->key);
        if (f->kind == SLC_FIELD_NODE_) {
            if (v == NULL && f->required) {
                diag_errf(d, n, "missing required key '%s'", f->key);
                ok = false;
            }
            *(const slc_cfg_node_t **)((char *)out + f->offset) = v;
            continue;
        }
        /* Like the core: `key:` with no value counts as absent. */
        if (v != NULL && v->type == SLC_CFG_NULL) {
            if (f->required) {
                diag_errf(d, v, "missing value for required key '%s'", f->key);
                ok = false;
            } else if (f->dflt != NULL) {
                ok = bind_value(d, n, NULL, f, f->dflt, out) && ok;
            }
            continue;
        }
        if (v == NULL) {
            if (f->required) {
                diag_errf(d, n, "missing required key '%s'", f->key);
                ok = false;
            } else if (f->dflt != NULL) {
                ok = bind_value(d, n, NULL, f, f->dflt, out) && ok;
            }
            continue;
        }
        if (v->type != SLC_CFG_SCALAR) {
            diag_errf(d, v, "'%s': expected %s", f->key, field_kind_word(f->kind));
            ok = false;
            continue;
        }
        ok = bind_value(d, v, v, f, v->text, out) && ok;
    }
    return ok ? SLC_OK : SLC_EINVAL;
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
};

slc_conn_t *fake_conn_new(const char *peer, const char *local)
{
    slc_conn_t *c = xcalloc(1, sizeof(*c));
    c->peer = xstrdup(peer ? peer : "127.0.0.1:40000");
    c->local = xstrdup(local ? local : "127.0.0.1:8080");
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

static slc_metric_t *fh_metric_new_labeled(slc_diag_t *d, slc_metric_kind_t kind, const char *name,
                                           const char *help, const char *label, const char *value)
{
    /* Registered as "name{label=value}" so tests can find each series. */
    slc_metric_t *m = fh_metric_new(d, kind, name, help);
    char buf[256];
    snprintf(buf, sizeof(buf), "%s{%s=%s}", name, label ? label : "", value ? value : "");
    free(m->name);
    m->name = xstrdup(buf);
    return m;
}

static void fh_metric_add_global(int worker_id, slc_metric_t *m, int64_t v)
{
    (void)worker_id;
    if (m != NULL)
        m->value += v;
}

static size_t fh_endpoint_index(const slc_endpoint_t *e)
{
    return e->index;
}

static const slc_cluster_t *fh_endpoint_cluster(const slc_endpoint_t *e)
{
    return e->cluster;
}

static slc_status_t fh_cfg_cluster_pool(slc_diag_t *d, const slc_cluster_t *c,
                                        const slc_pool_options_t *o)
{
    (void)d;
    slc_cluster_t *m = (slc_cluster_t *)c;
    if (m->pool_set)
        return SLC_EINVAL;
    m->pool_set = true;
    m->pool = *o;
    return SLC_OK;
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

const slc_host_t fake_host_table = {
    .abi_version = SLC_ABI_VERSION,
    .struct_size = sizeof(slc_host_t),
    .log = fh_log,
    .log_enabled = fh_log_enabled,
    .cfg_type = fh_cfg_type,
    .cfg_scalar = fh_cfg_scalar,
    .cfg_len = fh_cfg_len,
    .cfg_at = fh_cfg_at,
    .cfg_key_at = fh_cfg_key_at,
    .cfg_get = fh_cfg_get,
    .cfg_bind = fh_cfg_bind,
    .cfg_duration_ms = fh_cfg_duration_ms,
    .diag_error = fh_diag_error,
    .diag_warn = fh_diag_warn,
    .cfg_cluster = fh_cfg_cluster,
    .cfg_alloc = fh_cfg_alloc,
    .metric_new = fh_metric_new,
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
    .metric_new_labeled = fh_metric_new_labeled,
    .metric_add_global = fh_metric_add_global,
    .endpoint_index = fh_endpoint_index,
    .endpoint_cluster = fh_endpoint_cluster,
    .req_attempts = fh_req_attempts,
    .cfg_cluster_pool = fh_cfg_cluster_pool,
    .attempt_retry = fh_attempt_retry,
    .route_keep_body = fh_route_keep_body,
    .route_set_try_timeout = fh_route_set_try_timeout,
    .cluster_usable_count = fh_cluster_usable_count,
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
        inst->status = desc->config_new(&fake_host_table, config, &inst->cfg, inst->diag);
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
