/* wctx: the services of a worker's context that every layer running on
 * the worker uses (the downstream codec, streams, upstream pools, mirror):
 * the loop's clock and timers, the PRNG and request ids, per-listener and
 * per-cluster counters, generation holds, and notes to a worker's pipe.
 * It calls nothing above it: the one way back, a generation's last
 * reference going, is the worker's gen_dead callback (set by the server).
 * worker.c, which runs the thread and the loop, sits above all of them. */
#include "wctx.h"
#include "log.h"

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <unistd.h>

uint64_t now_us(worker_t *w)
{
    struct timeval tv;
    /* The loop's cached clock: no syscall per timestamp on the hot path. */
    if (!w || event_base_gettimeofday_cached(w->base, &tv) != 0)
        gettimeofday(&tv, NULL);
    return (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
}

static uint64_t rng_next(worker_t *w)
{
    /* Request ids need uniqueness, not secrecy: the util PRNG will do. */
    return slcu_rng_next(&w->rng);
}

const struct timeval *worker_timeout(worker_t *w, uint64_t ms, struct timeval *tmp)
{
    tmp->tv_sec = (time_t)(ms / 1000);
    tmp->tv_usec = (suseconds_t)((ms % 1000) * 1000);
    for (int i = 0; i < w->nctos; i++)
        if (w->ctos[i].ms == ms)
            return w->ctos[i].tv;
    if (w->nctos == (int)(sizeof(w->ctos) / sizeof(w->ctos[0])))
        return tmp; /* a few durations are common; the rest use the heap */
    const struct timeval *tv = event_base_init_common_timeout(w->base, tmp);
    if (!tv)
        return tmp;
    w->ctos[w->nctos].ms = ms;
    w->ctos[w->nctos++].tv = tv;
    return tv;
}

uint64_t worker_rand(worker_t *w)
{
    return rng_next(w);
}

void worker_uuid(worker_t *w, char out[37])
{
    uint8_t b[16];
    uint64_t a = rng_next(w), c = rng_next(w);
    memcpy(b, &a, 8);
    memcpy(b + 8, &c, 8);
    b[6] = (uint8_t)((b[6] & 0x0f) | 0x40);
    b[8] = (uint8_t)((b[8] & 0x3f) | 0x80);
    static const char hex[] = "0123456789abcdef";
    int o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[b[i] >> 4];
        out[o++] = hex[b[i] & 15];
    }
    out[o] = '\0';
}

lstats_t *worker_lstats(worker_t *w, const char *listener)
{
    for (lstats_t *l = w->lstats; l; l = l->next)
        if (strcmp(l->name, listener) == 0)
            return l;
    lstats_t *l = calloc(1, sizeof(*l));
    if (!l)
        abort();
    l->name = strdup(listener);
    l->conns_total =
        stats_getf(w->stats, "sluice_downstream_connections_total{listener=\"%s\"}", listener);
    l->conns_active =
        stats_getf(w->stats, "sluice_downstream_connections_active{listener=\"%s\"}", listener);
    static const char *const cls[6] = {"1xx", "2xx", "3xx", "4xx", "5xx", "other"};
    for (int i = 0; i < 6; i++)
        l->req_class[i] = stats_getf(
            w->stats, "sluice_requests_total{listener=\"%s\",code_class=\"%s\"}", listener, cls[i]);
    l->aborts = stats_getf(w->stats, "sluice_downstream_aborts_total{listener=\"%s\"}", listener);
    static const char *const why[4] = {"emfile", "enfile", "enobufs", "other"};
    for (int i = 0; i < 4; i++)
        l->accept_errors[i] = stats_getf(
            w->stats, "sluice_downstream_accept_errors_total{listener=\"%s\",reason=\"%s\"}",
            listener, why[i]);
    l->next = w->lstats;
    w->lstats = l;
    return l;
}

cstats_t *worker_cstats(worker_t *w, const char *cluster)
{
    for (cstats_t *c = w->cstats; c; c = c->next)
        if (strcmp(c->name, cluster) == 0)
            return c;
    cstats_t *c = calloc(1, sizeof(*c));
    if (!c)
        abort();
    c->name = strdup(cluster);
    c->requests = stats_getf(w->stats, "sluice_upstream_requests_total{cluster=\"%s\"}", cluster);
    c->connect_fail =
        stats_getf(w->stats, "sluice_upstream_connect_failures_total{cluster=\"%s\"}", cluster);
    c->timeouts = stats_getf(w->stats, "sluice_upstream_timeouts_total{cluster=\"%s\"}", cluster);
    c->cx_total =
        stats_getf(w->stats, "sluice_upstream_connections_total{cluster=\"%s\"}", cluster);
    c->cx_active =
        stats_getf(w->stats, "sluice_upstream_connections_active{cluster=\"%s\"}", cluster);
    c->resets = stats_getf(w->stats, "sluice_upstream_resets_total{cluster=\"%s\"}", cluster);
    c->overflow = stats_getf(w->stats, "sluice_upstream_overflow_total{cluster=\"%s\"}", cluster);
    c->pending = stats_getf(w->stats, "sluice_upstream_pending{cluster=\"%s\"}", cluster);
    static const char *const flags[5] = {"UF", "UC", "UR", "UT", "UPE"};
    for (int i = 0; i < 5; i++)
        c->faults[i] =
            stats_getf(w->stats, "sluice_upstream_faults_total{cluster=\"%s\",flag=\"%s\"}",
                       cluster, flags[i]);
    static const char *const why[4] = {"reuse_readable", "idle_readable", "leftover", "idle_trim"};
    for (int i = 0; i < 4; i++)
        c->discards[i] = stats_getf(
            w->stats, "sluice_upstream_pool_discards_total{cluster=\"%s\",reason=\"%s\"}", cluster,
            why[i]);
    c->next = w->cstats;
    w->cstats = c;
    return c;
}

void worker_hold(holder_t *h)
{
    h->refs++;
}

void worker_drop_holder(worker_t *w, holder_t *h)
{
    gen_t *g = h->gen;
    /* worker_fini runs on the worker that ran worker_init. */
    for (size_t i = 0; i < g->nfilters; i++) {
        finst_t *fi = &g->filters[i];
        if (fi->cfg && fi->desc.worker_fini && fi->wctx[w->id])
            fi->desc.worker_fini(fi->cfg, fi->wctx[w->id]);
        fi->wctx[w->id] = NULL;
    }
    for (holder_t **pp = &w->retired; *pp; pp = &(*pp)->next) {
        if (*pp == h) {
            *pp = h->next;
            break;
        }
    }
    free(h);
    if (gen_unref(g))
        w->gen_dead(w->srv, g);
}

void worker_release(worker_t *w, holder_t *h)
{
    if (--h->refs == 0 && !h->current)
        worker_drop_holder(w, h);
}

static void notify(worker_t *w, char kind, gen_t *gen)
{
    /* Zeroed whole, padding included: the bytes go through a pipe, and
     * valgrind rightly reports uninitialised padding written by write(2). */
    note_t note;
    memset(&note, 0, sizeof(note));
    note.kind = kind;
    note.gen = gen;
    if (write(w->notify[1], &note, sizeof(note)) != (ssize_t)sizeof(note))
        log_error("cannot notify worker", "worker=%d note=%c", w->id, kind);
}

void worker_notify(worker_t *w, char msg)
{
    notify(w, msg, NULL);
}

void worker_notify_gen(worker_t *w, gen_t *g)
{
    gen_ref(g); /* the worker's reference, handed over with the note */
    notify(w, 'g', g);
}
