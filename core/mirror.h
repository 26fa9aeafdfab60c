/* mirror: fire-and-forget copies of requests to a second cluster (see
 * mirror.c). THREAD: the worker's. */
#ifndef SLUICE_MIRROR_H
#define SLUICE_MIRROR_H

#include "coretypes.h"

/* mirror_start sends the copy of |s|'s request (complete by now) to
 * s->mirror, once; the shadow then lives on its own. */
void mirror_start(stream_t *s);
/* mirror_free_all ends every shadow of |w| (worker shutdown). */
void mirror_free_all(worker_t *w);

#endif
