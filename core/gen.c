#include "gen.h"

#include "dns.h"

#include "log.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <time.h>

static _Atomic uint64_t next_gen_id = 1;

uint64_t gen_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)(ts.tv_nsec / 1000000);
}

static kept_t *ep_states, *cl_states; /* main thread only */

/* kept_get finds |key| in |list| and takes a reference, or makes a zeroed
 * entry of |size| bytes (a struct starting with kept_t). */
static void *kept_get(kept_t **list, const char *key, size_t size)
{
    for (kept_t *k = *list; k; k = k->next) {
        if (strcmp(k->key, key) == 0) {
            k->gens++;
            return k;
        }
    }
    kept_t *k = calloc(1, size);
    if (!k || !(k->key = strdup(key)))
        abort();
    k->gens = 1;
    k->next = *list;
    *list = k;
    return k;
}

static void kept_put(kept_t **list, kept_t *k)
{
    if (!k || --k->gens > 0)
        return;
    for (kept_t **pp = list; *pp; pp = &(*pp)->next) {
        if (*pp == k) {
            *pp = k->next;
            break;
        }
    }
    free(k->key);
    free(k);
}

static ep_state_t *ep_state_get(const char *cluster, const char *addr)
{
    char key[256];
    snprintf(key, sizeof(key), "%s|%s", cluster, addr);
    return kept_get(&ep_states, key, sizeof(ep_state_t));
}

typedef struct build_ctx {
    gen_t *g;
    finst_t *fi;
} build_ctx_t;

static const slc_cluster_t *build_cluster_lookup(void *build, slc_str_t name)
{
    build_ctx_t *b = build;
    return gen_cluster(b->g, name.ptr, name.len);
}

static void *build_alloc(void *build, size_t size)
{
    build_ctx_t *b = build;
    finst_t *fi = b->fi;
    if (fi->nallocs == fi->capallocs) {
        fi->capallocs = fi->capallocs ? fi->capallocs * 2 : 8;
        fi->allocs = realloc(fi->allocs, fi->capallocs * sizeof(void *));
        if (!fi->allocs)
            abort();
    }
    void *p = calloc(1, size ? size : 1);
    if (!p)
        abort();
    fi->allocs[fi->nallocs++] = p;
    return p;
}

static slc_metric_t *build_metric_new(void *build, slc_metric_kind_t kind, const char *name,
                                      const char *help)
{
    build_ctx_t *b = build;
    struct slc_metric *m = calloc(1, sizeof(*m));
    if (!m)
        abort();
    char fam[256];
    snprintf(fam, sizeof(fam), "sluice_%s", name);
    if (asprintf(&m->key, "%s{filter=\"%s\"}", fam, b->fi->name) < 0)
        abort();
    stats_describe(fam, kind == SLC_METRIC_GAUGE ? "gauge" : "counter", help ? help : name);
    m->kind = kind;
    m->per_worker = calloc((size_t)b->g->nworkers, sizeof(stat_t *));
    if (!m->per_worker)
        abort();
    m->next = b->fi->metrics;
    b->fi->metrics = m;
    return m;
}

static slc_status_t build_cluster_pool(void *build, const slc_cluster_t *cc,
                                       const slc_pool_options_t *o)
{
    build_ctx_t *b = build;
    slc_cluster_t *c = gen_cluster(b->g, cc->name, strlen(cc->name));
    if (!c || c != cc)
        return SLC_EINVAL;
    if (c->pool_owner)
        return SLC_EINVAL;
    size_t n = o->struct_size && o->struct_size < sizeof(*o) ? o->struct_size : sizeof(*o);
    slc_pool_options_t in = {0};
    memcpy(&in, o, n);
    if (in.connect_timeout_ms)
        c->pool.connect_timeout_ms = in.connect_timeout_ms;
    if (in.idle_timeout_ms)
        c->pool.idle_timeout_ms = in.idle_timeout_ms;
    c->pool.max_requests_per_connection = in.max_requests_per_connection;
    c->pool.max_connections = in.max_connections;
    c->pool.max_pending_requests = in.max_pending_requests;
    c->pool_owner = b->fi->name;
    return SLC_OK;
}

