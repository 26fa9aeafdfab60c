/* hostapi: the host table filters call (slc_host_t), over streams,
 * connections and the configuration. */
#ifndef SLUICE_HOSTAPI_H
#define SLUICE_HOSTAPI_H

#include "coretypes.h"

extern const slc_host_t host_table;

/* retry_policy_copy copies the filter's policy |p| into arena |a| in this
 * build's layout: members beyond p->struct_size are zero, and |statuses|
 * always points at the retriable statuses (arena memory: the 1.3 array, or
 * the 1.1 fixed array of an older filter), so the retry logic reads one
 * form. SLC_ENOMEM when the arena is exhausted. */
slc_status_t retry_policy_copy(arena_t *a, const slc_retry_policy_t *p, slc_retry_policy_t **out);

/* conn_sio: the socket behind an SDK connection handle. */
sio_t *conn_sio(slc_conn_t *c);

#endif
