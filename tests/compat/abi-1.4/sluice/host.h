/* sluice filter SDK: the host function table.
 *
 * The host hands every module a pointer to one slc_host_t. Modules call the
 * core only through it, so a module links against no symbol of the binary
 * that loads it and can be unit-tested against a fake table.
 *
 * The table is APPEND-ONLY (see version.h). An entry added in a later minor
 * may be absent on an older host: test with slc_host_has() first.
 *
 * Every entry's comment states its contract in four words:
 *   OWNERSHIP  who frees what it returns or takes (nobody, if not stated:
 *              the host owns everything it hands out)
 *   LIFETIME   how long a returned view or handle stays valid:
 *              "config" = as long as the filter's config instance (freed
 *              after config_free); "stream" = until the stream's last hook
 *              (on_complete) returns; "connection" = until the connection
 *              closes; "call" = until the function returns
 *   THREAD     "main" = the main thread, inside config_new; "worker" = the
 *              worker that owns the stream or connection (its hooks, its
 *              timers); "any" = any thread
 *   PHASES     the hooks in which it may be called; outside them the core
 *              answers SLC_ESTATE where it can tell (or, for void entries,
 *              the comment says what happens)
 * A "stream hook" is request_new, on_request_headers .. on_complete and
 * on_upstream_result, and the stream's timers and resume callbacks.
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
     * caller (its instance name is added by the host when known). The text
     * is formatted and copied before log returns. THREAD: any. PHASES: any. */
    void (*log)(slc_log_level_t level, const char *filter, const char *fmt, va_list ap);
    /* log_enabled: would |level| be written? THREAD: any. */
    bool (*log_enabled)(slc_log_level_t level);

    /* ---- configuration -------------------------------------------------- */
    /* THREAD for this group: main. PHASES: inside config_new only (|d| and
     * the nodes are valid only there), except cfg_duration_ms. */

    /* cfg_type: the kind of node |n| (SLC_CFG_NULL for NULL). */
    slc_cfg_type_t (*cfg_type)(const slc_cfg_node_t *n);
    /* cfg_scalar: the text of a scalar node, NUL-terminated.
     * LIFETIME: config (the bytes; the node itself only during config_new). */
    slc_str_t (*cfg_scalar)(const slc_cfg_node_t *n);
    /* cfg_len: items of a sequence or pairs of a map; 0 otherwise. */
    size_t (*cfg_len)(const slc_cfg_node_t *n);
    /* cfg_at: item |i| of a sequence, or value |i| of a map, or NULL.
     * LIFETIME: config_new (keep what you need, not nodes). */
    const slc_cfg_node_t *(*cfg_at)(const slc_cfg_node_t *n, size_t i);
    /* cfg_key_at: key |i| of a map. LIFETIME: config. */
    slc_str_t (*cfg_key_at)(const slc_cfg_node_t *n, size_t i);
    /* cfg_get: the value for |key| in map |n|, or NULL.
     * LIFETIME: config_new (as cfg_at). */
    const slc_cfg_node_t *(*cfg_get)(const slc_cfg_node_t *n, const char *key);
    /* cfg_bind fills the struct at |out| from map |n| using |fields|.
     * Unknown keys, missing required keys, wrong types and out-of-range
     * values are reported through |d| (with "did you mean" hints); defaults
     * apply to absent keys. Returns SLC_OK or SLC_EINVAL. The table is read
     * with the layout of the minor the module was compiled with (see
     * slc_cfg_field_t). OWNERSHIP: |fields| and |out| stay the caller's.
     * LIFETIME: strings stored are config (a default string may be the
     * table's own static text). */
    slc_status_t (*cfg_bind)(slc_diag_t *d, const slc_cfg_node_t *n, const slc_cfg_field_t *fields,
                             void *out);
    /* cfg_duration_ms parses an Istio-style duration ("5s", "100ms", "1h",
     * "1.5s", "2m"). Pure: THREAD any, PHASES any. */
    slc_status_t (*cfg_duration_ms)(slc_str_t text, uint64_t *out_ms);
    /* diag_error records an error at |n| (file:line:column and key path are
     * added by the host). Any recorded error fails the config. The message
     * is formatted and copied at once. */
    void (*diag_error)(slc_diag_t *d, const slc_cfg_node_t *n, const char *fmt, va_list ap);
    /* diag_warn: as diag_error, without failing the config. */
    void (*diag_warn)(slc_diag_t *d, const slc_cfg_node_t *n, const char *fmt, va_list ap);
    /* cfg_cluster: a cluster declared in the configuration being built, or
     * NULL. LIFETIME: config: the handle, its name and its endpoints stay
     * valid as long as this config instance. Instances are built per
     * generation, together with that generation's clusters, and a stream
     * runs only its own generation's chain, so whenever a hook runs with
     * this config the handle is the stream's own cluster: resolve clusters
     * here, keep the handles, and use them on the request path. */
    const slc_cluster_t *(*cfg_cluster)(slc_diag_t *d, slc_str_t name);
    /* cfg_alloc: zeroed memory that lives exactly as long as this filter
     * instance. OWNERSHIP: the host's; freed after config_free, also when
     * config_new fails. Never NULL. */
    void *(*cfg_alloc)(slc_diag_t *d, size_t size);
    /* metric_new registers a metric "sluice_<name>" for this instance; it
     * is exported on /metrics with a filter="<instance>" label.
     * LIFETIME: config. OWNERSHIP: the host's; never freed by the filter. */
    slc_metric_t *(*metric_new)(slc_diag_t *d, slc_metric_kind_t kind, const char *name,
                                const char *help);

    /* ---- clusters and endpoints ----------------------------------------- */
    /* Read-only views of a cluster handle (from cfg_cluster, cluster_get,
     * route_cluster or endpoint_cluster). THREAD: any. PHASES: any in which
     * the handle is valid. LIFETIME of every result: that of the cluster
     * handle it came from (config or stream). */
    slc_str_t (*cluster_name)(const slc_cluster_t *c);
    size_t (*cluster_endpoint_count)(const slc_cluster_t *c);
    /* cluster_endpoint: endpoint |i| of |c|, NULL past the end. */
    const slc_endpoint_t *(*cluster_endpoint)(const slc_cluster_t *c, size_t i);
    slc_str_t (*endpoint_address)(const slc_endpoint_t *e); /* "ip:port" */
    /* endpoint_active_requests: live requests on this endpoint, all workers
     * (an atomic snapshot). */
    uint32_t (*endpoint_active_requests)(const slc_endpoint_t *e);
    /* endpoint_healthy: passing active health checks and not ejected now. */
    bool (*endpoint_healthy)(const slc_endpoint_t *e);

    /* ---- the stream ----------------------------------------------------- */
    /* THREAD for this group: worker (the stream's). PHASES: stream hooks,
     * unless stated otherwise. */

    /* arena_alloc: stream memory, zeroed. OWNERSHIP: the host's. LIFETIME:
     * stream. NULL only when the stream exceeds its memory budget. */
    void *(*arena_alloc)(slc_req_t *r, size_t size);
    /* arena_defer runs |fn(arg)| when the stream ends (after on_complete),
     * LIFO. SLC_ENOMEM over budget (fn will not run). */
    slc_status_t (*arena_defer)(slc_req_t *r, slc_defer_fn fn, void *arg);

    /* header_get: first header |name| (case-insensitive). Request headers
     * exist from on_request_headers on, response headers from
     * on_response_headers on. LIFETIME: *out until that header is changed
     * or removed, or the stream ends. */
    slc_status_t (*header_get)(slc_req_t *r, slc_hdrs_t which, slc_str_t name, slc_str_t *out);
    /* header_set replaces every |name| by one header; header_add appends.
     * Name and value are copied (OWNERSHIP stays with the caller).
     * Names and values are validated (RFC 9110 token / field-value):
     * SLC_EINVAL otherwise. SLC_ESTATE while header_iterate walks the same
     * block. PHASES: request headers reach the upstream when changed up to
     * on_upstream_connect (each attempt sends the current set); response
     * headers reach the client when changed up to on_response_headers.
     * Later changes are accepted but never sent. */
    slc_status_t (*header_set)(slc_req_t *r, slc_hdrs_t which, slc_str_t name, slc_str_t value);
    slc_status_t (*header_add)(slc_req_t *r, slc_hdrs_t which, slc_str_t name, slc_str_t value);
    /* header_remove removes every |name|; SLC_ENOENT if there was none.
     * SLC_ESTATE while header_iterate walks the same block. PHASES: as
     * header_set. */
    slc_status_t (*header_remove)(slc_req_t *r, slc_hdrs_t which, slc_str_t name);
    /* header_iterate calls |fn| for each header of the block in order until
     * it returns false. The callback must not change that block: header_set,
     * header_add, header_remove (and set_pseudo of the authority, for
     * request headers) return SLC_ESTATE during the walk. The other block
     * may be changed. LIFETIME: the views passed to |fn|: call. */
    void (*header_iterate)(slc_req_t *r, slc_hdrs_t which, slc_header_fn fn, void *arg);
    /* pseudo: method, path, authority or scheme of the request, from
     * on_request_headers on. LIFETIME: until set_pseudo rewrites it, or
     * the stream ends. */
    slc_str_t (*pseudo)(slc_req_t *r, slc_pseudo_t which);
    /* set_pseudo rewrites one (copied; the authority also becomes the Host
     * header). PHASES: while request filters run: on_request_headers,
     * on_request_body before the request goes upstream, and the first
     * on_upstream_select round. SLC_ESTATE otherwise (on retry rounds
     * too), and for the authority during a walk of the request headers. */
    slc_status_t (*set_pseudo)(slc_req_t *r, slc_pseudo_t which, slc_str_t value);
    /* response_status: the upstream (or local) status, 0 before one is
     * known. PHASES: any stream hook. */
    int (*response_status)(slc_req_t *r);
    /* set_response_status changes the status sent to the client (200..599,
     * else SLC_EINVAL). PHASES: on_response_headers only (before it, the
     * upstream's status would overwrite it; after it, the head is on the
     * wire): SLC_ESTATE elsewhere. */
    slc_status_t (*set_response_status)(slc_req_t *r, int status);

    /* send_local_reply answers the stream from the proxy with |status|
     * (200..599), optional content-type and body (copied). The caller then
     * returns SLC_STOP (or, from a timer, resumes). Response filters still
     * run on it; on_complete runs. PHASES: any stream hook before the
     * response head is sent (SLC_ESTATE after; a later call replaces an
     * earlier local reply). */
    slc_status_t (*send_local_reply)(slc_req_t *r, int status, slc_str_t content_type,
                                     slc_str_t body);
    /* resume continues a stream whose hook returned SLC_PAUSE, with the
     * filter after the one that paused. THREAD: worker (from a timer or
     * another callback of the stream's worker). A stream that is not paused
     * is left alone. Once per SLC_PAUSE. */
    void (*resume)(slc_req_t *r);

    /* route decisions that later filters and the core read. */
    /* route_set_cluster: the cluster the stream goes to (a handle of the
     * stream's generation: cfg_cluster of this config, or cluster_get).
     * PHASES: while request filters run (as set_pseudo); SLC_ESTATE
     * otherwise. */
    slc_status_t (*route_set_cluster)(slc_req_t *r, const slc_cluster_t *c);
    /* route_cluster: the chosen cluster or NULL. LIFETIME: stream. */
    const slc_cluster_t *(*route_cluster)(slc_req_t *r);
    /* route_set_timeout: whole-request timeout, 0 = none. 504 + UT on
     * expiry. PHASES: while request filters run; the timer starts when the
     * request first goes upstream and is never re-armed, so later calls are
     * ignored. */
    void (*route_set_timeout)(slc_req_t *r, uint64_t ms);
    /* cluster_get: the cluster |name| in this stream's generation, or NULL:
     * for names only known per request (prefer cfg_cluster handles).
     * LIFETIME: stream. */
    const slc_cluster_t *(*cluster_get)(slc_req_t *r, slc_str_t name);
    /* upstream_set_endpoint picks |e| (an endpoint of the routed cluster,
     * else SLC_EINVAL) for the current attempt. PHASES: on_upstream_select,
     * while its round runs or is paused (each retry is a new round);
     * SLC_ESTATE otherwise. */
    slc_status_t (*upstream_set_endpoint)(slc_req_t *r, const slc_endpoint_t *e);

    /* stream_info fills |out| up to out->struct_size (0 = the caller's
     * sizeof is unknown: the whole struct) and sets struct_size to what was
     * written. LIFETIME: the strings: stream. */
    void (*stream_info)(slc_req_t *r, slc_stream_info_t *out);
    /* set_response_flag ORs |flag| (SLC_RF_*) into the stream's flags. */
    void (*set_response_flag)(slc_req_t *r, uint32_t flag);
    /* req_conn: the downstream connection of the stream.
     * LIFETIME: stream (the connection outlives its streams). */
    slc_conn_t *(*req_conn)(slc_req_t *r);
    /* req_worker: the index of the stream's worker. */
    int (*req_worker)(slc_req_t *r);

    /* timer_add calls |fn| once after |ms| on the stream's worker; timers
     * still pending when the stream ends are cancelled. NULL on failure.
     * OWNERSHIP: the host's (stream memory). LIFETIME: the handle: stream. */
    slc_timer_t *(*timer_add)(slc_req_t *r, uint64_t ms, slc_timer_fn fn, void *arg);
    /* timer_cancel: NULL-safe; only while the timer's stream lives. */
    void (*timer_cancel)(slc_timer_t *t);

    /* metric_add adds |v| (may be negative for gauges) on the calling
     * worker's shard; summed on scrape. Lock-free. THREAD: worker (the
     * stream's, and only there: it writes that worker's shard). */
    void (*metric_add)(slc_req_t *r, slc_metric_t *m, int64_t v);

    /* ---- connections ---------------------------------------------------- */
    /* THREAD for this group: worker (the connection's). */

    /* conn_peer / conn_local: "ip:port". LIFETIME: connection. PHASES:
     * on_connection, and any hook with a handle of the connection. */
    slc_str_t (*conn_peer)(slc_conn_t *c);
    slc_str_t (*conn_local)(slc_conn_t *c);
    /* conn_set_transport installs |t| with |ctx| on |c|. OWNERSHIP: once it
     * returns SLC_OK, |ctx| belongs to the transport (the core calls its
     * free when the connection closes); |t| is copied up to its struct_size.
     * SLC_EINVAL without recv and send. PHASES: on_connection (downstream)
     * or on_upstream_connect (upstream), once: a second install is
     * SLC_ESTATE. The core does not refuse other phases, but the bytes
     * already exchanged in plaintext would be lost: do not. */
    slc_status_t (*conn_set_transport)(slc_conn_t *c, const slc_transport_t *t, void *ctx);
    /* conn_emit hands the core bytes from the transport (copied).
     * SLC_EMIT_PLAIN only from within the transport's recv; SLC_EMIT_WIRE
     * from any transport member. SLC_ESTATE without a transport. */
    slc_status_t (*conn_emit)(slc_conn_t *c, slc_emit_t dir, const uint8_t *data, size_t len);
    /* conn_transport_ready: the handshake is complete (from the transport). */
    void (*conn_transport_ready)(slc_conn_t *c);
    /* conn_peer_identity / conn_sni / conn_alpn from the transport;
     * SLC_STR_NULL without a transport or when the transport lacks that
     * member. LIFETIME: connection (the bytes are the transport's). */
    slc_str_t (*conn_peer_identity)(slc_conn_t *c);
    slc_str_t (*conn_sni)(slc_conn_t *c);
    slc_str_t (*conn_alpn)(slc_conn_t *c);

    /* ---- ABI 1.1 -------------------------------------------------------- */
    /* route_set_retry sets the stream's retry policy. OWNERSHIP: |p| (and
     * its statuses array) stay the caller's: copied before the call
     * returns. Retries go to a new upstream_select round (the lb should
     * skip upstream_tried endpoints), after a backoff, and only while the
     * request body is still replayable (it fits the core's replay buffer,
     * 64 KiB). NULL clears it. PHASES: while request filters run and before
     * any request body byte was read: SLC_ESTATE otherwise. */
    slc_status_t (*route_set_retry)(slc_req_t *r, const slc_retry_policy_t *p);
    /* upstream_tried: |e| was already attempted by this stream. THREAD:
     * worker. PHASES: stream hooks. */
    bool (*upstream_tried)(slc_req_t *r, const slc_endpoint_t *e);
    /* route_set_mirror sends a copy of the request (headers and body, up to
     * the replay limit) to |c|, fire-and-forget: its response is discarded
     * and its failures never affect the stream. NULL clears it. PHASES:
     * while request filters run; SLC_ESTATE otherwise. */
    slc_status_t (*route_set_mirror)(slc_req_t *r, const slc_cluster_t *c);
    /* endpoint_eject takes |e| out of load balancing until |until_ms|
     * (now_ms clock; 0 returns it now). Shared by all workers and kept
     * across reloads for the same cluster name and address. THREAD: any. */
    void (*endpoint_eject)(const slc_endpoint_t *e, uint64_t until_ms);
    /* endpoint_ejected_until: 0 if not ejected. THREAD: any. */
    uint64_t (*endpoint_ejected_until)(const slc_endpoint_t *e);
    /* now_ms: monotonic milliseconds (CLOCK_MONOTONIC_COARSE: cheap, about
     * 4 ms resolution). THREAD: any. */
    uint64_t (*now_ms)(void);
    /* metric_new_labeled registers "sluice_<name>{filter="<instance>",
     * <label>="<value>"}" (e.g. label "cluster"); the strings are copied.
     * THREAD: main, inside config_new. LIFETIME: config. */
    slc_metric_t *(*metric_new_labeled)(slc_diag_t *d, slc_metric_kind_t kind, const char *name,
                                        const char *help, const char *label, const char *value);
    /* metric_add_global adds to a metric outside any stream (timers,
     * worker_init): lock-free on worker |worker_id|'s shard. THREAD: that
     * worker only. */
    void (*metric_add_global)(int worker_id, slc_metric_t *m, int64_t v);
    /* endpoint_index: the position of |e| in its cluster. THREAD: any. */
    size_t (*endpoint_index)(const slc_endpoint_t *e);
    /* endpoint_cluster: the cluster |e| belongs to. THREAD: any. LIFETIME:
     * that of |e|'s handle. */
    const slc_cluster_t *(*endpoint_cluster)(const slc_endpoint_t *e);
    /* req_attempts: upstream attempts made so far (1 during the first).
     * THREAD: worker. PHASES: stream hooks. */
    uint32_t (*req_attempts)(slc_req_t *r);
    /* cfg_cluster_pool sets connection-pool limits on cluster |c| of the
     * configuration being built (one filter per cluster; |o| is copied up to
     * its struct_size). The core enforces them: past max_connections a
     * stream waits for a connection; past max_pending_requests it is
     * answered 503 with flag UO at once. SLC_EINVAL if another filter
     * already set them. THREAD: main. PHASES: config_new only. */
    slc_status_t (*cfg_cluster_pool)(slc_diag_t *d, const slc_cluster_t *c,
                                     const slc_pool_options_t *o);

    /* ---- ABI 1.3: retries a filter decides -------------------------------
     * A filter may decide retries itself instead of handing the core a
     * built-in policy (route_set_retry): it keeps the body for replay and
     * sets a per-try timeout while routing, then asks for another attempt
     * from on_upstream_result. The core keeps only the mechanism: the
     * replay copy, the attempts, the timers. */

    /* attempt_retry asks for another upstream attempt of |r| after
     * |backoff_ms| (0: on the next loop turn), as a new upstream_select
     * round. PHASES: only inside on_upstream_result (SLC_ESTATE elsewhere).
     * SLC_ESTATE too when no attempt is possible any more: the response
     * head went downstream, body bytes were sent that the core did not keep
     * (route_keep_body) or that outgrew the 64 KiB replay copy, the worker
     * is draining, or the stream made 101 attempts. Several filters asking
     * for one outcome: one retry, after the longest backoff. A retry a
     * filter asked for takes precedence over the built-in policy. THREAD:
     * the stream's worker. */
    slc_status_t (*attempt_retry)(slc_req_t *r, uint64_t backoff_ms);
    /* route_keep_body keeps a copy of the request body as it goes upstream
     * (up to 64 KiB; the copy lives in the request arena) so a retry or a
     * mirror can send it again. PHASES: request filters, before any body
     * byte left (SLC_ESTATE after). Idempotent. */
    slc_status_t (*route_keep_body)(slc_req_t *r);
    /* route_set_try_timeout bounds each upstream attempt to |ms| (0: no
     * bound). Expiry ends the attempt as SLC_ATTEMPT_TIMEOUT, reported to
     * on_upstream_result like any other outcome. PHASES: request filters
     * and upstream_select (the next attempt uses the new value). */
    slc_status_t (*route_set_try_timeout)(slc_req_t *r, uint64_t ms);
    /* cluster_usable_count: endpoints of |c| neither ejected nor failing
     * active health checks, now. O(1) unless an endpoint's state changed
     * since the last call (then one scan). THREAD: any worker. LIFETIME of
     * |c|: as for every cluster handle, its configuration generation. */
    uint32_t (*cluster_usable_count)(const slc_cluster_t *c);

    /* ---- ABI 1.4: identity and stream facts ----------------------------- */
    /* conn_peer_cert fills |out| (below out->struct_size) from the
     * connection's transport: SLC_OK, or SLC_ENOENT without a transport, a
     * transport without the member, or a peer that sent no certificate.
     * THREAD: the connection's worker. LIFETIME: connection. */
    slc_status_t (*conn_peer_cert)(slc_conn_t *c, slc_peer_cert_t *out);
    /* conn_secure: the connection's bytes are protected by its transport
     * (false without one, or when the transport passes plaintext through). */
    bool (*conn_secure)(slc_conn_t *c);
    /* req_fact_set records a named fact of the stream for later filters and
     * the access log ("rbac.policy", "rbac.audit", ...). Both strings are
     * copied into the stream's arena; setting a name again replaces its
     * value. SLC_ENOMEM past the arena's budget. PHASES: any stream hook.
     * req_fact_get: the value or SLC_STR_NULL. LIFETIME: stream. */
    slc_status_t (*req_fact_set)(slc_req_t *r, slc_str_t name, slc_str_t value);
    slc_str_t (*req_fact_get)(slc_req_t *r, slc_str_t name);
    /* metric_set_global sets worker |worker_id|'s shard of gauge |m| to
     * |v|: for a value one worker owns outright (a certificate's expiry),
     * where adding deltas would count twice while an old generation's
     * instance and its successor both report it. THREAD: that worker. */
    void (*metric_set_global)(int worker_id, slc_metric_t *m, int64_t v);
};

/* The table sizes older minors had: 1.0, 1.1 (= 1.2) and 1.3. A host's
 * struct_size is at least the size of its minor. */
#define SLC_HOST_SIZE_1_0 offsetof(slc_host_t, route_set_retry)
#define SLC_HOST_SIZE_1_1 (offsetof(slc_host_t, cfg_cluster_pool) + sizeof(void (*)(void)))
#define SLC_HOST_SIZE_1_3 offsetof(slc_host_t, conn_peer_cert)

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
