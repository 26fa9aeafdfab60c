/* lb: picks an endpoint of the cluster the router chose, with Istio's
 * DestinationRule loadBalancer semantics (docs/filters/lb.md).
 *
 *   config:
 *     policy: round_robin            # default for clusters not listed
 *     min_health_percent: 0          # default for all clusters
 *     clusters:
 *       api:   { policy: least_request }
 *       users: { policy: ring_hash, hash: { header: x-user }, ring_size: 1024 }
 *
 * Policies are rows of a table of pick functions over one selection state
 * (lb_sel_t): the cluster, the worker's cursor and PRNG, whether the
 * cluster is in panic and whether endpoints already tried must be avoided.
 * Every pick function sees only "usable" endpoints (lb_usable): healthy
 * (not failing health checks, not ejected) unless the cluster is in panic,
 * and not yet tried by this stream when it is a retry. If a retry finds no
 * untried usable endpoint, the pick runs once more allowing tried ones, as
 * Envoy's previous-hosts predicate gives up after its attempts.
 *
 * Round robin keeps one cursor per cluster per worker: no atomics, no locks,
 * and each worker cycles through the endpoints on its own (with N workers
 * the first request of each worker goes to the first endpoint; over time
 * the load evens out, as with Envoy's per-worker round robin). Unhealthy
 * endpoints are skipped and the cursor moves past the one picked, so the
 * healthy ones share the load evenly.
 *
 * least_request is Envoy's power of two choices: two distinct random usable
 * endpoints, the one with fewer live requests (endpoint_active_requests,
 * counted by the core across all workers) wins.
 *
 * ring_hash and maglev tables are built at config time per listed cluster
 * from its endpoint list (chash.c) and are read-only afterwards, so every
 * worker maps a key to the same endpoint. A request's key (header, cookie,
 * source IP or query parameter) is hashed, looked up, and if that endpoint
 * is unusable the lookup walks on to the next point / slot: only the keys
 * of the missing endpoint move. A request without the key gets a random
 * endpoint (Envoy's behaviour when a hash policy yields no hash).
 *
 * The request path allocates nothing: cursors and the PRNG live in the
 * worker state, tables in the config, and key extraction works on borrowed
 * views.
 */
#include <sluice/filter.h>
#include <sluice/host.h>
#include <sluice/types.h>
#include <sluice/util.h>

#include "chash.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum lb_policy_kind {
    LB_ROUND_ROBIN = 0,
    LB_LEAST_REQUEST,
    LB_LEAST_CONN, /* Istio's LEAST_CONN: an alias of least_request */
    LB_RANDOM,
    LB_RING_HASH,
    LB_MAGLEV,
    LB_NPOLICIES,
} lb_policy_kind_t;

static const char *const lb_policy_names[] = {
    "round_robin", "least_request", "least_conn", "random", "ring_hash", "maglev", NULL,
};

typedef enum lb_hash_src {
    LB_HASH_NONE = 0,
    LB_HASH_HEADER,
    LB_HASH_COOKIE,
    LB_HASH_SOURCE_IP,
    LB_HASH_QUERY,
} lb_hash_src_t;

/* lb_cluster is the balancing setup of one cluster (or the default for
 * clusters not listed). LIFETIME: config-arena, read-only after
 * config_new. */
typedef struct lb_cluster {
    const char *name; /* NULL for the default */
    size_t name_len;
    int policy;          /* lb_policy_kind_t */
    uint32_t min_health; /* percent; 0 = never panic */
    lb_hash_src_t hash_src;
    slc_str_t hash_key;   /* header, cookie or query parameter name */
    size_t nendpoints;    /* endpoints when the table was built */
    chash_ring_t ring;    /* ring_hash */
    uint32_t *maglev;     /* maglev: maglev_size slots of endpoint indices */
    uint32_t maglev_size; /* prime */
} lb_cluster_t;

typedef struct lb_cfg {
    /* Bound by cfg_bind (config-arena). */
    char *policy_text;
    uint32_t min_health;
    const slc_cfg_node_t *clusters_node;

    lb_cluster_t dflt;
    lb_cluster_t *clusters; /* nclusters, config-arena */
    size_t nclusters;
    /* index: open addressing from a cluster name to its position + 1 (0 =
     * empty); index_mask + 1 slots, a power of two. */
    uint32_t *index;
    size_t index_mask;
    bool retry_api;                   /* the host has req_attempts and upstream_tried (1.1) */
    bool usable_api;                  /* the host has cluster_usable_count (1.3) */
    slc_metric_t *no_healthy, *panic; /* config-arena (host-owned) */
} lb_cfg_t;

/* lb_slot is one worker's memory of one cluster: its setup and its round
 * robin cursor. */
typedef struct lb_slot {
    const slc_cluster_t *cluster;
    const lb_cluster_t *conf;
    size_t next;
} lb_slot_t;

/* A worker remembers up to LB_SLOTS clusters; beyond that the rest look up
 * their setup by name on every request and share one cursor (still
 * correct, only slower and less even). */
#define LB_SLOTS 128

/* lb_worker is one worker's mutable state for one lb instance.
 * OWNERSHIP: owned by the instance; malloc'd in worker_init, freed in
 * worker_fini, touched only on its worker's thread. */
