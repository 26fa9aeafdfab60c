/* router: picks a virtual host by Host/:authority and a route by path, then
 * either routes the stream to a cluster or answers it directly.
 *
 *   virtual_hosts:
 *     - name: default            # optional
 *       domains: ["*"]           # "a.com" exact, "*.a.com" suffix, "*" any
 *       routes:
 *         - match: { prefix: /api }          # or { path: /exact }; {} = all
 *           route: { cluster: api, timeout: 5s }
 *         - match: { prefix: / }
 *           direct_response: { status: 200, body: "hi\n" }
 *
 * Everything is compiled at config time into read-only tables shared by all
 * workers: the request path only compares bytes, it never allocates or
 * builds strings. Domain precedence follows Envoy: an exact domain beats the
 * longest matching "*suffix", which beats "*". Within a virtual host the
 * first matching route wins.
 *
 * Matches and actions are separate structs so that header, query and method
 * matches, and redirect / rewrite / weighted-cluster actions (Istio's
 * VirtualService) can be added without touching the lookup.
 */
#include <sluice/filter.h>
#include <sluice/host.h>
#include <sluice/types.h>

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ---- compiled config ---------------------------------------------------- */

typedef enum route_match_kind {
    MATCH_ANY = 0,    /* no path condition */
    MATCH_PREFIX = 1, /* path starts with value */
    MATCH_PATH = 2,   /* path equals value */
} route_match_kind_t;

/* route_match is every condition of a route; all must hold. */
typedef struct route_match {
    route_match_kind_t path_kind;
    slc_str_t path; /* config-arena */
} route_match_t;

typedef enum route_action_kind {
    ACTION_ROUTE = 0,  /* forward to a cluster */
    ACTION_DIRECT = 1, /* answer from the proxy */
} route_action_kind_t;

typedef struct route_action {
    route_action_kind_t kind;
    /* ACTION_ROUTE: the cluster is looked up by name per stream so that the
     * pointer always comes from the stream's own config generation. */
    slc_str_t cluster;   /* config-arena */
    uint64_t timeout_ms; /* 0 = none */
    /* ACTION_DIRECT */
    int status;
    slc_str_t body; /* config-arena */
} route_action_t;

typedef struct route {
    route_match_t match;
    route_action_t action;
} route_t;

typedef struct vhost {
    const char *name; /* config-arena, may be NULL */
    route_t *routes;  /* config-arena */
    size_t nroutes;
} vhost_t;

/* domain_entry is one domain of one virtual host. For suffix entries |text|
 * is what follows the '*' (".a.com"). Lower-cased at config time. */
typedef struct domain_entry {
    slc_str_t text;
    const vhost_t *vh;
    const slc_cfg_node_t *node; /* for duplicate reports; config time only */
} domain_entry_t;

typedef struct router_cfg {
    vhost_t *vhosts;
    size_t nvhosts;
    domain_entry_t *exact; /* sorted by text, for binary search */
    size_t nexact;
    domain_entry_t *suffix; /* longest suffix first */
    size_t nsuffix;
    const vhost_t *any; /* the "*" virtual host, or NULL */
} router_cfg_t;

/* ---- config binding ------------------------------------------------------ */

/* Raw shapes filled by cfg_bind, one per YAML map. */
struct raw_top {
    const slc_cfg_node_t *virtual_hosts;
};
struct raw_vhost {
    char *name;
    const slc_cfg_node_t *domains;
    const slc_cfg_node_t *routes;
};
struct raw_route {
    char *name;
    const slc_cfg_node_t *match;
    const slc_cfg_node_t *route;
    const slc_cfg_node_t *direct_response;
};
struct raw_match {
    char *prefix;
    char *path;
};
struct raw_route_action {
    char *cluster;
    uint64_t timeout_ms;
};
struct raw_direct {
    uint32_t status;
    char *body;
};

