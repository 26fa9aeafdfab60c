/* server: the main thread — configuration, generations, reload, signals,
 * listening sockets and the admin listener. */
#ifndef SLUICE_SERVER_H
#define SLUICE_SERVER_H

#include "dns.h"
#include "coretypes.h"
#include "wctx.h"

typedef struct checker checker_t; /* health.c */

typedef struct server {
    char *config_path;
    struct event_base *base; /* main loop: signals, admin, gen frees */
    _Atomic(gen_t *) current;
    int nworkers;
    worker_t *workers;
    stats_shard_t **shards; /* [nworkers + 1]: workers then main */
    stats_shard_t *main_stats;
    lsock_t *lsocks;
    int gen_pipe[2]; /* workers hand back unreferenced generations */
    struct event *gen_ev;
    struct event *sig_hup, *sig_term, *sig_int, *drain_ev;
    struct evconnlistener *admin;
    char admin_bound[64];
    /* A descriptor held back for the admin listener: at the process's fd
     * limit it is closed to accept one operator connection, and taken again
     * when that connection ends (admin.c). -1 while lent out. */
    int admin_reserve;
    struct event *admin_resume;
    bool draining;
    uint64_t drain_deadline_us;
    int exit_code;
    _Atomic int gens_alive;
    /* The main thread as a worker of its own for the pool code: health
     * checks make their exchanges on it (id nworkers, the main stats
     * shard, no generation held, nothing pooled). */
    worker_t probe;
    checker_t *checkers;  /* health checks of the current generation */
    dns_t *dns;           /* created when a configuration first needs it */
    struct event *dns_ev; /* periodic re-resolution of the current generation's names */
    uint64_t reload_seq;  /* a reload waiting for DNS answers is dropped if this moved */
    bool reload_pending;
} server_t;

/* server_run loads |path|, starts everything and runs until shutdown.
 * Returns the process exit code. */
int server_run(const char *path);
/* server_validate loads and builds |path| without serving; prints every
 * error on stderr. Returns 0 if the configuration is valid. */
int server_validate(const char *path);
/* server_load builds a generation from |path|; NULL (and |d| filled) on
 * error. */
gen_t *server_load(const char *path, int nworkers, slc_diag_t *d);

/* server_gen_dead is called on a worker thread when it dropped the last
 * reference of |g|: hands it to the main thread for gen_free. */
void server_gen_dead(server_t *srv, gen_t *g);

#endif