typedef struct lb_worker {
    const lb_cfg_t *cfg;
    slcu_rng_t rng; /* this worker's PRNG */
    size_t first;   /* where new round-robin cursors start: the worker id */
    lb_slot_t slots[LB_SLOTS];
    size_t overflow_next;
} lb_worker_t;

/* lb_sel is one selection round of one stream. */
typedef struct lb_sel {
    lb_worker_t *w;
    slc_req_t *r;
    const slc_cluster_t *c;
    const lb_cluster_t *conf;
    size_t n;          /* endpoints of c */
    size_t *cursor;    /* round robin */
    bool panic;        /* ignore health */
    bool avoid_tried;  /* a retry: skip endpoints this stream tried */
    bool have_key;     /* hashing: the request carried the key */
    uint64_t key_hash; /* hashing: chash_hash64 of the key */
} lb_sel_t;

typedef const slc_endpoint_t *(*lb_pick_fn)(lb_sel_t *s);

/* ---- helpers --------------------------------------------------------------- */

/* lb_rand_below returns a uniform number in [0, n) for n < 2^32. */
static size_t lb_rand_below(lb_worker_t *w, size_t n)
{
    return (size_t)slcu_rng_below(&w->rng, n);
}

static bool lb_usable(const lb_sel_t *s, const slc_endpoint_t *e)
{
    if (e == NULL) {
        return false;
    }
    if (!s->panic && !slc_host->endpoint_healthy(e)) {
        return false;
    }
    if (s->avoid_tried && slc_host->upstream_tried(s->r, e)) {
        return false;
    }
    return true;
}

static bool lb_any_usable(const lb_sel_t *s)
{
    for (size_t i = 0; i < s->n; i++) {
        if (lb_usable(s, slc_host->cluster_endpoint(s->c, i))) {
            return true;
        }
    }
    return false;
}

/* lb_random_usable returns a uniformly random usable endpoint other than
 * |except| (may be NULL), or NULL if there is none. A few random probes find
 * one at once when most endpoints are usable; otherwise one reservoir pass
 * over the cluster keeps the choice uniform. */
static const slc_endpoint_t *lb_random_usable(lb_sel_t *s, const slc_endpoint_t *except)
{
    for (int probe = 0; probe < 4; probe++) {
        const slc_endpoint_t *e = slc_host->cluster_endpoint(s->c, lb_rand_below(s->w, s->n));
        if (e != except && lb_usable(s, e)) {
            return e;
        }
    }
    const slc_endpoint_t *pick = NULL;
    size_t seen = 0;
    for (size_t i = 0; i < s->n; i++) {
        const slc_endpoint_t *e = slc_host->cluster_endpoint(s->c, i);
        if (e != except && lb_usable(s, e)) {
            seen++;
            if (lb_rand_below(s->w, seen) == 0) {
                pick = e;
            }
        }
    }
    return pick;
}

/* ---- policies -------------------------------------------------------------- */

static const slc_endpoint_t *rr_pick(lb_sel_t *s)
{
    size_t start = *s->cursor % s->n;
    for (size_t i = 0; i < s->n; i++) {
        size_t idx = (start + i) % s->n;
        const slc_endpoint_t *e = slc_host->cluster_endpoint(s->c, idx);
        if (lb_usable(s, e)) {
            *s->cursor = idx + 1;
            return e;
        }
    }
    return NULL;
}

static const slc_endpoint_t *random_pick(lb_sel_t *s)
{
    return lb_random_usable(s, NULL);
}

static const slc_endpoint_t *least_request_pick(lb_sel_t *s)
{
    const slc_endpoint_t *a = lb_random_usable(s, NULL);
    if (a == NULL) {
        return NULL;
    }
    const slc_endpoint_t *b = lb_random_usable(s, a);
    if (b == NULL) {
        return a;
    }
    return slc_host->endpoint_active_requests(b) < slc_host->endpoint_active_requests(a) ? b : a;
}

/* LB_WALK_CHECK: after this many unusable entries in a row, a hash walk
 * makes sure some endpoint is usable at all before going on, so that a
 * cluster with none costs O(endpoints), not O(table). */
#define LB_WALK_CHECK(n) (4 * (size_t)(n) + 64)

/* hash_walk_ring walks the ring from the key's point to the first point of
 * a usable endpoint. */
static const slc_endpoint_t *hash_walk_ring(lb_sel_t *s)
{
    const chash_ring_t *ring = &s->conf->ring;
    size_t pos = chash_ring_find(ring, s->key_hash);
    uint32_t rejected = UINT32_MAX;
    bool checked = false;
    for (size_t step = 0; step < ring->npoints; step++) {
        if (!checked && step >= LB_WALK_CHECK(s->n)) {
            checked = true;
            if (!lb_any_usable(s)) {
                return NULL;
            }
        }
        uint32_t ep = ring->points[(pos + step) % ring->npoints].ep;
        if (ep == rejected) {
            continue; /* runs of one endpoint's points are common */
        }
        const slc_endpoint_t *e = slc_host->cluster_endpoint(s->c, ep);
        if (lb_usable(s, e)) {
            return e;
        }
        rejected = ep;
    }
    return NULL;
}

/* hash_walk_maglev takes the key's slot, or the next slot of a usable
 * endpoint. */
