/* router: Istio VirtualService semantics. Picks a virtual host by
 * Host/:authority, the first route whose match holds, and then either
 * forwards to a (weighted) cluster, redirects, or answers directly.
 * docs/filters/router.md is the reference for every key.
 *
 *   virtual_hosts:
 *     - name: reviews
 *       domains: ["reviews.example.com", "*.example.com", "*"]
 *       routes:
 *         - match: { prefix: /api, headers: { x-user: { exact: jason } } }
 *           route: [ { cluster: v1, weight: 90 }, { cluster: v2, weight: 10 } ]
 *           timeout: 5s
 *           retries: { attempts: 3, per_try_timeout: 1s, retry_on: "connect-failure,5xx" }
 *           rewrite: { uri: /v2, authority: reviews.internal }
 *           request_headers: { set: { x-a: b }, add: { x-c: d }, remove: [x-e] }
 *           response_headers: { set: { x-a: b } }
 *           mirror: { cluster: shadow, percentage: 50 }
 *           fault: { delay: { fixed_delay: 5s, percentage: 10 },
 *                    abort: { http_status: 503, percentage: 5 } }
 *         - match: { prefix: /old }
 *           redirect: { scheme: https, host: new.example.com, path: /new, code: 301 }
 *         - match: { prefix: / }
 *           direct_response: { status: 200, body: "hello\n" }
 *
 * The legacy single-destination form `route: { cluster: api, timeout: 5s }`
 * still works.
 *
 * Everything is compiled at config time into read-only tables shared by all
 * workers: domains sorted for binary search, regexes compiled by RE2 through
 * the util library (linear-time full matches, see <sluice/util.h>), retry
 * policies, header operations and cumulative weights precomputed. The
 * request path compares bytes and never allocates, except the 32-byte stream
 * state (so that response_headers and a fault delay know their route), the
 * strings a rewrite or a redirect must build, and the DFA cache RE2 may grow
 * inside a compiled regex (bounded per regex).
 *
 * Domain precedence follows Envoy: an exact domain beats the longest matching
 * "*suffix", which beats "*". Within a virtual host the first matching route
 * wins. Random choices (weights, fault and mirror percentages) use a
 * per-worker generator (slcu_rng_t): no locks, no shared state.
 */
#include <sluice/filter.h>
#include <sluice/host.h>
#include <sluice/types.h>
#include <sluice/util.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- compiled config ---------------------------------------------------- */

#define PPM_ALL 1000000u /* percentages are kept in parts per million */

/* Header and query-parameter conditions are the util library's matchers:
 * Istio's StringMatch plus presence. Their text is config-arena memory and
 * their regexes are owned by the config (router_cfg.regexes). */
typedef slcu_strmatch_t str_match_t;
typedef slcu_kvmatch_t kv_match_t;

typedef enum path_kind {
    PATH_ANY = 0,    /* no uri condition (Istio treats it as prefix "/") */
    PATH_PREFIX = 1, /* path starts with value */
    PATH_EXACT = 2,  /* path equals value */
    PATH_REGEX = 3,  /* the whole path matches */
} path_kind_t;

/* route_match is one Istio HTTPMatchRequest: all its conditions must hold. */
typedef struct route_match {
    path_kind_t path_kind;
    bool has_method, has_authority;
    /* PATH_PREFIX, PATH_EXACT (ignore_case is ignore_uri_case) and
     * PATH_REGEX as one matcher; path.text is config-arena. */
    str_match_t path;
    str_match_t method, authority;
    kv_match_t *headers, *query;
    size_t nheaders, nquery;
} route_match_t;

typedef struct hdr_op {
    slc_str_t name, value;
} hdr_op_t;

/* hdr_ops is applied in Envoy's order: remove, then set, then add. */
typedef struct hdr_ops {
    slc_str_t *remove;
    hdr_op_t *set, *add;
    size_t nremove, nset, nadd;
} hdr_ops_t;

/* dest is one weighted destination; |cum| is the running total of weights
 * up to and including it, for the pick. */
typedef struct dest {
    /* Resolved in config_new. A filter instance belongs to one generation,
     * and streams run the chain of their own generation, so this is the
     * stream's cluster: no lookup by name per request. LIFETIME: the config
     * instance (cfg_cluster). */
    const slc_cluster_t *cluster;
    uint64_t cum;
} dest_t;

typedef enum action_kind {
    ACTION_ROUTE = 0,    /* forward to a cluster */
    ACTION_DIRECT = 1,   /* answer from the proxy */
    ACTION_REDIRECT = 2, /* answer with a redirect */
} action_kind_t;

typedef struct redirect {
    slc_str_t scheme, host, path; /* empty: keep the request's */
    uint32_t port;                /* 0: derive (see build_location) */
    int code;
} redirect_t;

typedef struct fault {
    uint64_t delay_ms; /* 0: no delay */
    uint32_t delay_ppm;
    int abort_status; /* 0: no abort */
    uint32_t abort_ppm;
} fault_t;

