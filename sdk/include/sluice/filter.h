/* sluice filter SDK: what a filter module provides.
 *
 * A filter module is a shared object that exports two symbols, both written
 * by SLC_FILTER_DEFINE: slc_filter_abi_version (ABI 1.3+: the SLC_ABI_VERSION
 * of the headers it was compiled with) and slc_filter_entry. The host reads
 * the version first and refuses an incompatible module without running any
 * of its code; then it calls the entry once per load with its function table
 * and receives a descriptor: the ABI the module was built for, its name and
 * version, and the hooks it implements. Modules built against 1.0-1.2 export
 * only the entry and are judged by their descriptor, as before. A NULL hook
 * means "not interested"; the chain runner never calls it and it costs
 * nothing.
 *
 * THREADS: config_new/config_free run on the main thread. worker_init and
 * worker_fini run on their worker's thread. Every other hook runs on the
 * worker thread that owns the connection, never concurrently for one stream.
 * A config object is shared read-only by all workers; per-worker mutable state
 * belongs in the worker context, per-stream state in the stream context.
 */
#ifndef SLUICE_FILTER_H
#define SLUICE_FILTER_H

#include <sluice/types.h>
#include <sluice/version.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct slc_host slc_host_t;

/* slc_transport_t is the byte transport a connection filter may install on a
 * connection (see slc_conn_set_transport): TLS in the mtls filter. The core
 * moves bytes through it and links no TLS library itself.
 *
 * The core hands ciphertext from the socket to |recv|; the transport emits
 * plaintext with slc_conn_emit(c, SLC_EMIT_PLAIN, ...) and any bytes for the
 * peer (handshake records, alerts) with slc_conn_emit(c, SLC_EMIT_WIRE, ...).
 * Plaintext the core wants to send goes through |send|, which emits wire
 * bytes. When the handshake completes the transport calls
 * slc_conn_transport_ready(c). Returning SLC_EIO closes the connection.
 *
 * GROWTH: set struct_size = sizeof(slc_transport_t). Members may be appended
 * in a minor; the core reads only the members that lie below struct_size
 * (slc_transport_has) and treats the rest as NULL. struct_size 0 (transports
 * built before 1.3 that left it unset) means the 1.0 layout, which has every
 * member up to |alpn|. |recv| and |send| are required (else
 * conn_set_transport returns SLC_EINVAL); every other member is optional:
 * without |shutdown| no close_notify is sent, without |free| the core never
 * releases |ctx|, without a fact function that fact is SLC_STR_NULL.
 *
 * OWNERSHIP: |ctx| is owned by the transport; the core calls |free| once
 * when the connection closes. The table itself is borrowed for the
 * connection's lifetime (static storage in the module): the core copies the
 * members below struct_size at install time.
 * THREAD: every member runs on the worker that owns the connection. */
typedef struct slc_transport {
    uint32_t struct_size;
    slc_status_t (*recv)(void *ctx, slc_conn_t *c, const uint8_t *wire, size_t len);
    slc_status_t (*send)(void *ctx, slc_conn_t *c, const uint8_t *plain, size_t len);
    /* shutdown emits a close_notify (or equivalent) with SLC_EMIT_WIRE. */
    void (*shutdown)(void *ctx, slc_conn_t *c);
    void (*free)(void *ctx);
    /* peer facts; SLC_STR_NULL if unknown. LIFETIME: the bytes belong to
     * |ctx| and must stay valid and unchanged until |free| runs, because
     * conn_peer_identity/conn_sni/conn_alpn hand them to filters for the
     * connection's lifetime. */
    slc_str_t (*peer_identity)(void *ctx); /* e.g. a SPIFFE ID */
    slc_str_t (*sni)(void *ctx);
    slc_str_t (*alpn)(void *ctx);
    /* ---- ABI 1.4 ---- */
    /* peer_cert fills |out| below out->struct_size; SLC_ENOENT when the
     * peer sent no certificate (or the handshake is not done). LIFETIME of
     * what it points at: as the other facts. */
    slc_status_t (*peer_cert)(void *ctx, slc_peer_cert_t *out);
    /* secure: the bytes of this connection are protected now. A transport
     * that found a plaintext peer (PERMISSIVE) and passes bytes through
     * answers false, and the core treats the connection as plaintext (its
     * scheme is http). Without the member, an installed transport is
     * secure. */
    bool (*secure)(void *ctx);
    /* failure_reason: why the transport failed (after recv or send
     * returned SLC_EIO), for logs and %UPSTREAM_TRANSPORT_FAILURE_REASON%,
     * e.g. "TLS_error:CERTIFICATE_VERIFY_FAILED". SLC_STR_NULL if none. */
    slc_str_t (*failure_reason)(void *ctx);
} slc_transport_t;

/* slc_struct_has tells whether struct |p| of type |type| (one carrying a
 * struct_size) has member |field| set: it lies below struct_size and is not
 * NULL. Both sides use it for members appended in later minors. */
#define slc_struct_has(p, type, field)                                                             \
    ((p)->struct_size >= offsetof(type, field) + sizeof((p)->field) && (p)->field != NULL)

