/* server: the main thread. Loads configuration generations, owns the
 * listening sockets, publishes generations to the workers, reloads on
 * SIGHUP and drains on SIGTERM. */
#include "admin.h"
#include "health.h"
#include "hostapi.h"
#include "worker.h"
#include "wctx.h"
#include "server.h"
#include "upstream.h"

#include "log.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

static void describe_core_metrics(void)
{
    stats_describe("sluice_downstream_connections_total", "counter",
                   "Downstream connections accepted.");
    stats_describe("sluice_downstream_connections_active", "gauge",
                   "Downstream connections open now.");
    stats_describe("sluice_requests_total", "counter",
                   "Requests answered, by listener and status class.");
    stats_describe("sluice_downstream_protocol_errors_total", "counter",
                   "Malformed downstream requests, by reason.");
    stats_describe("sluice_upstream_requests_total", "counter", "Requests sent upstream.");
    stats_describe("sluice_upstream_connect_failures_total", "counter",
                   "Upstream connection attempts that failed or timed out.");
    stats_describe("sluice_upstream_timeouts_total", "counter",
                   "Requests that hit their route or per-try timeout (flag UT).");
    stats_describe("sluice_upstream_connections_total", "counter",
                   "Upstream connections established.");
    stats_describe("sluice_upstream_connections_active", "gauge",
                   "Upstream connections open now (busy or pooled).");
    stats_describe("sluice_upstream_resets_total", "counter",
                   "Upstream connections lost or malformed before a complete response head.");
    stats_describe("sluice_streams_active", "gauge", "Requests in flight.");
    stats_describe("sluice_downstream_aborts_total", "counter",
                   "Requests whose client went away before the response completed.");
    stats_describe("sluice_downstream_accept_errors_total", "counter",
                   "Failed accepts (each pauses accepting for 100 ms), by errno.");
    stats_describe("sluice_upstream_faults_total", "counter",
                   "Failed upstream attempts, by response flag (UF, UC, UR, UT, UPE).");
    stats_describe("sluice_upstream_pool_discards_total", "counter",
                   "Pooled upstream connections closed because the upstream spoke out of turn.");
    stats_describe(
        "sluice_upstream_overflow_total", "counter",
        "Requests refused at once because the cluster's pending queue was full (503 UO).");
    stats_describe("sluice_upstream_pending", "gauge",
                   "Requests waiting for a connection (cluster at max_connections).");
    stats_describe("sluice_dns_refreshes_total", "counter",
                   "Periodic re-resolutions of DNS cluster names, by outcome.");
    stats_describe("sluice_health_checks_total", "counter",
                   "Active health checks by cluster and result.");
    stats_describe("sluice_mirror_requests_total", "counter",
                   "Mirrored (shadow) requests by cluster and result (sent or why not).");
    stats_describe("sluice_config_reloads_total", "counter", "Configuration reloads, by result.");
    stats_describe("sluice_config_generation", "gauge",
                   "Id of the configuration generation serving new requests.");
    stats_describe("sluice_config_generations_alive", "gauge",
                   "Configuration generations still in memory (current + draining).");
}

gen_t *server_load(const char *path, int nworkers, slc_diag_t *d)
{
    conf_t *c = conf_load(path, d);
    if (!c)
        return NULL;
    return gen_build(c, nworkers > 0 ? nworkers : (int)c->workers, &host_table, d);
}

int server_validate(const char *path)
{
    slc_diag_t d;
    diag_init(&d, NULL);
    gen_t *g = server_load(path, 0, &d);
    diag_print(&d, stderr);
    int rc = (g && d.nerrors == 0) ? 0 : 1;
    if (rc == 0)
        printf("%s: configuration ok\n", path);
    else
        fprintf(stderr, "%s: %zu error%s\n", path, d.nerrors, d.nerrors == 1 ? "" : "s");
    gen_free(g);
    diag_cleanup(&d);
    module_tmpdir_cleanup();
    return rc;
}

/* ---- listening sockets ------------------------------------------------ */