typedef struct route {
    route_match_t *matches; /* any one must hold; none: match all */
    size_t nmatches;
    action_kind_t kind;
    /* ACTION_ROUTE */
    dest_t *dests;
    size_t ndests;
    uint64_t total_weight;
    uint64_t timeout_ms; /* 0 = none (Istio's default) */
    slc_retry_policy_t retry;
    bool has_rewrite_uri;
    slc_str_t rewrite_uri, rewrite_authority;
    const slc_cluster_t *mirror; /* NULL: none; resolved like dest_t.cluster */
    uint32_t mirror_ppm;
    /* every kind */
    hdr_ops_t req_ops, resp_ops;
    fault_t fault;
    /* ACTION_REDIRECT */
    redirect_t redirect;
    /* ACTION_DIRECT */
    int status;
    slc_str_t body;
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

/* regex_ref records one compiled regex so that config_free can free it.
 * OWNERSHIP: the node is config-arena; the RE2 object it points to is
 * owned by the router config and freed by free_regexes (config_free, or
 * router_config_new itself when the config is refused). */
typedef struct regex_ref {
    slcu_regex_t *re;
    struct regex_ref *next;
} regex_ref_t;

typedef struct router_cfg {
    regex_ref_t *regexes; /* every regex below; freed in config_free */
    vhost_t *vhosts;
    size_t nvhosts;
    domain_entry_t *exact; /* sorted by text, for binary search */
    size_t nexact;
    domain_entry_t *suffix; /* longest suffix first */
    size_t nsuffix;
    const vhost_t *any; /* the "*" virtual host, or NULL */
} router_cfg_t;

/* router_worker is one worker's PRNG state.
 * OWNERSHIP: malloc'd in worker_init, freed in worker_fini; touched only on
 * its worker's thread. */
typedef struct router_worker {
    slcu_rng_t rng;
} router_worker_t;

/* router_stream is the per-stream state (request-arena, 32 bytes): the route
 * taken, for response_headers, and what a delayed stream does when its
 * timer fires. */
typedef struct router_stream {
    const router_cfg_t *cfg;
    router_worker_t *w;
    const route_t *rt;
    uint32_t retries; /* asked for with attempt_retry (ABI 1.3 hosts) */
    bool abort_after_delay;
} router_stream_t;

/* ---- config binding ------------------------------------------------------ */

/* Raw shapes filled by cfg_bind, one per YAML map. */
struct raw_top {
    const slc_cfg_node_t *virtual_hosts;
    uint32_t max_program_size;
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
    const slc_cfg_node_t *redirect;
    bool https_redirect;
    const slc_cfg_node_t *direct_response;
    uint64_t timeout_ms;
    const slc_cfg_node_t *retries;
    const slc_cfg_node_t *rewrite;
    const slc_cfg_node_t *request_headers;
    const slc_cfg_node_t *response_headers;
    const slc_cfg_node_t *mirror;
    const slc_cfg_node_t *fault;
};
struct raw_match {
    char *name;
    char *prefix;
    char *path;
    char *regex;
    bool ignore_uri_case;
    const slc_cfg_node_t *method;
    const slc_cfg_node_t *authority;
    const slc_cfg_node_t *headers;
    const slc_cfg_node_t *query_params;
};
struct raw_str_match {
    char *exact;
    char *prefix;
    char *regex;
    bool present;
    bool absent;
};
struct raw_dest {
    char *cluster;
    uint32_t weight;
    uint64_t timeout_ms; /* legacy map form only */
};
struct raw_direct {
    uint32_t status;
    char *body;
};
struct raw_redirect {
    char *scheme;
    char *host;
    uint32_t port;
    char *path;
    uint32_t code;
    bool https_redirect;
};
struct raw_retries {
    uint32_t attempts;
    uint64_t per_try_timeout_ms;
    char *retry_on;
};
struct raw_rewrite {
    char *uri;
    char *authority;
};
struct raw_hdr_ops {
    const slc_cfg_node_t *set;
    const slc_cfg_node_t *add;
    const slc_cfg_node_t *remove;
};
struct raw_mirror {
    char *cluster;
    char *percentage;
};
struct raw_fault {
    const slc_cfg_node_t *delay;
    const slc_cfg_node_t *abort;
};
struct raw_delay {
    uint64_t fixed_delay_ms;
    char *percentage;
};
struct raw_abort {
    uint32_t http_status;
    char *percentage;
};

static const slc_cfg_field_t top_fields[] = {
    SLC_FIELD_NODE("virtual_hosts", struct raw_top, virtual_hosts, .required = true),
    /* RE2 program size limit for every regex of this instance (Envoy's
     * GoogleRE2.max_program_size, whose default is 100). */
    SLC_FIELD_U32("max_program_size", struct raw_top, max_program_size, .dflt = "100", .min = 1,
                  .max = 1000000),
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
    SLC_FIELD_NODE("redirect", struct raw_route, redirect),
    SLC_FIELD_BOOL("https_redirect", struct raw_route, https_redirect),
    SLC_FIELD_NODE("direct_response", struct raw_route, direct_response),
    SLC_FIELD_DURATION("timeout", struct raw_route, timeout_ms),
    SLC_FIELD_NODE("retries", struct raw_route, retries),
    SLC_FIELD_NODE("rewrite", struct raw_route, rewrite),
    SLC_FIELD_NODE("request_headers", struct raw_route, request_headers),
    SLC_FIELD_NODE("response_headers", struct raw_route, response_headers),
    SLC_FIELD_NODE("mirror", struct raw_route, mirror),
    SLC_FIELD_NODE("fault", struct raw_route, fault),
    SLC_FIELD_END,
};
static const slc_cfg_field_t match_fields[] = {
    SLC_FIELD_STR("name", struct raw_match, name),
    SLC_FIELD_STR("prefix", struct raw_match, prefix),
    SLC_FIELD_STR("path", struct raw_match, path),
    SLC_FIELD_STR("regex", struct raw_match, regex),
    SLC_FIELD_BOOL("ignore_uri_case", struct raw_match, ignore_uri_case),
    SLC_FIELD_NODE("method", struct raw_match, method),
    SLC_FIELD_NODE("authority", struct raw_match, authority),
    SLC_FIELD_NODE("headers", struct raw_match, headers),
    SLC_FIELD_NODE("query_params", struct raw_match, query_params),
    SLC_FIELD_END,
};
static const slc_cfg_field_t str_match_fields[] = {
    SLC_FIELD_STR("exact", struct raw_str_match, exact),
    SLC_FIELD_STR("prefix", struct raw_str_match, prefix),
    SLC_FIELD_STR("regex", struct raw_str_match, regex),
    SLC_FIELD_BOOL("present", struct raw_str_match, present),
    SLC_FIELD_BOOL("absent", struct raw_str_match, absent),
    SLC_FIELD_END,
};
/* The legacy single destination: route: { cluster: api, timeout: 5s }. */
static const slc_cfg_field_t legacy_dest_fields[] = {
    SLC_FIELD_STR("cluster", struct raw_dest, cluster, .required = true),
    SLC_FIELD_U32("weight", struct raw_dest, weight, .max = 1000000),
    SLC_FIELD_DURATION("timeout", struct raw_dest, timeout_ms),
    SLC_FIELD_END,
};
static const slc_cfg_field_t dest_fields[] = {
    SLC_FIELD_STR("cluster", struct raw_dest, cluster, .required = true),
    SLC_FIELD_U32("weight", struct raw_dest, weight, .max = 1000000),
    SLC_FIELD_END,
};
static const slc_cfg_field_t direct_fields[] = {
    SLC_FIELD_U32("status", struct raw_direct, status, .required = true, .min = 200, .max = 599),
    SLC_FIELD_STR("body", struct raw_direct, body),
    SLC_FIELD_END,
};
static const slc_cfg_field_t redirect_fields[] = {
    SLC_FIELD_STR("scheme", struct raw_redirect, scheme),
    SLC_FIELD_STR("host", struct raw_redirect, host),
    SLC_FIELD_U32("port", struct raw_redirect, port, .min = 1, .max = 65535),
    SLC_FIELD_STR("path", struct raw_redirect, path),
    SLC_FIELD_U32("code", struct raw_redirect, code, .dflt = "301"),
    SLC_FIELD_BOOL("https_redirect", struct raw_redirect, https_redirect),
    SLC_FIELD_END,
};
static const slc_cfg_field_t retries_fields[] = {
    SLC_FIELD_U32("attempts", struct raw_retries, attempts, .max = 100),
    SLC_FIELD_DURATION("per_try_timeout", struct raw_retries, per_try_timeout_ms, .min = 1),
    SLC_FIELD_STR("retry_on", struct raw_retries, retry_on),
    SLC_FIELD_END,
};
static const slc_cfg_field_t rewrite_fields[] = {
    SLC_FIELD_STR("uri", struct raw_rewrite, uri),
    SLC_FIELD_STR("authority", struct raw_rewrite, authority),
    SLC_FIELD_END,
};
static const slc_cfg_field_t hdr_ops_fields[] = {
    SLC_FIELD_NODE("set", struct raw_hdr_ops, set),
    SLC_FIELD_NODE("add", struct raw_hdr_ops, add),
    SLC_FIELD_NODE("remove", struct raw_hdr_ops, remove),
    SLC_FIELD_END,
};
static const slc_cfg_field_t mirror_fields[] = {
    SLC_FIELD_STR("cluster", struct raw_mirror, cluster, .required = true),
    SLC_FIELD_STR("percentage", struct raw_mirror, percentage, .dflt = "100"),
    SLC_FIELD_END,
};
static const slc_cfg_field_t fault_fields[] = {
    SLC_FIELD_NODE("delay", struct raw_fault, delay),
    SLC_FIELD_NODE("abort", struct raw_fault, abort),
    SLC_FIELD_END,
};
static const slc_cfg_field_t delay_fields[] = {
    SLC_FIELD_DURATION("fixed_delay", struct raw_delay, fixed_delay_ms, .required = true, .min = 1),
    SLC_FIELD_STR("percentage", struct raw_delay, percentage),
    SLC_FIELD_END,
};
static const slc_cfg_field_t abort_fields[] = {
    SLC_FIELD_U32("http_status", struct raw_abort, http_status, .required = true, .min = 200,
                  .max = 599),
    SLC_FIELD_STR("percentage", struct raw_abort, percentage),
    SLC_FIELD_END,
};

/* build_ctx carries the config-time state; |errors| counts our own
 * reports so that every problem is found in one pass. */
typedef struct build_ctx {
    const slc_host_t *h;
    slc_diag_t *d;
    unsigned errors;
    router_cfg_t *cfg;         /* where compiled regexes are recorded */
    uint32_t max_program_size; /* for every regex */
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

__attribute__((format(printf, 3, 4))) static void
build_warn(build_ctx_t *b, const slc_cfg_node_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    b->h->diag_warn(b->d, n, fmt, ap);
    va_end(ap);
}

static bool bind(build_ctx_t *b, const slc_cfg_node_t *n, const slc_cfg_field_t *fields, void *out)
{
    if (b->h->cfg_bind(b->d, n, fields, out) != SLC_OK) {
        b->errors++;
        return false;
    }
    return true;
}

/* present tells whether map |n| has a non-null value for |key|. */
static const slc_cfg_node_t *present(build_ctx_t *b, const slc_cfg_node_t *n, const char *key)
{
    const slc_cfg_node_t *v = n != NULL ? b->h->cfg_get(n, key) : NULL;
    return v != NULL && b->h->cfg_type(v) != SLC_CFG_NULL ? v : NULL;
}

/* node_or is the node of |key| in |n| if there is one, else |n| itself:
 * errors point at the most precise node available. */
static const slc_cfg_node_t *node_or(build_ctx_t *b, const slc_cfg_node_t *n, const char *key)
{
    const slc_cfg_node_t *v = n != NULL ? b->h->cfg_get(n, key) : NULL;
    return v != NULL ? v : n;
}

static void *alloc_array(build_ctx_t *b, size_t n, size_t size)
{
    return b->h->cfg_alloc(b->d, (n ? n : 1) * size);
}

/* Domains are stored lower-cased and compared case-insensitively. */
static int cmp_ci(slc_str_t a, slc_str_t b)
{
    return slcu_casecmp(a, b);
}

static bool eq_ci(slc_str_t a, slc_str_t b)
{
    return slcu_caseeq(a, b);
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

/* tchar_ok: RFC 9110 token characters (header names). */
static bool tchar_ok(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static bool header_name_ok(slc_str_t s)
{
    if (s.len == 0) {
        return false;
    }
    for (size_t i = 0; i < s.len; i++) {
        if (!tchar_ok((unsigned char)s.ptr[i])) {
            return false;
        }
    }
    return true;
}

/* field_value_ok: RFC 9110 field-value: no control characters but tab, no
 * leading or trailing whitespace (the host would refuse it at run time). */
static bool field_value_ok(slc_str_t s)
{
    if (s.len > 0 && (s.ptr[0] == ' ' || s.ptr[0] == '\t' || s.ptr[s.len - 1] == ' ' ||
                      s.ptr[s.len - 1] == '\t')) {
        return false;
    }
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f) {
            return false;
        }
    }
    return true;
}

/* uri_ok: a path as it goes on the request line: no controls, no spaces. */
static bool uri_ok(slc_str_t s)
{
    for (size_t i = 0; i < s.len; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c <= 0x20 || c == 0x7f) {
            return false;
        }
    }
    return true;
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
        p[i] = (char)slcu_lower((unsigned char)s.ptr[i]);
    }
    return (slc_str_t){p, s.len};
}