/* SLC_TRANSPORT_SIZE_1_0: the transport layout of 1.0-1.3, implied by a
 * struct_size of 0 (a 1.3 transport may also set its sizeof, the same). */
#define SLC_TRANSPORT_SIZE_1_0 (offsetof(slc_transport_t, alpn) + sizeof(void (*)(void)))

/* slc_transport_has: |t| provides member |field| (struct_size 0 = 1.0). */
#define slc_transport_has(t, field)                                                                \
    (((t)->struct_size ? (t)->struct_size : SLC_TRANSPORT_SIZE_1_0) >=                             \
         offsetof(slc_transport_t, field) + sizeof((t)->field) &&                                  \
     (t)->field != NULL)

/* SLC_FILTER_NODELETE (ABI 1.4), written once in a module next to
 * SLC_FILTER_DEFINE, exports SLC_FILTER_NODELETE_SYMBOL: the host then
 * keeps the module mapped for the life of the process (RTLD_NODELETE), even
 * after a reload dropped its last instance. For modules that link a library
 * which registers thread-local destructors or atexit handlers (BoringSSL
 * does) and so must never be unmapped. Each load of a changed file stays
 * mapped too: such a module is meant to be replaced by a restart. */
#define SLC_FILTER_NODELETE_SYMBOL      slc_filter_nodelete
#define SLC_FILTER_NODELETE_SYMBOL_NAME "slc_filter_nodelete"
#define SLC_FILTER_NODELETE                                                                        \
    __attribute__((visibility("default"))) extern const uint32_t SLC_FILTER_NODELETE_SYMBOL;       \
    __attribute__((visibility("default"))) const uint32_t SLC_FILTER_NODELETE_SYMBOL = 1;

/* slc_filter_desc_t is what a module's entry function returns. The host
 * checks abi_version and struct_size before reading anything else, copies
 * the part below struct_size and never calls a hook beyond it.
 * LIFETIME: static storage in the module. */
typedef struct slc_filter_desc {
    uint32_t abi_version; /* SLC_ABI_VERSION the module was built against */
    uint32_t struct_size; /* sizeof(slc_filter_desc_t) it was built with */
    /* LIFETIME of name and version: static storage in the module. */
    const char *name;    /* module name, e.g. "router" */
    const char *version; /* module version, e.g. "0.1.0" */

    /* Every hook: THREAD as stated; the |r| and |c| handles it receives are
     * valid for the call, and for the stream or connection's life when kept
     * in that stream's or connection's own state. */

    /* config_new builds an instance from its YAML node |n| (the filter's
     * `config:` block; an empty map when absent). Report every problem with
     * slc_diag_error() against the offending node and return SLC_EINVAL.
     * THREAD: main. LIFETIME: |h| for the module's life; |n| and |diag| for
     * the call only. OWNERSHIP: *out_cfg is owned by the filter and freed
     * by config_free. After a failed config_new, config_free is not called:
     * release what you malloc'd before returning (cfg_alloc memory the host
     * frees either way). */
    slc_status_t (*config_new)(const slc_host_t *h, const slc_cfg_node_t *n, void **out_cfg,
                               slc_diag_t *diag);
    /* config_free: when the instance's generation is freed, after the last
     * stream using it ended. THREAD: main. */
    void (*config_free)(void *cfg);

    /* worker_init/worker_fini give each worker its own mutable state for one
     * config instance. THREAD: that worker. OWNERSHIP: *out_wctx owned by
     * the filter, freed in worker_fini. A failing worker_init makes every
     * stream through the filter on that worker a 500. */
    slc_status_t (*worker_init)(void *cfg, int worker_id, void **out_wctx);
    void (*worker_fini)(void *cfg, void *wctx);

    /* on_connection runs at accept. SLC_STOP closes the connection (deny).
     * A filter may install a transport here. THREAD: the connection's
     * worker. LIFETIME: |c| until the connection closes. */
    slc_action_t (*on_connection)(void *cfg, void *wctx, slc_conn_t *c);

    /* request_new creates per-stream state. Allocate it from the request
     * arena (slc_arena_alloc): OWNERSHIP the host's, LIFETIME stream. If
     * the hook is NULL, the stream hooks receive |cfg| as ctx. THREAD: the
     * stream's worker. */
    slc_status_t (*request_new)(void *cfg, void *wctx, slc_req_t *r, void **out_ctx);

    /* Stream phases, in order. Request-side hooks run in chain order,
     * response-side hooks in reverse order. THREAD for all of them: the
     * stream's worker, never two at once for one stream. LIFETIME: |r| and
     * |ctx| until on_complete returns. Which host entries each phase may
     * call is stated in host.h. */
    slc_action_t (*on_request_headers)(void *ctx, slc_req_t *r);
    /* on_request_body sees each contiguous piece of request body as it
     * streams; |end| is true on the last call (possibly with an empty
     * chunk). LIFETIME: the bytes are borrowed for the call only. */
    slc_action_t (*on_request_body)(void *ctx, slc_req_t *r, slc_str_t chunk, bool end);
    /* on_upstream_select picks an endpoint of the routed cluster with
     * slc_upstream_set_endpoint (the lb filter); once per attempt. */
    slc_action_t (*on_upstream_select)(void *ctx, slc_req_t *r);
    /* on_upstream_connect runs once a new upstream connection is open,
     * before any request bytes go out: install an upstream transport here.
     * LIFETIME: |upstream| for the call (pooled connections outlive the
     * stream; keep no handle). */
    slc_action_t (*on_upstream_connect)(void *ctx, slc_req_t *r, slc_conn_t *upstream);
    /* on_response_headers: the response head (the upstream's or a local
     * reply), before it is sent: the last point to change it. */
    slc_action_t (*on_response_headers)(void *ctx, slc_req_t *r);
    /* on_response_body: as on_request_body, for the response. */
    slc_action_t (*on_response_body)(void *ctx, slc_req_t *r, slc_str_t chunk, bool end);
    /* on_complete always runs once per stream that reached request_new,
     * whatever happened (log, span, outlier stats). The stream's memory is
     * released after it returns. */
    void (*on_complete)(void *ctx, slc_req_t *r);

    /* ---- ABI 1.1 ------------------------------------------------------- */
    /* on_upstream_result runs after every upstream attempt of the stream
     * (retries included), in chain order, with the endpoint tried and what
     * came of it; |status| is the response status for SLC_ATTEMPT_RESPONSE,
     * else 0. For outlier detection and accounting; it cannot change the
     * stream. THREAD: the stream's worker. LIFETIME: |e|: stream. */
    void (*on_upstream_result)(void *ctx, slc_req_t *r, const slc_endpoint_t *e,
                               slc_attempt_result_t result, int status);

    /* ---- ABI 1.5 ------------------------------------------------------- */
    /* on_reopen runs when the operator asks files to be reopened (SIGUSR1,
     * after logrotate moved them): reopen what the instance writes to.
     * It must not block on the instance's own writes: set a flag that the
     * writer acts on. THREAD: main. */
    void (*on_reopen)(void *cfg);
} slc_filter_desc_t;

