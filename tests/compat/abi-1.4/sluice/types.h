/* sluice filter SDK: plain types shared by the host and filters.
 *
 * Plain C11 and the standard library only: no libevent, nghttp2 or BoringSSL
 * type crosses this boundary. Every handle is opaque.
 */
#ifndef SLUICE_TYPES_H
#define SLUICE_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* slc_status_t is SLC_OK or a negative error code. Predicates return bool
 * instead; no function returns data and a status in one int. */
typedef enum slc_status {
    SLC_OK = 0,
    SLC_ENOMEM = -1, /* arena budget exceeded */
    SLC_EINVAL = -2, /* bad argument or bad configuration */
    SLC_ENOENT = -3, /* no such header, cluster, ... */
    SLC_EAGAIN = -4, /* transport: needs more bytes */
    SLC_EIO = -5,    /* transport or peer failure */
    SLC_ESTATE = -6, /* not allowed in the current phase */
} slc_status_t;

/* slc_action_t is what a phase hook tells the chain runner. */
typedef enum slc_action {
    SLC_CONTINUE = 0, /* run the next filter */
    SLC_STOP = 1,     /* a local reply was sent (or the connection denied) */
    SLC_PAUSE = 2,    /* async work pending: call slc_resume() later */
} slc_action_t;

/* slc_str_t is a {ptr,len} view; ptr need not be NUL-terminated. Each
 * function that hands one out says who owns the bytes. */
typedef struct slc_str {
    const char *ptr;
    size_t len;
} slc_str_t;

#define SLC_STR(lit) ((slc_str_t){(lit), sizeof(lit) - 1})
#define SLC_STR_NULL ((slc_str_t){NULL, 0})

typedef enum slc_log_level {
    SLC_LOG_DEBUG = 0,
    SLC_LOG_INFO = 1,
    SLC_LOG_WARN = 2,
    SLC_LOG_ERROR = 3,
} slc_log_level_t;

/* Opaque handles. */
typedef struct slc_req slc_req_t;           /* one request/response stream */
typedef struct slc_conn slc_conn_t;         /* a downstream or upstream connection */
typedef struct slc_cfg_node slc_cfg_node_t; /* a node of the YAML tree */
typedef struct slc_diag slc_diag_t;         /* config build context + error sink */
typedef struct slc_cluster slc_cluster_t;
typedef struct slc_endpoint slc_endpoint_t;
typedef struct slc_metric slc_metric_t;
typedef struct slc_timer slc_timer_t;

/* Which header block a header function works on. */
typedef enum slc_hdrs {
    SLC_REQUEST_HEADERS = 0,
    SLC_RESPONSE_HEADERS = 1,
} slc_hdrs_t;

/* Request pseudo-headers (HTTP/2 names; HTTP/1.1 maps onto them). */
typedef enum slc_pseudo {
    SLC_PSEUDO_METHOD = 0,
    SLC_PSEUDO_PATH = 1, /* path and query, as received */
    SLC_PSEUDO_AUTHORITY = 2,
    SLC_PSEUDO_SCHEME = 3,
} slc_pseudo_t;

/* YAML node kinds. */
typedef enum slc_cfg_type {
    SLC_CFG_NULL = 0,
    SLC_CFG_SCALAR = 1,
    SLC_CFG_MAP = 2,
    SLC_CFG_SEQ = 3,
} slc_cfg_type_t;

/* Field kinds for slc_cfg_bind. */
typedef enum slc_field_kind {
    SLC_FIELD_END_ = 0,
    SLC_FIELD_STR_,      /* char * (config-arena, NUL-terminated) */
    SLC_FIELD_U32_,      /* uint32_t, range-checked with min/max */
    SLC_FIELD_BOOL_,     /* bool */
    SLC_FIELD_DURATION_, /* uint64_t milliseconds; "5s", "100ms", "1h", "1.5s" */
    SLC_FIELD_NODE_,     /* const slc_cfg_node_t *: bound by the filter itself */
    SLC_FIELD_ENUM_,     /* int: index into a NULL-terminated names array */
} slc_field_kind_t;

/* slc_cfg_field_t describes one key of a YAML map for slc_cfg_bind; build
 * tables with the SLC_FIELD_* macros in filter.h (designated initializers,
 * so members appended later start as zero in your table).
 * GROWTH: members may be appended in a minor. The host walks a table with
 * the stride of the minor the module was compiled with (it knows it from
 * the module's slc_filter_abi_version or descriptor), and reads members
 * past that stride as zero. The layout is frozen for 1.0-1.3 (the core
 * static-asserts it); a table need not carry a struct_size. */
