/* sluice filter SDK: what a filter module provides.
 *
 * A filter module is a shared object that exports exactly one symbol,
 * slc_filter_entry (see SLC_FILTER_DEFINE). The host calls it once per load
 * with its function table and receives a descriptor: the ABI the module was
 * built for, its name and version, and the hooks it implements. A NULL hook
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
 * OWNERSHIP: |ctx| is owned by the transport; the core calls |free| once
 * when the connection closes. */
typedef struct slc_transport {
    uint32_t struct_size;
    slc_status_t (*recv)(void *ctx, slc_conn_t *c, const uint8_t *wire, size_t len);
    slc_status_t (*send)(void *ctx, slc_conn_t *c, const uint8_t *plain, size_t len);
    /* shutdown emits a close_notify (or equivalent) with SLC_EMIT_WIRE. */
    void (*shutdown)(void *ctx, slc_conn_t *c);
    void (*free)(void *ctx);
    /* peer facts, borrowed from |ctx|; SLC_STR_NULL if unknown. */
    slc_str_t (*peer_identity)(void *ctx); /* e.g. a SPIFFE ID */
    slc_str_t (*sni)(void *ctx);
    slc_str_t (*alpn)(void *ctx);
} slc_transport_t;

/* slc_filter_desc_t is what a module's entry function returns. The host
 * checks abi_version and struct_size before reading anything else.
 * LIFETIME: static storage in the module. */
typedef struct slc_filter_desc {
    uint32_t abi_version; /* SLC_ABI_VERSION the module was built against */
    uint32_t struct_size; /* sizeof(slc_filter_desc_t) it was built with */
    const char *name;     /* module name, e.g. "router" */
    const char *version;  /* module version, e.g. "0.1.0" */

    /* config_new builds an instance from its YAML node |n| (the filter's
     * `config:` block; an empty map when absent). Report every problem with
     * slc_diag_error() against the offending node and return SLC_EINVAL.
     * OWNERSHIP: *out_cfg is owned by the filter; freed by config_free. */
    slc_status_t (*config_new)(const slc_host_t *h, const slc_cfg_node_t *n, void **out_cfg,
                               slc_diag_t *diag);
    void (*config_free)(void *cfg);

    /* worker_init/worker_fini give each worker its own mutable state for one
     * config instance. OWNERSHIP: *out_wctx owned by the filter. */
    slc_status_t (*worker_init)(void *cfg, int worker_id, void **out_wctx);
    void (*worker_fini)(void *cfg, void *wctx);

    /* on_connection runs at accept. SLC_STOP closes the connection (deny).
     * A filter may install a transport here. */
    slc_action_t (*on_connection)(void *cfg, void *wctx, slc_conn_t *c);

    /* request_new creates per-stream state. Allocate it from the request
     * arena (slc_arena_alloc). If NULL, the stream hooks receive |cfg| as
     * ctx. */
    slc_status_t (*request_new)(void *cfg, void *wctx, slc_req_t *r, void **out_ctx);

    /* Stream phases, in order. Request-side hooks run in chain order,
     * response-side hooks in reverse order. */
    slc_action_t (*on_request_headers)(void *ctx, slc_req_t *r);
    /* on_request_body sees each contiguous piece of request body as it
     * streams; |end| is true on the last call (possibly with an empty
     * chunk). The bytes are borrowed for the call only. */
    slc_action_t (*on_request_body)(void *ctx, slc_req_t *r, slc_str_t chunk, bool end);
    /* on_upstream_select picks an endpoint of the routed cluster with
     * slc_upstream_set_endpoint (the lb filter). */
    slc_action_t (*on_upstream_select)(void *ctx, slc_req_t *r);
    /* on_upstream_connect runs once a new upstream connection is open,
     * before any request bytes go out: install an upstream transport here. */
    slc_action_t (*on_upstream_connect)(void *ctx, slc_req_t *r, slc_conn_t *upstream);
    slc_action_t (*on_response_headers)(void *ctx, slc_req_t *r);
    slc_action_t (*on_response_body)(void *ctx, slc_req_t *r, slc_str_t chunk, bool end);
    /* on_complete always runs once per stream that reached request_new,
     * whatever happened (log, span, outlier stats). */
    void (*on_complete)(void *ctx, slc_req_t *r);

    /* ---- ABI 1.1 ------------------------------------------------------- */
    /* on_upstream_result runs after every upstream attempt of the stream
     * (retries included), in chain order, with the endpoint tried and what
     * came of it; |status| is the response status for SLC_ATTEMPT_RESPONSE,
     * else 0. For outlier detection and accounting; it cannot change the
     * stream. */
    void (*on_upstream_result)(void *ctx, slc_req_t *r, const slc_endpoint_t *e,
                               slc_attempt_result_t result, int status);
} slc_filter_desc_t;

/* SLC_FILTER_DEFINE(desc_var) defines the module's entry function. It keeps
 * |host| in the module-wide `slc_host` that the wrappers in host.h use. */
#define SLC_FILTER_DEFINE(desc)                                                                    \
    const slc_host_t *slc_host;                                                                    \
    __attribute__((visibility("default"))) const slc_filter_desc_t *SLC_FILTER_ENTRY(              \
        const slc_host_t *host);                                                                   \
    __attribute__((visibility("default"))) const slc_filter_desc_t *SLC_FILTER_ENTRY(              \
        const slc_host_t *host)                                                                    \
    {                                                                                              \
        slc_host = host;                                                                           \
        return &(desc);                                                                            \
    }

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