static const slc_endpoint_t *hash_walk_maglev(lb_sel_t *s)
{
    uint32_t m = s->conf->maglev_size;
    uint32_t slot = (uint32_t)(s->key_hash % m);
    uint32_t rejected = UINT32_MAX;
    bool checked = false;
    for (uint32_t step = 0; step < m; step++) {
        if (!checked && step >= LB_WALK_CHECK(s->n)) {
            checked = true;
            if (!lb_any_usable(s)) {
                return NULL;
            }
        }
        uint32_t ep = s->conf->maglev[(slot + step) % m];
        if (ep == rejected) {
            continue;
        }
        const slc_endpoint_t *e = slc_host->cluster_endpoint(s->c, ep);
        if (lb_usable(s, e)) {
            return e;
        }
        rejected = ep;
    }
    return NULL;
}

static const slc_endpoint_t *hash_pick(lb_sel_t *s)
{
    if (!s->have_key) {
        return lb_random_usable(s, NULL);
    }
    if (s->conf->nendpoints != s->n) {
        /* The cluster is not the one the table was built for (cannot
         * happen with static endpoints): stay consistent per key anyway. */
        size_t start = (size_t)(s->key_hash % s->n);
        for (size_t i = 0; i < s->n; i++) {
            const slc_endpoint_t *e = slc_host->cluster_endpoint(s->c, (start + i) % s->n);
            if (lb_usable(s, e)) {
                return e;
            }
        }
        return NULL;
    }
    return s->conf->policy == LB_MAGLEV ? hash_walk_maglev(s) : hash_walk_ring(s);
}

static const lb_pick_fn lb_picks[LB_NPOLICIES] = {
    [LB_ROUND_ROBIN] = rr_pick,           [LB_LEAST_REQUEST] = least_request_pick,
    [LB_LEAST_CONN] = least_request_pick, [LB_RANDOM] = random_pick,
    [LB_RING_HASH] = hash_pick,           [LB_MAGLEV] = hash_pick,
};

static bool lb_policy_hashes(int policy)
{
    return policy == LB_RING_HASH || policy == LB_MAGLEV;
}

/* ---- hash keys --------------------------------------------------------------- */

static slc_str_t lb_trim(const char *p, const char *end)
{
    while (p < end && (*p == ' ' || *p == '\t')) {
        p++;
    }
    while (end > p && (end[-1] == ' ' || end[-1] == '\t')) {
        end--;
    }
    return (slc_str_t){p, (size_t)(end - p)};
}

/* lb_cookie_find looks for cookie |name| in one Cookie header value
 * ("a=1; b=2"). The name matches exactly (cookie names are case-sensitive);
 * a quoted value loses its quotes. */
static bool lb_cookie_find(slc_str_t hdr, slc_str_t name, slc_str_t *out)
{
    const char *p = hdr.ptr, *end = hdr.ptr + hdr.len;
    while (p < end) {
        const char *semi = memchr(p, ';', (size_t)(end - p));
        const char *pe = semi != NULL ? semi : end;
        const char *eq = memchr(p, '=', (size_t)(pe - p));
        if (eq != NULL) {
            slc_str_t k = lb_trim(p, eq);
            if (k.len == name.len && memcmp(k.ptr, name.ptr, k.len) == 0) {
                slc_str_t v = lb_trim(eq + 1, pe);
                if (v.len >= 2 && v.ptr[0] == '"' && v.ptr[v.len - 1] == '"') {
                    v.ptr++;
                    v.len -= 2;
                }
                *out = v;
                return true;
            }
        }
        p = pe + 1;
    }
    return false;
}

typedef struct lb_cookie_search {
    slc_str_t name;
    slc_str_t value;
    bool found;
} lb_cookie_search_t;

static bool lb_cookie_cb(void *arg, slc_str_t name, slc_str_t value)
{
    lb_cookie_search_t *cs = arg;
    if (slcu_caseeq(name, SLC_STR("cookie")) && lb_cookie_find(value, cs->name, &cs->value)) {
        cs->found = true;
        return false;
    }
    return true;
}

/* lb_query_find looks for parameter |name| in the query of |path|; a
 * parameter without '=' has an empty value. Names match exactly, without
 * percent-decoding (as Envoy's query_parameter hash policy). */
static bool lb_query_find(slc_str_t path, slc_str_t name, slc_str_t *out)
{
    slc_str_t q = slcu_query_of(path);
    return q.ptr != NULL && slcu_query_get(q, name, out);
}

/* lb_peer_ip strips the port from "ip:port" or "[v6]:port". */
static slc_str_t lb_peer_ip(slc_str_t peer)
{
    if (peer.len > 0 && peer.ptr[0] == '[') {
        const char *close = memchr(peer.ptr, ']', peer.len);
        if (close != NULL) {
            return (slc_str_t){peer.ptr + 1, (size_t)(close - peer.ptr - 1)};
        }
        return peer;
    }
    const char *colon = NULL;
    size_t ncolons = 0;
    for (size_t i = 0; i < peer.len; i++) {
        if (peer.ptr[i] == ':') {
            colon = peer.ptr + i;
            ncolons++;
        }
    }
    if (ncolons == 1) {
        return (slc_str_t){peer.ptr, (size_t)(colon - peer.ptr)};
    }
    return peer; /* a bare IPv6 address, or no port */
}

/* lb_key finds the request's hash key for |conf| and hashes it into
 * s->key_hash. Returns false when the request does not carry it. */