static slc_str_t str_of(const char *s)
{
    return s == NULL ? SLC_STR_NULL : (slc_str_t){s, strlen(s)};
}

/* compile_regex compiles |pattern| with RE2, reporting RE2's reason and
 * the offset at node |n| (so the message carries file:line:column).
 * OWNERSHIP: the regex is recorded in the config's list, which owns it. */
static const slcu_regex_t *compile_regex(build_ctx_t *b, const slc_cfg_node_t *n,
                                         const char *pattern)
{
    slcu_regex_error_t err;
    slcu_regex_t *re = slcu_regex_compile(pattern, strlen(pattern), b->max_program_size, &err);
    if (re == NULL) {
        build_error(b, n, "bad regex '%s': %s at offset %zu", pattern, err.msg, err.pos);
        return NULL;
    }
    regex_ref_t *ref = b->h->cfg_alloc(b->d, sizeof(*ref));
    ref->re = re;
    ref->next = b->cfg->regexes;
    b->cfg->regexes = ref;
    return re;
}

static void free_regexes(router_cfg_t *cfg)
{
    for (regex_ref_t *r = cfg->regexes; r != NULL; r = r->next) {
        slcu_regex_free(r->re);
        r->re = NULL;
    }
    cfg->regexes = NULL;
}

/* parse_percent reads Istio's percentage (a double from 0 to 100) into parts
 * per million, truncating past four decimals as Istio's translation to
 * Envoy's FractionalPercent does. */
static bool parse_percent(build_ctx_t *b, const slc_cfg_node_t *n, const char *text,
                          uint32_t *out_ppm)
{
    const char *p = text;
    uint64_t whole = 0, frac = 0;
    unsigned fd = 0;
    bool digits = false;
    while (*p >= '0' && *p <= '9') {
        if (whole <= 1000) {
            whole = whole * 10 + (uint64_t)(*p - '0');
        }
        digits = true;
        p++;
    }
    if (*p == '.') {
        p++;
        while (*p >= '0' && *p <= '9') {
            if (fd < 4) {
                frac = frac * 10 + (uint64_t)(*p - '0');
                fd++;
            }
            digits = true;
            p++;
        }
    }
    if (!digits || *p != '\0') {
        build_error(b, n, "percentage must be a number from 0 to 100, got '%s'", text);
        return false;
    }
    while (fd < 4) {
        frac *= 10;
        fd++;
    }
    uint64_t ppm = whole * 10000 + frac;
    if (ppm > PPM_ALL) {
        build_error(b, n, "percentage %s is out of range (0 to 100)", text);
        return false;
    }
    *out_ppm = (uint32_t)ppm;
    return true;
}

/* optional_percent parses an optional `percentage` key. Absent means 0, as
 * in Istio (where an unset fault percentage injects nothing); we warn since
 * that is rarely what is meant. */
static uint32_t optional_percent(build_ctx_t *b, const slc_cfg_node_t *map, const char *text,
                                 const char *what)
{
    uint32_t ppm = 0;
    if (text == NULL) {
        build_warn(b, map,
                   "no 'percentage': no request will be %s (Istio's default); "
                   "add 'percentage: 100' for every request",
                   what);
        return 0;
    }
    parse_percent(b, node_or(b, map, "percentage"), text, &ppm);
    return ppm;
}

/* build_str_match binds one StringMatch map. |allow_absent| / |allow_present|
 * say which presence forms the context accepts. */
static bool build_str_match(build_ctx_t *b, const slc_cfg_node_t *n, str_match_t *m,
                            bool allow_present, bool allow_absent)
{
    struct raw_str_match raw = {0};
    if (b->h->cfg_type(n) != SLC_CFG_MAP) {
        build_error(b, n, "expected a string match: { exact | prefix | regex: ... }");
        return false;
    }
    if (!bind(b, n, str_match_fields, &raw)) {
        return false;
    }
    const slc_cfg_node_t *pn = present(b, n, "present"), *an = present(b, n, "absent");
    int count = (raw.exact != NULL) + (raw.prefix != NULL) + (raw.regex != NULL) + (pn != NULL) +
                (an != NULL);
    const char *forms = allow_absent    ? "'exact', 'prefix', 'regex', 'present' or 'absent'"
                        : allow_present ? "'exact', 'prefix', 'regex' or 'present'"
                                        : "'exact', 'prefix' or 'regex'";
    if (count != 1) {
        build_error(b, n, "a string match needs exactly one of %s", forms);
        return false;
    }
    if ((pn != NULL && !allow_present) || (an != NULL && !allow_absent)) {
        build_error(b, pn != NULL ? pn : an, "'%s' is not allowed here; use %s",
                    pn != NULL ? "present" : "absent", forms);
        return false;
    }
    if ((pn != NULL && !raw.present) || (an != NULL && !raw.absent)) {
        build_error(b, pn != NULL ? pn : an, "only 'true' is meaningful here (use %s)",
                    pn != NULL ? "'absent: true'" : "'present: true'");
        return false;
    }
    if (raw.exact != NULL) {
        m->kind = SLCU_MATCH_EXACT;
        m->text = str_of(raw.exact);
    } else if (raw.prefix != NULL) {
        m->kind = SLCU_MATCH_PREFIX;
        m->text = str_of(raw.prefix);
    } else if (raw.regex != NULL) {
        m->kind = SLCU_MATCH_REGEX;
        m->re = compile_regex(b, b->h->cfg_get(n, "regex"), raw.regex);
        return m->re != NULL;
    } else {
        m->kind = pn != NULL ? SLCU_MATCH_PRESENT : SLCU_MATCH_ABSENT;
    }
    return true;
}

/* build_kv_matches binds `headers:` or `query_params:` (a map from name to
 * StringMatch). */
static void build_kv_matches(build_ctx_t *b, const slc_cfg_node_t *n, kv_match_t **out,
                             size_t *nout, bool is_header)
{
    const slc_host_t *h = b->h;
    if (n == NULL || h->cfg_type(n) == SLC_CFG_NULL) {
        return;
    }
    if (h->cfg_type(n) != SLC_CFG_MAP) {
        build_error(b, n, "expected a map from %s name to string match",
                    is_header ? "header" : "query parameter");
        return;
    }
    size_t len = h->cfg_len(n);
    *out = alloc_array(b, len, sizeof(kv_match_t));
    for (size_t i = 0; i < len; i++) {
        slc_str_t name = h->cfg_key_at(n, i);
        const slc_cfg_node_t *v = h->cfg_at(n, i);
        kv_match_t *kv = &(*out)[*nout];
        if (is_header && !header_name_ok(name)) {
            build_error(b, v, "invalid header name '%.*s'", (int)name.len, name.ptr);
            continue;
        }
        if (!is_header && name.len == 0) {
            build_error(b, v, "empty query parameter name");
            continue;
        }
        if (!build_str_match(b, v, &kv->m, true, is_header)) {
            continue;
        }
        kv->name = is_header ? lower_dup(b, name) : name;
        (*nout)++;
    }
}

static bool path_ok(build_ctx_t *b, const slc_cfg_node_t *n, const char *key, const char *value)
{
    if (value[0] != '/') {
        build_error(b, n, "%s '%s' must start with '/'", key, value);
        return false;
    }
    return true;
}

