/* gen: an immutable, reference-counted configuration generation.
 *
 * A generation is everything a stream needs from the configuration: its
 * clusters and endpoints, the filter instances (module + config object),
 * and per listener the filter chain, pre-split per phase so the chain runner
 * never calls an empty hook.
 *
 * LIFETIME: built on the main thread (gen_build). The server holds one
 * reference while it is current; each worker holds one while it still has
 * streams or transport-bearing connections on it (see worker.h). When the
 * last reference goes, the worker that dropped it hands it back to the main
 * thread, which calls gen_free (config_free must run on the main thread).
 */
#ifndef SLUICE_GEN_H
#define SLUICE_GEN_H

#include "conf.h"
#include "log.h"
#include "module.h"
#include "stats.h"

#include <stdatomic.h>
#include <sys/socket.h>

#define SLC_NO_WRAPPERS
#include <sluice/host.h>

struct lsock;

/* kept_t heads state that outlives generations: kept in a main-thread list
 * keyed by |key| and freed when the last generation using it lets go. */
typedef struct kept {
    struct kept *next;
    char *key;
    int gens; /* generations using it (main thread only) */
} kept_t;

/* ep_state: what an endpoint accumulates at run time, shared by all
 * workers (atomics) and kept across generations for the same cluster name
 * and address, so a reload neither forgets an ejection nor resets counts.
 * Created and freed on the main thread (refcounted by generations). */
typedef struct ep_state {
    kept_t kept;                    /* key "cluster|ip:port"; must be first */
    _Atomic uint32_t active;        /* live requests, all workers */
    _Atomic uint64_t ejected_until; /* now_ms clock; 0 = not ejected */
    _Atomic bool hc_unhealthy;      /* failed active health checks */
    uint32_t hc_ok, hc_fail;        /* consecutive results (main thread only) */
} ep_state_t;

/* cl_state: a cluster's run-time counters, shared by workers and kept
 * across generations (like ep_state). */
typedef struct cl_state {
    kept_t kept;                  /* key: the cluster name; must be first */
    _Atomic uint32_t connections; /* open upstream connections, all workers */
    _Atomic uint32_t pending;     /* streams waiting for a connection */
    /* Bumped whenever an endpoint of the cluster is ejected, returned early
     * or changes health-check state: cached usable counts are stale. */
    _Atomic uint64_t health_version;
    log_limit_t fault_log; /* "upstream fault" lines, shared by workers */
} cl_state_t;

/* ep_pool_slot: one worker's upstream pool for an endpoint, found for the
 * chain whose up_sig is |sig| (a pointer into this generation). */
typedef struct ep_pool_slot {
    const char *sig;
    void *pool; /* upool_t *, owned by the worker (freed at its exit) */
} ep_pool_slot_t;

struct slc_endpoint {
    char addr[64]; /* "ip:port" */
    struct sockaddr_storage sa;
    int salen;
    struct slc_cluster *cluster;
    size_t index;
    ep_state_t *st;
    /* [nworkers]: set lazily by each worker alone, so the request path
     * finds its pool without hashing the address (a different chain's
     * signature falls back to the lookup). Only the array is the
     * generation's. */
    ep_pool_slot_t *wpool;
};

/* gen_now_ms: the monotonic clock endpoint ejections are measured in. */
uint64_t gen_now_ms(void);
static inline bool endpoint_usable(const struct slc_endpoint *e, uint64_t now)
{
    return !atomic_load_explicit(&e->st->hc_unhealthy, memory_order_relaxed) &&
           atomic_load_explicit(&e->st->ejected_until, memory_order_relaxed) <= now;
}

struct slc_cluster {
    const char *name; /* tree-arena */
    const conf_cluster_t *conf;
    /* Effective pool options: the cluster's own, overridden by the filter
     * that called cfg_cluster_pool (pool_owner). */
    slc_pool_options_t pool;
    const char *pool_owner;
    cl_state_t *st;
    struct slc_endpoint *eps;
    size_t neps;
    size_t index; /* position in gen->clusters */
    /* cluster_usable_count's cache, shared by the workers: the count, the
     * cl_state health_version it was computed at (0: never) and when the
     * first ejection counted in it ends. Recomputed by whichever worker
     * finds it stale; two at once store the same answer. */
    _Atomic uint64_t usable_ver, usable_until;
    _Atomic uint32_t usable;
    /* [nworkers]: each worker's counters for this cluster (a cstats_t *),
     * set lazily by that worker alone, so the request path finds them
     * without a lookup by name. The counters are the worker's and outlive
     * the generation; only this array is the generation's. */
    void **wstats;
};

