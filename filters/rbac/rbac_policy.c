/* rbac_policy: compiling Istio AuthorizationPolicy rules and evaluating them.
 * See rbac_policy.h for ownership and threads, docs/filters/rbac.md for the
 * semantics. */
#include "rbac_policy.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* ---- binder tables ---------------------------------------------------------- */

static const char *const norm_names[] = {"NONE", "BASE", "MERGE_SLASHES",
                                         "DECODE_AND_MERGE_SLASHES", NULL};
static const char *const action_names[] = {"ALLOW", "DENY", "AUDIT", "CUSTOM", NULL};

typedef struct raw_top {
    int norm;
    const slc_cfg_node_t *policies;
} raw_top_t;

typedef struct raw_policy {
    char *name;
    int action;
    const slc_cfg_node_t *rules;
    const slc_cfg_node_t *selector;
} raw_policy_t;

typedef struct raw_rule {
    const slc_cfg_node_t *from, *to, *when;
} raw_rule_t;

typedef struct raw_from {
    const slc_cfg_node_t *source;
} raw_from_t;

typedef struct raw_to {
    const slc_cfg_node_t *operation;
} raw_to_t;

/* Source and operation fields, in the order of their descriptors below. */
typedef struct raw_fields {
    const slc_cfg_node_t *v[10];
} raw_fields_t;

typedef struct raw_when {
    char *key;
    const slc_cfg_node_t *values, *not_values;
} raw_when_t;

static const slc_cfg_field_t top_fields[] = {
    SLC_FIELD_ENUM("path_normalization", raw_top_t, norm, norm_names, .dflt = "BASE"),
    SLC_FIELD_NODE("policies", raw_top_t, policies),
    SLC_FIELD_END,
};

static const slc_cfg_field_t policy_fields[] = {
    SLC_FIELD_STR("name", raw_policy_t, name, .required = true),
    SLC_FIELD_ENUM("action", raw_policy_t, action, action_names, .dflt = "ALLOW"),
    SLC_FIELD_NODE("rules", raw_policy_t, rules),
    SLC_FIELD_NODE("selector", raw_policy_t, selector),
    SLC_FIELD_END,
};

static const slc_cfg_field_t rule_fields[] = {
    SLC_FIELD_NODE("from", raw_rule_t, from),
    SLC_FIELD_NODE("to", raw_rule_t, to),
    SLC_FIELD_NODE("when", raw_rule_t, when),
    SLC_FIELD_END,
};

static const slc_cfg_field_t from_fields[] = {
    SLC_FIELD_NODE("source", raw_from_t, source, .required = true),
    SLC_FIELD_END,
};

static const slc_cfg_field_t to_fields[] = {
    SLC_FIELD_NODE("operation", raw_to_t, operation, .required = true),
    SLC_FIELD_END,
};

static const slc_cfg_field_t when_fields[] = {
    SLC_FIELD_STR("key", raw_when_t, key, .required = true),
    SLC_FIELD_NODE("values", raw_when_t, values),
    SLC_FIELD_NODE("notValues", raw_when_t, not_values),
    SLC_FIELD_END,
};

/* What a field compiles to. */
typedef enum vkind { VK_STR, VK_STR_CI, VK_PATH, VK_CIDR, VK_PORT } vkind_t;

typedef struct field_desc {
    const char *key;
    rbac_attr_t attr;
    vkind_t kind;
    bool negate, http_only;
} field_desc_t;

#define FD(k, a, vk, neg, http)                                                                    \
    {                                                                                              \
        (k), (a), (vk), (neg), (http)                                                              \
    }