static void build_match(build_ctx_t *b, const slc_cfg_node_t *n, route_match_t *m)
{
    struct raw_match raw = {0};
    m->path_kind = PATH_ANY;
    if (!bind(b, n, match_fields, &raw)) {
        return;
    }
    int npath = (raw.prefix != NULL) + (raw.path != NULL) + (raw.regex != NULL);
    if (npath > 1) {
        build_error(b, n, "match has more than one of 'prefix', 'path' and 'regex'; use one");
    } else if (raw.prefix != NULL) {
        if (path_ok(b, b->h->cfg_get(n, "prefix"), "prefix", raw.prefix)) {
            m->path_kind = PATH_PREFIX;
            m->path = (str_match_t){.kind = SLCU_MATCH_PREFIX, .text = str_of(raw.prefix)};
        }
    } else if (raw.path != NULL) {
        if (path_ok(b, b->h->cfg_get(n, "path"), "path", raw.path)) {
            m->path_kind = PATH_EXACT;
            m->path = (str_match_t){.kind = SLCU_MATCH_EXACT, .text = str_of(raw.path)};
        }
    } else if (raw.regex != NULL) {
        m->path_kind = PATH_REGEX;
        m->path = (str_match_t){.kind = SLCU_MATCH_REGEX,
                                .re = compile_regex(b, b->h->cfg_get(n, "regex"), raw.regex)};
    }
    /* Istio's ignore_uri_case applies to exact and prefix; a regex says
     * (?i) itself. */
    m->path.ignore_case = raw.ignore_uri_case && m->path_kind != PATH_REGEX;
    if (raw.method != NULL && b->h->cfg_type(raw.method) != SLC_CFG_NULL) {
        m->has_method = build_str_match(b, raw.method, &m->method, false, false);
    }
    if (raw.authority != NULL && b->h->cfg_type(raw.authority) != SLC_CFG_NULL) {
        m->has_authority = build_str_match(b, raw.authority, &m->authority, false, false);
    }
    build_kv_matches(b, raw.headers, &m->headers, &m->nheaders, true);
    build_kv_matches(b, raw.query_params, &m->query, &m->nquery, false);
}

/* build_matches: `match` is a map (all conditions) or a list of maps (any
 * of them); absent, null or an empty list matches everything. */
static void build_matches(build_ctx_t *b, const slc_cfg_node_t *n, route_t *rt)
{
    const slc_host_t *h = b->h;
    if (n == NULL || h->cfg_type(n) == SLC_CFG_NULL) {
        return;
    }
    if (h->cfg_type(n) == SLC_CFG_MAP) {
        rt->matches = alloc_array(b, 1, sizeof(route_match_t));
        rt->nmatches = 1;
        build_match(b, n, &rt->matches[0]);
        return;
    }
    if (h->cfg_type(n) != SLC_CFG_SEQ) {
        build_error(b, n, "'match' must be a map or a list of maps");
        return;
    }
    rt->nmatches = h->cfg_len(n);
    rt->matches = alloc_array(b, rt->nmatches, sizeof(route_match_t));
    for (size_t i = 0; i < rt->nmatches; i++) {
        build_match(b, h->cfg_at(n, i), &rt->matches[i]);
    }
}

/* resolve_cluster: the handle of cluster |name| in the generation being
 * built, or NULL after reporting it unknown. */
static const slc_cluster_t *resolve_cluster(build_ctx_t *b, const slc_cfg_node_t *n,
                                            const char *name)
{
    const slc_cluster_t *c = b->h->cfg_cluster(b->d, str_of(name));
    if (c == NULL) {
        build_error(b, n, "unknown cluster '%s'", name);
    }
    return c;
}

/* build_dests binds `route:`, a list of weighted destinations or the legacy
 * single map. Returns the legacy map's timeout through |*legacy_timeout|
 * (UINT64_MAX when it has none). */
static void build_dests(build_ctx_t *b, const slc_cfg_node_t *n, route_t *rt,
                        uint64_t *legacy_timeout)
{
    const slc_host_t *h = b->h;
    *legacy_timeout = UINT64_MAX;
    if (h->cfg_type(n) == SLC_CFG_MAP) {
        struct raw_dest rd = {0};
        if (!bind(b, n, legacy_dest_fields, &rd)) {
            return;
        }
        const slc_cluster_t *c = resolve_cluster(b, h->cfg_get(n, "cluster"), rd.cluster);
        rt->dests = alloc_array(b, 1, sizeof(dest_t));
        rt->dests[0] = (dest_t){c, 1};
        rt->ndests = 1;
        rt->total_weight = 1;
        if (present(b, n, "timeout") != NULL) {
            *legacy_timeout = rd.timeout_ms;
        }
        return;
    }
    if (h->cfg_type(n) != SLC_CFG_SEQ) {
        build_error(b, n, "'route' must be a list of destinations or a map");
        return;
    }
    size_t len = h->cfg_len(n);
    if (len == 0) {
        build_error(b, n, "'route' needs at least one destination");
        return;
    }
    rt->dests = alloc_array(b, len, sizeof(dest_t));
    unsigned before = b->errors;
    for (size_t i = 0; i < len; i++) {
        const slc_cfg_node_t *item = h->cfg_at(n, i);
        struct raw_dest rd = {0};
        if (!bind(b, item, dest_fields, &rd)) {
            continue;
        }
        const slc_cluster_t *c = resolve_cluster(b, h->cfg_get(item, "cluster"), rd.cluster);
        /* Istio: a single destination takes all traffic whatever its weight;
         * with several, a missing weight is 0. */
        uint64_t w = len == 1 ? 1 : rd.weight;
        rt->total_weight += w;
        rt->dests[rt->ndests++] = (dest_t){c, rt->total_weight};
    }
    if (b->errors == before && rt->total_weight == 0) {
        build_error(b, n, "destination weights are all zero (give each destination a 'weight')");
    }
}

/* Retry vocabulary: Istio's retryOn names we implement. */
static const struct {
    const char *name;
    uint32_t bit;
} retry_names[] = {
    {"connect-failure", SLC_RETRY_CONNECT_FAILURE},
    {"refused-stream", SLC_RETRY_REFUSED_STREAM},
    {"unavailable", SLC_RETRY_UNAVAILABLE},
    {"cancelled", SLC_RETRY_CANCELLED},
    {"retriable-status-codes", SLC_RETRY_RETRIABLE_STATUS},
    {"5xx", SLC_RETRY_5XX},
    {"gateway-error", SLC_RETRY_GATEWAY_ERROR},
    {"reset", SLC_RETRY_RESET},
};

/* Istio's default retry policy (when `retries` is absent): 2 retries on
 * connect-failure, refused-stream, unavailable, cancelled and retriable
 * status 503, Envoy's 25 ms backoff base. */
static void default_retry(slc_retry_policy_t *p)
{
    static const uint16_t default_statuses[] = {503};
    *p = (slc_retry_policy_t){
        .struct_size = sizeof(*p),
        .max_retries = 2,
        .retry_on = SLC_RETRY_CONNECT_FAILURE | SLC_RETRY_REFUSED_STREAM | SLC_RETRY_UNAVAILABLE |
                    SLC_RETRY_CANCELLED | SLC_RETRY_RETRIABLE_STATUS,
        .backoff_base_ms = 25,
        .retriable_statuses = {503},
        .nretriable_statuses = 1,
        .statuses = default_statuses,
        .nstatuses = 1,
    };
}

/* parse_retry_on reads "connect-failure,5xx,503" as Istio does: names set
 * conditions, bare numbers are retriable status codes (which also turn on
 * retriable-status-codes). It replaces the default list entirely. */
static void parse_retry_on(build_ctx_t *b, const slc_cfg_node_t *n, const char *text,
                           slc_retry_policy_t *p)
{
    p->retry_on = 0;
    p->nretriable_statuses = 0;
    /* ABI 1.3 form, config-arena: at most one status per two characters.
     * The first 8 also go to the 1.1 array, all an older host reads. */
    uint16_t *statuses = b->h->cfg_alloc(b->d, (strlen(text) / 2 + 1) * sizeof(*statuses));
    bool old_host = SLC_ABI_MINOR_OF(b->h->abi_version) < 3;
    p->statuses = statuses;
    p->nstatuses = 0;
    const char *s = text;
    while (*s != '\0') {
        while (*s == ' ' || *s == ',') {
            s++;
        }
        const char *e = s;
        while (*e != '\0' && *e != ',' && *e != ' ') {
            e++;
        }
        size_t len = (size_t)(e - s);
        if (len == 0) {
            break;
        }
        bool numeric = true;
        for (size_t i = 0; i < len; i++) {
            numeric = numeric && s[i] >= '0' && s[i] <= '9';
        }
        if (numeric) {
            unsigned v = 0;
            for (size_t i = 0; i < len && i < 4; i++) {
                v = v * 10 + (unsigned)(s[i] - '0');
            }
            if (len > 3 || v < 100 || v > 599) {
                build_error(b, n, "retry_on: '%.*s' is not an HTTP status code", (int)len, s);
            } else if (old_host && p->nstatuses >= 8) {
                build_error(b, n, "retry_on: at most 8 retriable status codes before ABI 1.3");
            } else {
                if (p->nretriable_statuses < 8) {
                    p->retriable_statuses[p->nretriable_statuses++] = (uint16_t)v;
                }
                statuses[p->nstatuses++] = (uint16_t)v;
                p->retry_on |= SLC_RETRY_RETRIABLE_STATUS;
            }
        } else {
            size_t k, best = 0, best_d = 9;
            for (k = 0; k < sizeof(retry_names) / sizeof(retry_names[0]); k++) {
                if (strlen(retry_names[k].name) == len &&
                    memcmp(retry_names[k].name, s, len) == 0) {
                    break;
                }
                size_t dist =
                    slcu_edit_distance((slc_str_t){s, len}, str_of(retry_names[k].name), false);
                if (dist < best_d) {
                    best_d = dist;
                    best = k;
                }
            }
            if (k < sizeof(retry_names) / sizeof(retry_names[0])) {
                p->retry_on |= retry_names[k].bit;
            } else if (best_d <= 3) {
                build_error(b, n, "retry_on: unknown condition '%.*s' (did you mean '%s'?)",
                            (int)len, s, retry_names[best].name);
            } else {
                build_error(b, n,
                            "retry_on: unknown condition '%.*s' (known: connect-failure, "
                            "refused-stream, unavailable, cancelled, retriable-status-codes, 5xx, "
                            "gateway-error, reset, or a status code)",
                            (int)len, s);
            }
        }
        s = e;
    }
}

