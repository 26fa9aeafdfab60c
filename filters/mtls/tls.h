/* tls: the mtls filter's TLS engine on BoringSSL — contexts built from
 * certificate files, and the slc_transport_t that runs a connection's TLS on
 * memory BIOs inside the worker's event loop.
 *
 * This file and tls.c are all of sluice that sees BoringSSL. The engine
 * knows nothing of streams or YAML: mtls.c binds the config, picks a
 * context per connection and installs the transport; the fuzz target
 * (tests/fuzz/fuzz_tls.c) drives the same transport with a stub host.
 *
 * OWNERSHIP: a tls_bundle_t owns every SSL_CTX in it and is immutable once
 * published; bundles are freed only when the filter instance is (a
 * connection's SSL holds its own reference to its SSL_CTX, so a retired
 * bundle's contexts live on while connections use them). A tconn_t is owned
 * by the core once installed (freed through slc_transport_t.free).
 * THREADS: bundles are built on the main thread or the watcher thread and
 * read by workers; a tconn_t lives on its connection's worker.
 */
#ifndef SLUICE_MTLS_TLS_H
#define SLUICE_MTLS_TLS_H

#include <sluice/filter.h>
#include <sluice/host.h>

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Server modes (PeerAuthentication and Gateway TLS). */
enum { SM_DISABLE, SM_PERMISSIVE, SM_STRICT, SM_SIMPLE, SM_MUTUAL };
/* Upstream modes (DestinationRule tls.mode). */
enum { UM_DISABLE, UM_SIMPLE, UM_MUTUAL, UM_ISTIO_MUTUAL };

/* Why a handshake failed: the label of the failure counter. */
enum {
    FR_PLAINTEXT,    /* a plaintext peer where only TLS is allowed */
    FR_NO_CERT,      /* the client sent no certificate */
    FR_BAD_CERT,     /* the peer's chain did not verify */
    FR_EXPIRED,      /* the peer's certificate expired (or is not yet valid) */
    FR_VERSION,      /* no common protocol version (TLS 1.1 and older) */
    FR_SAN_MISMATCH, /* upstream identity not one of subject_alt_names */
    FR_PEER_ALERT,   /* the peer aborted (e.g. it rejected our certificate) */
    FR_OTHER,
    FR_N
};
extern const char *const tls_reason_names[FR_N];

/* tls_files_t: where one certificate comes from. */
typedef struct tls_files {
    const char *chain, *key, *ca, *ocsp; /* NULL = not configured */
} tls_files_t;

/* tls_params_t: protocol settings shared by every context of an instance. */
typedef struct tls_params {
    uint16_t min_version, max_version; /* TLS1_2_VERSION / TLS1_3_VERSION */
    const char *ciphers;               /* TLS 1.2 suites, ':'-separated */
    const char *curves;                /* ':'-separated */
} tls_params_t;

/* One SNI server: the names it answers and its context. */
typedef struct tls_srv {
    char **hosts; /* lower case; "*.example.com" wildcards */
    size_t nhosts;
    SSL_CTX *ctx;
    int64_t not_after;
} tls_srv_t;

/* One upstream origination entry (a cluster). */
typedef struct tls_up {
    const slc_cluster_t *cluster;
    int mode; /* UM_* */
    SSL_CTX *ctx;
    char *sni;   /* NULL: none */
    char **sans; /* expected URI or DNS SANs; none = any verified peer */
    size_t nsans;
    size_t idx; /* slot in each worker's session cache */
} tls_up_t;

typedef struct tls_bundle {
    SSL_CTX *dflt; /* the listener's own certificate; NULL if no server mode */
    tls_srv_t *srv;
    size_t nsrv;
    tls_up_t *up;
    size_t nup;
    int64_t not_after;        /* the default certificate's */
    char *own_uri;            /* first URI SAN of our own certificate (XFCC By=) */
    uint64_t fingerprint;     /* of the files it was built from (change detection) */
    struct tls_bundle *older; /* every bundle an instance built, newest first */
} tls_bundle_t;

/* Per-worker state the transport needs: metrics and the upstream session
 * cache (one SSL_SESSION per upstream entry). Owned by mtls.c. */
typedef struct tls_worker {
    int wid;
    SSL_SESSION **sess;
    size_t nsess;
    /* counters, NULL-safe */
    slc_metric_t *m_hs[2], *m_resumed[2], *m_fail[FR_N], *m_plain;
} tls_worker_t;

/* Errors go to |err| (a sentence naming the file) and NULL is returned. */
SSL_CTX *tls_server_ctx(const tls_files_t *f, const tls_params_t *p, bool verify_client,
                        int64_t *not_after, char **own_uri, char *err, size_t errlen);
SSL_CTX *tls_client_ctx(const tls_files_t *f, const tls_params_t *p, bool istio_alpn, char *err,
                        size_t errlen);
/* tls_bundle_free frees |b| and every older bundle chained to it. */
void tls_bundle_free(tls_bundle_t *b);
/* tls_bundle_link_sni installs the SNI callback that moves a handshake
 * from b->dflt to the server whose hosts match. */
void tls_bundle_link_sni(tls_bundle_t *b);
/* tls_host_match: |pattern| ("a.b" or "*.b", lower case) matches |name|. */
bool tls_host_match(const char *pattern, const char *name, size_t len);

/* tls_server_new / tls_client_new make a transport context for a
 * connection; NULL on failure. |permissive|: a first byte that is not a TLS
 * handshake record makes the connection plaintext (PERMISSIVE). */
void *tls_server_new(SSL_CTX *ctx, bool permissive, tls_worker_t *w);
void *tls_client_new(const tls_up_t *up, tls_worker_t *w);
/* tls_client_start sends the ClientHello (after install). */
slc_status_t tls_client_start(void *t, slc_conn_t *c);

/* The transport table (struct_size = sizeof(slc_transport_t)). */
extern const slc_transport_t tls_transport;

/* tls_peer_cert_of: the peer facts of an established tconn (for the
 * fuzz target and tests); SLC_ENOENT without a certificate. */
slc_status_t tls_peer_cert_of(void *t, slc_peer_cert_t *out);

/* The host table the engine calls (conn_emit, conn_transport_ready,
 * metric_add_global); set by the module entry, or by a fuzz target. */
extern const slc_host_t *slc_host;

#endif
