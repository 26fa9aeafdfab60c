/* sluice filter SDK: the host function table.
 *
 * The host hands every module a pointer to one slc_host_t. Modules call the
 * core only through it, so a module links against no symbol of the binary
 * that loads it and can be unit-tested against a fake table.
 *
 * The table is APPEND-ONLY (see version.h). An entry added in a later minor
 * may be absent on an older host: test with slc_host_has() first.
 *
 * THREADS: functions taking an slc_req_t or slc_conn_t run on the worker
 * that owns it and nowhere else. cfg_* and diag_* run on the main thread
 * inside config_new. log may be called from any thread; metric_add only on
 * the stream's worker (it writes that worker's shard).
 *
 * Filters normally use the static inline wrappers at the bottom, which call
 * through the module-wide `slc_host` that SLC_FILTER_DEFINE sets.
 */
#ifndef SLUICE_HOST_H
#define SLUICE_HOST_H

#include <stdarg.h>
#include <sluice/filter.h>
#include <sluice/types.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef enum slc_emit {
    SLC_EMIT_PLAIN = 0, /* decrypted bytes for the core's codec */
    SLC_EMIT_WIRE = 1,  /* bytes to put on the socket */
} slc_emit_t;

typedef void (*slc_defer_fn)(void *arg);
typedef void (*slc_timer_fn)(slc_req_t *r, void *arg);
/* slc_header_fn is called per header by header_iterate; return false to
 * stop. Views are borrowed for the call only. */
typedef bool (*slc_header_fn)(void *arg, slc_str_t name, slc_str_t value);

struct slc_host {
    uint32_t abi_version; /* the host's SLC_ABI_VERSION */
    uint32_t struct_size; /* sizeof(slc_host_t) in the host */

    /* ---- logging ------------------------------------------------------ */
    /* log writes one structured line to the host's log. |filter| names the
     * caller (its instance name is added by the host when known). */
    void (*log)(slc_log_level_t level, const char *filter, const char *fmt, va_list ap);
    bool (*log_enabled)(slc_log_level_t level);

    /* ---- configuration (main thread, inside config_new) ----------------- */
    slc_cfg_type_t (*cfg_type)(const slc_cfg_node_t *n);
    /* cfg_scalar: the text of a scalar node, NUL-terminated.
     * LIFETIME: config-arena; lives as long as the config instance. */
    slc_str_t (*cfg_scalar)(const slc_cfg_node_t *n);
    /* cfg_len: items of a sequence or pairs of a map; 0 otherwise. */
    size_t (*cfg_len)(const slc_cfg_node_t *n);
    /* cfg_at: item |i| of a sequence, or value |i| of a map. */
    const slc_cfg_node_t *(*cfg_at)(const slc_cfg_node_t *n, size_t i);
    /* cfg_key_at: key |i| of a map (config-arena). */
    slc_str_t (*cfg_key_at)(const slc_cfg_node_t *n, size_t i);
    /* cfg_get: the value for |key| in map |n|, or NULL. */
    const slc_cfg_node_t *(*cfg_get)(const slc_cfg_node_t *n, const char *key);
    /* cfg_bind fills the struct at |out| from map |n| using |fields|.
     * Unknown keys, missing required keys, wrong types and out-of-range
     * values are reported through |d| (with "did you mean" hints); defaults
     * apply to absent keys. Returns SLC_OK or SLC_EINVAL.
     * LIFETIME: strings stored are config-arena. */
    slc_status_t (*cfg_bind)(slc_diag_t *d, const slc_cfg_node_t *n, const slc_cfg_field_t *fields,
                             void *out);
    /* cfg_duration_ms parses an Istio-style duration ("5s", "100ms", "1h",
     * "1.5s", "2m"). */
    slc_status_t (*cfg_duration_ms)(slc_str_t text, uint64_t *out_ms);
    /* diag_error records an error at |n| (file:line:column and key path are
     * added by the host). Any recorded error fails the config. */
    void (*diag_error)(slc_diag_t *d, const slc_cfg_node_t *n, const char *fmt, va_list ap);
    void (*diag_warn)(slc_diag_t *d, const slc_cfg_node_t *n, const char *fmt, va_list ap);
    /* cfg_cluster: a cluster declared in the configuration being built, or
     * NULL. LIFETIME: the config generation; a config may keep it. */
    const slc_cluster_t *(*cfg_cluster)(slc_diag_t *d, slc_str_t name);
    /* cfg_alloc: zeroed memory that lives exactly as long as this filter
     * instance (freed by the host after config_free). Never NULL. */
    void *(*cfg_alloc)(slc_diag_t *d, size_t size);
    /* metric_new registers a metric "sluice_<name>" for this instance; it
     * is exported on /metrics with a filter="<instance>" label.
     * LIFETIME: the config instance. */
    slc_metric_t *(*metric_new)(slc_diag_t *d, slc_metric_kind_t kind, const char *name,
                                const char *help);