/* build_retry follows Istio's ConvertPolicy: no `retries` gives the default
 * policy; `retries` with attempts 0 (or without attempts) disables retries;
 * otherwise the default is the starting point and the given fields
 * override it. */
static void build_retry(build_ctx_t *b, const slc_cfg_node_t *n, slc_retry_policy_t *p)
{
    default_retry(p);
    if (n == NULL || b->h->cfg_type(n) == SLC_CFG_NULL) {
        return;
    }
    struct raw_retries raw = {0};
    if (!bind(b, n, retries_fields, &raw)) {
        return;
    }
    if (present(b, n, "attempts") == NULL) {
        build_warn(b, n, "'retries' without 'attempts' disables retries (as in Istio)");
    }
    p->max_retries = raw.attempts;
    p->per_try_timeout_ms = raw.per_try_timeout_ms;
    if (raw.retry_on != NULL) {
        parse_retry_on(b, b->h->cfg_get(n, "retry_on"), raw.retry_on, p);
    }
}

/* build_hdr_ops binds { set: {name: value}, add: {name: value}, remove: [name] }. */
static void build_hdr_ops(build_ctx_t *b, const slc_cfg_node_t *n, hdr_ops_t *o)
{
    const slc_host_t *h = b->h;
    struct raw_hdr_ops raw = {0};
    if (n == NULL || h->cfg_type(n) == SLC_CFG_NULL || !bind(b, n, hdr_ops_fields, &raw)) {
        return;
    }
    const slc_cfg_node_t *maps[2] = {raw.set, raw.add};
    hdr_op_t **dst[2] = {&o->set, &o->add};
    size_t *cnt[2] = {&o->nset, &o->nadd};
    for (int k = 0; k < 2; k++) {
        const slc_cfg_node_t *m = maps[k];
        if (m == NULL || h->cfg_type(m) == SLC_CFG_NULL) {
            continue;
        }
        if (h->cfg_type(m) != SLC_CFG_MAP) {
            build_error(b, m, "expected a map from header name to value");
            continue;
        }
        *dst[k] = alloc_array(b, h->cfg_len(m), sizeof(hdr_op_t));
        for (size_t i = 0; i < h->cfg_len(m); i++) {
            slc_str_t name = h->cfg_key_at(m, i);
            const slc_cfg_node_t *v = h->cfg_at(m, i);
            if (!header_name_ok(name)) {
                build_error(b, v, "invalid header name '%.*s'", (int)name.len, name.ptr);
                continue;
            }
            if (h->cfg_type(v) != SLC_CFG_SCALAR) {
                build_error(b, v, "header value must be a string");
                continue;
            }
            slc_str_t value = h->cfg_scalar(v);
            if (!field_value_ok(value)) {
                build_error(b, v,
                            "header value contains a control character or leading/trailing "
                            "whitespace");
                continue;
            }
            (*dst[k])[(*cnt[k])++] = (hdr_op_t){lower_dup(b, name), value};
        }
    }
    if (raw.remove != NULL && h->cfg_type(raw.remove) != SLC_CFG_NULL) {
        if (h->cfg_type(raw.remove) != SLC_CFG_SEQ) {
            build_error(b, raw.remove, "expected a list of header names");
            return;
        }
        o->remove = alloc_array(b, h->cfg_len(raw.remove), sizeof(slc_str_t));
        for (size_t i = 0; i < h->cfg_len(raw.remove); i++) {
            const slc_cfg_node_t *v = h->cfg_at(raw.remove, i);
            slc_str_t name = h->cfg_type(v) == SLC_CFG_SCALAR ? h->cfg_scalar(v) : SLC_STR_NULL;
            if (!header_name_ok(name)) {
                build_error(b, v, "invalid header name '%.*s'", (int)name.len,
                            name.ptr ? name.ptr : "");
                continue;
            }
            o->remove[o->nremove++] = lower_dup(b, name);
        }
    }
}

static void build_redirect(build_ctx_t *b, const slc_cfg_node_t *n, redirect_t *rd)
{
    struct raw_redirect raw = {0};
    rd->code = 301;
    if (!bind(b, n, redirect_fields, &raw)) {
        return;
    }
    if (raw.scheme == NULL && raw.host == NULL && raw.port == 0 && raw.path == NULL &&
        !raw.https_redirect) {
        build_error(b, n,
                    "a redirect needs at least one of 'scheme', 'host', 'port', 'path' or "
                    "'https_redirect' (it would point at itself)");
        return;
    }
    /* Envoy's RedirectAction form: https_redirect inside the redirect. */
    if (raw.https_redirect) {
        if (raw.scheme != NULL) {
            build_error(b, b->h->cfg_get(n, "scheme"),
                        "give 'scheme' or 'https_redirect: true', not both");
        }
        rd->scheme = SLC_STR("https");
    }
    if (raw.code != 301 && raw.code != 302 && raw.code != 303 && raw.code != 307 &&
        raw.code != 308) {
        build_error(b, node_or(b, n, "code"),
                    "redirect code %u is not one of 301, 302, 303, 307, 308", raw.code);
    }
    rd->code = (int)raw.code;
    if (raw.scheme != NULL) {
        bool ok = (raw.scheme[0] | 0x20) >= 'a' && (raw.scheme[0] | 0x20) <= 'z';
        for (const char *c = raw.scheme; ok && *c; c++) {
            ok = host_char_ok((unsigned char)*c) || *c == '+';
        }
        if (!ok) {
            build_error(b, b->h->cfg_get(n, "scheme"), "bad scheme '%s'", raw.scheme);
        }
        rd->scheme = lower_dup(b, str_of(raw.scheme));
    }
    if (raw.host != NULL) {
        bool ok = raw.host[0] != '\0';
        for (const char *c = raw.host; ok && *c; c++) {
            ok = host_char_ok((unsigned char)*c) || *c == '[' || *c == ']' || *c == ':';
        }
        if (ok && raw.host[0] != '[' && strchr(raw.host, ':') != NULL) {
            build_error(b, b->h->cfg_get(n, "host"),
                        "redirect host '%s' must not include a port; use 'port'", raw.host);
        } else if (!ok) {
            build_error(b, b->h->cfg_get(n, "host"), "bad redirect host '%s'", raw.host);
        }
        rd->host = str_of(raw.host);
    }
    rd->port = raw.port;
    if (raw.path != NULL) {
        if (path_ok(b, b->h->cfg_get(n, "path"), "path", raw.path) && !uri_ok(str_of(raw.path))) {
            build_error(b, b->h->cfg_get(n, "path"),
                        "redirect path '%s' contains a space or a "
                        "control character",
                        raw.path);
        }
        rd->path = str_of(raw.path);
    }
}