typedef struct finst_metric {
    struct slc_metric *next;
} finst_metric_t;

/* slc_metric: a filter-registered series; workers cache their stat_t. */
struct slc_metric {
    struct slc_metric *next;
    char *key;
    slc_metric_kind_t kind;
    stat_t **per_worker; /* [nworkers], filled lazily by each worker itself */
};

typedef struct finst {
    const char *name; /* instance name (tree-arena) */
    const conf_filter_t *conf;
    module_t *mod;
    slc_filter_desc_t desc; /* copy, zero-extended to our struct size */
    void *cfg;
    void **wctx;      /* [nworkers], set by each worker in worker_init */
    uint8_t *wfailed; /* [nworkers], 1 where worker_init failed */
    struct slc_metric *metrics;
    void **allocs; /* cfg_alloc blocks, freed after config_free */
    size_t nallocs, capallocs;
} finst_t;

enum {
    PH_REQ_HEADERS,
    PH_REQ_BODY,
    PH_UP_SELECT,
    PH_UP_CONNECT,
    PH_RESP_HEADERS, /* stored in reverse chain order */
    PH_RESP_BODY,    /* reverse */
    PH_COMPLETE,     /* reverse */
    PH_CONNECTION,
    PH_UP_RESULT, /* chain order */
    PH_COUNT
};

typedef struct chain {
    finst_t **f; /* in chain order */
    size_t n;
    /* ph[p] lists chain positions implementing phase p; nph[p] entries. */
    uint16_t *ph[PH_COUNT];
    size_t nph[PH_COUNT];
    uint16_t *with_ctx; /* positions having request_new */
    size_t nwith_ctx;
    /* up_sig keys upstream pools: "" when no filter touches upstream
     * connections; otherwise those filters and the generation, so a
     * connection a transport filter set up is only reused by streams of the
     * same chain and configuration. */
    char *up_sig;
} chain_t;

typedef struct glistener {
    const conf_listener_t *conf;
    chain_t chain;
    struct lsock *lsock;
} glistener_t;

typedef struct gen {
    _Atomic int refs;
    uint64_t id;
    conf_t *conf;
    slc_cluster_t *clusters;
    size_t nclusters;
    finst_t *filters;
    size_t nfilters;
    glistener_t *listeners;
    size_t nlisteners;
    int nworkers;
} gen_t;

/* gen_build builds a generation from |conf| (taking ownership of it on
 * success and on failure). Errors go to |d|; NULL if any. */
gen_t *gen_build(conf_t *conf, int nworkers, const slc_host_t *host, slc_diag_t *d);
/* gen_free: main thread, refs == 0, every worker_fini already run. */
void gen_free(gen_t *g);
void gen_ref(gen_t *g);
/* gen_unref returns true if that was the last reference. */
bool gen_unref(gen_t *g);

slc_cluster_t *gen_cluster(const gen_t *g, const char *name, size_t len);

/* cluster_usable_count: endpoints of |c| neither ejected nor failing health
 * checks at |now| (gen_now_ms clock). O(1) while nothing changed; a scan of
 * the endpoints once after an ejection, a return or a health flip. Any
 * thread. */
uint32_t cluster_usable_count(struct slc_cluster *c, uint64_t now);
/* cluster_health_changed: the usable set of |st|'s cluster changed. */
static inline void cluster_health_changed(cl_state_t *st)
{
    atomic_fetch_add_explicit(&st->health_version, 1, memory_order_release);
}

/* gen_set_resolver: where `resolution: dns` names get their addresses (the
 * server's DNS cache); unset, a blocking getaddrinfo. Main thread. */
typedef const char *const *(*gen_resolver_fn)(void *arg, const char *host, size_t *n);
void gen_set_resolver(gen_resolver_fn fn, void *arg);
glistener_t *gen_listener(const gen_t *g, const char *name);

#endif