static const field_desc_t source_desc[10] = {
    FD("principals", RBAC_AT_PRINCIPAL, VK_STR, false, false),
    FD("notPrincipals", RBAC_AT_PRINCIPAL, VK_STR, true, false),
    FD("namespaces", RBAC_AT_NAMESPACE, VK_STR, false, false),
    FD("notNamespaces", RBAC_AT_NAMESPACE, VK_STR, true, false),
    FD("ipBlocks", RBAC_AT_SRC_IP, VK_CIDR, false, false),
    FD("notIpBlocks", RBAC_AT_SRC_IP, VK_CIDR, true, false),
    FD("remoteIpBlocks", RBAC_AT_REMOTE_IP, VK_CIDR, false, false),
    FD("notRemoteIpBlocks", RBAC_AT_REMOTE_IP, VK_CIDR, true, false),
    FD("requestPrincipals", RBAC_AT_REQ_PRINCIPAL, VK_STR, false, true),
    FD("notRequestPrincipals", RBAC_AT_REQ_PRINCIPAL, VK_STR, true, true),
};

static const field_desc_t operation_desc[8] = {
    FD("hosts", RBAC_AT_HOST, VK_STR_CI, false, true),
    FD("notHosts", RBAC_AT_HOST, VK_STR_CI, true, true),
    FD("ports", RBAC_AT_DST_PORT, VK_PORT, false, false),
    FD("notPorts", RBAC_AT_DST_PORT, VK_PORT, true, false),
    FD("methods", RBAC_AT_METHOD, VK_STR, false, true),
    FD("notMethods", RBAC_AT_METHOD, VK_STR, true, true),
    FD("paths", RBAC_AT_PATH, VK_PATH, false, true),
    FD("notPaths", RBAC_AT_PATH, VK_PATH, true, true),
};

/* Field tables for the binder, in the descriptors' order (raw_fields_t.v[i]
 * is field i of both). */
#define FV(k, i) SLC_FIELD_NODE(k, raw_fields_t, v[i])
static const slc_cfg_field_t source_fields[] = {
    FV("principals", 0),
    FV("notPrincipals", 1),
    FV("namespaces", 2),
    FV("notNamespaces", 3),
    FV("ipBlocks", 4),
    FV("notIpBlocks", 5),
    FV("remoteIpBlocks", 6),
    FV("notRemoteIpBlocks", 7),
    FV("requestPrincipals", 8),
    FV("notRequestPrincipals", 9),
    SLC_FIELD_END,
};
static const slc_cfg_field_t operation_fields[] = {
    FV("hosts", 0),      FV("notHosts", 1), FV("ports", 2),    FV("notPorts", 3), FV("methods", 4),
    FV("notMethods", 5), FV("paths", 6),    FV("notPaths", 7), SLC_FIELD_END,
};

/* ---- compile helpers ------------------------------------------------------- */

typedef struct cc {
    const slc_host_t *h;
    slc_diag_t *d;
    bool ok;
} cc_t;

__attribute__((format(printf, 3, 4))) static void err(cc_t *c, const slc_cfg_node_t *n,
                                                      const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    c->h->diag_error(c->d, n, fmt, ap);
    va_end(ap);
    c->ok = false;
}

__attribute__((format(printf, 3, 4))) static void warn(cc_t *c, const slc_cfg_node_t *n,
                                                       const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    c->h->diag_warn(c->d, n, fmt, ap);
    va_end(ap);
}

static bool is_null(cc_t *c, const slc_cfg_node_t *n)
{
    return n == NULL || c->h->cfg_type(n) == SLC_CFG_NULL;
}

static void *alloc(cc_t *c, size_t n, size_t size)
{
    return n ? c->h->cfg_alloc(c->d, n * size) : NULL;
}

/* seq_of: |n| as a sequence (a null node is an empty one); reports "must be
 * a list" otherwise and returns 0 items. */
static size_t seq_len(cc_t *c, const slc_cfg_node_t *n, const char *what)
{
    if (is_null(c, n)) {
        return 0;
    }
    if (c->h->cfg_type(n) != SLC_CFG_SEQ) {
        err(c, n, "%s must be a list", what);
        return 0;
    }
    return c->h->cfg_len(n);
}

/* compile_str: Istio's string forms: "*" (present, non-empty), "abc*"
 * (prefix), "*abc" (suffix), anything else exact. */