static const slc_cfg_field_t top_fields[] = {
    SLC_FIELD_NODE("virtual_hosts", struct raw_top, virtual_hosts, .required = true),
    SLC_FIELD_END,
};
static const slc_cfg_field_t vhost_fields[] = {
    SLC_FIELD_STR("name", struct raw_vhost, name),
    SLC_FIELD_NODE("domains", struct raw_vhost, domains, .required = true),
    SLC_FIELD_NODE("routes", struct raw_vhost, routes, .required = true),
    SLC_FIELD_END,
};
static const slc_cfg_field_t route_fields[] = {
    SLC_FIELD_STR("name", struct raw_route, name),
    SLC_FIELD_NODE("match", struct raw_route, match),
    SLC_FIELD_NODE("route", struct raw_route, route),
    SLC_FIELD_NODE("direct_response", struct raw_route, direct_response),
    SLC_FIELD_END,
};
static const slc_cfg_field_t match_fields[] = {
    SLC_FIELD_STR("prefix", struct raw_match, prefix),
    SLC_FIELD_STR("path", struct raw_match, path),
    SLC_FIELD_END,
};
static const slc_cfg_field_t route_action_fields[] = {
    SLC_FIELD_STR("cluster", struct raw_route_action, cluster, .required = true),
    SLC_FIELD_DURATION("timeout", struct raw_route_action, timeout_ms),
    SLC_FIELD_END,
};
static const slc_cfg_field_t direct_fields[] = {
    SLC_FIELD_U32("status", struct raw_direct, status, .required = true, .min = 200, .max = 599),
    SLC_FIELD_STR("body", struct raw_direct, body),
    SLC_FIELD_END,
};

/* build_ctx carries the config-time state; |errors| counts our own
 * reports so that every problem is found in one pass. */
typedef struct build_ctx {
    const slc_host_t *h;
    slc_diag_t *d;
    unsigned errors;
} build_ctx_t;

__attribute__((format(printf, 3, 4))) static void
build_error(build_ctx_t *b, const slc_cfg_node_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    b->h->diag_error(b->d, n, fmt, ap);
    va_end(ap);
    b->errors++;
}

static bool bind(build_ctx_t *b, const slc_cfg_node_t *n, const slc_cfg_field_t *fields, void *out)
{
    if (b->h->cfg_bind(b->d, n, fields, out) != SLC_OK) {
        b->errors++;
        return false;
    }
    return true;
}

static int ascii_lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c + ('a' - 'A') : c;
}

/* cmp_ci compares |a| (any case) with |b| (lower case) byte-wise after
 * lower-casing |a|: the order qsort used on the lower-cased table. */
static int cmp_ci(slc_str_t a, slc_str_t b)
{
    size_t n = a.len < b.len ? a.len : b.len;
    for (size_t i = 0; i < n; i++) {
        int ca = ascii_lower((unsigned char)a.ptr[i]);
        int cb = (unsigned char)b.ptr[i];
        if (ca != cb) {
            return ca - cb;
        }
    }
    return a.len < b.len ? -1 : a.len > b.len ? 1 : 0;
}

static int exact_cmp(const void *x, const void *y)
{
    const domain_entry_t *a = x, *b = y;
    return cmp_ci(a->text, b->text);
}

static int suffix_cmp(const void *x, const void *y)
{
    const domain_entry_t *a = x, *b = y;
    if (a->text.len != b->text.len) {
        return a->text.len > b->text.len ? -1 : 1;
    }
    return cmp_ci(a->text, b->text);
}

static bool host_char_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '.' || c == '_';
}

/* check_domain validates one domain pattern. Port-carrying patterns are
 * refused rather than silently stripped: ports never take part in matching. */
static bool check_domain(build_ctx_t *b, const slc_cfg_node_t *n, slc_str_t s)
{
    if (s.len == 0) {
        build_error(b, n, "domain must not be empty");
        return false;
    }
    if (s.len == 1 && s.ptr[0] == '*') {
        return true;
    }
    size_t i = 0;
    if (s.ptr[0] == '*') {
        i = 1;
    }
    if (s.ptr[i] == '[') {
        /* IPv6 literal: "[::1]". */
        const char *close = memchr(s.ptr, ']', s.len);
        if (i != 0 || close == NULL || close != s.ptr + s.len - 1) {
            build_error(b, n, "domain '%s': bad IPv6 literal (ports are not allowed)", s.ptr);
            return false;
        }
        return true;
    }
    for (; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c == ':') {
            build_error(b, n,
                        "domain '%s' must not include a port (ports are ignored when matching)",
                        s.ptr);
            return false;
        }
        if (c == '*') {
            build_error(b, n,
                        "domain '%s': '*' is only allowed as the first character ('*.example.com') "
                        "or alone",
                        s.ptr);
            return false;
        }
        if (!host_char_ok(c)) {
            build_error(b, n, "domain '%s' contains an invalid character", s.ptr);
            return false;
        }
    }
    return true;
}