typedef struct slc_cfg_field {
    slc_field_kind_t kind;
    const char *key;
    size_t offset;
    bool required;
    uint64_t min, max;        /* U32 and DURATION bounds; max 0 means none */
    const char *dflt;         /* default as YAML text, or NULL */
    const char *const *names; /* ENUM names */
} slc_cfg_field_t;

/* Response flags, Envoy's vocabulary (a bit set in slc_stream_info_t). */
enum {
    SLC_RF_UF = 1u << 0,    /* upstream connection failure */
    SLC_RF_UH = 1u << 1,    /* no healthy upstream */
    SLC_RF_UT = 1u << 2,    /* upstream request timeout */
    SLC_RF_UC = 1u << 3,    /* upstream connection termination */
    SLC_RF_UR = 1u << 4,    /* upstream remote reset */
    SLC_RF_NR = 1u << 5,    /* no route */
    SLC_RF_DC = 1u << 6,    /* downstream connection termination */
    SLC_RF_LR = 1u << 7,    /* local reset */
    SLC_RF_UO = 1u << 8,    /* upstream overflow (circuit breaker) */
    SLC_RF_DI = 1u << 9,    /* delay injected */
    SLC_RF_FI = 1u << 10,   /* fault injected */
    SLC_RF_RL = 1u << 11,   /* rate limited */
    SLC_RF_UAEX = 1u << 12, /* unauthorized (external/rbac) */
    SLC_RF_DPE = 1u << 13,  /* downstream protocol error */
    SLC_RF_SI = 1u << 14,   /* stream idle timeout */
    /* ABI 1.2 */
    SLC_RF_UPE = 1u << 15, /* upstream protocol error: malformed response, or a body cut short */
};

/* slc_stream_info_t is a snapshot of one stream's facts. Fields may be
 * appended; read them only below struct_size.
 * LIFETIME of the slc_str_t members: cluster and upstream name the stream's
 * generation's cluster and endpoint, valid until the stream ends; listener,
 * request_id and protocol likewise. Copy them to keep them longer. */
typedef struct slc_stream_info {
    uint32_t struct_size;
    uint32_t response_flags;    /* SLC_RF_* bits */
    int status;                 /* response status, 0 if none yet */
    uint64_t start_us;          /* wall clock at first byte of request, µs */
    uint64_t duration_us;       /* so far, or total once complete */
    uint64_t upstream_start_us; /* wall clock when sent upstream, 0 if never */
    uint64_t bytes_received;    /* request body bytes from downstream */
    uint64_t bytes_sent;        /* response body bytes to downstream */
    slc_str_t cluster;          /* chosen cluster name, empty if none */
    slc_str_t upstream;         /* chosen endpoint "ip:port", empty if none */
    slc_str_t listener;         /* listener name */
    slc_str_t request_id;       /* x-request-id */
    slc_str_t protocol;         /* "HTTP/1.1" */
    uint32_t attempts;          /* upstream attempts made */
    /* ABI 1.3: the trusted client address (the listener's
     * use_remote_address and xff_num_trusted_hops, as Envoy's connection
     * manager computes it): the peer's IP, or one a trusted proxy put in
     * x-forwarded-for. LIFETIME: the stream. */
    slc_str_t client_address;
} slc_stream_info_t;

/* Retry conditions (Envoy's / Istio's retryOn vocabulary), a bit set. */
enum {
    SLC_RETRY_CONNECT_FAILURE = 1u << 0,  /* connect refused, failed or timed out */
    SLC_RETRY_REFUSED_STREAM = 1u << 1,   /* HTTP/2 REFUSED_STREAM (no-op on HTTP/1.1) */
    SLC_RETRY_UNAVAILABLE = 1u << 2,      /* gRPC unavailable (no-op until gRPC) */
    SLC_RETRY_CANCELLED = 1u << 3,        /* gRPC cancelled (no-op until gRPC) */
    SLC_RETRY_RETRIABLE_STATUS = 1u << 4, /* a status in retriable_statuses */
    SLC_RETRY_5XX = 1u << 5,              /* any 5xx, a reset, or a per-try timeout */
    SLC_RETRY_GATEWAY_ERROR = 1u << 6,    /* 502, 503, 504, a reset or per-try timeout */
    SLC_RETRY_RESET = 1u << 7,            /* the upstream reset before a response */
};