static slcu_strmatch_t compile_str(slc_str_t t, bool ci)
{
    slcu_strmatch_t m = {.kind = SLCU_MATCH_EXACT, .ignore_case = ci, .text = t};
    if (t.len == 1 && t.ptr[0] == '*') {
        m.kind = SLCU_MATCH_PRESENT;
        m.text = (slc_str_t){"", 0};
    } else if (t.len > 1 && t.ptr[t.len - 1] == '*') {
        m.kind = SLCU_MATCH_PREFIX;
        m.text.len--;
    } else if (t.len > 1 && t.ptr[0] == '*') {
        m.kind = SLCU_MATCH_SUFFIX;
        m.text.ptr++;
        m.text.len--;
    }
    return m;
}

static bool parse_port(slc_str_t t, uint16_t *out)
{
    uint32_t v = 0;
    if (t.len == 0 || t.len > 5) {
        return false;
    }
    for (size_t i = 0; i < t.len; i++) {
        if (t.ptr[i] < '0' || t.ptr[i] > '9') {
            return false;
        }
        v = v * 10 + (uint32_t)(t.ptr[i] - '0');
    }
    if (v < 1 || v > 65535) {
        return false;
    }
    *out = (uint16_t)v;
    return true;
}

/* compile_values fills |cond|'s value array from sequence |n| as |kind|
 * says. |what| names the field in messages. false if the list is empty or
 * absent (the field does not constrain) or had errors. */
static bool compile_values(cc_t *c, const slc_cfg_node_t *n, vkind_t kind, const char *what,
                           rbac_cond_t *cond)
{
    size_t len = seq_len(c, n, what);
    if (len == 0) {
        return false;
    }
    slcu_strmatch_t *sm = NULL;
    slcu_cidr_t *cm = NULL;
    uint16_t *pm = NULL;
    if (kind == VK_CIDR) {
        cm = alloc(c, len, sizeof(*cm));
    } else if (kind == VK_PORT) {
        pm = alloc(c, len, sizeof(*pm));
    } else {
        sm = alloc(c, len, sizeof(*sm));
    }
    bool ok = true;
    for (size_t i = 0; i < len; i++) {
        const slc_cfg_node_t *it = c->h->cfg_at(n, i);
        if (c->h->cfg_type(it) != SLC_CFG_SCALAR) {
            err(c, it, "%s: each value must be a string", what);
            ok = false;
            continue;
        }
        slc_str_t t = c->h->cfg_scalar(it);
        switch (kind) {
        case VK_CIDR:
            if (!slcu_cidr_parse(t, &cm[i])) {
                err(c, it, "bad IP address or CIDR range '%s'", t.ptr);
                ok = false;
            }
            break;
        case VK_PORT:
            if (!parse_port(t, &pm[i])) {
                err(c, it, "bad port '%s' (1-65535)", t.ptr);
                ok = false;
            }
            break;
        case VK_PATH:
            if (memchr(t.ptr, '{', t.len) != NULL || memchr(t.ptr, '}', t.len) != NULL) {
                err(c, it, "path templates ('{*}', '{**}') are not supported yet: '%s'", t.ptr);
                ok = false;
                break;
            }
            sm[i] = compile_str(t, false);
            break;
        case VK_STR:
        case VK_STR_CI:
            if (t.len == 0) {
                err(c, it, "%s: empty value", what);
                ok = false;
                break;
            }
            sm[i] = compile_str(t, kind == VK_STR_CI);
            break;
        }
    }
    cond->n = (uint32_t)len;
    cond->str = sm;
    cond->cidr = cm;
    cond->port = pm;
    return ok;
}

/* compile_group binds one source or operation map |n| into |g|. */
static void compile_group(cc_t *c, const slc_cfg_node_t *n, const field_desc_t *desc,
                          const slc_cfg_field_t *fields, size_t nf, rbac_group_t *g,
                          bool *http_only)
{
    raw_fields_t raw = {0};
    if (c->h->cfg_bind(c->d, n, fields, &raw) != SLC_OK) {
        c->ok = false;
        return;
    }
    rbac_cond_t *conds = alloc(c, nf, sizeof(*conds));
    uint32_t k = 0;
    for (size_t i = 0; i < nf; i++) {
        rbac_cond_t cd = {.attr = (uint8_t)desc[i].attr,
                          .negate = desc[i].negate,
                          .http_only = desc[i].http_only};
        if (compile_values(c, raw.v[i], desc[i].kind, desc[i].key, &cd)) {
            conds[k++] = cd;
            *http_only = *http_only || cd.http_only;
        }
    }
    g->c = conds;
    g->n = k;
}