/* lower_dup copies |s| lower-cased into config-arena memory. */
static slc_str_t lower_dup(build_ctx_t *b, slc_str_t s)
{
    char *p = b->h->cfg_alloc(b->d, s.len + 1);
    for (size_t i = 0; i < s.len; i++) {
        p[i] = (char)ascii_lower((unsigned char)s.ptr[i]);
    }
    return (slc_str_t){p, s.len};
}

static slc_str_t str_of(const char *s)
{
    return s == NULL ? SLC_STR_NULL : (slc_str_t){s, strlen(s)};
}

static void build_match(build_ctx_t *b, const slc_cfg_node_t *n, route_match_t *m)
{
    struct raw_match raw = {0};
    m->path_kind = MATCH_ANY;
    if (n == NULL || b->h->cfg_type(n) == SLC_CFG_NULL) {
        return; /* absent or `match:` alone: match everything */
    }
    if (!bind(b, n, match_fields, &raw)) {
        return;
    }
    if (raw.prefix != NULL && raw.path != NULL) {
        build_error(b, n, "match has both 'prefix' and 'path'; use one");
        return;
    }
    const char *value = raw.prefix != NULL ? raw.prefix : raw.path;
    const char *key = raw.prefix != NULL ? "prefix" : "path";
    if (value == NULL) {
        return;
    }
    if (value[0] != '/') {
        build_error(b, b->h->cfg_get(n, key), "%s '%s' must start with '/'", key, value);
        return;
    }
    m->path_kind = raw.prefix != NULL ? MATCH_PREFIX : MATCH_PATH;
    m->path = str_of(value);
}

static void build_action(build_ctx_t *b, const slc_cfg_node_t *entry, const struct raw_route *raw,
                         route_action_t *a)
{
    if ((raw->route != NULL) == (raw->direct_response != NULL)) {
        build_error(b, entry, "a route needs exactly one of 'route' or 'direct_response'");
        return;
    }
    if (raw->route != NULL) {
        struct raw_route_action ra = {0};
        a->kind = ACTION_ROUTE;
        if (!bind(b, raw->route, route_action_fields, &ra)) {
            return;
        }
        a->cluster = str_of(ra.cluster);
        a->timeout_ms = ra.timeout_ms;
        if (b->h->cfg_cluster(b->d, a->cluster) == NULL) {
            build_error(b, b->h->cfg_get(raw->route, "cluster"), "unknown cluster '%s'",
                        ra.cluster);
        }
        return;
    }
    struct raw_direct rd = {0};
    a->kind = ACTION_DIRECT;
    if (!bind(b, raw->direct_response, direct_fields, &rd)) {
        return;
    }
    a->status = (int)rd.status;
    a->body = rd.body != NULL ? str_of(rd.body) : SLC_STR("");
}

static void build_routes(build_ctx_t *b, const slc_cfg_node_t *n, vhost_t *vh)
{
    const slc_host_t *h = b->h;
    if (h->cfg_type(n) != SLC_CFG_SEQ) {
        build_error(b, n, "'routes' must be a sequence of routes");
        return;
    }
    vh->nroutes = h->cfg_len(n);
    vh->routes = h->cfg_alloc(b->d, (vh->nroutes ? vh->nroutes : 1) * sizeof(route_t));
    for (size_t i = 0; i < vh->nroutes; i++) {
        const slc_cfg_node_t *entry = h->cfg_at(n, i);
        struct raw_route raw = {0};
        /* Keep going after a binding error (an unknown key, say) so that the
         * operator sees every problem of the file at once. */
        if (!bind(b, entry, route_fields, &raw) && h->cfg_type(entry) != SLC_CFG_MAP) {
            continue;
        }
        build_match(b, raw.match, &vh->routes[i].match);
        build_action(b, entry, &raw, &vh->routes[i].action);
    }
}

/* add_domains validates the domains of |vh| and appends them to the exact
 * or suffix table (sized by the caller), or sets the wildcard host. */
