/* worker: one thread, one event loop, its own listening sockets and
 * upstream pools; follows the server's current generation. */
#include "worker.h"
#include "h1down.h"
#include "mirror.h"
#include "bufmem.h"
#include "log.h"
#include "server.h"
#include "upstream.h"
#include "wctx.h"

#include <errno.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/time.h>
#include <unistd.h>

static void on_accept(struct evconnlistener *evl, evutil_socket_t fd, struct sockaddr *sa,
                      int salen, void *arg)
{
    lev_t *lv = arg;
    (void)evl;
    if (lv->w->draining) {
        close(fd);
        return;
    }
    dconn_accept(lv->w, lv->ls, fd, sa, salen);
}

/* How long a worker stops accepting after accept failed for lack of file
 * descriptors or memory (nginx and HAProxy pause the same way). The
 * connections wait in the kernel's backlog meanwhile. */
#define ACCEPT_PAUSE_MS 100

/* Memory a burst leaves behind (docs/performance.md). Every TRIM_MS the
 * worker returns the arena chunks that the interval did not need, keeping
 * ARENA_POOL_KEEP for light load; the pool never holds more than
 * ARENA_POOL_MAX (8 MiB), whatever the load. Likewise for libevent's
 * buffer blocks (bufmem.h) and for idle upstream connections past
 * UPOOL_KEEP per pool that no stream took for a whole interval. */
#define TRIM_MS         1000
#define ARENA_POOL_MAX  1024
#define ARENA_POOL_KEEP 4
#define BUFMEM_KEEP     4 /* blocks per size class */
#define UPOOL_KEEP      8 /* idle upstream connections per pool */
/* malloc_trim runs once the worker has served at least BURST_STREAMS
 * streams (or closed that many pooled connections) since the last one and
 * then gets quiet: fewer than BURST_STREAMS
 * new streams in an interval, or the streams in flight fell to a quarter
 * of their peak. */
#define BURST_STREAMS 64

static void on_trim(evutil_socket_t fd, short what, void *arg)
{
    worker_t *w = arg;
    (void)fd;
    (void)what;
    arena_pool_t *p = &w->arena_pool;
    /* A stream holds at least one chunk while it lives: the pool's counts
     * are the worker's load, at no cost per request. */
    size_t peak = p->peak_out, now = p->out, taken = p->taken;
    w->ticks++;
    arena_pool_trim(p, ARENA_POOL_KEEP);
    bufmem_trim(BUFMEM_KEEP);
    w->trim_debt += taken + upstream_pools_trim(w, UPOOL_KEEP);
    bool quiet = taken < BURST_STREAMS || (peak >= now + BURST_STREAMS && now <= peak / 4);
    if (w->trim_debt >= BURST_STREAMS && quiet) {
        /* The connections of a burst live on; what their requests
         * allocated from malloc is free, but malloc keeps the pages
         * between the survivors (by itself it gives back only the top of
         * a heap, and main.c raised that threshold to 64 MiB).
         * malloc_trim releases the whole free pages inside every heap. It
         * walks the free chunks, so it runs once when the load falls, not
         * while it holds. */
#ifndef __SANITIZE_ADDRESS__
        malloc_trim(0);
#else
        /* Under ASan the sanitizer's allocator owns every block and glibc's
         * heap is never used, nor set up: malloc_trim would initialize it
         * lazily, and two workers trimming at once raced in that
         * initialization (a SEGV inside glibc's mtrim). */
#endif
        w->trim_debt = 0;
    }
}

static void on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    lev_t *lv = arg;
    (void)fd;
    (void)what;
    evconnlistener_enable(lv->evl);
}