/* The `when` keys, with what their values are. */
typedef struct when_key {
    const char *key;
    rbac_attr_t attr;
    vkind_t kind;
    bool http_only;
} when_key_t;

static const when_key_t when_keys[] = {
    {"source.ip", RBAC_AT_SRC_IP, VK_CIDR, false},
    {"remote.ip", RBAC_AT_REMOTE_IP, VK_CIDR, false},
    {"source.namespace", RBAC_AT_NAMESPACE, VK_STR, false},
    {"source.principal", RBAC_AT_PRINCIPAL, VK_STR, false},
    {"destination.ip", RBAC_AT_DST_IP, VK_CIDR, false},
    {"destination.port", RBAC_AT_DST_PORT, VK_PORT, false},
    {"connection.sni", RBAC_AT_SNI, VK_STR, false},
    {"request.auth.principal", RBAC_AT_AUTH, VK_STR, true},
    {"request.auth.audiences", RBAC_AT_AUTH, VK_STR, true},
    {"request.auth.presenter", RBAC_AT_AUTH, VK_STR, true},
};

/* bracket_key: |key| is "<prefix>[NAME]" with a non-empty NAME. */
static bool bracket_key(const char *key, const char *prefix, slc_str_t *name)
{
    size_t pl = strlen(prefix), kl = strlen(key);
    if (kl < pl + 3 || strncmp(key, prefix, pl) != 0 || key[pl] != '[' || key[kl - 1] != ']') {
        return false;
    }
    *name = (slc_str_t){key + pl + 1, kl - pl - 2};
    return true;
}

static void compile_when(cc_t *c, const slc_cfg_node_t *n, rbac_cond_t *out, uint32_t *k,
                         bool *http_only)
{
    raw_when_t raw = {0};
    if (c->h->cfg_bind(c->d, n, when_fields, &raw) != SLC_OK) {
        c->ok = false;
        return;
    }
    const slc_cfg_node_t *kn = c->h->cfg_get(n, "key");
    rbac_cond_t base = {0};
    vkind_t kind = VK_STR;
    slc_str_t name;
    bool found = false;
    for (size_t i = 0; i < sizeof(when_keys) / sizeof(when_keys[0]) && !found; i++) {
        if (strcmp(raw.key, when_keys[i].key) == 0) {
            base.attr = (uint8_t)when_keys[i].attr;
            base.http_only = when_keys[i].http_only;
            kind = when_keys[i].kind;
            found = true;
        }
    }
    if (!found && bracket_key(raw.key, "request.headers", &name)) {
        char *lower = c->h->cfg_alloc(c->d, name.len + 1);
        for (size_t i = 0; i < name.len; i++) {
            lower[i] = (char)slcu_lower((unsigned char)name.ptr[i]);
        }
        base.attr = RBAC_AT_HEADER;
        base.header = (slc_str_t){lower, name.len};
        base.http_only = true;
        found = true;
    } else if (!found && bracket_key(raw.key, "request.auth.claims", &name)) {
        base.attr = RBAC_AT_AUTH;
        base.http_only = true;
        found = true;
    }
    if (!found) {
        const char *best = NULL;
        size_t bd = 3;
        static const char *const extra[] = {"request.headers[", "request.auth.claims["};
        for (size_t i = 0; i < sizeof(when_keys) / sizeof(when_keys[0]) + 2; i++) {
            const char *cand = i < sizeof(when_keys) / sizeof(when_keys[0])
                                   ? when_keys[i].key
                                   : extra[i - sizeof(when_keys) / sizeof(when_keys[0])];
            slc_str_t key = {raw.key, strlen(raw.key)};
            if (cand[strlen(cand) - 1] == '[' && key.len > strlen(cand)) {
                key.len = strlen(cand); /* compare "request.header[" alike */
            }
            size_t dist = slcu_edit_distance(key, (slc_str_t){cand, strlen(cand)}, true);
            if (dist < bd) {
                bd = dist;
                best = cand;
            }
        }
        if (best != NULL) {
            err(c, kn, "unknown when key '%s' (did you mean '%s%s'?)", raw.key, best,
                best[strlen(best) - 1] == '[' ? "NAME]" : "");
        } else {
            err(c, kn, "unknown when key '%s'", raw.key);
        }
        return;
    }
    bool any = false;
    rbac_cond_t cd = base;
    if (compile_values(c, raw.values, kind, "values", &cd)) {
        out[(*k)++] = cd;
        any = true;
    }
    cd = base;
    cd.negate = true;
    if (compile_values(c, raw.not_values, kind, "notValues", &cd)) {
        out[(*k)++] = cd;
        any = true;
    }
    if (!any && c->ok) {
        err(c, n, "condition '%s' needs values or notValues", raw.key);
        return;
    }
    *http_only = *http_only || base.http_only;
}