static bool lb_key(lb_sel_t *s)
{
    const lb_cluster_t *conf = s->conf;
    slc_str_t v = SLC_STR_NULL;
    switch (conf->hash_src) {
    case LB_HASH_HEADER:
        if (slc_header_get(s->r, SLC_REQUEST_HEADERS, conf->hash_key, &v) != SLC_OK) {
            return false;
        }
        break;
    case LB_HASH_COOKIE: {
        lb_cookie_search_t cs = {.name = conf->hash_key};
        slc_host->header_iterate(s->r, SLC_REQUEST_HEADERS, lb_cookie_cb, &cs);
        if (!cs.found) {
            return false;
        }
        v = cs.value;
        break;
    }
    case LB_HASH_SOURCE_IP: {
        slc_conn_t *conn = slc_host->req_conn(s->r);
        if (conn == NULL) {
            return false;
        }
        v = lb_peer_ip(slc_host->conn_peer(conn));
        if (v.len == 0) {
            return false;
        }
        break;
    }
    case LB_HASH_QUERY:
        if (!lb_query_find(slc_pseudo(s->r, SLC_PSEUDO_PATH), conf->hash_key, &v)) {
            return false;
        }
        break;
    default:
        return false;
    }
    s->key_hash = chash_hash64(v.ptr != NULL ? v.ptr : "", v.len, 0);
    return true;
}

/* ---- per-worker cluster memory --------------------------------------------- */

static const lb_cluster_t *lb_conf_by_name(const lb_cfg_t *cfg, slc_str_t name)
{
    if (cfg->nclusters == 0) {
        return &cfg->dflt;
    }
    size_t i = (size_t)chash_hash64(name.ptr, name.len, 0) & cfg->index_mask;
    for (;; i = (i + 1) & cfg->index_mask) {
        uint32_t v = cfg->index[i];
        if (v == 0) {
            return &cfg->dflt;
        }
        const lb_cluster_t *lc = &cfg->clusters[v - 1];
        if (lc->name_len == name.len && memcmp(lc->name, name.ptr, name.len) == 0) {
            return lc;
        }
    }
}

/* lb_slot finds (or claims) the memory of |c| with open addressing on the
 * cluster pointer; NULL when every slot holds another cluster. Cluster
 * pointers are stable for the life of the config generation, which
 * outlives this worker state. */
static lb_slot_t *lb_slot(lb_worker_t *w, const slc_cluster_t *c)
{
    uint64_t h = (uint64_t)(uintptr_t)c * 0x9e3779b97f4a7c15ull;
    size_t i = (size_t)(h >> 32) % LB_SLOTS;
    for (size_t probe = 0; probe < LB_SLOTS; probe++) {
        lb_slot_t *s = &w->slots[(i + probe) % LB_SLOTS];
        if (s->cluster == c) {
            return s;
        }
        if (s->cluster == NULL) {
            s->cluster = c;
            s->conf = lb_conf_by_name(w->cfg, slc_host->cluster_name(c));
            /* Workers start at different endpoints: with every worker at
             * 0, the first request of each would go to the same place. */
            s->next = w->first;
            return s;
        }
    }
    return NULL;
}

/* ---- configuration ------------------------------------------------------- */

/* lb_parse_policy maps |text| to a policy or reports the node with the
 * list and a hint (Istio's LEAST_CONN or roundRobin get 'least_conn' and
 * 'round_robin'). */
static bool lb_parse_policy(slc_diag_t *d, const slc_cfg_node_t *n, const char *text, int *out)
{
    for (int i = 0; i < LB_NPOLICIES; i++) {
        if (strcmp(text, lb_policy_names[i]) == 0) {
            *out = i;
            return true;
        }
    }
    /* Compare lower-cased, with camelCase humps turned into '_'. */
    char low[64];
    size_t o = 0;
    for (size_t i = 0; text[i] != '\0' && o + 2 < sizeof(low); i++) {
        char ch = text[i];
        if (ch >= 'A' && ch <= 'Z') {
            if (i > 0 && text[i - 1] >= 'a' && text[i - 1] <= 'z') {
                low[o++] = '_';
            }
            ch = (char)(ch + 32);
        } else if (ch == '-') {
            ch = '_';
        }
        low[o++] = ch;
    }
    low[o] = '\0';
    const char *hint = NULL;
    size_t best = SIZE_MAX;
    for (int i = 0; i < LB_NPOLICIES; i++) {
        size_t dist =
            slcu_edit_distance((slc_str_t){low, o},
                               (slc_str_t){lb_policy_names[i], strlen(lb_policy_names[i])}, false);
        if (dist < best) {
            best = dist;
            hint = lb_policy_names[i];
        }
    }
    if (best > 3) {
        hint = NULL;
        /* "least_connections": a name that starts the input, or the input
         * that starts a name, is still a good guess. */
        for (int i = 0; i < LB_NPOLICIES && o >= 4; i++) {
            size_t ln = strlen(lb_policy_names[i]);
            if (strncmp(low, lb_policy_names[i], ln < o ? ln : o) == 0) {
                hint = lb_policy_names[i];
                break;
            }
        }
    }
    slc_diag_error(d, n,
                   "unknown policy '%s': expected one of round_robin, least_request, least_conn, "
                   "random, ring_hash, maglev%s%s%s",
                   text, hint ? " (did you mean '" : "", hint ? hint : "", hint ? "'?)" : "");
    return false;
}