static slc_metric_t *build_metric_new_labeled(void *build, slc_metric_kind_t kind, const char *name,
                                              const char *help, const char *label,
                                              const char *value)
{
    build_ctx_t *b = build;
    struct slc_metric *m = build_metric_new(build, kind, name, help);
    char *key;
    /* Label values are config text (cluster names): keep the exposition
     * parseable whatever they contain. */
    char safe[128];
    size_t o = 0;
    for (const char *p = value ? value : ""; *p && o < sizeof(safe) - 1; p++)
        safe[o++] = (*p == '"' || *p == '\\' || *p == '\n') ? '_' : *p;
    safe[o] = '\0';
    if (asprintf(&key, "sluice_%s{filter=\"%s\",%s=\"%s\"}", name, b->fi->name,
                 label ? label : "label", safe) < 0)
        abort();
    free(m->key);
    m->key = key;
    return m;
}

slc_cluster_t *gen_cluster(const gen_t *g, const char *name, size_t len)
{
    for (size_t i = 0; i < g->nclusters; i++)
        if (strlen(g->clusters[i].name) == len && memcmp(g->clusters[i].name, name, len) == 0)
            return &g->clusters[i];
    return NULL;
}

/* The cache is a seqlock: a writer claims usable_ver (CAS to USABLE_BUSY),
 * stores the count and its expiry, then publishes the version it scanned
 * at, or 0 if the health version moved during its scan (its answer may
 * already be stale). A reader takes the pair only if it saw the same
 * published version before and after reading it. Contended or stale, a
 * caller just scans: the answer is always computed, only the caching is
 * best effort. */
#define USABLE_BUSY UINT64_MAX

uint32_t cluster_usable_count(struct slc_cluster *c, uint64_t now)
{
    /* Version 0 is "never computed": the cl_state counter starts at 0, so
     * the cache keys on version + 1. */
    uint64_t v = atomic_load_explicit(&c->st->health_version, memory_order_acquire) + 1;
    uint64_t seen = atomic_load_explicit(&c->usable_ver, memory_order_acquire);
    if (seen == v) {
        uint32_t n = atomic_load_explicit(&c->usable, memory_order_relaxed);
        uint64_t until = atomic_load_explicit(&c->usable_until, memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&c->usable_ver, memory_order_relaxed) == v && now < until)
            return n;
    }
    uint32_t n = 0;
    uint64_t until = UINT64_MAX;
    for (size_t i = 0; i < c->neps; i++) {
        const struct slc_endpoint *e = &c->eps[i];
        uint64_t ej = atomic_load_explicit(&e->st->ejected_until, memory_order_relaxed);
        if (ej > now && ej < until)
            until = ej; /* the count changes when this ejection ends */
        if (endpoint_usable(e, now))
            n++;
    }
    if (seen != USABLE_BUSY &&
        atomic_compare_exchange_strong_explicit(&c->usable_ver, &seen, USABLE_BUSY,
                                                memory_order_acquire, memory_order_relaxed)) {
        atomic_thread_fence(memory_order_release); /* BUSY is seen before the data changes */
        atomic_store_explicit(&c->usable, n, memory_order_relaxed);
        atomic_store_explicit(&c->usable_until, until, memory_order_relaxed);
        uint64_t now_v = atomic_load_explicit(&c->st->health_version, memory_order_acquire) + 1;
        atomic_store_explicit(&c->usable_ver, now_v == v ? v : 0, memory_order_release);
    }
    return n;
}

glistener_t *gen_listener(const gen_t *g, const char *name)
{
    for (size_t i = 0; i < g->nlisteners; i++)
        if (strcmp(g->listeners[i].conf->name, name) == 0)
            return &g->listeners[i];
    return NULL;
}

static char *module_path(const conf_t *c, const char *module)
{
    char *p;
    int r;
    if (module[0] == '/')
        r = asprintf(&p, "%s", module);
    else if (strchr(module, '/') || strstr(module, ".so"))
        r = asprintf(&p, "%s/%s", c->dir, module);
    else
        r = asprintf(&p, "%s/%s.so", c->filter_dir, module);
    if (r < 0)
        abort();
    return p;
}

static gen_resolver_fn resolver;
static void *resolver_arg;

void gen_set_resolver(gen_resolver_fn fn, void *arg)
{
    resolver = fn;
    resolver_arg = arg;
}

/* resolve_now: the addresses of |host|, from the server's DNS cache, or
 * (no server: --validate, unit tests) a blocking getaddrinfo. Returns a
 * malloc'd array of malloc'd strings. */