static void compile_rule(cc_t *c, const slc_cfg_node_t *n, rbac_rule_t *r)
{
    raw_rule_t raw = {0};
    if (c->h->cfg_bind(c->d, n, rule_fields, &raw) != SLC_OK) {
        c->ok = false;
        return;
    }
    bool http = false;
    size_t nf = seq_len(c, raw.from, "from");
    rbac_group_t *from = alloc(c, nf, sizeof(*from));
    for (size_t i = 0; i < nf; i++) {
        const slc_cfg_node_t *it = c->h->cfg_at(raw.from, i);
        raw_from_t rf = {0};
        if (c->h->cfg_bind(c->d, it, from_fields, &rf) != SLC_OK) {
            c->ok = false;
            continue;
        }
        compile_group(c, rf.source, source_desc, source_fields, 10, &from[i], &http);
    }
    size_t nt = seq_len(c, raw.to, "to");
    rbac_group_t *to = alloc(c, nt, sizeof(*to));
    for (size_t i = 0; i < nt; i++) {
        const slc_cfg_node_t *it = c->h->cfg_at(raw.to, i);
        raw_to_t rt = {0};
        if (c->h->cfg_bind(c->d, it, to_fields, &rt) != SLC_OK) {
            c->ok = false;
            continue;
        }
        compile_group(c, rt.operation, operation_desc, operation_fields, 8, &to[i], &http);
    }
    size_t nw = seq_len(c, raw.when, "when");
    /* values and notValues may both be given: two conditions per entry. */
    rbac_cond_t *when = alloc(c, 2 * nw, sizeof(*when));
    uint32_t k = 0;
    for (size_t i = 0; i < nw; i++) {
        compile_when(c, c->h->cfg_at(raw.when, i), when, &k, &http);
    }
    *r = (rbac_rule_t){.from = from,
                       .nfrom = (uint32_t)nf,
                       .to = to,
                       .nto = (uint32_t)nt,
                       .when = when,
                       .nwhen = k,
                       .http_only = http};
}

static slc_metric_t *labeled(cc_t *c, const char *name, const char *help, const char *policy)
{
    if (c->h->metric_new_labeled == NULL) {
        return NULL;
    }
    return c->h->metric_new_labeled(c->d, SLC_METRIC_COUNTER, name, help, "policy", policy);
}