    /* ---- clusters and endpoints (any worker; read-only) ------------------ */
    slc_str_t (*cluster_name)(const slc_cluster_t *c);
    size_t (*cluster_endpoint_count)(const slc_cluster_t *c);
    const slc_endpoint_t *(*cluster_endpoint)(const slc_cluster_t *c, size_t i);
    slc_str_t (*endpoint_address)(const slc_endpoint_t *e); /* "ip:port" */
    /* endpoint_active_requests: live requests on this endpoint, all workers. */
    uint32_t (*endpoint_active_requests)(const slc_endpoint_t *e);
    bool (*endpoint_healthy)(const slc_endpoint_t *e);

    /* ---- the stream ----------------------------------------------------- */
    /* arena_alloc: request-arena memory, zeroed, freed when the stream ends.
     * NULL only when the stream exceeds its memory budget. */
    void *(*arena_alloc)(slc_req_t *r, size_t size);
    /* arena_defer runs |fn(arg)| when the stream ends, LIFO. */
    slc_status_t (*arena_defer)(slc_req_t *r, slc_defer_fn fn, void *arg);

    /* header_get: first header |name| (case-insensitive).
     * LIFETIME: *out borrowed until the header is changed or the stream ends. */
    slc_status_t (*header_get)(slc_req_t *r, slc_hdrs_t which, slc_str_t name, slc_str_t *out);
    /* header_set replaces every |name| by one header; header_add appends.
     * Values are copied into the request arena. Names and values are
     * validated (RFC 9110 token / field-value): SLC_EINVAL otherwise. */
    slc_status_t (*header_set)(slc_req_t *r, slc_hdrs_t which, slc_str_t name, slc_str_t value);
    slc_status_t (*header_add)(slc_req_t *r, slc_hdrs_t which, slc_str_t name, slc_str_t value);
    /* header_remove removes every |name|; SLC_ENOENT if there was none. */
    slc_status_t (*header_remove)(slc_req_t *r, slc_hdrs_t which, slc_str_t name);
    void (*header_iterate)(slc_req_t *r, slc_hdrs_t which, slc_header_fn fn, void *arg);
    /* pseudo: method, path, authority or scheme of the request (borrowed). */
    slc_str_t (*pseudo)(slc_req_t *r, slc_pseudo_t which);
    /* set_pseudo rewrites one (copied). Only before on_upstream_select. */
    slc_status_t (*set_pseudo)(slc_req_t *r, slc_pseudo_t which, slc_str_t value);
    /* response_status: the upstream (or local) status, 0 before headers. */
    int (*response_status)(slc_req_t *r);
    slc_status_t (*set_response_status)(slc_req_t *r, int status);

    /* send_local_reply answers the stream from the proxy with |status|,
     * optional content-type and body (copied). The caller then returns
     * SLC_STOP. Response filters still run on it; on_complete runs. */
    slc_status_t (*send_local_reply)(slc_req_t *r, int status, slc_str_t content_type,
                                     slc_str_t body);
    /* resume continues a stream whose hook returned SLC_PAUSE, with the
     * filter after the one that paused. */
    void (*resume)(slc_req_t *r);

    /* route decisions that later filters and the core read. */
    slc_status_t (*route_set_cluster)(slc_req_t *r, const slc_cluster_t *c);
    const slc_cluster_t *(*route_cluster)(slc_req_t *r);
    /* route_set_timeout: whole-request timeout, 0 = none. 504 + UT on expiry. */
    void (*route_set_timeout)(slc_req_t *r, uint64_t ms);
    /* cluster_get: the cluster |name| in this stream's generation, or NULL. */
    const slc_cluster_t *(*cluster_get)(slc_req_t *r, slc_str_t name);
    slc_status_t (*upstream_set_endpoint)(slc_req_t *r, const slc_endpoint_t *e);