static void build_rewrite(build_ctx_t *b, const slc_cfg_node_t *n, route_t *rt)
{
    struct raw_rewrite raw = {0};
    if (b->h->cfg_type(n) == SLC_CFG_NULL || !bind(b, n, rewrite_fields, &raw)) {
        return;
    }
    if (raw.uri != NULL) {
        const slc_cfg_node_t *un = b->h->cfg_get(n, "uri");
        if (raw.uri[0] != '\0' && raw.uri[0] != '/') {
            build_error(b, un, "rewrite uri '%s' must start with '/' (or be empty)", raw.uri);
        } else if (!uri_ok(str_of(raw.uri)) || strchr(raw.uri, '?') != NULL) {
            build_error(b, un, "rewrite uri '%s' must not contain '?', spaces or controls",
                        raw.uri);
        }
        rt->has_rewrite_uri = true;
        rt->rewrite_uri = str_of(raw.uri);
    }
    if (raw.authority != NULL) {
        bool ok = raw.authority[0] != '\0';
        for (const char *c = raw.authority; ok && *c; c++) {
            ok = host_char_ok((unsigned char)*c) || *c == ':' || *c == '[' || *c == ']';
        }
        if (!ok) {
            build_error(b, b->h->cfg_get(n, "authority"), "bad rewrite authority '%s'",
                        raw.authority);
        }
        rt->rewrite_authority = str_of(raw.authority);
    }
}

static void build_mirror(build_ctx_t *b, const slc_cfg_node_t *n, route_t *rt)
{
    struct raw_mirror raw = {0};
    if (!bind(b, n, mirror_fields, &raw)) {
        return;
    }
    if (!slc_host_has(b->h, route_set_mirror)) {
        build_error(b, n, "'mirror' needs a sluice with filter ABI 1.1");
        return;
    }
    rt->mirror = resolve_cluster(b, b->h->cfg_get(n, "cluster"), raw.cluster);
    rt->mirror_ppm = PPM_ALL;
    parse_percent(b, node_or(b, n, "percentage"), raw.percentage, &rt->mirror_ppm);
}

static void build_fault(build_ctx_t *b, const slc_cfg_node_t *n, fault_t *f)
{
    struct raw_fault raw = {0};
    if (!bind(b, n, fault_fields, &raw)) {
        return;
    }
    bool has_delay = raw.delay != NULL && b->h->cfg_type(raw.delay) != SLC_CFG_NULL;
    bool has_abort = raw.abort != NULL && b->h->cfg_type(raw.abort) != SLC_CFG_NULL;
    if (!has_delay && !has_abort) {
        build_error(b, n, "'fault' needs 'delay', 'abort' or both");
        return;
    }
    if (has_delay) {
        struct raw_delay rd = {0};
        if (bind(b, raw.delay, delay_fields, &rd)) {
            f->delay_ms = rd.fixed_delay_ms;
            f->delay_ppm = optional_percent(b, raw.delay, rd.percentage, "delayed");
        }
    }
    if (has_abort) {
        struct raw_abort ra = {0};
        if (bind(b, raw.abort, abort_fields, &ra)) {
            f->abort_status = (int)ra.http_status;
            f->abort_ppm = optional_percent(b, raw.abort, ra.percentage, "aborted");
        }
    }
}

static void build_route(build_ctx_t *b, const slc_cfg_node_t *entry, route_t *rt)
{
    const slc_host_t *h = b->h;
    struct raw_route raw = {0};
    /* Keep going after a binding error (an unknown key, say) so that the
     * operator sees every problem of the file at once. */
    if (!bind(b, entry, route_fields, &raw) && h->cfg_type(entry) != SLC_CFG_MAP) {
        return;
    }
    build_matches(b, raw.match, rt);

    bool has_route = raw.route != NULL && h->cfg_type(raw.route) != SLC_CFG_NULL;
    bool has_redirect = raw.redirect != NULL;
    bool has_direct = raw.direct_response != NULL;
    int nactions = has_route + has_redirect + has_direct + raw.https_redirect;
    if (nactions != 1) {
        build_error(b, entry,
                    "a route needs exactly one of 'route', 'redirect', 'https_redirect' or "
                    "'direct_response'");
        return;
    }

    /* Forwarding-only keys make no sense on a local answer: say so. */
    static const char *const forward_only[] = {"timeout", "retries", "rewrite", "mirror"};
    if (!has_route) {
        for (size_t i = 0; i < sizeof(forward_only) / sizeof(forward_only[0]); i++) {
            const slc_cfg_node_t *v = present(b, entry, forward_only[i]);
            if (v != NULL) {
                build_error(b, v,
                            "'%s' applies only to routes with 'route' (not to redirects or "
                            "direct responses)",
                            forward_only[i]);
            }
        }
    }
    build_hdr_ops(b, raw.request_headers, &rt->req_ops);
    build_hdr_ops(b, raw.response_headers, &rt->resp_ops);
    if (raw.fault != NULL && h->cfg_type(raw.fault) != SLC_CFG_NULL) {
        build_fault(b, raw.fault, &rt->fault);
    }

    if (has_route) {
        uint64_t legacy_timeout;
        rt->kind = ACTION_ROUTE;
        build_dests(b, raw.route, rt, &legacy_timeout);
        rt->timeout_ms = raw.timeout_ms;
        if (legacy_timeout != UINT64_MAX) {
            if (present(b, entry, "timeout") != NULL) {
                build_error(b, h->cfg_get(raw.route, "timeout"),
                            "timeout given twice (here and in the route entry); keep one");
            }
            rt->timeout_ms = legacy_timeout;
        }
        build_retry(b, raw.retries, &rt->retry);
        if (raw.rewrite != NULL) {
            build_rewrite(b, raw.rewrite, rt);
        }
        if (raw.mirror != NULL && h->cfg_type(raw.mirror) != SLC_CFG_NULL) {
            build_mirror(b, raw.mirror, rt);
        }
    } else if (has_redirect || raw.https_redirect) {
        rt->kind = ACTION_REDIRECT;
        if (has_redirect) {
            build_redirect(b, raw.redirect, &rt->redirect);
        } else {
            /* Gateway httpsRedirect: same host and path, https, 301. */
            rt->redirect = (redirect_t){.scheme = SLC_STR("https"), .code = 301};
        }
    } else {
        struct raw_direct rd = {0};
        rt->kind = ACTION_DIRECT;
        if (!bind(b, raw.direct_response, direct_fields, &rd)) {
            return;
        }
        rt->status = (int)rd.status;
        rt->body = rd.body != NULL ? str_of(rd.body) : SLC_STR("");
    }
}

static void build_routes(build_ctx_t *b, const slc_cfg_node_t *n, vhost_t *vh)
{
    const slc_host_t *h = b->h;
    if (h->cfg_type(n) != SLC_CFG_SEQ) {
        build_error(b, n, "'routes' must be a sequence of routes");
        return;
    }
    vh->nroutes = h->cfg_len(n);
    vh->routes = alloc_array(b, vh->nroutes, sizeof(route_t));
    for (size_t i = 0; i < vh->nroutes; i++) {
        build_route(b, h->cfg_at(n, i), &vh->routes[i]);
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
     * instance. The RE2 objects are the exception: config_free frees them,
     * and so does this function when it refuses the config. */
    router_cfg_t *cfg = h->cfg_alloc(d, sizeof(*cfg));
    b.cfg = cfg;
    b.max_program_size = top.max_program_size;
    cfg->nvhosts = h->cfg_len(top.virtual_hosts);
    cfg->vhosts = alloc_array(&b, cfg->nvhosts, sizeof(vhost_t));

    struct raw_vhost *raw = alloc_array(&b, cfg->nvhosts, sizeof(*raw));
    size_t ndomains = 0;
    for (size_t i = 0; i < cfg->nvhosts; i++) {
        const slc_cfg_node_t *vn = h->cfg_at(top.virtual_hosts, i);
        if (!bind(&b, vn, vhost_fields, &raw[i]) && h->cfg_type(vn) != SLC_CFG_MAP) {
            raw[i] = (struct raw_vhost){0};
        }
        ndomains += h->cfg_len(raw[i].domains);
    }
    cfg->exact = alloc_array(&b, ndomains, sizeof(domain_entry_t));
    cfg->suffix = alloc_array(&b, ndomains, sizeof(domain_entry_t));

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
        free_regexes(cfg);
        return SLC_EINVAL;
    }
    *out_cfg = cfg;
    return SLC_OK;
}

static void router_config_free(void *cfg)
{
    if (cfg != NULL) {
        free_regexes(cfg);
    }
}

/* ---- per worker and per stream ----------------------------------------------- */

/* prng_next: per worker, so no synchronisation is needed. */
static uint64_t prng_next(router_worker_t *w)
{
    return slcu_rng_next(&w->rng);
}

/* roll is true for |ppm| parts per million of calls. */
static bool roll(router_worker_t *w, uint32_t ppm)
{
    if (ppm == 0) {
        return false;
    }
    if (ppm >= PPM_ALL) {
        return true;
    }
    return (prng_next(w) >> 11) % PPM_ALL < ppm;
}

static slc_status_t router_worker_init(void *cfg, int worker_id, void **out_wctx)
{
    router_worker_t *w = malloc(sizeof(*w));
    if (w == NULL) {
        return SLC_ENOMEM;
    }
    /* Distinct streams per worker and per instance. */
    slcu_rng_seed(&w->rng, ((uint64_t)(unsigned)worker_id << 32) ^ (uint64_t)(uintptr_t)cfg ^
                               (uint64_t)(uintptr_t)w);
    *out_wctx = w;
    return SLC_OK;
}