static bool lb_token_ok(const char *s)
{
    if (s == NULL || *s == '\0') {
        return false;
    }
    for (; *s; s++) {
        unsigned char ch = (unsigned char)*s;
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || strchr("!#$%&'*+-.^_`|~", ch) != NULL;
        if (!ok) {
            return false;
        }
    }
    return true;
}

static bool lb_streq(slc_str_t a, const char *b)
{
    return a.len == strlen(b) && memcmp(a.ptr, b, a.len) == 0;
}

static bool lb_node_set(const slc_host_t *h, const slc_cfg_node_t *map, const char *key)
{
    const slc_cfg_node_t *v = h->cfg_get(map, key);
    return v != NULL && h->cfg_type(v) != SLC_CFG_NULL;
}

typedef struct lb_cookie_conf {
    char *name;
    uint64_t ttl_ms;
    char *path;
} lb_cookie_conf_t;

static const slc_cfg_field_t lb_cookie_fields[] = {
    SLC_FIELD_STR("name", lb_cookie_conf_t, name, .required = true),
    SLC_FIELD_DURATION("ttl", lb_cookie_conf_t, ttl_ms),
    SLC_FIELD_STR("path", lb_cookie_conf_t, path),
    SLC_FIELD_END,
};

typedef struct lb_hash_conf {
    char *header;
    const slc_cfg_node_t *cookie;
    bool source_ip;
    char *query_param;
} lb_hash_conf_t;

static const slc_cfg_field_t lb_hash_fields[] = {
    SLC_FIELD_STR("header", lb_hash_conf_t, header),
    SLC_FIELD_NODE("cookie", lb_hash_conf_t, cookie),
    SLC_FIELD_BOOL("source_ip", lb_hash_conf_t, source_ip),
    SLC_FIELD_STR("query_param", lb_hash_conf_t, query_param),
    SLC_FIELD_END,
};

/* lb_bind_hash reads a `hash:` map into |lc|: exactly one source. */
static bool lb_bind_hash(const slc_host_t *h, slc_diag_t *d, const slc_cfg_node_t *n,
                         lb_cluster_t *lc)
{
    lb_hash_conf_t hc = {0};
    if (h->cfg_type(n) != SLC_CFG_MAP) {
        slc_diag_error(d, n, "expected a map with one of header, cookie, source_ip, query_param");
        return false;
    }
    if (h->cfg_bind(d, n, lb_hash_fields, &hc) != SLC_OK) {
        return false;
    }
    bool ok = true;
    const char *first = NULL; /* the source already set, for the message */
    /* In the order the keys are written, so the error lands on the second. */
    for (size_t i = 0; i < h->cfg_len(n); i++) {
        slc_str_t k = h->cfg_key_at(n, i);
        const slc_cfg_node_t *v = h->cfg_at(n, i);
        lb_hash_src_t src = LB_HASH_NONE;
        if (lb_streq(k, "header") && hc.header != NULL) {
            src = LB_HASH_HEADER;
            if (!lb_token_ok(hc.header)) {
                slc_diag_error(d, v, "header name '%s' is not a valid HTTP field name", hc.header);
                ok = false;
            }
            lc->hash_key = (slc_str_t){hc.header, strlen(hc.header)};
        } else if (lb_streq(k, "cookie") && hc.cookie != NULL &&
                   h->cfg_type(hc.cookie) != SLC_CFG_NULL) {
            src = LB_HASH_COOKIE;
            const char *name = NULL;
            if (h->cfg_type(hc.cookie) == SLC_CFG_SCALAR) {
                name = h->cfg_scalar(hc.cookie).ptr; /* cookie: session */
            } else {
                lb_cookie_conf_t cc = {0};
                if (h->cfg_bind(d, hc.cookie, lb_cookie_fields, &cc) != SLC_OK) {
                    ok = false;
                    continue;
                }
                name = cc.name;
                if (cc.ttl_ms != 0 || cc.path != NULL) {
                    slc_diag_warn(d, hc.cookie,
                                  "cookie ttl/path are ignored: sluice does not generate the "
                                  "cookie; requests without it get a random endpoint");
                }
            }
            if (!lb_token_ok(name)) {
                slc_diag_error(d, v, "cookie name '%s' is not a valid cookie name",
                               name ? name : "");
                ok = false;
            }
            if (name != NULL) {
                lc->hash_key = (slc_str_t){name, strlen(name)};
            }
        } else if (lb_streq(k, "source_ip") && hc.source_ip) {
            src = LB_HASH_SOURCE_IP;
        } else if (lb_streq(k, "query_param") && hc.query_param != NULL) {
            src = LB_HASH_QUERY;
            if (hc.query_param[0] == '\0') {
                slc_diag_error(d, v, "query_param must not be empty");
                ok = false;
            }
            lc->hash_key = (slc_str_t){hc.query_param, strlen(hc.query_param)};
        }
        if (src == LB_HASH_NONE) {
            continue;
        }
        if (first != NULL) {
            slc_diag_error(d, v,
                           "only one hash source is allowed: '%s' is already set (choose one of "
                           "header, cookie, source_ip, query_param)",
                           first);
            ok = false;
            continue;
        }
        first = src == LB_HASH_HEADER   ? "header"
                : src == LB_HASH_COOKIE ? "cookie"
                : src == LB_HASH_QUERY  ? "query_param"
                                        : "source_ip";
        lc->hash_src = src;
    }
    if (first == NULL && ok) {
        slc_diag_error(d, n, "hash needs one of header, cookie, source_ip: true, query_param");
        ok = false;
    }
    return ok;
}