    void (*stream_info)(slc_req_t *r, slc_stream_info_t *out);
    void (*set_response_flag)(slc_req_t *r, uint32_t flag);
    /* req_conn: the downstream connection of the stream (borrowed). */
    slc_conn_t *(*req_conn)(slc_req_t *r);
    int (*req_worker)(slc_req_t *r);

    /* timer_add calls |fn| once after |ms| on the stream's worker; timers
     * still pending when the stream ends are cancelled. NULL on failure. */
    slc_timer_t *(*timer_add)(slc_req_t *r, uint64_t ms, slc_timer_fn fn, void *arg);
    void (*timer_cancel)(slc_timer_t *t);

    /* metric_add adds |v| (may be negative for gauges) on the calling
     * worker's shard; summed on scrape. Lock-free. */
    void (*metric_add)(slc_req_t *r, slc_metric_t *m, int64_t v);

    /* ---- connections ---------------------------------------------------- */
    /* conn_peer / conn_local: "ip:port" (borrowed, connection lifetime). */
    slc_str_t (*conn_peer)(slc_conn_t *c);
    slc_str_t (*conn_local)(slc_conn_t *c);
    /* conn_set_transport installs |t| (static storage) with |ctx| (owned by
     * the transport from now on) on |c|. Only in on_connection or
     * on_upstream_connect, once. */
    slc_status_t (*conn_set_transport)(slc_conn_t *c, const slc_transport_t *t, void *ctx);
    slc_status_t (*conn_emit)(slc_conn_t *c, slc_emit_t dir, const uint8_t *data, size_t len);
    void (*conn_transport_ready)(slc_conn_t *c);
    /* conn_peer_identity / conn_sni / conn_alpn from the transport. */
    slc_str_t (*conn_peer_identity)(slc_conn_t *c);
    slc_str_t (*conn_sni)(slc_conn_t *c);
    slc_str_t (*conn_alpn)(slc_conn_t *c);
};

/* slc_host_has tells whether |h| has table entry |field| (newer minors). */
#define slc_host_has(h, field)                                                                     \
    ((h)->struct_size >= offsetof(slc_host_t, field) + sizeof((h)->field) && (h)->field != NULL)

/* ---- wrappers for filters built with SLC_FILTER_DEFINE ---------------- */
#ifndef SLC_NO_WRAPPERS
extern const slc_host_t *slc_host;

__attribute__((format(printf, 3, 4))) static inline void
slc_log(slc_log_level_t lvl, const char *filter, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    slc_host->log(lvl, filter, fmt, ap);
    va_end(ap);
}
__attribute__((format(printf, 3, 4))) static inline void
slc_diag_error(slc_diag_t *d, const slc_cfg_node_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    slc_host->diag_error(d, n, fmt, ap);
    va_end(ap);
}
__attribute__((format(printf, 3, 4))) static inline void
slc_diag_warn(slc_diag_t *d, const slc_cfg_node_t *n, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    slc_host->diag_warn(d, n, fmt, ap);
    va_end(ap);
}
static inline void *slc_arena_alloc(slc_req_t *r, size_t n)
{
    return slc_host->arena_alloc(r, n);
}
static inline slc_status_t slc_header_get(slc_req_t *r, slc_hdrs_t w, slc_str_t name,
                                          slc_str_t *out)
{
    return slc_host->header_get(r, w, name, out);
}
static inline slc_status_t slc_header_set(slc_req_t *r, slc_hdrs_t w, slc_str_t n, slc_str_t v)
{
    return slc_host->header_set(r, w, n, v);
}
static inline slc_status_t slc_header_add(slc_req_t *r, slc_hdrs_t w, slc_str_t n, slc_str_t v)
{
    return slc_host->header_add(r, w, n, v);
}
static inline slc_status_t slc_header_remove(slc_req_t *r, slc_hdrs_t w, slc_str_t n)
{
    return slc_host->header_remove(r, w, n);
}
static inline slc_str_t slc_pseudo(slc_req_t *r, slc_pseudo_t w)
{
    return slc_host->pseudo(r, w);
}
static inline slc_status_t slc_send_local_reply(slc_req_t *r, int status, slc_str_t ctype,
                                                slc_str_t body)
{
    return slc_host->send_local_reply(r, status, ctype, body);
}
static inline void slc_resume(slc_req_t *r)
{
    slc_host->resume(r);
}
#endif

#ifdef __cplusplus
}
#endif
#endif
