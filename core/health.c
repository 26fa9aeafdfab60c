/* health: active HTTP health checks of cluster endpoints.
 *
 * The main thread checks every endpoint of every cluster that has a
 * `health_check:` block in the current generation: connect, send
 * "GET <path>", read the status line, close. A 2xx or 3xx is a success;
 * anything else, a connect failure or the timeout is a failure.
 * unhealthy_threshold failures in a row take the endpoint out of load
 * balancing (ep_state.hc_unhealthy, read by workers), healthy_threshold
 * successes in a row bring it back. Endpoints start healthy (no start-up
 * blackout); the counters live in ep_state, so a reload neither forgets a
 * verdict nor restarts the count.
 *
 * OWNERSHIP: the server owns the checkers of the current generation
 * (health_start / health_stop); each checker owns its socket and timer.
 */
#include "health.h"
#include "log.h"
#include "server.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct checker {
    struct checker *next;
    server_t *srv;
    const slc_endpoint_t *ep; /* of the generation the checkers were started for */
    const conf_cluster_t *cc;
    struct event timer;
    sio_t io;
    bool busy;
};

static void schedule(checker_t *c, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)((ms % 1000) * 1000)};
    evtimer_add(&c->timer, &tv);
}

static void verdict(checker_t *c, bool ok)
{
    ep_state_t *st = c->ep->st;
    const struct conf_health *hc = &c->cc->hc;
    stat_inc(stats_getf(c->srv->main_stats,
                        "sluice_health_checks_total{cluster=\"%s\",result=\"%s\"}", c->cc->name,
                        ok ? "success" : "failure"));
    if (ok) {
        st->hc_fail = 0;
        st->hc_ok++;
        if (atomic_load(&st->hc_unhealthy) && st->hc_ok >= hc->healthy_threshold) {
            atomic_store(&st->hc_unhealthy, false);
            cluster_health_changed(c->ep->cluster->st);
            log_info("endpoint healthy again", "cluster=%s endpoint=%s", c->cc->name, c->ep->addr);
        }
    } else {
        st->hc_ok = 0;
        st->hc_fail++;
        if (!atomic_load(&st->hc_unhealthy) && st->hc_fail >= hc->unhealthy_threshold) {
            atomic_store(&st->hc_unhealthy, true);
            cluster_health_changed(c->ep->cluster->st);
            log_warn("endpoint failed its health checks", "cluster=%s endpoint=%s failures=%u",
                     c->cc->name, c->ep->addr, st->hc_fail);
        }
    }
}

static void finish(checker_t *c, bool ok)
{
    sio_close(&c->io);
    c->busy = false;
    verdict(c, ok);
    schedule(c, c->cc->hc.interval_ms);
}

static void on_read(sio_t *io, void *arg)
{
    checker_t *c = arg;
    size_t len = evbuffer_get_length(io->in);
    const char *p = (const char *)evbuffer_pullup(io->in, (ev_ssize_t)len);
    h1_header_t hdrs[64];
    h1_response_t r;
    const char *reason = NULL;
    h1_limits_t lim = {8192, 65536, 64};
    h1_result_t res = h1_parse_response(p, len, &lim, false, hdrs, 64, &r, &reason);
    if (res == H1_INCOMPLETE && len < 65536)
        return;
    finish(c, res == H1_OK && r.status >= 200 && r.status < 400);
}

static void on_event(sio_t *io, int what, void *arg)
{
    checker_t *c = arg;
    if (what & SIO_CONNECTED) {
        const struct conf_health *hc = &c->cc->hc;
        char req[1024];
        int n = snprintf(req, sizeof(req),
                         "GET %s HTTP/1.1\r\nhost: %s\r\nuser-agent: sluice-health-check\r\n"
                         "connection: close\r\n\r\n",
                         hc->path, hc->host ? hc->host : c->ep->addr);
        if (n > 0 && (size_t)n < sizeof(req))
            sio_write(io, req, (size_t)n);
        sio_read_enable(io, true);
        return;
    }
    /* EOF before a status line, error or timeout */
    finish(c, false);
}

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    checker_t *c = arg;
    (void)fd;
    (void)what;
    const struct conf_health *hc = &c->cc->hc;
    c->busy = true;
    if (sio_connect(&c->io, &c->srv->mloop, (const struct sockaddr *)&c->ep->sa, c->ep->salen,
                    hc->timeout_ms, on_read, NULL, on_event, c) != 0) {
        finish(c, false);
        return;
    }
    /* One deadline for the whole check, not just the connect. */
    sio_timer(&c->io, hc->timeout_ms);
}

void health_start(server_t *srv, gen_t *g)
{
    for (size_t i = 0; i < g->nclusters; i++) {
        const slc_cluster_t *cl = &g->clusters[i];
        if (!cl->conf->hc.path)
            continue;
        for (size_t e = 0; e < cl->neps; e++) {
            checker_t *c = calloc(1, sizeof(*c));
            if (!c)
                abort();
            c->srv = srv;
            c->ep = &cl->eps[e];
            c->cc = cl->conf;
            evtimer_assign(&c->timer, srv->base, on_timer, c);
            /* Spread the first checks over the interval rather than firing
             * every endpoint at once. */
            schedule(c,
                     (e * 97 + i * 31) % (cl->conf->hc.interval_ms ? cl->conf->hc.interval_ms : 1));
            c->next = srv->checkers;
            srv->checkers = c;
        }
    }
}

void health_stop(server_t *srv)
{
    while (srv->checkers) {
        checker_t *c = srv->checkers;
        srv->checkers = c->next;
        evtimer_del(&c->timer);
        if (c->busy)
            sio_close(&c->io);
        free(c);
    }
}
