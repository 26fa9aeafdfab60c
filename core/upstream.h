/* upstream: a worker's pools of connections to endpoints, and the one way
 * the core sends a request upstream and gets its response back: an
 * exchange (ureq_t), driven through its ops table (up_ops_t) and reporting
 * through the caller's events (up_events_t).
 *
 * HTTP/1.1 connections implement the table now: an exchange takes a pooled
 * connection, a new one, or a place in the worker's pending queue, frames
 * the request body it is given and strips the response body's framing, so
 * the caller sees data only. An HTTP/2 stream on a shared connection can
 * implement the same table. The pool never sees the caller (a stream, a
 * mirror): it knows an opaque |ctx| and the events to call with it.
 *
 * OWNERSHIP: an exchange is allocated in the caller's arena (up_target_t.
 * arena) and lives until the caller ends it with ops->finish, which it must
 * do before that arena goes. The pool owns the connections.
 * RE-ENTRANCY: every event may end the caller (and free the arena): the
 * pool touches neither the exchange nor its connection after calling one.
 * THREAD: the worker's.
 */
#ifndef SLUICE_UPSTREAM_H
#define SLUICE_UPSTREAM_H

#include "arena.h"
#include "h1body.h"
#include "h1w.h"
#include "sio.h"
#include "gen.h"

#include <event2/buffer.h>

struct worker;
struct cstats;
struct holder;

/* How a message's body is known to end. */
typedef enum up_body {
    UB_NONE,   /* no body */
    UB_LENGTH, /* |length| bytes */
    UB_STREAM, /* until its end is signalled (chunked, a close, an END_STREAM) */
} up_body_t;

/* up_req_t: a request head to send. Views owned by the caller, read during
 * send_head only. Hop-by-hop fields and content-length in |hdrs| are
 * skipped: the codec writes its own framing. */
typedef struct up_req {
    slc_str_t method, path;
    slc_str_t authority; /* empty: the endpoint's address is used */
    const hdr_t *hdrs;
    size_t nhdrs;
    up_body_t body;
    uint64_t length;
} up_req_t;

/* up_head_t: a final response head, hop-by-hop fields (and what Connection
 * names) already dropped. LIFETIME: everything is in the exchange's arena
 * (the caller's) and stays as long as it: the views point into one copy of
 * the head, and |hdrs| is an array of |hdrs_cap| entries the caller may
 * adopt as its header list (no copy) and grow in place. */
typedef struct up_head {
    int status;
    slc_str_t reason; /* empty: none sent */
    hdr_t *hdrs;
    size_t nhdrs, hdrs_cap;
    up_body_t body;
    uint64_t length;
} up_head_t;

/* up_fail_t: why an exchange ended without (the rest of) a response. The
 * fault, if any, is counted and logged already. */
typedef struct up_fail {
    slc_attempt_result_t res; /* for on_upstream_result */
    int status;               /* what to answer if nothing else is tried */
    uint32_t flag;            /* SLC_RF_* */
    const char *body;         /* the local reply's text */
    bool final;               /* no retry may follow (a protocol refusal) */
    /* A pooled connection closed as it was reused, before any byte of a
     * response: the request may not have reached the upstream, so an
     * idempotent one can go again on a fresh connection. */
    bool reused_closed;
} up_fail_t;

/* up_events_t: what the pool reports to the caller of an exchange. */
typedef struct up_events {
    /* The exchange has a connection: a |fresh| one just opened (the caller
     * may run its connection filters on |conn|, e.g. to install a
     * transport) or a pooled one (they ran when it opened). The caller
     * then calls ops->send_head. */
    void (*connected)(void *ctx, slc_conn_t *conn, bool fresh);
    /* A final response head (interim ones are the pool's to drop). */
    void (*head)(void *ctx, const up_head_t *h);
    /* Response body data, its end, or the upstream's close is there to
     * read with ops->recv_next. */
    void (*readable)(void *ctx);
    /* The request body may go on (what was queued drained). */
    void (*writable)(void *ctx);
    /* The exchange is over without a usable response; ops->finish is still
     * the caller's to call (a no-op on the connection, which is gone). */
    void (*failed)(void *ctx, const up_fail_t *f);
} up_events_t;

/* up_target_t: where an exchange goes and on whose behalf. Views, read by
 * upstream_request; |ep|, |cst| and |holder| must outlive the exchange. */
