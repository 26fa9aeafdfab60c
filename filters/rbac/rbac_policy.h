/* rbac_policy: Istio AuthorizationPolicy rules compiled into flat matcher
 * arrays, and their evaluation against one request's attributes.
 *
 * Split from the filter glue (rbac.c) so that the unit tests and the fuzz
 * target drive the evaluator directly. The compiler talks to the host only
 * through the |h| it is given (never the module-wide slc_host), so the fuzz
 * target can hand it a table made of the core's config functions.
 *
 * OWNERSHIP: everything a compiled set points at is cfg_alloc memory of the
 * filter instance (freed by the host after config_free); nothing needs to be
 * released by hand. THREADS: a compiled set is read-only after
 * rbac_compile and shared by every worker.
 */
#ifndef SLUICE_RBAC_POLICY_H
#define SLUICE_RBAC_POLICY_H

#include <sluice/filter.h>
#include <sluice/host.h>
#include <sluice/types.h>
#include <sluice/util.h>

#include <stdbool.h>
#include <stdint.h>

typedef enum rbac_action {
    RBAC_ALLOW = 0,
    RBAC_DENY = 1,
    RBAC_AUDIT = 2,
    RBAC_CUSTOM = 3, /* refused at config time */
} rbac_action_t;

typedef enum rbac_norm {
    RBAC_NORM_NONE = 0,
    RBAC_NORM_BASE = 1,
    RBAC_NORM_MERGE_SLASHES = 2,
    RBAC_NORM_DECODE_AND_MERGE_SLASHES = 3,
} rbac_norm_t;

/* The attribute a condition tests. */
typedef enum rbac_attr {
    RBAC_AT_PRINCIPAL,
    RBAC_AT_NAMESPACE,
    RBAC_AT_REQ_PRINCIPAL, /* JWT: never present yet */
    RBAC_AT_AUTH,          /* request.auth.*: never present yet */
    RBAC_AT_HOST,
    RBAC_AT_METHOD,
    RBAC_AT_PATH,
    RBAC_AT_SNI,
    RBAC_AT_HEADER,
    RBAC_AT_SRC_IP,
    RBAC_AT_REMOTE_IP,
    RBAC_AT_DST_IP,
    RBAC_AT_DST_PORT,
} rbac_attr_t;

/* rbac_cond_t is one field of a source or operation, or one side of a
 * `when` condition: the attribute holds one of |n| values (or, |negate|d,
 * is absent or holds none of them). */
typedef struct rbac_cond {
    uint8_t attr;     /* rbac_attr_t */
    bool negate;      /* notX / notValues */
    bool http_only;   /* an HTTP-only field (TCP semantics) */
    slc_str_t header; /* RBAC_AT_HEADER: lower-cased name, config-arena */
    uint32_t n;
    const slcu_strmatch_t *str; /* string attributes */
    const slcu_cidr_t *cidr;    /* address attributes */
    const uint16_t *port;       /* RBAC_AT_DST_PORT */
} rbac_cond_t;

/* One `source` or `operation`: its conditions AND together. */
typedef struct rbac_group {
    const rbac_cond_t *c;
    uint32_t n;
} rbac_group_t;

/* One rule: any of |from| AND any of |to| AND all of |when| (an empty list
 * does not constrain). */
typedef struct rbac_rule {
    const rbac_group_t *from, *to;
    uint32_t nfrom, nto;
    const rbac_cond_t *when;
    uint32_t nwhen;
    bool http_only; /* some condition of the rule is HTTP-only */
} rbac_rule_t;

typedef struct rbac_policy {
    const char *name; /* config-arena, NUL-terminated */
    rbac_action_t action;
    const rbac_rule_t *rules;
    uint32_t nrules; /* 0: the policy matches nothing (Istio's `spec: {}`) */
    slc_metric_t *m; /* rbac_{allowed,denied,audit}_total{policy=name} */
} rbac_policy_t;

