/* health: active HTTP health checks of cluster endpoints.
 *
 * The main thread checks every endpoint of every cluster that has a
 * `health_check:` block in the current generation: a "GET <path>" through
 * the same upstream exchange a stream uses (upstream.h), on a fresh
 * connection outside the cluster's limits, closed after the response head.
 * A 2xx or 3xx is a success; anything else, a connect failure, a malformed
 * response or the timeout is a failure. unhealthy_threshold failures in a
 * row take the endpoint out of load balancing (ep_state.hc_unhealthy, read
 * by workers), healthy_threshold successes in a row bring it back.
 * Endpoints start healthy (no start-up blackout); the counters live in
 * ep_state, so a reload neither forgets a verdict nor restarts the count.
 *
 * OWNERSHIP: the server owns the checkers of the current generation
 * (health_start / health_stop); each checker owns its timer and, while a
 * check runs, an arena holding the exchange (reset when the check ends).
 * The exchanges run on server_t.probe, the main thread's pool context.
 */
#include "health.h"
#include "log.h"
#include "server.h"
#include "upstream.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What one check may hold: the exchange, its request head and the
 * response head (64 KiB at most). */
#define CHECK_ARENA (96 * 1024)

struct checker {
    struct checker *next;
    server_t *srv;
    const slc_endpoint_t *ep; /* of the generation the checkers were started for */
    const conf_cluster_t *cc;
    struct event timer; /* the next check, or the running one's deadline */
    arena_t arena;
    ureq_t *up; /* the running check's exchange; NULL between checks */
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

/* end_check ends the running check with verdict |ok| and schedules the
 * next. Called from the exchange's events too: the pool touches nothing of
 * the exchange after an event, so its arena may go here. */
static void end_check(checker_t *c, bool ok)
{
    ureq_t *u = c->up;
    if (!u)
        return;
    c->up = NULL;
    u->ops->finish(u, false);
    arena_reset(&c->arena);
    verdict(c, ok);
    schedule(c, c->cc->hc.interval_ms);
}

static void on_check_connected(void *ctx, slc_conn_t *conn, bool fresh)
{
    (void)fresh;
    checker_t *c = ctx;
    (void)conn;
    const struct conf_health *hc = &c->cc->hc;
    static const hdr_t ua = {SLC_STR("user-agent"), SLC_STR("sluice-health-check")};
    up_req_t rq = {
        .method = SLC_STR("GET"),
        .path = {hc->path, strlen(hc->path)},
        .authority = hc->host ? (slc_str_t){hc->host, strlen(hc->host)} : SLC_STR_NULL,
        .hdrs = &ua,
        .nhdrs = 1,
        .body = UB_NONE,
    };
    if (c->up->ops->send_head(c->up, &rq) != 0)
        end_check(c, false);
}

static void on_check_head(void *ctx, const up_head_t *h)
{
    end_check(ctx, h->status >= 200 && h->status < 400);
}

static void on_check_idle(void *ctx)
{
    (void)ctx; /* the verdict came with the head */
}

static void on_check_failed(void *ctx, const up_fail_t *f)
{
    (void)f;
    end_check(ctx, false);
}

static const up_events_t check_events = {
    .connected = on_check_connected,
    .head = on_check_head,
    .readable = on_check_idle,
    .writable = on_check_idle,
    .failed = on_check_failed,
};

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
    checker_t *c = arg;
    (void)fd;
    (void)what;
    if (c->up) { /* the running check's deadline */
        end_check(c, false);
        return;
    }
    const struct conf_health *hc = &c->cc->hc;
    static const char nosig[] = "";
    worker_t *pw = &c->srv->probe;
    arena_init(&c->arena, &pw->arena_pool, CHECK_ARENA);
    up_target_t t = {
        .ep = c->ep,
        .sig = nosig,
        .arena = &c->arena,
        .fresh = true,
        .probe = true,
    };
    c->up = upstream_new(pw, &t, &check_events, c);
    if (!c->up) {
        arena_reset(&c->arena);
        verdict(c, false);
        schedule(c, hc->interval_ms);
        return;
    }
    /* One deadline for the whole check, not just the connect; armed first,
     * as the exchange may end the check before upstream_start returns. */
    schedule(c, hc->timeout_ms);
    upstream_start(c->up);
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
        if (c->up) {
            c->up->ops->finish(c->up, false);
            arena_reset(&c->arena);
        }
        free(c);
    }
}