typedef struct up_target {
    const slc_endpoint_t *ep;
    const char *sig;       /* connection-phase chain signature (chain_t.up_sig) */
    struct cstats *cst;    /* counters of the cluster as the caller sees it */
    struct holder *holder; /* pinned by a connection that gets a transport */
    arena_t *arena;        /* the exchange's memory */
    bool is_head;          /* a HEAD request: the response has no body */
    bool fresh;            /* never a pooled connection */
    /* A health check: a fresh connection outside the cluster's limits and
     * counters (|cst| may be NULL), never pooled, no fault logged. */
    bool probe;
} up_target_t;

typedef struct ureq ureq_t;

/* up_ops_t: what the caller does with an exchange. */
typedef struct up_ops {
    /* Queues the request head, once the exchange is connected. Returns 0,
     * or the status to answer when it cannot be written (431: no room for
     * it; 500: an internal error); no event is called then. */
    int (*send_head)(ureq_t *u, const up_req_t *r);
    /* Moves the first |n| bytes of |src| out as body data, framed. */
    void (*send_data)(ureq_t *u, struct evbuffer *src, size_t n);
    /* Copies |n| bytes of body data at |p| out, framed. */
    void (*send_bytes)(ureq_t *u, const void *p, size_t n);
    /* The request body is complete; |n| trailer fields go with its end if
     * the framing can carry them (views, read during the call). */
    void (*send_end)(ureq_t *u, const hdr_t *tr, size_t n);
    /* Bytes queued and not yet written: the caller stops feeding body data
     * above its high-water mark and waits for writable. */
    size_t (*send_pending)(ureq_t *u);
    /* Response body, as h1body_rd_next: H1B_DATA leaves *n bytes of data at
     * the front of *src, to take (move or drain) and report with recv_took.
     * Once the upstream closed and its bytes are read: H1B_END for a body
     * that ends with the close, H1B_ERROR ("eof") for one cut short. */
    h1body_res_t (*recv_next)(ureq_t *u, struct evbuffer **src, size_t *n, const char **reason);
    void (*recv_took)(ureq_t *u, size_t n);
    /* After recv_next said H1B_END: the response's trailer fields into
     * |out| (the exchange's arena; none leaves it empty). */
    void (*recv_trailers)(ureq_t *u, hdrs_t *out);
    /* Ends the exchange: a pending one leaves the queue; the connection is
     * pooled if |reuse| and the response was complete and the connection
     * can carry another, else closed. Once; the exchange is dead after. */
    void (*finish)(ureq_t *u, bool reuse);
} up_ops_t;

/* ureq_t: the public face of an exchange (the pool's state follows it). */
struct ureq {
    const up_ops_t *ops;
};

/* upstream_new makes an exchange for |t| reporting to |ev| with |ctx|; NULL
 * when the arena is exhausted. Nothing happens until upstream_start. */
ureq_t *upstream_new(struct worker *w, const up_target_t *t, const up_events_t *ev, void *ctx);
/* upstream_start gives the exchange a pooled connection (connected is
 * called at once), a new one, or a place in the pending queue. Events may
 * run before it returns (connected; failed with 503 UO past
 * max_pending_requests, 502 UF when a connect fails at once). */
void upstream_start(ureq_t *u);

/* upstream_fault counts fault |kind| (FAULT_*) against |cst| and logs it,
 * at most once a second per cluster. |ep| may be NULL. */
void upstream_fault(struct cstats *cst, const slc_cluster_t *c, const slc_endpoint_t *ep, int kind);

void upstream_worker_init(struct worker *w);
void upstream_pools_free(struct worker *w);
/* upstream_pools_retain closes idle connections of clusters |g| no longer
 * has: their cluster state is freed with the last generation that had it. */
void upstream_pools_retain(struct worker *w, const gen_t *g);
/* upstream_release_idle_for_waiters closes this worker's idle connections
 * to clusters whose limit makes streams wait elsewhere. */
void upstream_release_idle_for_waiters(struct worker *w);
/* upstream_pools_trim closes idle connections that no exchange took for a
 * whole tick, keeping the |keep| most recently used of each pool. Returns
 * how many it closed. */
size_t upstream_pools_trim(struct worker *w, size_t keep);

#endif
