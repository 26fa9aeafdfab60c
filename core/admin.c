/* admin: the operator's listener on the main thread — /ready, /metrics,
 * /config, /filters. One request per connection; never on the request path
 * of proxied traffic. */
#include "admin.h"
#include "log.h"
#include "server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void admin_reply(struct bufferevent *bev, int status, const char *ctype, const char *body,
                        size_t len)
{
    const char *text = status == 200   ? "OK"
                       : status == 404 ? "Not Found"
                       : status == 503 ? "Service Unavailable"
                       : status == 405 ? "Method Not Allowed"
                                       : "Bad Request";
    struct evbuffer *out = bufferevent_get_output(bev);
    evbuffer_add_printf(out,
                        "HTTP/1.1 %d %s\r\ncontent-type: %s\r\ncontent-length: %zu\r\n"
                        "connection: close\r\n\r\n",
                        status, text, ctype, len);
    evbuffer_add(out, body, len);
}

static void render_filters(server_t *srv, FILE *f)
{
    gen_t *g = atomic_load(&srv->current);
    if (!g)
        return;
    for (size_t i = 0; i < g->nfilters; i++) {
        finst_t *fi = &g->filters[i];
        unsigned abi = fi->desc.abi_version;
        fprintf(f, "name=%s instance=%s version=%s abi=%u.%u path=%s\n", fi->desc.name, fi->name,
                fi->desc.version ? fi->desc.version : "?", SLC_ABI_MAJOR_OF(abi),
                SLC_ABI_MINOR_OF(abi), fi->mod->path);
    }
}

static void handle(server_t *srv, struct bufferevent *bev, const h1_request_t *req)
{
    char *body = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&body, &len);
    if (!f)
        abort();
    int status = 200;
    const char *ctype = "text/plain; charset=utf-8";
    const char *path = req->target;
    size_t plen = req->target_len;
    const char *q = memchr(path, '?', plen);
    if (q)
        plen = (size_t)(q - path);
#define IS(p) (plen == sizeof(p) - 1 && memcmp(path, p, plen) == 0)
    if (!h1_token_eq(req->method, req->method_len, "get")) {
        status = 405;
        fputs("only GET\n", f);
    } else if (IS("/ready")) {
        if (srv->draining) {
            status = 503;
            fputs("draining\n", f);
        } else {
            fputs("ready\n", f);
        }
    } else if (IS("/metrics")) {
        ctype = "text/plain; version=0.0.4; charset=utf-8";
        stats_render(srv->shards, (size_t)srv->nworkers + 1, f);
    } else if (IS("/config")) {
        ctype = "application/yaml";
        gen_t *g = atomic_load(&srv->current);
        fprintf(f, "# generation %llu, from %s\n", (unsigned long long)g->id, g->conf->path);
        cfg_tree_dump(cfg_tree_root(g->conf->tree), f);
    } else if (IS("/filters")) {
        render_filters(srv, f);
    } else if (IS("/")) {
        fputs("sluice admin: /ready /metrics /config /filters\n", f);
    } else {
        status = 404;
        fputs("not found\n", f);
    }
#undef IS
    fclose(f);
    admin_reply(bev, status, ctype, body, len);
    free(body);
}

static void reserve_take(server_t *srv)
{
    if (srv->admin_reserve < 0)
        srv->admin_reserve = open("/dev/null", O_RDONLY | O_CLOEXEC);
}

/* admin_conn_free ends an admin connection. Its descriptor is closed here,
 * not by libevent: while the reserve is lent out, the connection's socket
 * is shut down and kept as the new reserve instead, since a slot given back
 * to the process would be taken by a worker's accept before it could be
 * reopened. */
static void admin_conn_free(server_t *srv, struct bufferevent *bev)
{
    evutil_socket_t fd = bufferevent_getfd(bev);
    bufferevent_free(bev);
    if (srv->admin_reserve < 0) {
        shutdown(fd, SHUT_RDWR);
        srv->admin_reserve = fd;
    } else {
        close(fd);
    }
}

static void on_admin_write(struct bufferevent *bev, void *arg)
{
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        admin_conn_free(arg, bev);
}

static void on_admin_event(struct bufferevent *bev, short what, void *arg)
{
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
        admin_conn_free(arg, bev);
}