static void router_worker_fini(void *cfg, void *wctx)
{
    (void)cfg;
    free(wctx);
}

static slc_status_t router_request_new(void *cfg, void *wctx, slc_req_t *r, void **out_ctx)
{
    if (wctx == NULL) {
        return SLC_ESTATE;
    }
    router_stream_t *st = slc_arena_alloc(r, sizeof(*st));
    if (st == NULL) {
        return SLC_ENOMEM;
    }
    st->cfg = cfg;
    st->w = wctx;
    *out_ctx = st;
    return SLC_OK;
}

/* ---- matching ------------------------------------------------------------------ */

/* authority_split splits "host:port" or "[v6]:port" into host and port
 * (port empty if none). */
static void authority_split(slc_str_t a, slc_str_t *host, slc_str_t *port)
{
    if (a.ptr == NULL) {
        a = SLC_STR("");
    }
    *host = a;
    *port = SLC_STR("");
    const char *colon = NULL;
    if (a.len > 0 && a.ptr[0] == '[') {
        const char *close = memchr(a.ptr, ']', a.len);
        if (close != NULL && close + 1 < a.ptr + a.len && close[1] == ':') {
            colon = close + 1;
        }
    } else if (a.len > 0) {
        colon = memchr(a.ptr, ':', a.len);
    }
    if (colon != NULL) {
        host->len = (size_t)(colon - a.ptr);
        *port = (slc_str_t){colon + 1, a.len - host->len - 1};
    }
}

static bool tail_eq_ci(slc_str_t host, slc_str_t suffix)
{
    slc_str_t tail = {host.ptr + host.len - suffix.len, suffix.len};
    return cmp_ci(tail, suffix) == 0;
}