/* lb_alloc_thunk lets chash put tables in the config arena. */
typedef struct lb_alloc_thunk {
    const slc_host_t *h;
    slc_diag_t *d;
} lb_alloc_thunk_t;

static void *lb_cfg_alloc(void *arg, size_t size)
{
    lb_alloc_thunk_t *t = arg;
    return t->h->cfg_alloc(t->d, size);
}

/* lb_build_table builds the ring or Maglev table of |lc| from the endpoints
 * of cluster |c| as declared in the configuration being built. */
static bool lb_build_table(const slc_host_t *h, slc_diag_t *d, const slc_cfg_node_t *where,
                           lb_cluster_t *lc, const slc_cluster_t *c, uint32_t size)
{
    size_t n = h->cluster_endpoint_count(c);
    lc->nendpoints = n;
    if (n == 0) {
        return true; /* nothing to hash onto: every request gets 503 UH */
    }
    if (lc->policy == LB_MAGLEV && size < n) {
        slc_diag_error(d, where, "table_size %u is smaller than the %zu endpoints of cluster '%s'",
                       size, n, lc->name);
        return false;
    }
    bool ok = false;
    const char **addrs = calloc(n, sizeof(*addrs));
    size_t *lens = calloc(n, sizeof(*lens));
    uint64_t *scratch = NULL;
    if (addrs == NULL || lens == NULL) {
        goto out_nomem;
    }
    for (size_t i = 0; i < n; i++) {
        slc_str_t a = h->endpoint_address(h->cluster_endpoint(c, i));
        addrs[i] = a.ptr;
        lens[i] = a.len;
    }
    if (lc->policy == LB_RING_HASH) {
        lb_alloc_thunk_t t = {h, d};
        chash_ring_build(&lc->ring, addrs, lens, n, size, lb_cfg_alloc, &t);
    } else {
        scratch = calloc(2 * n, sizeof(*scratch));
        if (scratch == NULL) {
            goto out_nomem;
        }
        lc->maglev_size = size;
        lc->maglev = h->cfg_alloc(d, (size_t)size * sizeof(*lc->maglev));
        chash_maglev_build(lc->maglev, size, addrs, lens, n, scratch);
    }
    ok = true;
    goto out_free;
out_nomem:
    slc_diag_error(d, where, "out of memory building the hash table of cluster '%s'", lc->name);
out_free:
    free(scratch);
    free(lens);
    free(addrs);
    return ok;
}

typedef struct lb_cluster_conf {
    char *policy;
    uint32_t min_health;
    const slc_cfg_node_t *hash;
    uint32_t ring_size;
    uint32_t table_size;
} lb_cluster_conf_t;

static const slc_cfg_field_t lb_cluster_fields[] = {
    SLC_FIELD_STR("policy", lb_cluster_conf_t, policy),
    SLC_FIELD_U32("min_health_percent", lb_cluster_conf_t, min_health, .max = 100),
    SLC_FIELD_NODE("hash", lb_cluster_conf_t, hash),
    SLC_FIELD_U32("ring_size", lb_cluster_conf_t, ring_size, .min = 1, .max = CHASH_RING_MAX),
    SLC_FIELD_U32("table_size", lb_cluster_conf_t, table_size, .min = 2, .max = CHASH_MAGLEV_MAX),
    SLC_FIELD_END,
};

/* lb_bind_cluster reads one entry of `clusters:`. Errors are reported;
 * returns false if any. */
