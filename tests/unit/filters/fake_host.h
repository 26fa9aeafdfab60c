/* fake_host: an in-memory slc_host_t for filter unit tests.
 *
 * A filter's unit test links the filter's own sources, this file, cmocka and
 * the core's config tree and binder (core/cfgtree.c, from sluice_core): the
 * fake host binds with the core's binder, so a filter's config binds under
 * test exactly as it does in sluice. The filter's SLC_FILTER_DEFINE provides
 * `slc_host` and slc_filter_entry(); a test gets the descriptor with
 *
 *     const slc_filter_desc_t *desc = slc_filter_entry(&fake_host_table);
 *
 * and then drives the hooks itself or through the fake_inst_* helpers.
 *
 * What the fake models:
 *   - config trees built in C (fake_map / fake_seq / fake_scalar) out of the
 *     core's own nodes (struct slc_cfg_node of core/cfgtree.h), with key
 *     paths like "virtual_hosts[0].routes[1].route.cluster" and the line and
 *     column a block-style "fake.yaml" of the tree would give them;
 *   - the core's node accessors, cfg_bind, cfg_duration_ms, diag_verror and
 *     diag_vwarn as the host table's entries, so defaults, ranges, size
 *     suffixes, enums, unknown keys ("did you mean") and every message's
 *     wording are the core's;
 *   - a diag that is the core's slc_diag_t (messages "file:line:col: path:
 *     message", each with the node it was reported against) wrapped with a
 *     build context, as core/gen.c does, that owns cfg_alloc memory and
 *     metrics (one diag = one filter instance);
 *   - generations holding clusters and endpoints with settable health and
 *     active-request counts (cfg_cluster looks in the diag's generation,
 *     cluster_get in the request's);
 *   - requests with pseudo-headers, header blocks (changes to a block while
 *     header_iterate walks it are SLC_ESTATE, as in the core), an arena (one malloc per
 *     allocation, optional budget), LIFO defers, a recorded local reply,
 *     route decisions, response flags and timers that tests fire by hand on a
 *     virtual clock;
 *   - connections with peer facts and a recorded transport.
 *
 * OWNERSHIP: everything a fake_*_new returns is owned by the test and freed
 * with the matching fake_*_free. Config nodes are the exception: they live
 * in one core cfg_tree_t the fake host owns and are freed together by
 * fake_cfg_free_all(), which must come after every diag (fake_diag_free /
 * fake_inst_free) that uses them.
 * Single-threaded; not for use outside tests.
 */
#ifndef SLUICE_FAKE_HOST_H
#define SLUICE_FAKE_HOST_H

#include <sluice/filter.h>
#include <sluice/host.h>
#include <sluice/types.h>

/* fake_host_table is the host table handed to the filter under test. */
extern const slc_host_t fake_host_table;

/* slc_filter_entry is defined by the filter under test (SLC_FILTER_DEFINE). */
const slc_filter_desc_t *slc_filter_entry(const slc_host_t *host);

/* ---- config trees -------------------------------------------------------- */

/* fake_scalar makes a scalar node holding a copy of |text|. */
slc_cfg_node_t *fake_scalar(const char *text);
/* fake_null makes a null node (`key:` with no value in YAML). */
slc_cfg_node_t *fake_null(void);
/* fake_map makes a map from (const char *key, slc_cfg_node_t *value) pairs
 * ended by a NULL key: fake_map("a", fake_scalar("1"), NULL). The values
 * become children of the map (a node may have one parent). */
__attribute__((sentinel)) slc_cfg_node_t *fake_map(const char *key, ...);
/* fake_seq makes a sequence of the given nodes, ended by NULL. */
__attribute__((sentinel)) slc_cfg_node_t *fake_seq(slc_cfg_node_t *item, ...);
/* fake_empty_map / fake_empty_seq make `{}` and `[]`. */
slc_cfg_node_t *fake_empty_map(void);
slc_cfg_node_t *fake_empty_seq(void);
/* fake_cfg_find follows a key path ("routes[0].match.prefix") from |root|;
 * NULL if there is no such node. */