static const vhost_t *find_vhost(const router_cfg_t *cfg, slc_str_t authority)
{
    slc_str_t host, port;
    authority_split(authority.ptr != NULL ? authority : SLC_STR(""), &host, &port);
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

static bool str_eq(slc_str_t a, slc_str_t b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static bool str_match_value(const str_match_t *m, slc_str_t v)
{
    return slcu_strmatch_value(m, &v);
}

static bool match_one(const route_match_t *m, slc_req_t *r, slc_str_t path, slc_str_t query)
{
    if (m->path_kind != PATH_ANY && !str_match_value(&m->path, path)) {
        return false;
    }
    if (m->has_method && !str_match_value(&m->method, slc_pseudo(r, SLC_PSEUDO_METHOD))) {
        return false;
    }
    if (m->has_authority && !str_match_value(&m->authority, slc_pseudo(r, SLC_PSEUDO_AUTHORITY))) {
        return false;
    }
    for (size_t i = 0; i < m->nheaders; i++) {
        const kv_match_t *kv = &m->headers[i];
        slc_str_t v;
        bool there = slc_header_get(r, SLC_REQUEST_HEADERS, kv->name, &v) == SLC_OK;
        if (!slcu_header_match(kv, there ? &v : NULL)) {
            return false;
        }
    }
    for (size_t i = 0; i < m->nquery; i++) {
        if (!slcu_query_match(&m->query[i], query)) {
            return false;
        }
    }
    return true;
}

/* find_route returns the first route of |vh| that matches, and in *out_m the
 * match alternative that held (NULL for a route without conditions). */
static const route_t *find_route(const vhost_t *vh, slc_req_t *r, slc_str_t path, slc_str_t query,
                                 const route_match_t **out_m)
{
    for (size_t i = 0; i < vh->nroutes; i++) {
        const route_t *rt = &vh->routes[i];
        if (rt->nmatches == 0) {
            *out_m = NULL;
            return rt;
        }
        for (size_t k = 0; k < rt->nmatches; k++) {
            if (match_one(&rt->matches[k], r, path, query)) {
                *out_m = &rt->matches[k];
                return rt;
            }
        }
    }
    return NULL;
}

/* ---- actions ----------------------------------------------------------------- */

static void apply_hdr_ops(slc_req_t *r, slc_hdrs_t which, const hdr_ops_t *o)
{
    /* Names and values were validated at config time; a failure here is an
     * arena budget overrun, and a missing header is not worth failing a
     * stream over. */
    for (size_t i = 0; i < o->nremove; i++) {
        slc_header_remove(r, which, o->remove[i]);
    }
    for (size_t i = 0; i < o->nset; i++) {
        slc_header_set(r, which, o->set[i].name, o->set[i].value);
    }
    for (size_t i = 0; i < o->nadd; i++) {
        slc_header_add(r, which, o->add[i].name, o->add[i].value);
    }
}

static void reply_text(slc_req_t *r, int status, slc_str_t body)
{
    slc_send_local_reply(r, status, body.len ? SLC_STR("text/plain") : SLC_STR_NULL, body);
}

static size_t put(char *dst, size_t at, slc_str_t s)
{
    if (s.len > 0) {
        memcpy(dst + at, s.ptr, s.len);
    }
    return at + s.len;
}

static bool is_default_port(slc_str_t scheme, slc_str_t port)
{
    return (eq_ci(scheme, SLC_STR("http")) && str_eq(port, SLC_STR("80"))) ||
           (eq_ci(scheme, SLC_STR("https")) && str_eq(port, SLC_STR("443")));
}

/* build_location makes the redirect target (request-arena), as Envoy does
 * for Istio's HTTPRedirect:
 *   scheme  redirect.scheme, else the request's;
 *   host    redirect.host, else the request's host;
 *   port    redirect.port; else none if redirect.host was given (the whole
 *           authority is replaced); else the request's port, dropped when
 *           the scheme changes and it was the old scheme's default port;
 *           always dropped when it is the default port of the final scheme;
 *   path    redirect.path (with the request's query appended unless the
 *           path has its own '?'), else the request's path and query.
 * Returns SLC_STR_NULL if the arena is exhausted. */
static slc_str_t build_location(slc_req_t *r, const redirect_t *rd)
{
    slc_str_t req_scheme = slc_pseudo(r, SLC_PSEUDO_SCHEME);
    if (req_scheme.len == 0) {
        req_scheme = SLC_STR("http");
    }
    slc_str_t req_host, req_port;
    authority_split(slc_pseudo(r, SLC_PSEUDO_AUTHORITY), &req_host, &req_port);
    slc_str_t full = slc_pseudo(r, SLC_PSEUDO_PATH);
    if (full.ptr == NULL) {
        full = SLC_STR("/");
    }
    const char *q = memchr(full.ptr, '?', full.len);
    slc_str_t query = q != NULL ? (slc_str_t){q, (size_t)(full.ptr + full.len - q)} : SLC_STR("");

    slc_str_t scheme = rd->scheme.len ? rd->scheme : req_scheme;
    slc_str_t host = rd->host.len ? rd->host : req_host;
    char portbuf[8];
    slc_str_t port = SLC_STR("");
    if (rd->port != 0) {
        int n = snprintf(portbuf, sizeof(portbuf), "%u", rd->port);
        port = (slc_str_t){portbuf, (size_t)n};
    } else if (rd->host.len == 0) {
        port = req_port;
        if (!eq_ci(scheme, req_scheme) && is_default_port(req_scheme, req_port)) {
            port = SLC_STR("");
        }
    }
    if (is_default_port(scheme, port)) {
        port = SLC_STR("");
    }
    slc_str_t path = full, tail = SLC_STR("");
    if (rd->path.len) {
        path = rd->path;
        if (memchr(rd->path.ptr, '?', rd->path.len) == NULL) {
            tail = query;
        }
    }

    size_t len = scheme.len + 3 + host.len + 1 + port.len + path.len + tail.len;
    char *buf = slc_arena_alloc(r, len);
    if (buf == NULL) {
        return SLC_STR_NULL;
    }
    size_t at = put(buf, 0, scheme);
    at = put(buf, at, SLC_STR("://"));
    at = put(buf, at, host);
    if (port.len) {
        at = put(buf, at, SLC_STR(":"));
        at = put(buf, at, port);
    }
    at = put(buf, at, path);
    at = put(buf, at, tail);
    return (slc_str_t){buf, at};
}

/* answer_local sends the reply of a redirect or direct-response route. */
static void answer_local(slc_req_t *r, const route_t *rt)
{
    if (rt->kind == ACTION_DIRECT) {
        reply_text(r, rt->status, rt->body);
        return;
    }
    slc_str_t loc = build_location(r, &rt->redirect);
    if (loc.ptr == NULL) {
        reply_text(r, 503, SLC_STR("out of memory\n"));
        return;
    }
    /* send_local_reply resets the response headers: Location goes after. */
    slc_send_local_reply(r, rt->redirect.code, SLC_STR_NULL, SLC_STR(""));
    slc_header_set(r, SLC_RESPONSE_HEADERS, SLC_STR("location"), loc);
}

/* rewrite_path replaces the matched prefix (a prefix match), or the whole
 * path (exact and regex matches), by rewrite.uri, keeping the query. With
 * no uri condition Istio's route is prefix "/", so "/" is what is
 * replaced. */
static slc_status_t rewrite_path(slc_req_t *r, const route_t *rt, const route_match_t *m,
                                 slc_str_t path, slc_str_t full)
{
    size_t cut;
    if (m == NULL || m->path_kind == PATH_ANY) {
        cut = path.len > 0 && path.ptr[0] == '/' ? 1 : 0;
    } else if (m->path_kind == PATH_PREFIX) {
        cut = m->path.text.len;
    } else {
        cut = path.len;
    }
    slc_str_t rest = {path.ptr + cut, full.len - cut}; /* rest of path, then the query */
    bool slash = rt->rewrite_uri.len == 0 && (rest.len == 0 || rest.ptr[0] != '/');
    size_t len = slash + rt->rewrite_uri.len + rest.len;
    char *buf = slc_arena_alloc(r, len ? len : 1);
    if (buf == NULL) {
        return SLC_ENOMEM;
    }
    size_t at = 0;
    if (slash) {
        buf[at++] = '/';
    }
    at = put(buf, at, rt->rewrite_uri);
    at = put(buf, at, rest);
    return slc_host->set_pseudo(r, SLC_PSEUDO_PATH, (slc_str_t){buf, at});
}

static const dest_t *pick_dest(router_worker_t *w, const route_t *rt)
{
    if (rt->ndests == 1) {
        return &rt->dests[0];
    }
    uint64_t x = (prng_next(w) >> 11) % rt->total_weight;
    for (size_t i = 0; i < rt->ndests; i++) {
        if (x < rt->dests[i].cum) {
            return &rt->dests[i];
        }
    }
    return &rt->dests[rt->ndests - 1];
}

/* forward applies a ROUTE action. Returns STOP after replying on failure. */
static slc_action_t forward(router_stream_t *st, slc_req_t *r, const route_t *rt,
                            const route_match_t *m, slc_str_t path, slc_str_t full)
{
    const dest_t *d = pick_dest(st->w, rt);
    if (slc_host->route_set_cluster(r, d->cluster) != SLC_OK) {
        reply_text(r, 503, SLC_STR("unknown cluster\n"));
        return SLC_STOP;
    }
    slc_host->route_set_timeout(r, rt->timeout_ms);
    if (slc_host_has(slc_host, attempt_retry)) {
        /* ABI 1.3: the router decides each retry (router_on_upstream_result);
         * the core only keeps the body and times the attempts. */
        if (rt->retry.max_retries > 0) {
            slc_host->route_keep_body(r);
            slc_host->route_set_try_timeout(r, rt->retry.per_try_timeout_ms);
        }
    } else if (slc_host_has(slc_host, route_set_retry)) {
        slc_host->route_set_retry(r, &rt->retry); /* an older host decides */
    }
    if (rt->mirror != NULL && slc_host_has(slc_host, route_set_mirror) &&
        roll(st->w, rt->mirror_ppm)) {
        slc_host->route_set_mirror(r, rt->mirror);
    }
    if (rt->has_rewrite_uri && rewrite_path(r, rt, m, path, full) == SLC_ENOMEM) {
        reply_text(r, 503, SLC_STR("out of memory\n"));
        return SLC_STOP;
    }
    if (rt->rewrite_authority.len) {
        slc_host->set_pseudo(r, SLC_PSEUDO_AUTHORITY, rt->rewrite_authority);
    }
    apply_hdr_ops(r, SLC_REQUEST_HEADERS, &rt->req_ops);
    return SLC_CONTINUE;
}

/* delay_fired ends a fault delay: the stream either gets its abort or its
 * local answer now, or goes on to the upstream it was routed to. */
static void delay_fired(slc_req_t *r, void *arg)
{
    router_stream_t *st = arg;
    if (st->abort_after_delay) {
        slc_host->set_response_flag(r, SLC_RF_FI);
        reply_text(r, st->rt->fault.abort_status, SLC_STR("fault filter abort\n"));
    } else if (st->rt->kind != ACTION_ROUTE) {
        answer_local(r, st->rt);
    }
    slc_resume(r);
}

static slc_action_t router_on_request_headers(void *ctx, slc_req_t *r)
{
    router_stream_t *st = ctx;
    const vhost_t *vh = find_vhost(st->cfg, slc_pseudo(r, SLC_PSEUDO_AUTHORITY));
    const route_t *rt = NULL;
    const route_match_t *m = NULL;
    slc_str_t full = slc_pseudo(r, SLC_PSEUDO_PATH);
    if (full.ptr == NULL) {
        full = SLC_STR("");
    }
    slc_str_t path = full, query = SLC_STR("");
    const char *q = memchr(full.ptr, '?', full.len);
    if (q != NULL) {
        path.len = (size_t)(q - full.ptr);
        query = (slc_str_t){q + 1, full.len - path.len - 1};
    }
    if (vh != NULL) {
        rt = find_route(vh, r, path, query, &m);
    }
    if (rt == NULL) {
        slc_host->set_response_flag(r, SLC_RF_NR);
        reply_text(r, 404, SLC_STR("no route\n"));
        return SLC_STOP;
    }
    st->rt = rt;

    /* Istio fault injection: delay and abort are drawn independently; a
     * delayed stream is aborted (if drawn) when the delay ends, as Envoy's
     * fault filter does. */
    const fault_t *f = &rt->fault;
    bool delay = f->delay_ms != 0 && roll(st->w, f->delay_ppm);
    bool abort = f->abort_status != 0 && roll(st->w, f->abort_ppm);
    if (delay) {
        st->abort_after_delay = abort;
        if (!abort && rt->kind == ACTION_ROUTE && forward(st, r, rt, m, path, full) == SLC_STOP) {
            return SLC_STOP;
        }
        if (slc_host->timer_add(r, f->delay_ms, delay_fired, st) != NULL) {
            slc_host->set_response_flag(r, SLC_RF_DI);
            return SLC_PAUSE;
        }
        /* No timer: carry on without the delay rather than fail. */
        if (!abort && rt->kind == ACTION_ROUTE) {
            return SLC_CONTINUE;
        }
    }
    if (abort) {
        slc_host->set_response_flag(r, SLC_RF_FI);
        reply_text(r, f->abort_status, SLC_STR("fault filter abort\n"));
        return SLC_STOP;
    }
    if (rt->kind != ACTION_ROUTE) {
        answer_local(r, rt);
        return SLC_STOP;
    }
    return forward(st, r, rt, m, path, full);
}

/* router_on_upstream_result decides retries on ABI 1.3 hosts: the route's
 * policy, then Envoy's backoff with full jitter, a uniform delay in
 * [0, min(base * 2^(n-1), 10 * base)] for retry n. */
static void router_on_upstream_result(void *ctx, slc_req_t *r, const slc_endpoint_t *e,
                                      slc_attempt_result_t res, int status)
{
    (void)e;
    router_stream_t *st = ctx;
    const route_t *rt = st->rt;
    if (rt == NULL || rt->kind != ACTION_ROUTE || !slc_host_has(slc_host, attempt_retry) ||
        st->retries >= rt->retry.max_retries || !slcu_retry_covers(&rt->retry, res, status)) {
        return;
    }
    uint64_t backoff =
        slcu_retry_backoff_ms(rt->retry.backoff_base_ms, st->retries + 1, prng_next(st->w));
    if (slc_host->attempt_retry(r, backoff) == SLC_OK) {
        st->retries++;
    }
}

static slc_action_t router_on_response_headers(void *ctx, slc_req_t *r)
{
    const router_stream_t *st = ctx;
    if (st->rt != NULL) {
        apply_hdr_ops(r, SLC_RESPONSE_HEADERS, &st->rt->resp_ops);
    }
    return SLC_CONTINUE;
}

static const slc_filter_desc_t router_desc = {
    .abi_version = SLC_ABI_VERSION,
    .struct_size = sizeof(slc_filter_desc_t),
    .name = "router",
    .version = "0.3.0",
    .config_new = router_config_new,
    .config_free = router_config_free,
    .worker_init = router_worker_init,
    .worker_fini = router_worker_fini,
    .request_new = router_request_new,
    .on_request_headers = router_on_request_headers,
    .on_response_headers = router_on_response_headers,
    .on_upstream_result = router_on_upstream_result,
};

SLC_FILTER_DEFINE(router_desc)
