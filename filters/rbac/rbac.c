/* rbac: Istio AuthorizationPolicy semantics for HTTP requests.
 * docs/filters/rbac.md is the reference for every key.
 *
 *   config:
 *     path_normalization: BASE     # NONE | BASE | MERGE_SLASHES | DECODE_AND_MERGE_SLASHES
 *     policies:
 *       - name: ns/deny-admin
 *         action: DENY             # ALLOW (default) | DENY | AUDIT
 *         rules:
 *           - from: [ { source: { notNamespaces: ["ops"] } } ]
 *             to:   [ { operation: { paths: ["/admin", "/admin/..."] } } ]
 *
 * Policies are compiled at config time (rbac_policy.c) into read-only arrays
 * of matchers shared by every worker. A request's attributes are gathered
 * into a stack struct; evaluation neither allocates nor calls back into the
 * host except for header lookups. Only the outcome touches the stream
 * arena: the facts (rbac.policy, rbac.audit) and a rewritten :path.
 *
 * Put the filter before the router: it judges on_request_headers.
 */
#include <sluice/filter.h>
#include <sluice/host.h>
#include <sluice/types.h>
#include <sluice/util.h>

#include "rbac_policy.h"

#include <string.h>

/* Paths up to this long are normalized on the stack; longer ones (up to the
 * listener's max_request_line, 1 MiB at most) in the stream arena. */
#define RBAC_PATH_STACK 8192

static slc_status_t rbac_config_new(const slc_host_t *h, const slc_cfg_node_t *n, void **out,
                                    slc_diag_t *d)
{
    rbac_set_t *s = h->cfg_alloc(d, sizeof(*s));
    if (!rbac_compile(h, d, n, s)) {
        return SLC_EINVAL;
    }
    *out = s;
    return SLC_OK;
}

static bool header_lookup(void *arg, slc_str_t name, slc_str_t *out)
{
    return slc_header_get(arg, SLC_REQUEST_HEADERS, name, out) == SLC_OK;
}

static void metric_inc(slc_req_t *r, slc_metric_t *m)
{
    if (m != NULL) {
        slc_host->metric_add(r, m, 1);
    }
}

static void fact(slc_req_t *r, slc_str_t name, const char *value)
{
    if (slc_host_has(slc_host, req_fact_set)) {
        (void)slc_host->req_fact_set(r, name, (slc_str_t){value, strlen(value)});
    }
}

static slc_str_t nonempty(slc_str_t s)
{
    return s.len > 0 ? s : SLC_STR_NULL;
}

/* peer_identity fills the principal and namespace from the transport: its
 * certificate when it has one (ABI 1.4), else its peer identity with a
 * leading "spiffe://" removed and the namespace parsed from
 * "TD/ns/NS/sa/SA". Views live as long as the connection. */
static void peer_identity(slc_conn_t *c, rbac_attrs_t *a)
{
    if (c == NULL) {
        return;
    }
    if (slc_host_has(slc_host, conn_peer_cert)) {
        slc_peer_cert_t pc = {.struct_size = sizeof(pc)};
        if (slc_host->conn_peer_cert(c, &pc) == SLC_OK) {
            /* A certificate without one SPIFFE URI SAN has no principal (as
             * in Istio): no fallback to what else the transport reports. */
            a->principal = nonempty(pc.principal);
            a->ns = a->principal.ptr != NULL ? nonempty(pc.ns) : SLC_STR_NULL;
            return;
        }
    }
    slc_str_t id = slc_host->conn_peer_identity(c);
    if (id.ptr == NULL || id.len == 0) {
        return;
    }
    static const char spiffe[] = "spiffe://";
    if (id.len >= sizeof(spiffe) - 1 && memcmp(id.ptr, spiffe, sizeof(spiffe) - 1) == 0) {
        id.ptr += sizeof(spiffe) - 1;
        id.len -= sizeof(spiffe) - 1;
    }
    a->principal = nonempty(id);
    slc_str_t td;
    slcu_principal_parts(id, &td, &a->ns);
}

static slc_action_t bad_path(const rbac_set_t *s, slc_req_t *r)
{
    metric_inc(r, s->m_bad_path);
    slc_send_local_reply(r, 400, SLC_STR("text/plain"), SLC_STR("Bad Request"));
    return SLC_STOP;
}