const slc_cfg_node_t *fake_cfg_find(const slc_cfg_node_t *root, const char *path);
/* fake_cfg_path writes |n|'s key path from its root into |buf|; returns buf. */
const char *fake_cfg_path(const slc_cfg_node_t *n, char *buf, size_t size);
/* fake_yaml loads |text| with the core's YAML loader as file |file| (so
 * diagnostics say "file:line:col"); a test input must parse (else abort).
 * The tree lives until fake_cfg_free_all. */
const slc_cfg_node_t *fake_yaml(const char *file, const char *text);
/* fake_cfg_free_all frees every node made so far, fake_yaml's trees too. */
void fake_cfg_free_all(void);

/* ---- generations, clusters and endpoints --------------------------------- */

typedef struct fake_gen fake_gen_t;

fake_gen_t *fake_gen_new(void);
void fake_gen_free(fake_gen_t *g);
/* fake_cluster_add adds cluster |name| with endpoints given as "ip:port"
 * strings ended by NULL. All endpoints start healthy.
 * LIFETIME: owned by |g|. */
__attribute__((sentinel)) slc_cluster_t *fake_cluster_add(fake_gen_t *g, const char *name, ...);
/* fake_endpoint returns endpoint |i| of |c| (mutable, for the setters). */
slc_endpoint_t *fake_endpoint(slc_cluster_t *c, size_t i);
void fake_endpoint_set_healthy(slc_endpoint_t *e, bool healthy);
void fake_endpoint_set_active(slc_endpoint_t *e, uint32_t active);

/* ---- diagnostics (one per filter instance) ------------------------------- */

/* fake_diag_new makes a build context whose cfg_cluster looks in |g| (may be
 * NULL: no clusters). It owns cfg_alloc memory and metrics. */
slc_diag_t *fake_diag_new(fake_gen_t *g);
void fake_diag_free(slc_diag_t *d);
size_t fake_diag_count(const slc_diag_t *d); /* errors and warnings */
size_t fake_diag_errors(const slc_diag_t *d);
/* fake_diag_msg / _node / _path / _is_error describe message |i|. The text
 * is the message without the core's "file:line:col: path: " location and
 * "warning: " prefix; the path is the node's key path ("" for the root,
 * "(none)" for a NULL node). */
const char *fake_diag_msg(const slc_diag_t *d, size_t i);
const slc_cfg_node_t *fake_diag_node(const slc_diag_t *d, size_t i);
const char *fake_diag_path(const slc_diag_t *d, size_t i);
bool fake_diag_is_error(const slc_diag_t *d, size_t i);
/* fake_diag_find returns the index of the first message whose text (as
 * fake_diag_msg gives it) contains |needle|, or -1. */
int fake_diag_find(const slc_diag_t *d, const char *needle);
/* fake_diag_dump prints every message, in full, to stderr (for failing
 * tests). */
void fake_diag_dump(const slc_diag_t *d);
/* fake_metric finds a metric registered through |d| by name (without the
 * "sluice_" prefix), or NULL. */
slc_metric_t *fake_metric(const slc_diag_t *d, const char *name);
int64_t fake_metric_value(const slc_metric_t *m);
slc_metric_kind_t fake_metric_kind(const slc_metric_t *m);

/* ---- connections --------------------------------------------------------- */

/* fake_conn_new makes a connection with the given "ip:port" strings. */
slc_conn_t *fake_conn_new(const char *peer, const char *local);
/* fake_conn_free calls an installed transport's free(ctx) first. */
void fake_conn_free(slc_conn_t *c);
/* Facts a transport would report; NULL clears. */
void fake_conn_set_tls(slc_conn_t *c, const char *peer_identity, const char *sni, const char *alpn);
const slc_transport_t *fake_conn_transport(const slc_conn_t *c);
void *fake_conn_transport_ctx(const slc_conn_t *c);
bool fake_conn_ready(const slc_conn_t *c);
/* fake_conn_emitted returns the bytes emitted in direction |dir| so far
 * (borrowed) and clears them. */