static char **resolve_now(const char *host, size_t *n)
{
    *n = 0;
    if (resolver) {
        size_t k;
        const char *const *a = resolver(resolver_arg, host, &k);
        char **out = calloc(k ? k : 1, sizeof(char *));
        if (!out)
            abort();
        for (size_t i = 0; i < k; i++)
            if (!(out[(*n)++] = strdup(a[i])))
                abort();
        return out;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *res = NULL;
    if (getaddrinfo(host, NULL, &hints, &res) != 0)
        return calloc(1, sizeof(char *));
    char **out = dns_addrinfo_ips(res, n);
    freeaddrinfo(res);
    return out;
}

static struct slc_endpoint *add_endpoint(slc_cluster_t *cl, size_t *cap, const char *addr)
{
    if (cl->neps == *cap) {
        *cap = *cap ? *cap * 2 : 4;
        cl->eps = realloc(cl->eps, *cap * sizeof(*cl->eps));
        if (!cl->eps)
            abort();
    }
    struct slc_endpoint *ep = &cl->eps[cl->neps];
    memset(ep, 0, sizeof(*ep));
    snprintf(ep->addr, sizeof(ep->addr), "%s", addr);
    conf_parse_address(ep->addr, &ep->sa, &ep->salen);
    ep->index = cl->neps++;
    return ep;
}

static void build_clusters(gen_t *g, slc_diag_t *d)
{
    conf_t *c = g->conf;
    g->clusters = calloc(c->nclusters ? c->nclusters : 1, sizeof(*g->clusters));
    if (!g->clusters)
        abort();
    for (size_t i = 0; i < c->nclusters; i++) {
        const conf_cluster_t *cc = &c->clusters[i];
        slc_cluster_t *cl = &g->clusters[g->nclusters++];
        cl->name = cc->name;
        cl->conf = cc;
        cl->index = i;
        cl->pool.struct_size = sizeof(cl->pool);
        cl->pool.connect_timeout_ms = cc->connect_timeout_ms;
        cl->pool.idle_timeout_ms = cc->idle_timeout_ms;
        cl->st = kept_get(&cl_states, cl->name, sizeof(cl_state_t));
        /* A slot per worker and one more for the main thread, whose health
         * checks go through the same pool code (server_t.probe). */
        cl->wstats = calloc((size_t)(g->nworkers > 0 ? g->nworkers : 1) + 1, sizeof(void *));
        if (!cl->wstats)
            abort();
        size_t cap = 0;
        for (size_t e = 0; e < cc->nendpoints; e++) {
            if (cc->resolution != CONF_RES_DNS) {
                add_endpoint(cl, &cap, cc->endpoints[e]);
                continue;
            }
            /* One endpoint per address the name resolves to (STRICT_DNS). */
            char host[256], addr[300];
            int port;
            if (conf_split_hostport(cc->endpoints[e], host, sizeof(host), &port) != 0)
                continue;
            size_t n;
            char **ips = resolve_now(host, &n);
            if (n == 0 && d)
                diag_warnf(d, cfg_at(cc->endpoints_node, e),
                           "'%s' does not resolve (yet): the endpoint is left out", host);
            for (size_t k = 0; k < n; k++) {
                snprintf(addr, sizeof(addr), strchr(ips[k], ':') ? "[%s]:%d" : "%s:%d", ips[k],
                         port);
                add_endpoint(cl, &cap, addr);
                free(ips[k]);
            }
            free(ips);
        }
        if (!cl->eps && !(cl->eps = calloc(1, sizeof(*cl->eps))))
            abort();
        for (size_t e = 0; e < cl->neps; e++) {
            cl->eps[e].cluster = cl;
            cl->eps[e].st = ep_state_get(cl->name, cl->eps[e].addr);
            cl->eps[e].wpool =
                calloc((size_t)(g->nworkers > 0 ? g->nworkers : 1) + 1, sizeof(ep_pool_slot_t));
            if (!cl->eps[e].wpool)
                abort();
        }
    }
}

static int build_filters(gen_t *g, const slc_host_t *host, slc_diag_t *d)
{
    conf_t *c = g->conf;
    g->filters = calloc(c->nfilters ? c->nfilters : 1, sizeof(*g->filters));
    if (!g->filters)
        abort();
    for (size_t i = 0; i < c->nfilters; i++) {
        const conf_filter_t *cf = &c->filters[i];
        finst_t *fi = &g->filters[g->nfilters++];
        fi->name = cf->name;
        fi->conf = cf;
        fi->wctx = calloc((size_t)g->nworkers, sizeof(void *));
        fi->wfailed = calloc((size_t)g->nworkers, 1);
        if (!fi->wctx || !fi->wfailed)
            abort();
        char *path = module_path(c, cf->module);
        char err[1024];
        fi->mod = module_load(path, host, err, sizeof(err));
        free(path);
        if (!fi->mod) {
            diag_errorf(d, cfg_get(cf->node, "module"), "%s", err);
            continue;
        }
        size_t sz = fi->mod->desc->struct_size;
        memcpy(&fi->desc, fi->mod->desc, sz < sizeof(fi->desc) ? sz : sizeof(fi->desc));
        if (!fi->desc.config_new)
            continue;
        build_ctx_t b = {g, fi};
        d->build = &b;
        d->instance = fi->name;
        d->module_abi = fi->mod->abi;
        d->cluster_lookup = build_cluster_lookup;
        d->instance_alloc = build_alloc;
        d->metric_new = build_metric_new;
        d->metric_new_labeled = build_metric_new_labeled;
        d->cluster_pool = build_cluster_pool;
        size_t before = d->nerrors;
        const slc_cfg_node_t *node = cf->config;
        if (!node || node->type == SLC_CFG_NULL) {
            /* The SDK promises a map: an empty one, marked where the filter
             * is declared so its diagnostics still have a location. */
            struct slc_cfg_node *empty = cfg_tree_alloc(c->tree, sizeof(*empty));
            empty->type = SLC_CFG_MAP;
            empty->line = cf->node->line;
            empty->col = cf->node->col;
            empty->path = cf->node->path;
            node = empty;
        }
        slc_status_t st = fi->desc.config_new(host, node, &fi->cfg, d);
        if (st != SLC_OK && d->nerrors == before)
            diag_errorf(d, node ? node : cf->node,
                        "filter '%s' (module %s) rejected its configuration (status %d)", fi->name,
                        fi->desc.name, (int)st);
        if (st != SLC_OK)
            fi->cfg = NULL;
        d->build = NULL;
        d->instance = NULL;
        d->module_abi = 0;
    }
    return d->nerrors ? -1 : 0;
}

static void chain_build(gen_t *g, glistener_t *gl)
{
    const conf_listener_t *l = gl->conf;
    chain_t *ch = &gl->chain;
    ch->n = l->nchain;
    ch->f = calloc(ch->n ? ch->n : 1, sizeof(finst_t *));
    for (int p = 0; p < PH_COUNT; p++)
        ch->ph[p] = calloc(ch->n ? ch->n : 1, sizeof(uint16_t));
    ch->with_ctx = calloc(ch->n ? ch->n : 1, sizeof(uint16_t));
    for (size_t i = 0; i < ch->n; i++) {
        for (size_t f = 0; f < g->nfilters; f++)
            if (strcmp(g->filters[f].name, l->chain[i]) == 0)
                ch->f[i] = &g->filters[f];
    }
    /* Request side in chain order, response side in reverse. */
    for (size_t i = 0; i < ch->n; i++) {
        const slc_filter_desc_t *d = &ch->f[i]->desc;
        if (d->request_new)
            ch->with_ctx[ch->nwith_ctx++] = (uint16_t)i;
        if (d->on_request_headers)
            ch->ph[PH_REQ_HEADERS][ch->nph[PH_REQ_HEADERS]++] = (uint16_t)i;
        if (d->on_request_body)
            ch->ph[PH_REQ_BODY][ch->nph[PH_REQ_BODY]++] = (uint16_t)i;
        if (d->on_upstream_select)
            ch->ph[PH_UP_SELECT][ch->nph[PH_UP_SELECT]++] = (uint16_t)i;
        if (d->on_upstream_connect)
            ch->ph[PH_UP_CONNECT][ch->nph[PH_UP_CONNECT]++] = (uint16_t)i;
        if (d->on_connection)
            ch->ph[PH_CONNECTION][ch->nph[PH_CONNECTION]++] = (uint16_t)i;
        if (d->on_upstream_result)
            ch->ph[PH_UP_RESULT][ch->nph[PH_UP_RESULT]++] = (uint16_t)i;
    }
    for (size_t k = ch->n; k-- > 0;) {
        const slc_filter_desc_t *d = &ch->f[k]->desc;
        if (d->on_response_headers)
            ch->ph[PH_RESP_HEADERS][ch->nph[PH_RESP_HEADERS]++] = (uint16_t)k;
        if (d->on_response_body)
            ch->ph[PH_RESP_BODY][ch->nph[PH_RESP_BODY]++] = (uint16_t)k;
        if (d->on_complete)
            ch->ph[PH_COMPLETE][ch->nph[PH_COMPLETE]++] = (uint16_t)k;
    }
    size_t cap = 32;
    for (size_t i = 0; i < ch->nph[PH_UP_CONNECT]; i++)
        cap += strlen(ch->f[ch->ph[PH_UP_CONNECT][i]]->name) + 32;
    ch->up_sig = calloc(1, cap);
    if (!ch->up_sig)
        abort();
    if (ch->nph[PH_UP_CONNECT]) {
        size_t o = (size_t)snprintf(ch->up_sig, cap, "g%llu", (unsigned long long)g->id);
        for (size_t i = 0; i < ch->nph[PH_UP_CONNECT]; i++)
            o += (size_t)snprintf(ch->up_sig + o, cap - o, "|%s",
                                  ch->f[ch->ph[PH_UP_CONNECT][i]]->name);
    }
}

gen_t *gen_build(conf_t *conf, int nworkers, const slc_host_t *host, slc_diag_t *d)
{
    gen_t *g = calloc(1, sizeof(*g));
    if (!g)
        abort();
    atomic_init(&g->refs, 1);
    g->conf = conf;
    g->nworkers = nworkers;
    build_clusters(g, d);
    if (build_filters(g, host, d) != 0)
        goto fail;
    g->id = atomic_fetch_add(&next_gen_id, 1);
    g->listeners = calloc(conf->nlisteners, sizeof(*g->listeners));
    if (!g->listeners)
        abort();
    for (size_t i = 0; i < conf->nlisteners; i++) {
        glistener_t *gl = &g->listeners[g->nlisteners++];
        gl->conf = &conf->listeners[i];
        chain_build(g, gl);
    }
    return g;
fail:
    gen_free(g);
    return NULL;
}

void gen_ref(gen_t *g)
{
    atomic_fetch_add_explicit(&g->refs, 1, memory_order_relaxed);
}

bool gen_unref(gen_t *g)
{
    return atomic_fetch_sub_explicit(&g->refs, 1, memory_order_acq_rel) == 1;
}

void gen_free(gen_t *g)
{
    if (!g)
        return;
    for (size_t i = 0; i < g->nlisteners; i++) {
        chain_t *ch = &g->listeners[i].chain;
        free(ch->f);
        for (int p = 0; p < PH_COUNT; p++)
            free(ch->ph[p]);
        free(ch->with_ctx);
        free(ch->up_sig);
    }
    free(g->listeners);
    for (size_t i = 0; i < g->nfilters; i++) {
        finst_t *fi = &g->filters[i];
        if (fi->cfg && fi->desc.config_free)
            fi->desc.config_free(fi->cfg);
        for (size_t k = 0; k < fi->nallocs; k++)
            free(fi->allocs[k]);
        free(fi->allocs);
        while (fi->metrics) {
            struct slc_metric *m = fi->metrics;
            fi->metrics = m->next;
            free(m->key);
            free(m->per_worker);
            free(m);
        }
        free(fi->wctx);
        free(fi->wfailed);
        module_unref(fi->mod);
    }
    free(g->filters);
    for (size_t i = 0; i < g->nclusters; i++) {
        for (size_t e = 0; e < g->clusters[i].neps; e++) {
            kept_put(&ep_states, g->clusters[i].eps[e].st ? &g->clusters[i].eps[e].st->kept : NULL);
            free(g->clusters[i].eps[e].wpool);
        }
        kept_put(&cl_states, g->clusters[i].st ? &g->clusters[i].st->kept : NULL);
        free(g->clusters[i].eps);
        free(g->clusters[i].wstats);
    }
    free(g->clusters);
    conf_free(g->conf);
    free(g);
}
