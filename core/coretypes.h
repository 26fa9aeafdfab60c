/* coretypes: the plain types the request path's modules share (workers,
 * listeners' sockets, downstream connections, streams, upstream
 * connections and pools, per-worker counters). Types only: each module's
 * functions are declared in its own header (worker.h, h1down.h, stream.h,
 * upstream.h, mirror.h, hostapi.h, wctx.h).
 *
 * THREADS: everything here belongs to exactly one worker and runs on its
 * event loop; nothing takes a lock. Cross-thread traffic is only: the
 * server's current-generation pointer (atomic), a notify pipe per worker,
 * endpoint counters (atomics), and stats shards (single writer).
 *
 * OWNERSHIP: a worker owns its dconns, their streams (one at a time on
 * HTTP/1.1), and its upstream pools. A stream's memory is its arena
 * (released in stream_finish). A dconn is freed by dconn_close once its
 * stream is gone.
 */
#ifndef SLUICE_CORETYPES_H
#define SLUICE_CORETYPES_H

#include "arena.h"
#include "gen.h"
#include "h1.h"
#include "h1body.h"
#include "h1w.h"
#include "log.h"
#include "sio.h"
#include "stats.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <pthread.h>
#include <sluice/util.h>
#include <string.h>

struct server;
struct worker;
struct dconn;
struct uconn;

/* lsock: one listener's sockets, one per worker (SO_REUSEPORT). Created by
 * the main thread; each worker owns and closes its own fd. Survives reloads
 * that keep the listener's address. */
typedef struct lsock {
    struct lsock *next;
    char *name;
    char *address;
    char *bound; /* actual "ip:port" (port 0 resolved) */
    int *fds;    /* [nworkers]; -1 once handed over and closed */
    _Atomic int worker_refs;
    bool in_use;            /* referenced by the current generation */
    log_limit_t accept_log; /* "accept failed" lines, shared by workers */
} lsock_t;

/* holder: a worker's hold on one generation. Streams and transport-bearing
 * connections count in |refs|; the worker drops the generation when it is
 * no longer current and refs reaches 0. */
typedef struct holder {
    gen_t *gen;
    size_t refs;
    size_t init_failures; /* filters whose worker_init failed here */
    bool current;
    struct holder *next; /* retired list */
} holder_t;

typedef struct lev {
    struct lev *next;
    struct worker *w;
    lsock_t *ls;
    struct evconnlistener *evl;
    struct event *resume; /* re-enables accepting after a pause (fd limit) */
} lev_t;

typedef struct upool {
    struct upool *next; /* hash chain */
    char addr[64];
    char *sig;          /* chain_t.up_sig (owned) */
    char *cluster;      /* owned: pools are per cluster (pool_get in upstream.c) */
    struct uconn *idle; /* LIFO of idle connections */
    size_t nidle;
} upool_t;

#define UPOOL_BUCKETS 64

/* Per-listener counters of one worker, looked up once per connection. */
typedef struct lstats {
    struct lstats *next;
    char *name;
    stat_t *conns_total, *conns_active, *req_class[6], *streams_active, *aborts;
    stat_t *accept_errors[4]; /* by reason: emfile, enfile, enobufs, other */
} lstats_t;

/* Per-cluster counters of one worker. */
typedef struct cstats {
    struct cstats *next;
    char *name;
    stat_t *requests, *connect_fail, *timeouts, *cx_total, *cx_active, *resets, *overflow, *pending;
    stat_t *faults[5];   /* by FAULT_* */
    stat_t *discards[4]; /* by DISCARD_* */
} cstats_t;

/* Upstream faults, counted in sluice_upstream_faults_total{cluster,flag}. */
enum { FAULT_UF, FAULT_UC, FAULT_UR, FAULT_UT, FAULT_UPE };
/* Pooled connections dropped because they spoke out of turn, counted in
 * sluice_upstream_pool_discards_total{cluster,reason}. */
enum { DISCARD_REUSE_READABLE, DISCARD_IDLE_READABLE, DISCARD_LEFTOVER, DISCARD_IDLE_TRIM };

typedef struct shadow shadow_t; /* mirror.c */
typedef struct h1x h1x_t;       /* upstream.c: an exchange on an HTTP/1.1 connection */

/* replay: the request body data already sent upstream (without the
 * client's framing: each attempt frames it anew), kept for a retry or the
 * mirror. The pieces live in the stream's arena, whose chunks each
 * worker recycles, so keeping a body costs no malloc; they go with the
 * stream. At most REPLAY_LIMIT bytes. */