slc_str_t fake_conn_emitted(slc_conn_t *c, slc_emit_t dir);

/* ---- requests ------------------------------------------------------------ */

/* fake_req_new makes a stream on worker 0 whose cluster_get looks in |g|.
 * Pseudo-headers are copied; scheme is "http". */
slc_req_t *fake_req_new(fake_gen_t *g, const char *method, const char *authority, const char *path);
/* fake_req_free runs pending defers (LIFO), cancels timers, frees the arena
 * and everything else of the stream. */
void fake_req_free(slc_req_t *r);
void fake_req_set_worker(slc_req_t *r, int worker);
void fake_req_set_conn(slc_req_t *r, slc_conn_t *c);
/* fake_req_set_arena_budget: arena_alloc returns NULL once |bytes| in total
 * would be exceeded (0 = unlimited, the default). */
void fake_req_set_arena_budget(slc_req_t *r, size_t bytes);
/* fake_req_add_header appends a header without validation (test input). */
void fake_req_add_header(slc_req_t *r, slc_hdrs_t which, const char *name, const char *value);
/* fake_req_header returns the first value of |name| (NUL-terminated,
 * borrowed), or NULL. fake_req_header_count counts headers named |name|
 * (NULL: all headers of the block). */
const char *fake_req_header(slc_req_t *r, slc_hdrs_t which, const char *name);
size_t fake_req_header_count(slc_req_t *r, slc_hdrs_t which, const char *name);
/* fake_req_set_response_status sets what response_status reports (as if the
 * upstream had answered). */
void fake_req_set_response_status(slc_req_t *r, int status);
/* fake_req_info is the base that stream_info copies (tests fill timings,
 * bytes, ids); flags, status, cluster and upstream come from the recorded
 * state. */
slc_stream_info_t *fake_req_info(slc_req_t *r);

/* Recorded results. */
int fake_req_reply_status(const slc_req_t *r); /* 0 if no local reply */
const char *fake_req_reply_body(const slc_req_t *r);
const char *fake_req_reply_content_type(const slc_req_t *r);
const slc_cluster_t *fake_req_cluster(const slc_req_t *r);
/* fake_cluster_get_calls: cluster_get lookups by name so far (all streams). */
unsigned fake_cluster_get_calls(void);
const slc_endpoint_t *fake_req_endpoint(const slc_req_t *r);
bool fake_req_timeout_set(const slc_req_t *r);
uint64_t fake_req_timeout(const slc_req_t *r);
uint32_t fake_req_flags(const slc_req_t *r);
unsigned fake_req_resumed(const slc_req_t *r);
size_t fake_req_arena_bytes(const slc_req_t *r);

/* Timers: nothing fires by itself. fake_req_timers_pending counts armed
 * timers; fake_req_fire_next advances the virtual clock to the earliest one
 * and runs it (false if none); fake_req_fire_all repeats that, at most
 * |max| times, and returns how many fired. */
size_t fake_req_timers_pending(const slc_req_t *r);
bool fake_req_fire_next(slc_req_t *r);
size_t fake_req_fire_all(slc_req_t *r, size_t max);
uint64_t fake_req_now_ms(const slc_req_t *r);
/* fake_req_next_timer_ms: delay of the earliest pending timer relative to
 * the virtual clock, or UINT64_MAX. */
uint64_t fake_req_next_timer_ms(const slc_req_t *r);

/* ---- a filter instance, driven like the chain runner would -------------- */

#define FAKE_MAX_WORKERS 8

typedef struct fake_inst {
    const slc_filter_desc_t *desc;
    slc_diag_t *diag;
    void *cfg;
    slc_status_t status; /* what config_new returned (SLC_OK if it is NULL) */
    int nworkers;
    void *wctx[FAKE_MAX_WORKERS];
} fake_inst_t;

/* fake_inst_new builds an instance of |desc| from |config| (NULL: an empty
 * map, as the host passes when `config:` is absent) in generation |g|, then
 * runs worker_init for |nworkers| workers if config_new succeeded. Check
 * ->status and ->diag. Never NULL. */
