/* worker: a worker thread and its event loop (wctx.h has the services a
 * worker offers the modules that run on it). */
#ifndef SLUICE_WORKER_H
#define SLUICE_WORKER_H

#include "coretypes.h"

/* worker_start starts |w|'s thread; 0 or -1. */
int worker_start(worker_t *w);
/* worker_drain_notes: after the thread ended, drop references in unread notes. */
void worker_drain_notes(worker_t *w);

#endif