typedef struct replay_piece {
    struct replay_piece *next;
    size_t len;
    char data[];
} replay_piece_t;

typedef struct replay {
    replay_piece_t *head, *tail;
    size_t len;
    bool on; /* a retry policy or a mirror wants the body kept */
} replay_t;

typedef struct worker {
    int id;
    struct server *srv;
    pthread_t thread;
    struct event_base *base;
    sio_loop_t sioloop;
    int notify[2];
    struct event *notify_ev;
    holder_t *cur;
    holder_t *retired;
    lev_t *levs;
    arena_pool_t arena_pool;
    struct event *trim_ev; /* returns what a burst took (worker.c on_trim) */
    size_t trim_debt;      /* streams served since the last malloc_trim */
    uint64_t ticks;        /* on_trim runs so far: the pools' clock */
    stats_shard_t *stats;
    lstats_t *lstats;
    cstats_t *cstats;
    upool_t *pools[UPOOL_BUCKETS];
    struct dconn *conns; /* all open downstream connections */
    shadow_t *shadows;   /* mirrored requests in flight */
    /* streams waiting for a connection, FIFO; pend_ev polls while non-empty
     * because connections freed on other workers do not notify us. */
    struct h1x *pend_head, *pend_tail;
    struct event *pend_ev;
    _Atomic size_t nconns; /* read by the main thread while draining */
    uint64_t rr;
    slcu_rng_t rng;
    bool draining;
    stat_t *streams_active;
    /* gen_dead: a generation's last reference went on this worker; hands it
     * back to the server (set by the server: the one call upward). */
    void (*gen_dead)(struct server *srv, gen_t *g);
    /* libevent common timeouts for the durations connections are armed with
     * again and again (header and idle timeouts): adding such a timer is a
     * list append instead of a heap insertion. Owned by the base. */
    struct {
        uint64_t ms;
        const struct timeval *tv;
    } ctos[8];
    int nctos;
} worker_t;

enum stream_state {
    ST_REQ_FILTERS,  /* running request filters (may be paused) */
    ST_UPSTREAM,     /* connecting / sending / waiting for the response head */
    ST_RESP_FILTERS, /* running response-header filters */
    ST_RESP_BODY,    /* streaming the response */
    ST_DONE,
};

struct down_ops;

struct slc_req {
    arena_t arena;
    worker_t *w;
    /* the downstream codec: its ops, its state for this stream, the
     * connection filters see, and its listener's counters */
    const struct down_ops *dops;
    void *down;
    slc_conn_t *down_conn;
    lstats_t *lst;
    holder_t *holder;
    gen_t *gen;
    glistener_t *gl;
    chain_t *chain;
    void **ctx; /* [chain->n]: per-filter stream state (or the filter's cfg) */
    int state;
    int phase;       /* PH_* being run */
    size_t phase_at; /* index into chain->ph[phase] */
    bool paused, in_chain, local_reply, closing_after;
    bool in_pump_req, in_pump_resp; /* re-entrancy guards */
    bool resp_read;                 /* the upstream response was read to its end */
    size_t ctx_upto;                /* chain positions below this have stream state */
    /* iterating: bit (1 << slc_hdrs_t) set while header_iterate walks that
     * block, so the host can refuse changes to it (they would shift or
     * grow the array under the walk). */
    unsigned iterating;

    /* request */
    slc_str_t method, path, authority, scheme;
    slc_str_t protocol; /* as the codec names it ("HTTP/1.1") */
    bool is_head;
    hdrs_t req_hdrs;
    hdrs_t req_trailers; /* a chunked request's trailer fields, once read */
    int req_body;        /* up_body_t: UB_NONE, UB_LENGTH (req_length), UB_STREAM */
    uint64_t req_length; /* the request's content-length, for every attempt's head */
    bool req_done;       /* whole request body read from the client */
    bool req_pumping;    /* body flows to the upstream */
    uint64_t req_bytes;

    /* routing */
    const slc_cluster_t *cluster;
    const slc_endpoint_t *ep;
    uint64_t timeout_ms;
    struct event *timeout_ev;
    cstats_t *cst;

    /* upstream: the current attempt's exchange (upstream.h), and its
     * connection while connection filters run on it */
    struct ureq *up;
    slc_conn_t *up_conn;
    uint32_t attempts;
    const slc_endpoint_t *counted_ep; /* endpoint whose active count we hold */