static bool lb_bind_cluster(const slc_host_t *h, slc_diag_t *d, lb_cfg_t *cfg, slc_str_t name,
                            const slc_cfg_node_t *n, lb_cluster_t *lc)
{
    lb_cluster_conf_t cc = {0};
    lc->name = name.ptr;
    lc->name_len = name.len;
    lc->policy = cfg->dflt.policy;
    lc->min_health = cfg->dflt.min_health;

    const slc_cluster_t *c = h->cfg_cluster(d, name);
    if (c == NULL) {
        slc_diag_error(d, n, "unknown cluster '%.*s'", (int)name.len, name.ptr);
        return false;
    }
    if (h->cfg_type(n) == SLC_CFG_NULL) {
        return true; /* `api:` alone: the defaults */
    }
    if (h->cfg_bind(d, n, lb_cluster_fields, &cc) != SLC_OK) {
        return false;
    }
    bool ok = true;
    bool has_hash = cc.hash != NULL && h->cfg_type(cc.hash) != SLC_CFG_NULL;
    if (cc.policy != NULL) {
        ok = lb_parse_policy(d, h->cfg_get(n, "policy"), cc.policy, &lc->policy);
    } else if (has_hash) {
        lc->policy = LB_RING_HASH; /* Istio: consistentHash alone is a ring */
    }
    if (lb_node_set(h, n, "min_health_percent")) {
        lc->min_health = cc.min_health;
    }
    if (!ok) {
        return false;
    }
    if (lb_policy_hashes(lc->policy)) {
        if (!has_hash) {
            slc_diag_error(d, cc.policy ? h->cfg_get(n, "policy") : n,
                           "policy %s needs a hash key: add hash: { header | cookie | source_ip "
                           "| query_param }",
                           lb_policy_names[lc->policy]);
            ok = false;
        } else if (!lb_bind_hash(h, d, cc.hash, lc)) {
            ok = false;
        }
    } else if (has_hash) {
        slc_diag_error(d, cc.hash, "hash is only used by ring_hash and maglev, not %s",
                       lb_policy_names[lc->policy]);
        ok = false;
    }
    if (lb_node_set(h, n, "ring_size") && lc->policy != LB_RING_HASH) {
        slc_diag_error(d, h->cfg_get(n, "ring_size"), "ring_size is only for policy ring_hash%s",
                       lc->policy == LB_MAGLEV ? " (maglev uses table_size)" : "");
        ok = false;
    }
    uint32_t table_size = CHASH_MAGLEV_DFLT;
    if (lb_node_set(h, n, "table_size")) {
        if (lc->policy != LB_MAGLEV) {
            slc_diag_error(d, h->cfg_get(n, "table_size"), "table_size is only for policy maglev%s",
                           lc->policy == LB_RING_HASH ? " (ring_hash uses ring_size)" : "");
            ok = false;
        } else if (!chash_is_prime(cc.table_size)) {
            slc_diag_error(d, h->cfg_get(n, "table_size"),
                           "table_size %u is not a prime number (Maglev needs one; e.g. 65537)",
                           cc.table_size);
            ok = false;
        }
        table_size = cc.table_size;
    }
    if (!ok) {
        return false;
    }
    if (lc->policy == LB_RING_HASH) {
        return lb_build_table(h, d, n, lc, c,
                              lb_node_set(h, n, "ring_size") ? cc.ring_size : CHASH_RING_DFLT);
    }
    if (lc->policy == LB_MAGLEV) {
        return lb_build_table(h, d, n, lc, c, table_size);
    }
    return true;
}

/* lb_index_add puts cluster |i| into the name index; false if the name is
 * there already. */
static bool lb_index_add(lb_cfg_t *cfg, size_t i)
{
    const lb_cluster_t *lc = &cfg->clusters[i];
    size_t s = (size_t)chash_hash64(lc->name, lc->name_len, 0) & cfg->index_mask;
    for (;; s = (s + 1) & cfg->index_mask) {
        uint32_t v = cfg->index[s];
        if (v == 0) {
            cfg->index[s] = (uint32_t)(i + 1);
            return true;
        }
        const lb_cluster_t *o = &cfg->clusters[v - 1];
        if (o->name_len == lc->name_len && memcmp(o->name, lc->name, lc->name_len) == 0) {
            return false;
        }
    }
}

static const slc_cfg_field_t lb_fields[] = {
    SLC_FIELD_STR("policy", lb_cfg_t, policy_text, .dflt = "round_robin"),
    SLC_FIELD_U32("min_health_percent", lb_cfg_t, min_health, .max = 100, .dflt = "0"),
    SLC_FIELD_NODE("clusters", lb_cfg_t, clusters_node),
    SLC_FIELD_END,
};

static slc_status_t lb_config_new(const slc_host_t *h, const slc_cfg_node_t *n, void **out_cfg,
                                  slc_diag_t *d)
{
    *out_cfg = NULL;
    /* Config-arena: freed by the host with the instance, so errors need no
     * unwinding. */
    lb_cfg_t *cfg = h->cfg_alloc(d, sizeof(*cfg));
    bool ok = h->cfg_bind(d, n, lb_fields, cfg) == SLC_OK;
    if (ok && cfg->policy_text != NULL) {
        const slc_cfg_node_t *pn = h->cfg_get(n, "policy");
        ok = lb_parse_policy(d, pn, cfg->policy_text, &cfg->dflt.policy);
        if (ok && lb_policy_hashes(cfg->dflt.policy)) {
            /* Tables are per cluster and built now; the clusters a default
             * would cover are not known to a filter. */
            slc_diag_error(d, pn,
                           "policy %s needs a hash key and a table per cluster: set it under "
                           "clusters.<name>.policy with a hash",
                           cfg->policy_text);
            ok = false;
        }
    }
    cfg->dflt.min_health = cfg->min_health;

    const slc_cfg_node_t *cn = cfg->clusters_node;
    if (cn != NULL && h->cfg_type(cn) != SLC_CFG_NULL) {
        if (h->cfg_type(cn) != SLC_CFG_MAP) {
            slc_diag_error(d, cn, "expected a map of cluster name to its load balancing settings");
            ok = false;
        } else {
            cfg->nclusters = h->cfg_len(cn);
        }
    }
    if (cfg->nclusters > 0) {
        cfg->clusters = h->cfg_alloc(d, cfg->nclusters * sizeof(*cfg->clusters));
        size_t slots = 4;
        while (slots < 2 * cfg->nclusters) {
            slots *= 2;
        }
        cfg->index = h->cfg_alloc(d, slots * sizeof(*cfg->index));
        cfg->index_mask = slots - 1;
        for (size_t i = 0; i < cfg->nclusters; i++) {
            /* Keep going after a bad cluster: report every problem at once. */
            const slc_cfg_node_t *v = h->cfg_at(cn, i);
            if (!lb_bind_cluster(h, d, cfg, h->cfg_key_at(cn, i), v, &cfg->clusters[i])) {
                ok = false;
            } else if (!lb_index_add(cfg, i)) {
                slc_diag_error(d, v, "cluster '%s' is listed twice", cfg->clusters[i].name);
                ok = false;
            }
        }
    }
    cfg->retry_api = slc_host_has(h, upstream_tried) && slc_host_has(h, req_attempts);
    cfg->usable_api = slc_host_has(h, cluster_usable_count);
    cfg->no_healthy = h->metric_new(d, SLC_METRIC_COUNTER, "lb_no_healthy_upstream_total",
                                    "Requests answered 503 because no endpoint was healthy");
    cfg->panic = h->metric_new(d, SLC_METRIC_COUNTER, "lb_panic_total",
                               "Requests balanced over all endpoints because fewer than "
                               "min_health_percent were healthy");
    if (!ok) {
        return SLC_EINVAL;
    }
    *out_cfg = cfg;
    return SLC_OK;
}