/* SLC_FILTER_DEFINE(desc_var) defines the module's entry function and (ABI
 * 1.3) its exported ABI constant. The entry keeps |host| in the module-wide
 * `slc_host` that the wrappers in host.h use. */
#define SLC_FILTER_DEFINE(desc)                                                                    \
    __attribute__((visibility("default"))) extern const uint32_t SLC_FILTER_ABI_SYMBOL;            \
    __attribute__((visibility("default"))) const uint32_t SLC_FILTER_ABI_SYMBOL = SLC_ABI_VERSION; \
    const slc_host_t *slc_host;                                                                    \
    __attribute__((visibility("default"))) const slc_filter_desc_t *SLC_FILTER_ENTRY(              \
        const slc_host_t *host);                                                                   \
    __attribute__((visibility("default"))) const slc_filter_desc_t *SLC_FILTER_ENTRY(              \
        const slc_host_t *host)                                                                    \
    {                                                                                              \
        slc_host = host;                                                                           \
        return &(desc);                                                                            \
    }

/* SLC_FILTER_DESC_SIZE_1_0: the descriptor of 1.0 (everything before
 * on_upstream_result); 1.1 to 1.4 end after on_upstream_result. */
#define SLC_FILTER_DESC_SIZE_1_0 offsetof(slc_filter_desc_t, on_upstream_result)
#define SLC_FILTER_DESC_SIZE_1_4 offsetof(slc_filter_desc_t, on_reopen)

/* Field-table builders for slc_cfg_bind. */
#define SLC_FIELD_STR(k, type, member, ...)                                                        \
    {                                                                                              \
        .kind = SLC_FIELD_STR_, .key = (k), .offset = offsetof(type, member), __VA_ARGS__          \
    }
#define SLC_FIELD_U32(k, type, member, ...)                                                        \
    {                                                                                              \
        .kind = SLC_FIELD_U32_, .key = (k), .offset = offsetof(type, member), __VA_ARGS__          \
    }
#define SLC_FIELD_BOOL(k, type, member, ...)                                                       \
    {                                                                                              \
        .kind = SLC_FIELD_BOOL_, .key = (k), .offset = offsetof(type, member), __VA_ARGS__         \
    }
#define SLC_FIELD_DURATION(k, type, member, ...)                                                   \
    {                                                                                              \
        .kind = SLC_FIELD_DURATION_, .key = (k), .offset = offsetof(type, member), __VA_ARGS__     \
    }
#define SLC_FIELD_NODE(k, type, member, ...)                                                       \
    {                                                                                              \
        .kind = SLC_FIELD_NODE_, .key = (k), .offset = offsetof(type, member), __VA_ARGS__         \
    }
#define SLC_FIELD_ENUM(k, type, member, nm, ...)                                                   \
    {                                                                                              \
        .kind = SLC_FIELD_ENUM_, .key = (k), .offset = offsetof(type, member), .names = (nm),      \
        __VA_ARGS__                                                                                \
    }
#define SLC_FIELD_END                                                                              \
    {                                                                                              \
        .kind = SLC_FIELD_END_                                                                     \
    }

#ifdef __cplusplus
}
#endif
#endif