fake_inst_t *fake_inst_new(const slc_filter_desc_t *desc, fake_gen_t *g,
                           const slc_cfg_node_t *config, int nworkers);
/* fake_inst_free runs worker_fini, config_free, then frees the diag. */
void fake_inst_free(fake_inst_t *inst);

typedef enum fake_phase {
    FAKE_REQUEST_HEADERS,
    FAKE_UPSTREAM_SELECT,
    FAKE_RESPONSE_HEADERS,
} fake_phase_t;

/* fake_inst_run calls the hook for |phase| on |r| (CONTINUE if the filter has
 * none). The first call for |r| runs request_new with the request's worker
 * context; a request belongs to one instance. */
slc_action_t fake_inst_run(fake_inst_t *inst, slc_req_t *r, fake_phase_t phase);
/* fake_inst_body feeds one body chunk to on_request_body or on_response_body. */
slc_action_t fake_inst_body(fake_inst_t *inst, slc_req_t *r, slc_hdrs_t which, const char *chunk,
                            bool end);
/* fake_inst_complete runs on_complete (once request_new has run). */
void fake_inst_complete(fake_inst_t *inst, slc_req_t *r);

/* ---- logging ------------------------------------------------------------- */

/* fake_log_count / fake_log_last: lines logged through the host so far. Set
 * FAKE_HOST_LOG=1 in the environment to also print them on stderr. */
/* ---- ABI 1.1 ---------------------------------------------------------------
 * A fake monotonic clock (now_ms, ejections), the route's retry policy and
 * mirror as recorded, tried endpoints, and a driver for on_upstream_result. */
void fake_set_now_ms(uint64_t ms);
uint64_t fake_get_now_ms(void);
bool fake_req_retry(const slc_req_t *r, slc_retry_policy_t *out);
const slc_cluster_t *fake_req_mirror(const slc_req_t *r);
/* fake_req_mark_tried records an attempt at |e| (upstream_tried, req_attempts). */
void fake_req_mark_tried(slc_req_t *r, const slc_endpoint_t *e);
void fake_endpoint_set_ejected_until(slc_endpoint_t *e, uint64_t until_ms);
uint64_t fake_endpoint_get_ejected_until(const slc_endpoint_t *e);
/* fake_cluster_pool: the pool options a filter set with cfg_cluster_pool. */
bool fake_cluster_pool(const slc_cluster_t *c, slc_pool_options_t *out);
void fake_inst_result(fake_inst_t *inst, slc_req_t *r, const slc_endpoint_t *e,
                      slc_attempt_result_t res, int status);

/* ---- ABI 1.3 ---------------------------------------------------------------
 * Retries a filter decides: how often it asked (attempt_retry, only inside
 * fake_inst_result) and the longest backoff asked for; whether it kept the
 * body for replay; the per-try timeout it set. */
uint32_t fake_req_retry_asks(const slc_req_t *r, uint64_t *max_backoff_ms);
bool fake_req_keep_body(const slc_req_t *r);
uint64_t fake_req_try_timeout(const slc_req_t *r);

/* ---- ABI 1.4 ---------------------------------------------------------------
 * A peer certificate with an Istio principal ("TD/ns/NS/sa/SA"; trust
 * domain, namespace and spiffe:// id derived from it; "": a certificate
 * without a SPIFFE identity, all four SLC_STR_NULL; NULL: none, and
 * conn_peer_cert falls back to an installed transport's peer_cert, else
 * SLC_ENOENT); conn_secure forced to 0/1 (-1: from the transport, as the
 * core does); the facts a stream recorded with req_fact_set (NULL if none;
 * borrowed until the fact is set again or the request is freed).
 * metric_set_global sets the one value fake_metric_value reads. */
void fake_conn_set_peer_cert(slc_conn_t *c, const char *principal);
void fake_conn_set_secure(slc_conn_t *c, int secure);
const char *fake_req_fact(slc_req_t *r, const char *name);

size_t fake_log_count(void);
const char *fake_log_last(void);
void fake_log_set_level(slc_log_level_t min);

#endif