/* ---- hooks ----------------------------------------------------------------- */

static slc_status_t lb_worker_init(void *cfg, int worker_id, void **out_wctx)
{
    lb_worker_t *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        return SLC_ENOMEM;
    }
    w->cfg = cfg;
    w->first = (size_t)(worker_id > 0 ? worker_id : 0);
    w->overflow_next = w->first;
    /* Distinct streams per worker and per process. */
    slcu_rng_seed(&w->rng, (uint64_t)(uintptr_t)w ^ ((uint64_t)(unsigned)worker_id << 48));
    *out_wctx = w;
    return SLC_OK;
}

static void lb_worker_fini(void *cfg, void *wctx)
{
    (void)cfg;
    free(wctx);
}

/* lb_request_new hands the worker state to the stream hooks as their ctx:
 * the lb keeps nothing per stream, so it allocates nothing per stream. */
static slc_status_t lb_request_new(void *cfg, void *wctx, slc_req_t *r, void **out_ctx)
{
    (void)cfg;
    (void)r;
    *out_ctx = wctx;
    return SLC_OK;
}

static slc_action_t lb_no_healthy(lb_worker_t *w, slc_req_t *r)
{
    slc_host->set_response_flag(r, SLC_RF_UH);
    slc_host->metric_add(r, w->cfg->no_healthy, 1);
    slc_send_local_reply(r, 503, SLC_STR("text/plain"), SLC_STR("no healthy upstream\n"));
    return SLC_STOP;
}

static slc_action_t lb_on_upstream_select(void *ctx, slc_req_t *r)
{
    lb_worker_t *w = ctx;
    const lb_cfg_t *cfg = w->cfg;
    const slc_cluster_t *c = slc_host->route_cluster(r);
    if (c == NULL) {
        return SLC_CONTINUE; /* answered locally or not routed: nothing to pick */
    }
    lb_sel_t s = {.w = w, .r = r, .c = c, .n = slc_host->cluster_endpoint_count(c)};
    if (s.n == 0) {
        return lb_no_healthy(w, r);
    }
    lb_slot_t *slot = lb_slot(w, c);
    if (slot != NULL) {
        s.conf = slot->conf;
        s.cursor = &slot->next;
    } else {
        s.conf = lb_conf_by_name(cfg, slc_host->cluster_name(c));
        s.cursor = &w->overflow_next;
    }
    if (s.conf->min_health > 0) {
        /* Envoy's panic threshold: below it, health is ignored, so the
         * remaining healthy endpoints are not crushed by all the load. */
        size_t healthy = 0;
        if (cfg->usable_api) {
            healthy = slc_host->cluster_usable_count(c); /* cached by the core: O(1) */
        } else {
            for (size_t i = 0; i < s.n; i++) {
                const slc_endpoint_t *e = slc_host->cluster_endpoint(c, i);
                healthy += e != NULL && slc_host->endpoint_healthy(e);
            }
        }
        if (healthy * 100 < (size_t)s.conf->min_health * s.n) {
            s.panic = true;
            slc_host->metric_add(r, cfg->panic, 1);
        }
    }
    if (cfg->retry_api && slc_host->req_attempts(r) >= 1) {
        /* A retry (req_attempts counts the attempts already made). */
        s.avoid_tried = true;
    }
    if (lb_policy_hashes(s.conf->policy)) {
        s.have_key = lb_key(&s);
    }
    lb_pick_fn pick = lb_picks[s.conf->policy];
    const slc_endpoint_t *e = pick(&s);
    if (e == NULL && s.avoid_tried) {
        s.avoid_tried = false; /* every usable endpoint was tried: reuse one */
        e = pick(&s);
    }
    if (e == NULL) {
        return lb_no_healthy(w, r);
    }
    if (slc_host->upstream_set_endpoint(r, e) != SLC_OK) {
        return lb_no_healthy(w, r);
    }
    return SLC_CONTINUE;
}

static const slc_filter_desc_t lb_desc = {
    .abi_version = SLC_ABI_VERSION,
    .struct_size = sizeof(slc_filter_desc_t),
    .name = "lb",
    .version = "0.2.0",
    .config_new = lb_config_new,
    .worker_init = lb_worker_init,
    .worker_fini = lb_worker_fini,
    .request_new = lb_request_new,
    .on_upstream_select = lb_on_upstream_select,
};

SLC_FILTER_DEFINE(lb_desc)
