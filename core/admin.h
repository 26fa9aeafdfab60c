/* admin: the admin listener (/metrics, /ready, /config...), on the main
 * thread (see admin.c). */
#ifndef SLUICE_ADMIN_H
#define SLUICE_ADMIN_H

#include "server.h"

/* admin_start listens on |address|; 0 or -1 (logged). */
int admin_start(server_t *srv, const char *address);
void admin_stop(server_t *srv);

#endif