static void on_admin_read(struct bufferevent *bev, void *arg)
{
    server_t *srv = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = evbuffer_get_length(in);
    const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)len);
    h1_limits_t lim = {8192, 16384, 64};
    h1_header_t hdrs[64];
    h1_request_t req;
    int status = 0;
    const char *reason = NULL;
    h1_result_t r = h1_parse_request(p, len, &lim, hdrs, 64, &req, &status, &reason);
    if (r == H1_INCOMPLETE)
        return;
    bufferevent_disable(bev, EV_READ);
    if (r == H1_ERROR)
        admin_reply(bev, 400, "text/plain", "bad request\n", 12);
    else
        handle(srv, bev, &req);
    bufferevent_setcb(bev, NULL, on_admin_write, on_admin_event, srv);
}

static void on_admin_accept(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                            int salen, void *arg)
{
    server_t *srv = arg;
    (void)l;
    (void)sa;
    (void)salen;
    struct bufferevent *bev = bufferevent_socket_new(srv->base, fd, 0); /* admin_conn_free closes */
    if (!bev) {
        close(fd);
        return;
    }
    struct timeval tv = {10, 0};
    bufferevent_set_timeouts(bev, &tv, &tv);
    bufferevent_setcb(bev, on_admin_read, NULL, on_admin_event, srv);
    bufferevent_enable(bev, EV_READ | EV_WRITE);
}

static void on_admin_resume(evutil_socket_t fd, short what, void *arg)
{
    server_t *srv = arg;
    (void)fd;
    (void)what;
    reserve_take(srv);
    evconnlistener_enable(srv->admin);
}

/* At the fd limit the operator must still reach /metrics: spend the
 * reserved descriptor on one connection. Without one, pause (as workers
 * do) rather than spin on a listening socket that stays readable. */
static void on_admin_accept_error(struct evconnlistener *l, void *arg)
{
    server_t *srv = arg;
    int err = EVUTIL_SOCKET_ERROR();
    if ((err == EMFILE || err == ENFILE) && srv->admin_reserve >= 0) {
        close(srv->admin_reserve);
        srv->admin_reserve = -1;
        int fd = accept4(evconnlistener_get_fd(l), NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            on_admin_accept(l, fd, NULL, 0, srv);
            return;
        }
        reserve_take(srv);
    }
    evconnlistener_disable(l);
    struct timeval tv = {0, 100 * 1000};
    evtimer_add(srv->admin_resume, &tv);
}

int admin_start(server_t *srv, const char *address)
{
    struct sockaddr_storage ss;
    int len;
    if (!address)
        address = "127.0.0.1:9901";
    if (conf_parse_address(address, &ss, &len) != 0) {
        log_error("bad admin address", "address=%s", address);
        return -1;
    }
    srv->admin = evconnlistener_new_bind(srv->base, on_admin_accept, srv,
                                         LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE, 128,
                                         (struct sockaddr *)&ss, len);
    if (!srv->admin) {
        log_error("cannot bind the admin listener", "address=%s error=\"%s\"", address,
                  strerror(errno));
        return -1;
    }
    evconnlistener_set_error_cb(srv->admin, on_admin_accept_error);
    srv->admin_resume = evtimer_new(srv->base, on_admin_resume, srv);
    if (!srv->admin_resume)
        abort();
    srv->admin_reserve = -1;
    reserve_take(srv);
    struct sockaddr_storage b;
    socklen_t bl = sizeof(b);
    getsockname(evconnlistener_get_fd(srv->admin), (struct sockaddr *)&b, &bl);
    char host[48];
    inet_ntop(b.ss_family,
              b.ss_family == AF_INET ? (void *)&((struct sockaddr_in *)&b)->sin_addr
                                     : (void *)&((struct sockaddr_in6 *)&b)->sin6_addr,
              host, sizeof(host));
    snprintf(srv->admin_bound, sizeof(srv->admin_bound), "%s:%d", host,
             ntohs(((struct sockaddr_in *)&b)->sin_port));
    log_info("admin listening", "address=%s", srv->admin_bound);
    return 0;
}

void admin_stop(server_t *srv)
{
    if (srv->admin)
        evconnlistener_free(srv->admin);
    srv->admin = NULL;
    if (srv->admin_resume)
        event_free(srv->admin_resume);
    srv->admin_resume = NULL;
    if (srv->admin_reserve >= 0)
        close(srv->admin_reserve);
    srv->admin_reserve = -1;
}