static void on_accept_error(struct evconnlistener *evl, void *arg)
{
    lev_t *lv = arg;
    int err = EVUTIL_SOCKET_ERROR();
    /* libevent retries EAGAIN, EINTR and ECONNABORTED itself; what reaches
     * us persists while the cause does, and the listening socket stays
     * readable: without a pause the loop would call accept in a spin. */
    int why = err == EMFILE ? 0 : err == ENFILE ? 1 : err == ENOBUFS ? 2 : 3;
    stat_inc(worker_lstats(lv->w, lv->ls->name)->accept_errors[why]);
    evconnlistener_disable(evl);
    struct timeval tv = {0, ACCEPT_PAUSE_MS * 1000};
    evtimer_add(lv->resume, &tv);
    uint64_t supp;
    if (log_limit_take(&lv->ls->accept_log, 1000, &supp))
        log_warn("accept failed; pausing accepts",
                 "listener=%s error=\"%s\" pause_ms=%d refused=%llu", lv->ls->name, strerror(err),
                 ACCEPT_PAUSE_MS, (unsigned long long)supp + 1);
}

static void lev_free(worker_t *w, lev_t *lv)
{
    event_free(lv->resume);
    evconnlistener_free(lv->evl); /* closes this worker's fd */
    lv->ls->fds[w->id] = -1;
    atomic_fetch_sub(&lv->ls->worker_refs, 1);
    free(lv);
}

/* sync_listeners makes this worker's accept events match |g|'s listeners. */
static void sync_listeners(worker_t *w, gen_t *g)
{
    for (lev_t **pp = &w->levs; *pp;) {
        lev_t *lv = *pp;
        bool keep = false;
        for (size_t i = 0; i < g->nlisteners && !w->draining; i++)
            if (g->listeners[i].lsock == lv->ls)
                keep = true;
        if (keep) {
            pp = &lv->next;
            continue;
        }
        *pp = lv->next;
        lev_free(w, lv);
    }
    if (w->draining)
        return;
    for (size_t i = 0; i < g->nlisteners; i++) {
        lsock_t *ls = g->listeners[i].lsock;
        bool have = false;
        for (lev_t *lv = w->levs; lv; lv = lv->next)
            if (lv->ls == ls)
                have = true;
        if (have || ls->fds[w->id] < 0)
            continue;
        lev_t *lv = calloc(1, sizeof(*lv));
        if (!lv)
            abort();
        lv->w = w;
        lv->ls = ls;
        lv->evl =
            evconnlistener_new(w->base, on_accept, lv, LEV_OPT_CLOSE_ON_FREE, 0, ls->fds[w->id]);
        if (!lv->evl) {
            log_error("cannot watch listening socket", "listener=%s", ls->name);
            free(lv);
            continue;
        }
        evconnlistener_set_error_cb(lv->evl, on_accept_error);
        lv->resume = evtimer_new(w->base, on_accept_resume, lv);
        if (!lv->resume)
            abort();
        atomic_fetch_add(&ls->worker_refs, 1);
        lv->next = w->levs;
        w->levs = lv;
    }
}

/* switch_gen moves this worker to |g|. The reference it holds on |g| was
 * taken by the main thread on our behalf when it published |g| (see
 * worker_notify_gen), so |g| cannot be freed between the publication and
 * this switch, however fast reloads follow each other. */
static void switch_gen(worker_t *w, gen_t *g)
{
    if (w->cur && w->cur->gen == g) {
        gen_unref(g); /* cannot be the last: our holder has one too */
        return;
    }
    holder_t *h = calloc(1, sizeof(*h));
    if (!h)
        abort();
    h->gen = g;
    h->current = true;
    for (size_t i = 0; i < g->nfilters; i++) {
        finst_t *fi = &g->filters[i];
        if (fi->cfg && fi->desc.worker_init &&
            fi->desc.worker_init(fi->cfg, w->id, &fi->wctx[w->id]) != SLC_OK) {
            /* Streams through this filter on this worker get a 500 instead
             * of running it with no worker state. */
            fi->wfailed[w->id] = 1;
            h->init_failures++;
            log_error("filter worker_init failed; its streams on this worker get 500",
                      "filter=%s worker=%d", fi->name, w->id);
        }
    }
    holder_t *old = w->cur;
    w->cur = h;
    sync_listeners(w, g);
    upstream_pools_retain(w, g);
    if (old) {
        old->current = false;
        old->next = w->retired;
        w->retired = old;
        if (old->refs == 0)
            worker_drop_holder(w, old);
    }
    log_debug("worker switched generation", "worker=%d generation=%llu", w->id,
              (unsigned long long)g->id);
}