bool rbac_compile(const slc_host_t *h, slc_diag_t *d, const slc_cfg_node_t *n, rbac_set_t *out)
{
    cc_t c = {.h = h, .d = d, .ok = true};
    *out = (rbac_set_t){0};
    raw_top_t top = {0};
    if (h->cfg_bind(d, n, top_fields, &top) != SLC_OK) {
        return false;
    }
    out->norm = (rbac_norm_t)top.norm;
    size_t np = seq_len(&c, top.policies, "policies");
    rbac_policy_t *pol = alloc(&c, np, sizeof(*pol));
    const slc_cfg_node_t **name_nodes = alloc(&c, np, sizeof(*name_nodes));
    size_t nok = 0;
    for (size_t i = 0; i < np; i++) {
        const slc_cfg_node_t *pn = h->cfg_at(top.policies, i);
        raw_policy_t raw = {0};
        if (h->cfg_bind(d, pn, policy_fields, &raw) != SLC_OK) {
            c.ok = false;
            continue;
        }
        const slc_cfg_node_t *nn = h->cfg_get(pn, "name");
        if (raw.name[0] == '\0') {
            err(&c, nn, "policy name must not be empty");
        } else if (strcmp(raw.name, RBAC_NO_ALLOW_MATCH) == 0) {
            err(&c, nn, "policy name '%s' is reserved", raw.name);
        }
        for (size_t j = 0; j < nok; j++) {
            if (strcmp(pol[j].name, raw.name) == 0) {
                err(&c, nn, "duplicate policy name '%s'", raw.name);
                break;
            }
        }
        if (raw.action == RBAC_CUSTOM) {
            err(&c, h->cfg_get(pn, "action"), "action CUSTOM is not supported yet");
        }
        if (!is_null(&c, raw.selector)) {
            warn(&c, raw.selector,
                 "selector is ignored: the policy applies to every request of this chain");
        }
        rbac_policy_t *p = &pol[nok];
        p->name = raw.name;
        p->action = (rbac_action_t)raw.action;
        /* Absent rules: the policy matches nothing (Istio's `spec: {}`). */
        size_t nr = seq_len(&c, raw.rules, "rules");
        rbac_rule_t *rules = alloc(&c, nr, sizeof(*rules));
        for (size_t j = 0; j < nr; j++) {
            compile_rule(&c, h->cfg_at(raw.rules, j), &rules[j]);
        }
        p->rules = rules;
        p->nrules = (uint32_t)nr;
        name_nodes[nok] = nn;
        nok++;
    }
    if (!c.ok) {
        return false;
    }
    /* Group by action, keeping configuration order within each. */
    rbac_policy_t *byact = alloc(&c, nok, sizeof(*byact));
    size_t k = 0;
    for (int act = RBAC_ALLOW; act <= RBAC_AUDIT; act++) {
        size_t first = k;
        for (size_t i = 0; i < nok; i++) {
            if ((int)pol[i].action == act) {
                byact[k++] = pol[i];
            }
        }
        for (size_t i = first; i < k; i++) {
            rbac_policy_t *p = &byact[i];
            if (act == RBAC_ALLOW) {
                p->m = labeled(&c, "rbac_allowed_total", "Requests allowed by an ALLOW policy",
                               p->name);
            } else if (act == RBAC_DENY) {
                p->m = labeled(&c, "rbac_denied_total", "Requests denied by rbac", p->name);
            } else {
                p->m = labeled(&c, "rbac_audit_total", "Requests an AUDIT policy matched", p->name);
            }
        }
        if (act == RBAC_ALLOW) {
            out->allow = byact + first;
            out->nallow = (uint32_t)(k - first);
        } else if (act == RBAC_DENY) {
            out->deny = byact + first;
            out->ndeny = (uint32_t)(k - first);
        } else {
            out->audit = byact + first;
            out->naudit = (uint32_t)(k - first);
        }
    }
    if (out->nallow > 0) {
        out->m_no_allow =
            labeled(&c, "rbac_denied_total", "Requests denied by rbac", RBAC_NO_ALLOW_MATCH);
    }
    if (h->metric_new != NULL) {
        out->m_bad_path = h->metric_new(d, SLC_METRIC_COUNTER, "rbac_bad_path_total",
                                        "Requests refused 400 for a path rbac cannot judge");
    }
    /* Which attributes any condition reads: the request path gathers (and
     * parses) only those. */
    for (size_t i = 0; i < nok; i++) {
        for (uint32_t r = 0; r < byact[i].nrules; r++) {
            const rbac_rule_t *ru = &byact[i].rules[r];
            for (uint32_t g = 0; g < ru->nfrom; g++)
                for (uint32_t j = 0; j < ru->from[g].n; j++)
                    out->uses |= 1u << ru->from[g].c[j].attr;
            for (uint32_t g = 0; g < ru->nto; g++)
                for (uint32_t j = 0; j < ru->to[g].n; j++)
                    out->uses |= 1u << ru->to[g].c[j].attr;
            for (uint32_t j = 0; j < ru->nwhen; j++)
                out->uses |= 1u << ru->when[j].attr;
        }
    }
    return true;
}

