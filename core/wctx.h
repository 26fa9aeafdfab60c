/* wctx: a worker's context services (see wctx.c). THREAD: each runs on
 * the worker |w| it is given, except worker_notify / worker_notify_gen,
 * which any thread may call to post a note to |w|. */
#ifndef SLUICE_WCTX_H
#define SLUICE_WCTX_H

#include "coretypes.h"

/* Notes on a worker's pipe (worker_notify, read by worker.c's on_notify). */
/* Notes on the pipe are fixed-size, far below PIPE_BUF, so each write is
 * atomic and a read never splits one. */
typedef struct note {
    char kind; /* 'g' generation, 'd' drain, 'q' quit, 'p' streams wait for connections */
    gen_t *gen;
} note_t;

void worker_notify(worker_t *w, char msg);
void worker_notify_gen(worker_t *w, gen_t *g);
lstats_t *worker_lstats(worker_t *w, const char *listener);
cstats_t *worker_cstats(worker_t *w, const char *cluster);
/* cluster_stats: worker_cstats for |c|, through the generation's per-worker
 * slot (a lookup by name only the first time). */
static inline cstats_t *cluster_stats(worker_t *w, const slc_cluster_t *c)
{
    void **slot = &((struct slc_cluster *)c)->wstats[w->id];
    if (!*slot)
        *slot = worker_cstats(w, c->name);
    return *slot;
}
void worker_hold(holder_t *h);
void worker_release(worker_t *w, holder_t *h);
/* worker_drop_holder ends |w|'s hold on a retired generation no stream
 * holds any more: worker_fini of its filters, then the reference. */
void worker_drop_holder(worker_t *w, holder_t *h);
void worker_uuid(worker_t *w, char out[37]);
uint64_t worker_rand(worker_t *w);
uint64_t now_us(worker_t *w);
/* worker_timeout: a timeval for |ms| to pass to event_add on |w|'s base,
 * a common timeout when one is free. LIFETIME: |tmp| or the base. */
const struct timeval *worker_timeout(worker_t *w, uint64_t ms, struct timeval *tmp);

#endif