/* slc_retry_policy_t is a route's retry decision (route_set_retry). Fields
 * may be appended; set struct_size = sizeof(slc_retry_policy_t).
 * OWNERSHIP: the caller's; route_set_retry copies the policy and the
 * |statuses| array into the stream before it returns. */
typedef struct slc_retry_policy {
    uint32_t struct_size;
    uint32_t max_retries;        /* retries after the first attempt; 0 = none */
    uint32_t retry_on;           /* SLC_RETRY_* bits */
    uint64_t per_try_timeout_ms; /* 0 = none (the route timeout still applies) */
    uint64_t backoff_base_ms;    /* exponential with full jitter, capped at 10x */
    /* The 1.1 form of the retriable statuses, kept for filters built
     * against 1.1 and 1.2 (whose struct_size stops after it). A 1.3 filter
     * uses |statuses| instead; it may also fill these (the first 8) for
     * hosts older than 1.3, which read only them. */
    uint16_t retriable_statuses[8];
    uint32_t nretriable_statuses;
    /* ---- ABI 1.3 ---- */
    /* statuses: |nstatuses| retriable statuses, any number. When non-NULL
     * (and below struct_size) the host uses it and ignores the 1.1 form. */
    const uint16_t *statuses;
    uint32_t nstatuses;
} slc_retry_policy_t;

/* What one upstream attempt came to (on_upstream_result). */
typedef enum slc_attempt_result {
    SLC_ATTEMPT_RESPONSE = 0,        /* a response head arrived (see status) */
    SLC_ATTEMPT_CONNECT_FAILURE = 1, /* refused, unreachable or connect timeout */
    SLC_ATTEMPT_RESET = 2,           /* lost before a complete response head */
    SLC_ATTEMPT_TIMEOUT = 3,         /* per-try or route timeout */
} slc_attempt_result_t;

/* slc_pool_options_t: connection-pool limits a filter sets on a cluster at
 * config time (cfg_cluster_pool), enforced by the core. 0 means "keep the
 * cluster's value" for timeouts and "unlimited" for limits. Fields may be
 * appended; set struct_size. */
typedef struct slc_pool_options {
    uint32_t struct_size;
    uint64_t connect_timeout_ms;
    uint64_t idle_timeout_ms;
    uint32_t max_requests_per_connection;
    uint32_t max_connections;      /* per cluster, all workers together */
    uint32_t max_pending_requests; /* streams waiting for a connection */
} slc_pool_options_t;

/* slc_peer_cert_t (ABI 1.4): what a transport knows of the peer's
 * certificate (conn_peer_cert). Fields may be appended; the caller sets
 * struct_size = sizeof(slc_peer_cert_t) and the host fills what lies below
 * it. A string the certificate does not carry is SLC_STR_NULL.
 * LIFETIME: every string and array: the connection's (the transport owns
 * the bytes and keeps them unchanged until it is freed). */
typedef struct slc_peer_cert {
    uint32_t struct_size;
    /* Istio's identity, from the one spiffe:// URI SAN: principal
     * "TD/ns/NS/sa/SA" (the URI without "spiffe://"), its trust domain and
     * namespace. A certificate with no SPIFFE URI SAN, or several, has no
     * principal (all three SLC_STR_NULL), as in Istio. */
    slc_str_t principal;
    slc_str_t trust_domain;
    slc_str_t ns;
    slc_str_t spiffe_id; /* "spiffe://" + principal */
    slc_str_t subject;   /* RFC 2253 form, e.g. "CN=a,O=b" */
    const slc_str_t *uri_sans;
    uint32_t nuri_sans;
    const slc_str_t *dns_sans;
    uint32_t ndns_sans;
    slc_str_t sha256_hex; /* lowercase hex SHA-256 of the DER certificate */
    int64_t not_before;   /* Unix seconds */
    int64_t not_after;    /* Unix seconds */
    /* The peer's leaf certificate as PEM, for x-forwarded-client-cert
     * "Cert=". */
    slc_str_t pem;
} slc_peer_cert_t;

typedef enum slc_metric_kind {
    SLC_METRIC_COUNTER = 0,
    SLC_METRIC_GAUGE = 1,
} slc_metric_kind_t;

#ifdef __cplusplus
}
#endif
#endif