/* ---- evaluation -------------------------------------------------------------- */

unsigned rbac_norm_flags(rbac_norm_t n)
{
    switch (n) {
    case RBAC_NORM_NONE:
        return 0;
    case RBAC_NORM_BASE:
        return SLCU_PATH_ISTIO_BASE;
    case RBAC_NORM_MERGE_SLASHES:
        return SLCU_PATH_ISTIO_MERGE_SLASHES;
    case RBAC_NORM_DECODE_AND_MERGE_SLASHES:
        return SLCU_PATH_ISTIO_DECODE_AND_MERGE_SLASHES;
    }
    return 0;
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

size_t rbac_normalize_path(rbac_norm_t n, slc_str_t path, char *buf, size_t cap)
{
    if (path.len == 0 || path.ptr[0] != '/' || cap < path.len) {
        return SIZE_MAX;
    }
    unsigned flags = rbac_norm_flags(n);
    if (flags == 0) {
        memmove(buf, path.ptr, path.len);
        return path.len;
    }
    for (size_t i = 0; i < path.len; i++) {
        if (path.ptr[i] == '%' &&
            (i + 2 >= path.len || !is_hex(path.ptr[i + 1]) || !is_hex(path.ptr[i + 2]))) {
            return SIZE_MAX;
        }
    }
    size_t len = slcu_path_normalize(path, buf, cap, flags);
    if (len == SLCU_PATH_INVALID || len == SIZE_MAX || len == 0 || buf[0] != '/') {
        return SIZE_MAX;
    }
    return len;
}

bool rbac_split_hostport(slc_str_t s, slcu_cidr_t *ip, uint32_t *port)
{
    *port = 0;
    if (s.ptr == NULL || s.len == 0) {
        return false;
    }
    if (slcu_ip_parse(s, ip)) {
        return true; /* a bare address */
    }
    /* "ip:port" or "[v6]:port": the port follows the last ':'. */
    size_t colon = s.len;
    while (colon > 0 && s.ptr[colon - 1] != ':') {
        colon--;
    }
    if (colon == 0) {
        return false;
    }
    uint32_t v = 0;
    size_t digits = s.len - colon;
    if (digits == 0 || digits > 5) {
        return false;
    }
    for (size_t i = colon; i < s.len; i++) {
        if (s.ptr[i] < '0' || s.ptr[i] > '9') {
            return false;
        }
        v = v * 10 + (uint32_t)(s.ptr[i] - '0');
    }
    if (v > 65535 || !slcu_ip_parse((slc_str_t){s.ptr, colon - 1}, ip)) {
        return false;
    }
    *port = v;
    return true;
}

/* str_attr: the string attribute |c| tests, or NULL ptr when absent. */
static slc_str_t str_attr(const rbac_cond_t *c, const rbac_attrs_t *a)
{
    slc_str_t v = SLC_STR_NULL;
    switch ((rbac_attr_t)c->attr) {
    case RBAC_AT_PRINCIPAL:
        return a->principal;
    case RBAC_AT_NAMESPACE:
        return a->ns;
    case RBAC_AT_SNI:
        return a->sni;
    case RBAC_AT_HOST:
        return a->host;
    case RBAC_AT_METHOD:
        return a->method;
    case RBAC_AT_PATH:
        return a->path;
    case RBAC_AT_HEADER:
        if (a->header == NULL || !a->header(a->header_arg, c->header, &v)) {
            return SLC_STR_NULL;
        }
        return v.ptr == NULL ? (slc_str_t){"", 0} : v;
    default:
        return SLC_STR_NULL; /* JWT attributes: no JWT filter yet */
    }
}

/* cond_holds: the attribute is present and one of the values matches it
 * (before negation). */
static bool cond_holds(const rbac_cond_t *c, const rbac_attrs_t *a)
{
    const slcu_cidr_t *ip = NULL;
    switch ((rbac_attr_t)c->attr) {
    case RBAC_AT_SRC_IP:
        ip = a->has_src_ip ? &a->src_ip : NULL;
        break;
    case RBAC_AT_REMOTE_IP:
        ip = a->has_remote_ip ? &a->remote_ip : NULL;
        break;
    case RBAC_AT_DST_IP:
        ip = a->has_dst_ip ? &a->dst_ip : NULL;
        break;
    case RBAC_AT_DST_PORT:
        if (!a->has_dst_port) {
            return false;
        }
        for (uint32_t i = 0; i < c->n; i++) {
            if (c->port[i] == a->dst_port) {
                return true;
            }
        }
        return false;
    default: {
        slc_str_t v = str_attr(c, a);
        if (v.ptr == NULL) {
            return false;
        }
        for (uint32_t i = 0; i < c->n; i++) {
            /* Istio's "*" means present and non-empty. */
            if (c->str[i].kind == SLCU_MATCH_PRESENT ? v.len > 0
                                                     : slcu_strmatch_value(&c->str[i], &v)) {
                return true;
            }
        }
        return false;
    }
    }
    if (ip == NULL) {
        return false;
    }
    for (uint32_t i = 0; i < c->n; i++) {
        if (slcu_cidr_contains(&c->cidr[i], ip)) {
            return true;
        }
    }
    return false;
}

/* conds_match ANDs |n| conditions. In TCP mode HTTP-only conditions are
 * taken as matching: only DENY policies reach here with such a rule (an
 * ALLOW or AUDIT rule with one never matches, see rule_matches). */
static bool conds_match(const rbac_cond_t *c, uint32_t n, const rbac_attrs_t *a)
{
    for (uint32_t i = 0; i < n; i++) {
        if (a->tcp && c[i].http_only) {
            continue;
        }
        if (cond_holds(&c[i], a) == c[i].negate) {
            return false;
        }
    }
    return true;
}

static bool groups_match(const rbac_group_t *g, uint32_t n, const rbac_attrs_t *a)
{
    if (n == 0) {
        return true;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (conds_match(g[i].c, g[i].n, a)) {
            return true;
        }
    }
    return false;
}

static bool rule_matches(const rbac_rule_t *r, rbac_action_t act, const rbac_attrs_t *a)
{
    if (a->tcp && r->http_only && act != RBAC_DENY) {
        return false;
    }
    return groups_match(r->from, r->nfrom, a) && groups_match(r->to, r->nto, a) &&
           conds_match(r->when, r->nwhen, a);
}

bool rbac_policy_matches(const rbac_policy_t *p, const rbac_attrs_t *a)
{
    for (uint32_t i = 0; i < p->nrules; i++) {
        if (rule_matches(&p->rules[i], p->action, a)) {
            return true;
        }
    }
    return false;
}

void rbac_evaluate(const rbac_set_t *s, const rbac_attrs_t *a, rbac_decision_t *out,
                   bool *audit_hits)
{
    *out = (rbac_decision_t){0};
    for (uint32_t i = 0; i < s->naudit; i++) {
        bool hit = rbac_policy_matches(&s->audit[i], a);
        if (audit_hits != NULL) {
            audit_hits[i] = hit;
        }
        if (hit && out->audit == NULL) {
            out->audit = &s->audit[i];
        }
    }
    for (uint32_t i = 0; i < s->ndeny; i++) {
        if (rbac_policy_matches(&s->deny[i], a)) {
            out->allowed = false;
            out->policy = &s->deny[i];
            return;
        }
    }
    if (s->nallow == 0) {
        out->allowed = true;
        return;
    }
    for (uint32_t i = 0; i < s->nallow; i++) {
        if (rbac_policy_matches(&s->allow[i], a)) {
            out->allowed = true;
            out->policy = &s->allow[i];
            return;
        }
    }
    out->allowed = false;
}