static void on_notify(evutil_socket_t fd, short what, void *arg)
{
    worker_t *w = arg;
    note_t notes[32];
    (void)what;
    ssize_t n = read(fd, notes, sizeof(notes));
    for (ssize_t i = 0; n > 0 && i < n / (ssize_t)sizeof(note_t); i++) {
        switch (notes[i].kind) {
        case 'g':
            switch_gen(w, notes[i].gen);
            break;
        case 'd':
            if (!w->draining) {
                w->draining = true;
                if (w->cur)
                    sync_listeners(w, w->cur->gen);
                dconn_drain_all(w);
            }
            break;
        case 'q':
            event_base_loopbreak(w->base);
            break;
        case 'p':
            upstream_release_idle_for_waiters(w);
            break;
        }
    }
}

void worker_drain_notes(worker_t *w)
{
    note_t note;
    while (read(w->notify[0], &note, sizeof(note)) == (ssize_t)sizeof(note))
        if (note.kind == 'g' && gen_unref(note.gen))
            w->gen_dead(w->srv, note.gen);
}

static void *worker_main(void *arg)
{
    worker_t *w = arg;
    char name[16];
    snprintf(name, sizeof(name), "sluice-w%d", w->id);
    pthread_setname_np(pthread_self(), name);
    event_base_dispatch(w->base); /* the first note is the first generation */

    /* Shutdown: close what is left, drop the generation. */
    dconn_close_all(w);
    while (w->levs) {
        lev_t *lv = w->levs;
        w->levs = lv->next;
        lev_free(w, lv);
    }
    /* Shadows first: one still waiting in the pending queue must leave it
     * before the pools (and the queue's timer) go. */
    mirror_free_all(w);
    upstream_pools_free(w);
    sio_loop_cleanup(&w->sioloop);
    if (w->cur) {
        holder_t *h = w->cur;
        h->current = false;
        h->next = w->retired;
        w->retired = h;
        w->cur = NULL;
        if (h->refs == 0)
            worker_drop_holder(w, h);
    }
    return NULL;
}

int worker_start(worker_t *w)
{
    struct event_config *cfg = event_config_new();
    /* One loop per thread, touched only by its thread: no locks. */
    event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
    w->base = event_base_new_with_config(cfg);
    event_config_free(cfg);
    if (!w->base)
        return -1;
    if (pipe2(w->notify, O_NONBLOCK | O_CLOEXEC) != 0)
        return -1;
    sio_loop_init(&w->sioloop, w->base);
    w->rr = (uint64_t)w->id; /* workers start round robin at different endpoints */
    upstream_worker_init(w);
    w->notify_ev = event_new(w->base, w->notify[0], EV_READ | EV_PERSIST, on_notify, w);
    event_add(w->notify_ev, NULL);
    arena_pool_init(&w->arena_pool, ARENA_POOL_MAX);
    w->trim_ev = event_new(w->base, -1, EV_PERSIST, on_trim, w);
    struct timeval ttv = {TRIM_MS / 1000, (TRIM_MS % 1000) * 1000};
    event_add(w->trim_ev, &ttv);
    /* Random seeds keep request ids distinct across processes and restarts;
     * without getrandom, pid and worker id still separate the workers. */
    uint64_t seed;
    if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
        seed = (uint64_t)getpid() * 0x9E3779B97F4A7C15ull;
    slcu_rng_seed(&w->rng, seed ^ ((uint64_t)w->id << 56));
    if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
        return -1;
    return 0;
}