static int listen_one(const struct sockaddr_storage *ss, int len, char *err, size_t errlen)
{
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        snprintf(err, errlen, "%s", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    /* One socket per worker on the same address: the kernel spreads
     * connections across them, and no accept lock is needed. */
    setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)ss, (socklen_t)len) != 0 || listen(fd, 4096) != 0) {
        snprintf(err, errlen, "%s", strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* in_use_elsewhere: SO_REUSEPORT lets a second process bind our address
 * and silently take a share of its connections. Before opening sockets we
 * own none of, try a plain bind: EADDRINUSE means someone else has it. */
static bool in_use_elsewhere(server_t *srv, const struct sockaddr_storage *ss, int len)
{
    for (lsock_t *ls = srv->lsocks; ls; ls = ls->next) {
        struct sockaddr_storage o;
        int ol;
        if (conf_parse_address(ls->address, &o, &ol) == 0 && ol == len &&
            memcmp(&o, ss, (size_t)len) == 0)
            return false; /* ours (a renamed listener): sharing is intended */
    }
    if (ss->ss_family == AF_INET && ((const struct sockaddr_in *)ss)->sin_port == 0)
        return false;
    int fd = socket(ss->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    bool busy = bind(fd, (const struct sockaddr *)ss, (socklen_t)len) != 0 && errno == EADDRINUSE;
    close(fd);
    return busy;
}

static lsock_t *lsock_open(server_t *srv, const conf_listener_t *l, char *err, size_t errlen)
{
    struct sockaddr_storage ss;
    int len;
    if (conf_parse_address(l->address, &ss, &len) != 0) {
        snprintf(err, errlen, "cannot parse address '%s'", l->address);
        return NULL;
    }
    if (in_use_elsewhere(srv, &ss, len)) {
        snprintf(err, errlen, "cannot bind listener '%s' to '%s': address already in use", l->name,
                 l->address);
        return NULL;
    }
    lsock_t *ls = calloc(1, sizeof(*ls));
    if (!ls)
        abort();
    ls->fds = malloc((size_t)srv->nworkers * sizeof(int));
    if (!ls->fds)
        abort();
    for (int i = 0; i < srv->nworkers; i++)
        ls->fds[i] = -1;
    for (int i = 0; i < srv->nworkers; i++) {
        char e[256];
        ls->fds[i] = listen_one(&ss, len, e, sizeof(e));
        if (ls->fds[i] < 0) {
            snprintf(err, errlen, "cannot bind listener '%s' to '%s': %s", l->name, l->address, e);
            for (int k = 0; k < i; k++)
                close(ls->fds[k]);
            free(ls->fds);
            free(ls);
            return NULL;
        }
        if (i == 0) {
            /* Port 0: every worker's socket must share the port chosen. */
            socklen_t sl = sizeof(ss);
            getsockname(ls->fds[0], (struct sockaddr *)&ss, &sl);
            len = (int)sl;
        }
    }
    ls->name = strdup(l->name);
    ls->address = strdup(l->address);
    char host[64] = "?";
    int port = 0;
    if (ss.ss_family == AF_INET) {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
        port = ntohs(s4->sin_port);
        if (asprintf(&ls->bound, "%s:%d", host, port) < 0)
            abort();
    } else {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
        port = ntohs(s6->sin6_port);
        if (asprintf(&ls->bound, "[%s]:%d", host, port) < 0)
            abort();
    }
    ls->next = srv->lsocks;
    srv->lsocks = ls;
    log_info("listening", "listener=%s address=%s", ls->name, ls->bound);
    return ls;
}

/* bind_listeners attaches an lsock to each listener of |g|: the existing
 * one for an unchanged address (so no connection is refused during a
 * reload), a new one otherwise. */
static int bind_listeners(server_t *srv, gen_t *g, char *err, size_t errlen)
{
    for (size_t i = 0; i < g->nlisteners; i++) {
        glistener_t *gl = &g->listeners[i];
        for (lsock_t *ls = srv->lsocks; ls; ls = ls->next) {
            /* Workers read ls->name concurrently, so a renamed listener
             * gets new sockets rather than a rename in place. */
            if (ls->in_use && strcmp(ls->address, gl->conf->address) == 0 &&
                strcmp(ls->name, gl->conf->name) == 0) {
                gl->lsock = ls;
                break;
            }
        }
        if (!gl->lsock) {
            gl->lsock = lsock_open(srv, gl->conf, err, errlen);
            if (!gl->lsock)
                return -1;
        }
    }
    return 0;
}

/* sweep_lsocks frees sockets no generation uses once every worker let go. */
static void sweep_lsocks(server_t *srv)
{
    for (lsock_t **pp = &srv->lsocks; *pp;) {
        lsock_t *ls = *pp;
        if (ls->in_use || atomic_load(&ls->worker_refs) > 0) {
            pp = &ls->next;
            continue;
        }
        *pp = ls->next;
        for (int i = 0; i < srv->nworkers; i++)
            if (ls->fds[i] >= 0)
                close(ls->fds[i]);
        log_info("listener closed", "listener=%s address=%s", ls->name, ls->bound);
        free(ls->fds);
        free(ls->name);
        free(ls->address);
        free(ls->bound);
        free(ls);
    }
}

static void mark_lsocks(server_t *srv, gen_t *g)
{
    for (lsock_t *ls = srv->lsocks; ls; ls = ls->next)
        ls->in_use = false;
    for (size_t i = 0; i < g->nlisteners; i++)
        g->listeners[i].lsock->in_use = true;
}

/* ---- generations --------------------------------------------------------- */

static void count_gens(server_t *srv)
{
    stat_t *st = stats_get(srv->main_stats, "sluice_config_generations_alive");
    atomic_store(&st->value, atomic_load(&srv->gens_alive));
}

static void gen_release_main(server_t *srv, gen_t *g)
{
    if (gen_unref(g)) {
        gen_free(g);
        atomic_fetch_sub(&srv->gens_alive, 1);
        count_gens(srv);
    }
}

void server_gen_dead(server_t *srv, gen_t *g)
{
    ssize_t n = write(srv->gen_pipe[1], &g, sizeof(g));
    if (n != (ssize_t)sizeof(g))
        log_error("cannot hand a generation back to the main thread", "error=\"%s\"",
                  strerror(errno));
}

static void on_gen_dead(evutil_socket_t fd, short what, void *arg)
{
    server_t *srv = arg;
    gen_t *g;
    (void)what;
    while (read(fd, &g, sizeof(g)) == (ssize_t)sizeof(g)) {
        log_info("configuration generation freed", "generation=%llu", (unsigned long long)g->id);
        gen_free(g);
        atomic_fetch_sub(&srv->gens_alive, 1);
    }
    count_gens(srv);
    sweep_lsocks(srv);
}

static void publish(server_t *srv, gen_t *g)
{
    gen_t *old = atomic_exchange_explicit(&srv->current, g, memory_order_acq_rel);
    /* Checkers point into a generation: move them before the old one can go. */
    health_stop(srv);
    health_start(srv, g);
    atomic_fetch_add(&srv->gens_alive, 1);
    mark_lsocks(srv, g);
    stat_t *st = stats_get(srv->main_stats, "sluice_config_generation");
    atomic_store(&st->value, (int64_t)g->id);
    count_gens(srv);
    for (int i = 0; i < srv->nworkers; i++)
        worker_notify_gen(&srv->workers[i], g);
    if (old)
        gen_release_main(srv, old);
}

static void log_diag(const slc_diag_t *d)
{
    for (size_t i = 0; i < d->nmsgs; i++)
        slog(d->msgs[i].is_error ? SLC_LOG_ERROR : SLC_LOG_WARN,
             d->msgs[i].is_error ? "configuration error" : "configuration warning", "detail=\"%s\"",
             d->msgs[i].text);
}

static void reload_failed(server_t *srv, size_t nerrors)
{
    log_error("reload failed; the previous configuration keeps serving", "path=%s errors=%zu",
              srv->config_path, nerrors);
    stat_inc(stats_get(srv->main_stats, "sluice_config_reloads_total{result=\"failure\"}"));
    sweep_lsocks(srv);
}

static void arm_dns_refresh(server_t *srv);

/* build_and_publish builds a generation from |c| (taking it) and, if that
 * works, serves it. |why| is "reload" (SIGHUP) or "dns" (answers changed). */
static void build_and_publish(server_t *srv, conf_t *c, const char *why)
{
    bool is_reload = strcmp(why, "reload") == 0;
    slc_diag_t d;
    diag_init(&d, NULL);
    gen_t *g = gen_build(c, srv->nworkers, &host_table, &d);
    char err[512] = "";
    if (g && bind_listeners(srv, g, err, sizeof(err)) != 0) {
        gen_free(g);
        g = NULL;
    }
    log_diag(&d);
    if (!g) {
        if (err[0])
            log_error("configuration error", "detail=\"%s\"", err);
        if (is_reload)
            reload_failed(srv, d.nerrors + (err[0] ? 1 : 0));
        else
            log_error("rebuild after DNS changes failed; the previous generation keeps serving",
                      "errors=%zu", d.nerrors);
        diag_cleanup(&d);
        return;
    }
    diag_cleanup(&d);
    gen_t *cur = atomic_load(&srv->current);
    const char *was = cur && cur->conf->admin_address ? cur->conf->admin_address : "";
    const char *now = g->conf->admin_address ? g->conf->admin_address : "";
    if (strcmp(was, now) != 0)
        log_warn("'admin.address' changed; it takes effect at the next restart",
                 "running=%s wanted=%s", srv->admin_bound, now);
    if ((int)g->conf->workers != srv->nworkers)
        log_warn("'workers' changed; it takes effect at the next restart", "running=%d wanted=%u",
                 srv->nworkers, g->conf->workers);
    log_set_level((slc_log_level_t)g->conf->log_level);
    publish(srv, g);
    if (is_reload) {
        stat_inc(stats_get(srv->main_stats, "sluice_config_reloads_total{result=\"success\"}"));
        log_info("configuration reloaded", "generation=%llu", (unsigned long long)g->id);
    } else {
        log_info("DNS answers changed; generation rebuilt", "generation=%llu",
                 (unsigned long long)g->id);
    }
    sweep_lsocks(srv);
    arm_dns_refresh(srv);
}

/* ---- DNS ------------------------------------------------------------------ */

static const char *const *srv_lookup(void *arg, const char *host, size_t *n)
{
    return dns_lookup(((server_t *)arg)->dns, host, n);
}

static bool ensure_dns(server_t *srv, const conf_t *c)
{
    if (srv->dns)
        return true;
    srv->dns = dns_new(srv->base, c->nameservers, c->nnameservers);
    if (!srv->dns) {
        log_error("cannot start the DNS resolver", "%s", "");
        return false;
    }
    gen_set_resolver(srv_lookup, srv);
    return true;
}

typedef struct waiting {
    server_t *srv;
    conf_t *conf;
    uint64_t seq;
} waiting_t;

static void on_reload_resolved(void *arg, int changed, int failed)
{
    waiting_t *wt = arg;
    server_t *srv = wt->srv;
    (void)changed;
    (void)failed;
    if (wt->seq != srv->reload_seq || srv->draining) {
        conf_free(wt->conf); /* a newer reload took over */
    } else {
        srv->reload_pending = false;
        build_and_publish(srv, wt->conf, "reload");
    }
    free(wt);
}

static void reload(server_t *srv)
{
    slc_diag_t d;
    diag_init(&d, NULL);
    log_info("reloading configuration", "path=%s", srv->config_path);
    conf_t *c = conf_load(srv->config_path, &d);
    log_diag(&d);
    size_t nerr = d.nerrors;
    diag_cleanup(&d);
    if (!c) {
        reload_failed(srv, nerr);
        return;
    }
    srv->reload_seq++;
    size_t n;
    const char **names = conf_dns_names(c, &n);
    if (n && ensure_dns(srv, c)) {
        /* Resolve first, build after: the generation never waits on DNS. */
        waiting_t *wt = calloc(1, sizeof(*wt));
        if (!wt)
            abort();
        wt->srv = srv;
        wt->conf = c;
        wt->seq = srv->reload_seq;
        srv->reload_pending = true;
        dns_resolve(srv->dns, names, n, on_reload_resolved, wt);
    } else {
        srv->reload_pending = false;
        build_and_publish(srv, c, "reload");
    }
    free(names);
}

static void on_refreshed(void *arg, int changed, int failed)
{
    server_t *srv = arg;
    stat_inc(stats_getf(srv->main_stats, "sluice_dns_refreshes_total{result=\"%s\"}",
                        changed  ? "changed"
                        : failed ? "failed"
                                 : "unchanged"));
    gen_t *cur = atomic_load(&srv->current);
    if (changed && cur && !srv->draining && !srv->reload_pending) {
        /* Same configuration text, new answers: a new generation. */
        slc_diag_t d;
        diag_init(&d, NULL);
        conf_t *c = conf_load_text(cur->conf->path, cur->conf->text, cur->conf->text_len, &d);
        diag_cleanup(&d);
        if (c) {
            build_and_publish(srv, c, "dns");
            return; /* build_and_publish re-arms the refresh */
        }
    }
    arm_dns_refresh(srv);
}

static void on_dns_timer(evutil_socket_t fd, short what, void *arg)
{
    server_t *srv = arg;
    (void)fd;
    (void)what;
    gen_t *cur = atomic_load(&srv->current);
    if (!cur || !srv->dns || srv->draining)
        return;
    size_t n;
    const char **names = conf_dns_names(cur->conf, &n);
    if (n)
        dns_resolve(srv->dns, names, n, on_refreshed, srv);
    free(names);
}

/* arm_dns_refresh schedules the next re-resolution at the shortest
 * dns_refresh_rate of the current generation's DNS clusters. */
static void arm_dns_refresh(server_t *srv)
{
    gen_t *cur = atomic_load(&srv->current);
    uint64_t ms = 0;
    for (size_t i = 0; cur && i < cur->conf->nclusters; i++) {
        const conf_cluster_t *cc = &cur->conf->clusters[i];
        if (cc->resolution == CONF_RES_DNS && (!ms || cc->dns_refresh_ms < ms))
            ms = cc->dns_refresh_ms;
    }
    if (!ms || !srv->dns)
        return;
    if (!srv->dns_ev && !(srv->dns_ev = evtimer_new(srv->base, on_dns_timer, srv)))
        abort();
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(srv->dns_ev, &tv);
}

static void on_startup_resolved(void *arg, int changed, int failed)
{
    (void)changed;
    (void)failed;
    *(bool *)arg = true;
}

/* ---- signals and drain -------------------------------------------------- */

static void on_sighup(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    server_t *srv = arg;
    if (!srv->draining)
        reload(srv);
}

static void stop_workers(server_t *srv)
{
    for (int i = 0; i < srv->nworkers; i++)
        worker_notify(&srv->workers[i], 'q');
    event_base_loopbreak(srv->base);
}

static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    server_t *srv = arg;
    (void)fd;
    (void)what;
    size_t open = 0;
    for (int i = 0; i < srv->nworkers; i++)
        open += atomic_load(&srv->workers[i].nconns);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    uint64_t now = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
    if (open == 0 || now >= srv->drain_deadline_us) {
        if (open)
            log_warn("drain deadline reached; closing the remaining connections", "connections=%zu",
                     open);
        else
            log_info("drained", "%s", "");
        stop_workers(srv);
        return;
    }
    struct timeval t = {0, 50000};
    evtimer_add(srv->drain_ev, &t);
}

static void on_sigterm(evutil_socket_t sig, short what, void *arg)
{
    server_t *srv = arg;
    (void)what;
    if (srv->draining) {
        log_warn("second signal: stopping now", "signal=%d", (int)sig);
        stop_workers(srv);
        return;
    }
    srv->draining = true;
    gen_t *g = atomic_load(&srv->current);
    uint64_t ms = g ? g->conf->drain_timeout_ms : 10000;
    log_info("shutting down: draining connections", "signal=%d drain_timeout_ms=%llu", (int)sig,
             (unsigned long long)ms);
    struct timeval tv;
    gettimeofday(&tv, NULL);
    srv->drain_deadline_us = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec + ms * 1000;
    for (int i = 0; i < srv->nworkers; i++)
        worker_notify(&srv->workers[i], 'd');
    srv->drain_ev = evtimer_new(srv->base, on_drain_tick, srv);
    struct timeval t = {0, 50000};
    evtimer_add(srv->drain_ev, &t);
}

/* ---- run ----------------------------------------------------------------- */

int server_run(const char *path)
{
    server_t *srv = calloc(1, sizeof(*srv));
    if (!srv)
        abort();
    srv->admin_reserve = -1;
    describe_core_metrics();
    srv->config_path = strdup(path);
    srv->base = event_base_new();
    if (!srv->base)
        abort();
    slc_diag_t d;
    diag_init(&d, NULL);
    gen_t *g = NULL;
    conf_t *c = conf_load(path, &d);
    if (c) {
        size_t n;
        const char **names = conf_dns_names(c, &n);
        if (n && ensure_dns(srv, c)) {
            /* Nothing serves yet: wait here for the first answers (evdns
             * bounds each lookup with its own timeout and retries). */
            bool done = false;
            dns_resolve(srv->dns, names, n, on_startup_resolved, &done);
            while (!done)
                event_base_loop(srv->base, EVLOOP_ONCE);
        }
        free(names);
        g = gen_build(c, (int)c->workers, &host_table, &d);
    }
    diag_print(&d, stderr);
    diag_cleanup(&d);
    if (!g) {
        log_error("cannot start: the configuration has errors", "path=%s", path);
        dns_free(srv->dns);
        gen_set_resolver(NULL, NULL);
        event_base_free(srv->base);
        free(srv->config_path);
        free(srv);
        module_tmpdir_cleanup();
        return 1;
    }
    log_set_level((slc_log_level_t)g->conf->log_level);
    srv->nworkers = (int)g->conf->workers;
    srv->main_stats = stats_shard_new();
    srv->workers = calloc((size_t)srv->nworkers, sizeof(worker_t));
    srv->shards = calloc((size_t)srv->nworkers + 1, sizeof(stats_shard_t *));
    if (!srv->workers || !srv->shards)
        abort();
    signal(SIGPIPE, SIG_IGN);
    if (pipe2(srv->gen_pipe, O_NONBLOCK | O_CLOEXEC) != 0)
        abort();
    srv->gen_ev = event_new(srv->base, srv->gen_pipe[0], EV_READ | EV_PERSIST, on_gen_dead, srv);
    srv->probe.id = srv->nworkers;
    srv->probe.srv = srv;
    srv->probe.base = srv->base;
    srv->probe.stats = srv->main_stats;
    sio_loop_init(&srv->probe.sioloop, srv->base);
    arena_pool_init(&srv->probe.arena_pool, 4);
    upstream_worker_init(&srv->probe);
    event_add(srv->gen_ev, NULL);
    char err[512];
    int rc = 1;
    if (bind_listeners(srv, g, err, sizeof(err)) != 0) {
        log_error("cannot start", "detail=\"%s\"", err);
        gen_free(g);
        goto out;
    }
    if (admin_start(srv, g->conf->admin_address) != 0) {
        gen_free(g);
        goto out;
    }
    for (int i = 0; i < srv->nworkers; i++) {
        worker_t *w = &srv->workers[i];
        w->id = i;
        w->srv = srv;
        w->gen_dead = server_gen_dead;
        w->stats = stats_shard_new();
        w->streams_active = stats_get(w->stats, "sluice_streams_active");
        srv->shards[i] = w->stats;
    }
    srv->shards[srv->nworkers] = srv->main_stats;
    stats_set_worker_shards(srv->shards);
    /* Counters exist at 0 before their first event. */
    stats_get(srv->main_stats, "sluice_config_reloads_total{result=\"success\"}");
    stats_get(srv->main_stats, "sluice_config_reloads_total{result=\"failure\"}");
    for (int i = 0; i < srv->nworkers; i++) {
        if (worker_start(&srv->workers[i]) != 0) {
            log_error("cannot start worker", "worker=%d", i);
            abort();
        }
    }
    publish(srv, g); /* workers pick it up from their notify pipes */
    arm_dns_refresh(srv);
    srv->sig_hup = evsignal_new(srv->base, SIGHUP, on_sighup, srv);
    srv->sig_term = evsignal_new(srv->base, SIGTERM, on_sigterm, srv);
    srv->sig_int = evsignal_new(srv->base, SIGINT, on_sigterm, srv);
    event_add(srv->sig_hup, NULL);
    event_add(srv->sig_term, NULL);
    event_add(srv->sig_int, NULL);
    log_info("ready", "workers=%d generation=%llu admin=%s filter_dir=%s", srv->nworkers,
             (unsigned long long)g->id, srv->admin_bound, g->conf->filter_dir);
    event_base_dispatch(srv->base);

    for (int i = 0; i < srv->nworkers; i++) {
        pthread_join(srv->workers[i].thread, NULL);
        worker_drain_notes(&srv->workers[i]); /* references in unread notes */
    }
    health_stop(srv);
    /* Workers dropped their holds; the current generation is ours to drop. */
    on_gen_dead(srv->gen_pipe[0], EV_READ, srv);
    gen_t *cur = atomic_exchange(&srv->current, NULL);
    if (cur)
        gen_release_main(srv, cur);
    on_gen_dead(srv->gen_pipe[0], EV_READ, srv);
    rc = 0;
    log_info("stopped", "%s", "");
out:
    health_stop(srv);
    if (srv->dns_ev)
        event_free(srv->dns_ev);
    dns_free(srv->dns);
    gen_set_resolver(NULL, NULL);
    upstream_pools_free(&srv->probe);
    sio_loop_cleanup(&srv->probe.sioloop);
    arena_pool_cleanup(&srv->probe.arena_pool);
    admin_stop(srv);
    for (lsock_t *ls = srv->lsocks; ls; ls = ls->next)
        ls->in_use = false;
    for (int i = 0; i < srv->nworkers; i++) {
        worker_t *w = &srv->workers[i];
        if (w->base) {
            if (w->trim_ev)
                event_free(w->trim_ev);
            event_free(w->notify_ev);
            event_base_free(w->base);
            close(w->notify[0]);
            close(w->notify[1]);
        }
        arena_pool_cleanup(&w->arena_pool);
        while (w->lstats) {
            lstats_t *l = w->lstats;
            w->lstats = l->next;
            free(l->name);
            free(l);
        }
        while (w->cstats) {
            cstats_t *cs = w->cstats;
            w->cstats = cs->next;
            free(cs->name);
            free(cs);
        }
        stats_shard_free(w->stats);
    }
    sweep_lsocks(srv);
    if (srv->drain_ev)
        event_free(srv->drain_ev);
    if (srv->sig_hup) {
        event_free(srv->sig_hup);
        event_free(srv->sig_term);
        event_free(srv->sig_int);
    }
    event_free(srv->gen_ev);
    close(srv->gen_pipe[0]);
    close(srv->gen_pipe[1]);
    stats_shard_free(srv->main_stats);
    event_base_free(srv->base);
    free(srv->workers);
    free(srv->shards);
    free(srv->config_path);
    free(srv);
    module_tmpdir_cleanup();
    return rc;
}
