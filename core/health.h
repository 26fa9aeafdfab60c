/* health: active health checks of a generation's clusters, run on the
 * main thread (see health.c). */
#ifndef SLUICE_HEALTH_H
#define SLUICE_HEALTH_H

#include "server.h"

void health_start(server_t *srv, gen_t *g);
void health_stop(server_t *srv);

#endif