static void add_domains(build_ctx_t *b, router_cfg_t *cfg, const slc_cfg_node_t *n,
                        const vhost_t *vh)
{
    const slc_host_t *h = b->h;
    if (h->cfg_type(n) != SLC_CFG_SEQ) {
        build_error(b, n, "'domains' must be a sequence of domain names");
        return;
    }
    if (h->cfg_len(n) == 0) {
        build_error(b, n, "'domains' must not be empty");
        return;
    }
    for (size_t i = 0; i < h->cfg_len(n); i++) {
        const slc_cfg_node_t *dn = h->cfg_at(n, i);
        if (h->cfg_type(dn) != SLC_CFG_SCALAR) {
            build_error(b, dn, "a domain must be a string");
            continue;
        }
        slc_str_t s = h->cfg_scalar(dn);
        if (!check_domain(b, dn, s)) {
            continue;
        }
        if (s.len == 1 && s.ptr[0] == '*') {
            if (cfg->any != NULL) {
                build_error(b, dn, "domain '*' is already used by another virtual host");
            } else {
                cfg->any = vh;
            }
        } else if (s.ptr[0] == '*') {
            slc_str_t suffix = {s.ptr + 1, s.len - 1};
            cfg->suffix[cfg->nsuffix++] = (domain_entry_t){lower_dup(b, suffix), vh, dn};
        } else {
            cfg->exact[cfg->nexact++] = (domain_entry_t){lower_dup(b, s), vh, dn};
        }
    }
}

static void report_duplicates(build_ctx_t *b, const domain_entry_t *t, size_t n, bool suffix)
{
    for (size_t i = 1; i < n; i++) {
        if (t[i].text.len == t[i - 1].text.len &&
            memcmp(t[i].text.ptr, t[i - 1].text.ptr, t[i].text.len) == 0) {
            build_error(b, t[i].node, "domain '%s%.*s' is listed twice", suffix ? "*" : "",
                        (int)t[i].text.len, t[i].text.ptr);
        }
    }
}

static slc_status_t router_config_new(const slc_host_t *h, const slc_cfg_node_t *n, void **out_cfg,
                                      slc_diag_t *d)
{
    build_ctx_t b = {.h = h, .d = d};
    struct raw_top top = {0};

    *out_cfg = NULL;
    if (!bind(&b, n, top_fields, &top)) {
        return SLC_EINVAL;
    }
    if (h->cfg_type(top.virtual_hosts) != SLC_CFG_SEQ) {
        build_error(&b, top.virtual_hosts, "'virtual_hosts' must be a sequence");
        return SLC_EINVAL;
    }

    /* All config memory comes from cfg_alloc: the host frees it with the
     * instance, so no config_free and no unwinding on errors. */
    router_cfg_t *cfg = h->cfg_alloc(d, sizeof(*cfg));
    cfg->nvhosts = h->cfg_len(top.virtual_hosts);
    cfg->vhosts = h->cfg_alloc(d, (cfg->nvhosts ? cfg->nvhosts : 1) * sizeof(vhost_t));

    struct raw_vhost *raw = h->cfg_alloc(d, (cfg->nvhosts ? cfg->nvhosts : 1) * sizeof(*raw));
    size_t ndomains = 0;
    for (size_t i = 0; i < cfg->nvhosts; i++) {
        const slc_cfg_node_t *vn = h->cfg_at(top.virtual_hosts, i);
        if (!bind(&b, vn, vhost_fields, &raw[i]) && h->cfg_type(vn) != SLC_CFG_MAP) {
            raw[i] = (struct raw_vhost){0};
        }
        ndomains += h->cfg_len(raw[i].domains);
    }
    cfg->exact = h->cfg_alloc(d, (ndomains ? ndomains : 1) * sizeof(domain_entry_t));
    cfg->suffix = h->cfg_alloc(d, (ndomains ? ndomains : 1) * sizeof(domain_entry_t));

    for (size_t i = 0; i < cfg->nvhosts; i++) {
        vhost_t *vh = &cfg->vhosts[i];
        vh->name = raw[i].name;
        /* A missing key was reported by the binder. */
        if (raw[i].domains != NULL) {
            add_domains(&b, cfg, raw[i].domains, vh);
        }
        if (raw[i].routes != NULL) {
            build_routes(&b, raw[i].routes, vh);
        }
    }

    qsort(cfg->exact, cfg->nexact, sizeof(domain_entry_t), exact_cmp);
    qsort(cfg->suffix, cfg->nsuffix, sizeof(domain_entry_t), suffix_cmp);
    report_duplicates(&b, cfg->exact, cfg->nexact, false);
    report_duplicates(&b, cfg->suffix, cfg->nsuffix, true);

    if (b.errors > 0) {
        return SLC_EINVAL;
    }
    *out_cfg = cfg;
    return SLC_OK;
}