/* The fact value and metric label for "ALLOW policies exist, none matched". */
#define RBAC_NO_ALLOW_MATCH "(no-allow-match)"

typedef struct rbac_set {
    rbac_norm_t norm;
    /* By action, each in configuration order. */
    const rbac_policy_t *deny, *allow, *audit;
    uint32_t ndeny, nallow, naudit;
    slc_metric_t *m_no_allow; /* rbac_denied_total{policy=RBAC_NO_ALLOW_MATCH} */
    slc_metric_t *m_bad_path; /* rbac_bad_path_total */
    uint32_t uses;            /* bit (1 << rbac_attr_t) per attribute a condition reads */
} rbac_set_t;

#define RBAC_USES(s, at) (((s)->uses >> (at)) & 1u)

/* rbac_attrs_t is what one request offers the evaluator. A string whose ptr
 * is NULL is absent. Addresses are valid only when their has_ flag is set.
 * Views are borrowed for the evaluation. */
typedef struct rbac_attrs {
    slc_str_t principal, ns, sni;
    slc_str_t host, method, path; /* path: normalized, without the query */
    bool has_src_ip, has_remote_ip, has_dst_ip, has_dst_port;
    slcu_cidr_t src_ip, remote_ip, dst_ip;
    uint32_t dst_port;
    /* header looks a request header up (name lower-case); false if absent. */
    bool (*header)(void *arg, slc_str_t name, slc_str_t *out);
    void *header_arg;
    bool tcp; /* TCP semantics for HTTP-only fields */
} rbac_attrs_t;

typedef struct rbac_decision {
    bool allowed;
    /* The DENY policy that matched, or the ALLOW policy that allowed; NULL
     * for "no ALLOW policy matched" (denied) and "no ALLOW policy exists"
     * (allowed). */
    const rbac_policy_t *policy;
    const rbac_policy_t *audit; /* the first AUDIT policy that matched */
} rbac_decision_t;

/* rbac_compile builds |out| from the filter's config map |n|, reporting
 * every problem through |d|; false if any. Metrics are registered through
 * h->metric_new_labeled / metric_new (NULL handles are tolerated). */
bool rbac_compile(const slc_host_t *h, slc_diag_t *d, const slc_cfg_node_t *n, rbac_set_t *out);

/* rbac_policy_matches: does one policy match? Pure; never allocates. */
bool rbac_policy_matches(const rbac_policy_t *p, const rbac_attrs_t *a);

/* rbac_evaluate decides for |a| (DENY, then ALLOW; AUDIT recorded). Pure;
 * never allocates. |audit_hits| (may be NULL) gets one flag per AUDIT
 * policy (set->naudit entries). */
void rbac_evaluate(const rbac_set_t *s, const rbac_attrs_t *a, rbac_decision_t *out,
                   bool *audit_hits);

/* rbac_norm_flags: the slcu_path_normalize flags of an option (0: NONE). */
unsigned rbac_norm_flags(rbac_norm_t n);

/* rbac_normalize_path writes |path| (no query, starting with '/') as
 * option |n| normalizes it into |buf| (|cap| >= path.len) and returns its
 * length, or SIZE_MAX when the path cannot be judged: a "%00", a result
 * that does not start with '/', or, under any decoding option, a '%' not
 * followed by two hex digits (RFC 3986 3.1 forbids it, and one pass of
 * decoding could turn "%%32e" into a new escape "%2e" that a second
 * decoder downstream would see as "."). Under NONE |buf| gets the path
 * unchanged. The result normalizes to itself. Pure; never allocates. */
size_t rbac_normalize_path(rbac_norm_t n, slc_str_t path, char *buf, size_t cap);

/* rbac_split_hostport parses "ip:port" / "[v6]:port" / a bare address into
 * |ip| and |port| (0 if none). false if the address does not parse. */
bool rbac_split_hostport(slc_str_t s, slcu_cidr_t *ip, uint32_t *port);

#endif
