/* h1down: the downstream HTTP/1.1 codec (see h1down.c). THREAD: the
 * worker's. */
#ifndef SLUICE_H1DOWN_H
#define SLUICE_H1DOWN_H

#include "coretypes.h"

#include <sys/socket.h>

/* down_codec_for_alpn: which downstream codec serves a connection whose
 * transport negotiated |alpn| (empty: none negotiated, or no transport).
 * HTTP/1.1 for every value that means it (Istio's mesh values too); h2 and
 * istio-h2 have no codec yet and are never offered by the mtls filter. */
typedef enum { DOWN_CODEC_NONE, DOWN_CODEC_H1 } down_codec_t;
down_codec_t down_codec_for_alpn(slc_str_t alpn);

/* dconn_accept takes ownership of |fd|, accepted on |ls| by |w|. */
void dconn_accept(worker_t *w, lsock_t *ls, int fd, const struct sockaddr *sa, int salen);
/* dconn_drain_all: idle connections close now, busy ones after their
 * stream. */
void dconn_drain_all(worker_t *w);
/* dconn_close_all closes every connection, ending streams in flight. */
void dconn_close_all(worker_t *w);

#endif