    /* retries and mirroring (ABI 1.1) */
    slc_retry_policy_t *retry; /* arena copy; NULL = none (the built-in policy) */
    uint64_t try_timeout_ms;   /* per attempt; 0 = none */
    /* A filter's own retry decision (ABI 1.3 attempt_retry), taken only
     * while on_upstream_result hooks run (in_result). */
    bool in_result, retry_asked;
    uint64_t retry_backoff_ms;
    uint32_t retries_done;
    const slc_endpoint_t *tried[8];
    uint32_t ntried;
    replay_t replay;    /* copy of the body bytes sent upstream (if on) */
    bool replay_broken; /* the body outgrew the replay buffer */
    struct event *try_ev, *backoff_ev;
    const slc_cluster_t *mirror;

    /* response */
    int status;
    slc_str_t reason;
    hdrs_t resp_hdrs;
    hdrs_t resp_trailers; /* the response's trailer fields, once read */
    int resp_body;        /* up_body_t (local replies: UB_LENGTH) */
    uint64_t resp_length; /* its content-length */
    bool resp_head_sent;
    uint64_t resp_bytes;
    slc_str_t local_body;

    /* facts */
    uint32_t flags;
    uint64_t start_us, upstream_start_us;
    char request_id[40];
    /* the trusted client address (use_remote_address, xff_num_trusted_hops):
     * a view of the connection's peer_ip or of an x-forwarded-for value in
     * the arena; lives as long as the stream. */
    slc_str_t client_addr;
    /* facts filters record for later filters and the access log (ABI 1.4
     * req_fact_set): a short list in the arena, newest first. */
    struct fact *facts;
};
typedef struct slc_req stream_t;

/* fact: one named stream fact; name and value are arena copies. */
typedef struct fact {
    struct fact *next;
    slc_str_t name, value;
} fact_t;

/* Both connection kinds are handed to filters as slc_conn_t; |kind| comes
 * first in each so the host can tell them apart. */
enum { CONN_DOWNSTREAM = 1, CONN_UPSTREAM = 2 };

typedef struct dconn {
    int kind; /* CONN_DOWNSTREAM */
    struct dconn *prev, *next;
    worker_t *w;
    sio_t io;
    lsock_t *ls;
    lstats_t *st;
    stream_t *s;
    struct event timer; /* idle / header-read timeout */
    struct event kick;  /* deferred "process the input again" */
    char peer[64], local[64], peer_ip[48];
    bool closing;       /* close once the output drains */
    bool codec_checked; /* the transport's ALPN was matched to this codec */
    bool eof;           /* the client half-closed: serve what is buffered, then close */
    bool head_seen;     /* some bytes of the next head have arrived */
    bool pipelined;     /* ... and they arrived before the last response ended */
    uint64_t progress;  /* stream_progress at the last idle check */
    /* Resumable head scan (a trickled head is parsed O(n), not O(n^2)):
     * bytes of |in| already scanned for the end of the head, the input
     * length at the last full parse (0: none yet), and how much of
     * CRLF CRLF the scanned bytes end with. */
    size_t hscan_pos, hscan_parsed;
    uint8_t hscan_match;
    uint64_t requests;
    /* The stream in flight's HTTP/1.1 facts (one at a time). */
    int minor;
    bool keep_alive, expect_continue, sent_100, resp_close, s_pipelined;
    h1body_rd_t req_rd;  /* strips the client's request framing */
    h1body_wr_t resp_wr; /* frames the response for the client */
    holder_t *pinned;
    /* dconn_listener's cache: the listener in generation |gl_gen| (an id;
     * 0 = none yet). Borrowed from that generation, which the worker holds
     * while it is current. */
    glistener_t *gl;
    uint64_t gl_gen;
} dconn_t;

typedef struct uconn {
    int kind;           /* CONN_UPSTREAM */
    struct uconn *next; /* idle list */
    worker_t *w;
    upool_t *pool;
    sio_t io;
    struct h1x *x; /* the exchange it serves; NULL while idle */
    cstats_t *cst;
    cl_state_t *clst; /* counted in clst->connections while open */
    bool connected, reused, keep_alive;
    uint64_t requests;
    uint64_t head_end;  /* io.sent once the current request head is on the wire */
    uint64_t idle_tick; /* w->ticks when it was last pooled */
    uint64_t pooled_us; /* the loop's cached time (now_us) when last pooled */
    holder_t *pinned;   /* a transport's code lives in this generation's module */
} uconn_t;

#endif