static slc_action_t rbac_on_request_headers(void *ctx, slc_req_t *r)
{
    const rbac_set_t *s = ctx;
    slc_str_t target = slc_pseudo(r, SLC_PSEUDO_PATH);
    const char *qm = target.ptr != NULL ? memchr(target.ptr, '?', target.len) : NULL;
    slc_str_t path = {target.ptr, qm != NULL ? (size_t)(qm - target.ptr) : target.len};
    if (path.len == 0 || path.ptr[0] != '/') {
        return bad_path(s, r);
    }

    /* The normalized path, then (if it changed and the request is allowed)
     * the query appended to make the new :path; never longer than |target|. */
    char stack[RBAC_PATH_STACK];
    char *buf = stack;
    bool changed = false;
    if (s->norm != RBAC_NORM_NONE) {
        if (target.len > sizeof(stack)) {
            buf = slc_arena_alloc(r, target.len);
            if (buf == NULL) {
                slc_send_local_reply(r, 500, SLC_STR("text/plain"), SLC_STR("internal error"));
                return SLC_STOP;
            }
        }
        size_t n = rbac_normalize_path(s->norm, path, buf, target.len);
        if (n == SIZE_MAX) {
            return bad_path(s, r);
        }
        changed = n != path.len || memcmp(buf, path.ptr, n) != 0;
        path = (slc_str_t){buf, n};
    }

    /* Only what some condition reads is gathered (and addresses parsed):
     * the set knows at config time (rbac_set_t.uses). */
    rbac_attrs_t a = {.header = header_lookup, .header_arg = r};
    slc_conn_t *c = slc_host->req_conn(r);
    if (RBAC_USES(s, RBAC_AT_PRINCIPAL) || RBAC_USES(s, RBAC_AT_NAMESPACE))
        peer_identity(c, &a);
    if (c != NULL) {
        uint32_t port;
        if (RBAC_USES(s, RBAC_AT_SRC_IP))
            a.has_src_ip = rbac_split_hostport(slc_host->conn_peer(c), &a.src_ip, &port);
        if (RBAC_USES(s, RBAC_AT_DST_IP) || RBAC_USES(s, RBAC_AT_DST_PORT)) {
            a.has_dst_ip = rbac_split_hostport(slc_host->conn_local(c), &a.dst_ip, &a.dst_port);
            a.has_dst_port = a.has_dst_ip && a.dst_port != 0;
        }
        if (RBAC_USES(s, RBAC_AT_SNI))
            a.sni = nonempty(slc_host->conn_sni(c));
    }
    if (RBAC_USES(s, RBAC_AT_REMOTE_IP)) {
        slc_stream_info_t info = {.struct_size = sizeof(info)};
        slc_host->stream_info(r, &info);
        if (info.struct_size >= offsetof(slc_stream_info_t, client_address) + sizeof(slc_str_t)) {
            uint32_t port;
            a.has_remote_ip = rbac_split_hostport(info.client_address, &a.remote_ip, &port);
        }
    }
    a.host = slc_pseudo(r, SLC_PSEUDO_AUTHORITY);
    a.method = slc_pseudo(r, SLC_PSEUDO_METHOD);
    a.path = path;

    bool audit_hits[s->naudit > 0 ? s->naudit : 1];
    rbac_decision_t dec;
    rbac_evaluate(s, &a, &dec, audit_hits);

    for (uint32_t i = 0; i < s->naudit; i++) {
        if (audit_hits[i]) {
            metric_inc(r, s->audit[i].m);
        }
    }
    if (dec.audit != NULL) {
        fact(r, SLC_STR("rbac.audit"), dec.audit->name);
    }
    if (!dec.allowed) {
        metric_inc(r, dec.policy != NULL ? dec.policy->m : s->m_no_allow);
        fact(r, SLC_STR("rbac.policy"),
             dec.policy != NULL ? dec.policy->name : RBAC_NO_ALLOW_MATCH);
        slc_host->set_response_flag(r, SLC_RF_UAEX);
        slc_send_local_reply(r, 403, SLC_STR("text/plain"), SLC_STR("RBAC: access denied"));
        return SLC_STOP;
    }
    if (dec.policy != NULL) {
        metric_inc(r, dec.policy->m);
        fact(r, SLC_STR("rbac.policy"), dec.policy->name);
    }
    if (changed) {
        /* The upstream must see exactly the path that was judged. */
        size_t n = path.len;
        if (qm != NULL) {
            size_t ql = target.len - (size_t)(qm - target.ptr);
            memmove(buf + n, qm, ql);
            n += ql;
        }
        if (slc_host->set_pseudo(r, SLC_PSEUDO_PATH, (slc_str_t){buf, n}) != SLC_OK) {
            slc_send_local_reply(r, 500, SLC_STR("text/plain"), SLC_STR("internal error"));
            return SLC_STOP;
        }
    }
    return SLC_CONTINUE;
}

static const slc_filter_desc_t rbac_desc = {
    .abi_version = SLC_ABI_VERSION,
    .struct_size = sizeof(slc_filter_desc_t),
    .name = "rbac",
    .version = "0.1.0",
    .config_new = rbac_config_new,
    .on_request_headers = rbac_on_request_headers,
};

SLC_FILTER_DEFINE(rbac_desc)