/* ---- request path ---------------------------------------------------------- */

/* authority_host strips the port from "host:port" or "[v6]:port". */
static slc_str_t authority_host(slc_str_t a)
{
    if (a.len > 0 && a.ptr[0] == '[') {
        const char *close = memchr(a.ptr, ']', a.len);
        if (close != NULL) {
            a.len = (size_t)(close - a.ptr) + 1;
        }
        return a;
    }
    const char *colon = memchr(a.ptr, ':', a.len);
    if (colon != NULL) {
        a.len = (size_t)(colon - a.ptr);
    }
    return a;
}

static bool tail_eq_ci(slc_str_t host, slc_str_t suffix)
{
    slc_str_t tail = {host.ptr + host.len - suffix.len, suffix.len};
    return cmp_ci(tail, suffix) == 0;
}

static const vhost_t *find_vhost(const router_cfg_t *cfg, slc_str_t authority)
{
    slc_str_t host = authority.ptr != NULL ? authority_host(authority) : SLC_STR("");
    size_t lo = 0, hi = cfg->nexact;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = cmp_ci(host, cfg->exact[mid].text);
        if (c == 0) {
            return cfg->exact[mid].vh;
        }
        if (c < 0) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    /* "*.a.com" needs at least one character before ".a.com". */
    for (size_t i = 0; i < cfg->nsuffix; i++) {
        if (host.len > cfg->suffix[i].text.len && tail_eq_ci(host, cfg->suffix[i].text)) {
            return cfg->suffix[i].vh;
        }
    }
    return cfg->any;
}

static bool match_route(const route_match_t *m, slc_str_t path)
{
    switch (m->path_kind) {
    case MATCH_ANY:
        return true;
    case MATCH_PREFIX:
        return path.len >= m->path.len && memcmp(path.ptr, m->path.ptr, m->path.len) == 0;
    case MATCH_PATH:
        return path.len == m->path.len && memcmp(path.ptr, m->path.ptr, m->path.len) == 0;
    }
    return false;
}

static const route_t *find_route(const vhost_t *vh, slc_str_t path)
{
    for (size_t i = 0; i < vh->nroutes; i++) {
        if (match_route(&vh->routes[i].match, path)) {
            return &vh->routes[i];
        }
    }
    return NULL;
}

static slc_action_t router_on_request_headers(void *ctx, slc_req_t *r)
{
    const router_cfg_t *cfg = ctx;
    const vhost_t *vh = find_vhost(cfg, slc_pseudo(r, SLC_PSEUDO_AUTHORITY));
    const route_t *rt = NULL;
    if (vh != NULL) {
        slc_str_t path = slc_pseudo(r, SLC_PSEUDO_PATH);
        if (path.ptr == NULL) {
            path = SLC_STR("");
        }
        const char *q = memchr(path.ptr, '?', path.len);
        if (q != NULL) {
            path.len = (size_t)(q - path.ptr);
        }
        rt = find_route(vh, path);
    }
    if (rt == NULL) {
        slc_host->set_response_flag(r, SLC_RF_NR);
        slc_send_local_reply(r, 404, SLC_STR("text/plain"), SLC_STR("no route\n"));
        return SLC_STOP;
    }

    const route_action_t *a = &rt->action;
    if (a->kind == ACTION_DIRECT) {
        slc_send_local_reply(r, a->status, a->body.len ? SLC_STR("text/plain") : SLC_STR_NULL,
                             a->body);
        return SLC_STOP;
    }
    /* Validated at config time against this same generation, so a miss
     * here means the host broke its promise; fail closed. */
    const slc_cluster_t *c = slc_host->cluster_get(r, a->cluster);
    if (c == NULL || slc_host->route_set_cluster(r, c) != SLC_OK) {
        slc_send_local_reply(r, 503, SLC_STR("text/plain"), SLC_STR("unknown cluster\n"));
        return SLC_STOP;
    }
    slc_host->route_set_timeout(r, a->timeout_ms);
    return SLC_CONTINUE;
}

static const slc_filter_desc_t router_desc = {
    .abi_version = SLC_ABI_VERSION,
    .struct_size = sizeof(slc_filter_desc_t),
    .name = "router",
    .version = "0.1.0",
    .config_new = router_config_new,
    .on_request_headers = router_on_request_headers,
};

SLC_FILTER_DEFINE(router_desc)
