/* sluice-upstream: a small, fast HTTP/1.1 origin server.
 *
 * It stands behind sluice in the quick start, the integration tests and the
 * benchmark, so nothing outside the repository is needed to see a request go
 * through the proxy. It is written directly on libevent bufferevents with its
 * own minimal HTTP/1.1 parser rather than on evhttp, because evhttp buffers
 * whole request and response bodies, and /bytes, /echo and /sink must move
 * 1 GiB with bounded memory. Memory stays bounded through watermarks: the
 * input buffer stops growing at READ_HIGH (libevent stops reading), and body
 * data is only produced while the output buffer is below OUT_HIGH.
 *
 * Usage:
 *   sluice-upstream --listen 127.0.0.1:8081 [--listen ...] [--name NAME]
 *                   [--threads N]
 *
 * Each thread has its own event_base and, with more than one thread, its
 * own SO_REUSEPORT socket per listen address, so the kernel spreads
 * connections over the threads (a port already in use is still refused). Once
 * every socket is bound it prints one line "listening ADDR:PORT" per address
 * on stdout (the real port when 0 was asked for) and flushes. SIGTERM or
 * SIGINT stop it with exit status 0. Nothing is logged per request.
 *
 * Endpoints (query parameters in brackets); every response carries
 * "x-upstream: NAME" and a content-length unless it is chunked:
 *   GET / or /hello        200 "hello\n" (the benchmark path, kept cheap)
 *   /echo                  200, the request body streamed back, chunked
 *   /headers               200, request line then "name: value\n" per header
 *   /status/N              status N (200..599), body "status N\n" (none for 204/304)
 *   /slow [ms=N]           200 "slow N\n" after N ms (a timer, not a sleep)
 *   /bytes [n=N]           N bytes of 'x', streamed with backpressure
 *   /sink                  discards the body, then 200 "received N\n"
 *   /close                 200 "bye\n" with "connection: close", then closes
 *   /drop                  closes without responding
 *   /sleep-then-close [ms] waits N ms, then closes without responding
 *   anything else          404 "not found\n"
 * HEAD gets the same head without a body. HTTP/1.0 is answered with
 * connection: close unless it asked for keep-alive. Malformed requests get
 * 400, 431, 501 or 505 and the connection closes.
 *
 * Request bodies (Content-Length or chunked) are always consumed as they
 * arrive, before the response of every endpoint but /echo starts.
 */

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <event2/util.h>

#define MAX_LISTEN     16
#define MAX_THREADS    64
#define MAX_HEAD       (64 * 1024)  /* request head limit; 431 past it */
#define MAX_CHUNK_LINE 4096         /* chunk-size line or trailer line limit */
#define READ_HIGH      (256 * 1024) /* libevent stops reading at this input size */
#define WRITE_LOW      (64 * 1024)  /* write callback fires at or below this */
#define OUT_HIGH       (256 * 1024) /* /bytes refills and /echo copies up to this */
#define XS_LEN         (64 * 1024)  /* one /bytes reference piece */
#define LINGER_MS      1000         /* drain time after our FIN on a closed connection */
#define MAX_WAIT_MS    (3600 * 1000)

enum conn_state {
    ST_HEAD,    /* waiting for a request head */
    ST_BODY,    /* consuming a request body */
    ST_WAIT,    /* timer pending (/slow, /sleep-then-close) */
    ST_STREAM,  /* producing /bytes */
    ST_CLOSING, /* flushing the last response, then lingering */
};

enum endpoint {
    EP_HELLO,
    EP_ECHO,
    EP_HEADERS,
    EP_STATUS,
    EP_SLOW,
    EP_BYTES,
    EP_SINK,
    EP_CLOSE,
    EP_DROP,
    EP_SLEEP_CLOSE,
    EP_NOT_FOUND,
};

enum body_kind { BODY_NONE, BODY_LENGTH, BODY_CHUNKED };

enum chunk_state { CH_SIZE, CH_DATA, CH_DATA_CRLF, CH_TRAILER };

struct conn;

struct worker {
    int index;
    pthread_t tid;
    struct event_base *base;
    struct evconnlistener *listeners[MAX_LISTEN];
    int nlisteners;
    int stop_fd; /* eventfd: the main worker writes it to stop us */
    struct event *stop_ev;
    struct event *sig_ev[2]; /* SIGINT, SIGTERM (worker 0 only) */
    struct conn *conns;      /* every open connection, freed at shutdown */
};

struct conn {
    struct conn *prev, *next;
    struct worker *w;
    struct bufferevent *bev;
    struct event *timer;   /* lazily created; owned */
    struct evbuffer *hdrs; /* /headers body being built; owned, else NULL */
    enum conn_state state;
    enum endpoint ep;
    enum body_kind body;
    enum chunk_state chunk;
    uint64_t body_left;   /* Content-Length left, or bytes left in this chunk */
    uint64_t body_seen;   /* request body bytes received so far */
    uint64_t stream_left; /* /bytes left to queue */
    uint64_t arg;         /* ms for the timers, n for /bytes, N for /status */
    bool keep_alive;      /* request allows another request after this one */
    bool http10;
    bool head_method;
    bool close_after;  /* close once the current response is queued */
    bool echo_chunked; /* /echo response uses chunked framing */
    bool lingering;    /* our FIN is sent; waiting for the peer's or the timer */
};

static char g_name[128] = "upstream";
static char g_hello[512]; /* the whole /hello response for HTTP/1.1 keep-alive */
static size_t g_hello_len;
static char g_xs[XS_LEN];

static bool conn_process(struct conn *c);
static void conn_kick(struct conn *c);

/* --- small helpers -------------------------------------------------------- */

static bool ieq(const char *a, size_t alen, const char *lit)
{
    size_t n = strlen(lit);
    return alen == n && strncasecmp(a, lit, n) == 0;
}

/* parse_u64 parses decimal digits in [p, p+len) into *out. Returns false on an
 * empty string, a non-digit or overflow. */
static bool parse_u64(const char *p, size_t len, uint64_t *out)
{
    uint64_t v = 0;
    if (len == 0 || len > 19)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    *out = v;
    return true;
}

/* query_get finds parameter |name| in the query string [q, q+qlen) and parses
 * it as a decimal number. Returns false when absent or not a number. */
static bool query_get(const char *q, size_t qlen, const char *name, uint64_t *out)
{
    size_t nlen = strlen(name);
    const char *end = q + qlen;
    while (q < end) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *pend = amp ? amp : end;
        if ((size_t)(pend - q) > nlen && memcmp(q, name, nlen) == 0 && q[nlen] == '=')
            return parse_u64(q + nlen + 1, (size_t)(pend - q) - nlen - 1, out);
        q = amp ? amp + 1 : end;
    }
    return false;
}

static const struct {
    int status;
    const char *reason;
} k_reasons[] = {
    {200, "OK"},
    {201, "Created"},
    {202, "Accepted"},
    {204, "No Content"},
    {206, "Partial Content"},
    {301, "Moved Permanently"},
    {302, "Found"},
    {304, "Not Modified"},
    {400, "Bad Request"},
    {401, "Unauthorized"},
    {403, "Forbidden"},
    {404, "Not Found"},
    {405, "Method Not Allowed"},
    {408, "Request Timeout"},
    {413, "Content Too Large"},
    {429, "Too Many Requests"},
    {431, "Request Header Fields Too Large"},
    {500, "Internal Server Error"},
    {501, "Not Implemented"},
    {502, "Bad Gateway"},
    {503, "Service Unavailable"},
    {504, "Gateway Timeout"},
    {505, "HTTP Version Not Supported"},
};

static const char *reason_phrase(int status)
{
    for (size_t i = 0; i < sizeof(k_reasons) / sizeof(k_reasons[0]); i++)
        if (k_reasons[i].status == status)
            return k_reasons[i].reason;
    return "Status";
}

/* status_has_body says whether a response with |status| may carry a body
 * and a content-length (RFC 9110 6.4.1: not 1xx, 204 or 304). */
static bool status_has_body(int status)
{
    return !(status < 200 || status == 204 || status == 304);
}

/* --- connection lifetime -------------------------------------------------- */

/* conn_free closes the socket and frees |c| with everything it owns. */
static void conn_free(struct conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        c->w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->timer)
        event_free(c->timer);
    if (c->hdrs)
        evbuffer_free(c->hdrs);
    bufferevent_free(c->bev);
    free(c);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg);

static void conn_arm_timer(struct conn *c, uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    if (!c->timer) {
        c->timer = evtimer_new(c->w->base, timer_cb, c);
        if (!c->timer)
            abort();
    }
    evtimer_add(c->timer, &tv);
}

/* conn_linger runs once the last response is flushed: it sends our FIN and
 * keeps reading (and discarding) for a moment, so that request bytes the
 * peer already sent do not turn our close into a RST that could destroy the
 * response in flight. */
static void conn_linger(struct conn *c)
{
    c->lingering = true;
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    bufferevent_enable(c->bev, EV_READ);
    evbuffer_drain(bufferevent_get_input(c->bev),
                   evbuffer_get_length(bufferevent_get_input(c->bev)));
    conn_arm_timer(c, LINGER_MS);
}

/* conn_start_closing stops request processing; the connection closes once
 * the queued output is written. */
static void conn_start_closing(struct conn *c)
{
    c->state = ST_CLOSING;
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
        conn_linger(c);
}

/* conn_finish is called once the whole response is queued. */
static void conn_finish(struct conn *c)
{
    if (c->hdrs) {
        evbuffer_free(c->hdrs);
        c->hdrs = NULL;
    }
    if (c->close_after || !c->keep_alive) {
        conn_start_closing(c);
        return;
    }
    c->state = ST_HEAD;
}

/* --- responses ------------------------------------------------------------ */

#define LEN_CHUNKED (-1)
#define LEN_NONE    (-2) /* body delimited by close */

/* write_head queues a response head. |len| is the content length, or
 * LEN_CHUNKED, or LEN_NONE. */
static void write_head(struct conn *c, int status, const char *ctype, int64_t len)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_add_printf(out, "HTTP/1.1 %d %s\r\nx-upstream: %s\r\n", status, reason_phrase(status),
                        g_name);
    if (status_has_body(status)) {
        if (ctype)
            evbuffer_add_printf(out, "content-type: %s\r\n", ctype);
        if (len >= 0)
            evbuffer_add_printf(out, "content-length: %" PRId64 "\r\n", len);
        else if (len == LEN_CHUNKED)
            evbuffer_add(out, "transfer-encoding: chunked\r\n", 28);
    }
    if (c->close_after || !c->keep_alive)
        evbuffer_add(out, "connection: close\r\n\r\n", 21);
    else if (c->http10)
        evbuffer_add(out, "connection: keep-alive\r\n\r\n", 26);
    else
        evbuffer_add(out, "\r\n", 2);
}

/* respond queues a complete response with |body| (copied) and finishes the
 * request. */
static void respond(struct conn *c, int status, const char *body, size_t len)
{
    write_head(c, status, "text/plain", status_has_body(status) ? (int64_t)len : 0);
    if (!c->head_method && status_has_body(status))
        evbuffer_add(bufferevent_get_output(c->bev), body, len);
    conn_finish(c);
}

static void respondf(struct conn *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void respondf(struct conn *c, int status, const char *fmt, ...)
{
    char buf[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof(buf), fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    if ((size_t)n >= sizeof(buf))
        n = sizeof(buf) - 1;
    respond(c, status, buf, (size_t)n);
}

/* respond_error answers a malformed request and closes the connection. */
static void respond_error(struct conn *c, int status)
{
    c->close_after = true;
    respondf(c, status, "%s\n", reason_phrase(status));
}

/* stream_refill queues /bytes data until the output holds OUT_HIGH bytes.
 * The pieces are references to one static buffer, so a 1 GiB response costs
 * no copying and only the few chain nodes in flight. */
static void stream_refill(struct conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t have = evbuffer_get_length(out);
    while (c->stream_left > 0 && have < OUT_HIGH) {
        size_t n = c->stream_left < XS_LEN ? (size_t)c->stream_left : XS_LEN;
        if (evbuffer_add_reference(out, g_xs, n, NULL, NULL) != 0)
            abort();
        c->stream_left -= n;
        have += n;
    }
    if (c->stream_left == 0)
        conn_finish(c);
}

/* start_action runs once the request body has been consumed. */
static void start_action(struct conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    switch (c->ep) {
    case EP_HELLO:
        if (!c->http10 && c->keep_alive && !c->close_after && !c->head_method) {
            evbuffer_add(out, g_hello, g_hello_len);
            c->state = ST_HEAD;
            return;
        }
        respond(c, 200, "hello\n", 6);
        return;
    case EP_ECHO:
        if (c->echo_chunked && !c->head_method)
            evbuffer_add(out, "0\r\n\r\n", 5);
        conn_finish(c);
        return;
    case EP_HEADERS: {
        size_t len = evbuffer_get_length(c->hdrs);
        write_head(c, 200, "text/plain", (int64_t)len);
        if (!c->head_method)
            evbuffer_add_buffer(out, c->hdrs);
        conn_finish(c);
        return;
    }
    case EP_STATUS:
        respondf(c, (int)c->arg, "status %d\n", (int)c->arg);
        return;
    case EP_SLOW:
    case EP_SLEEP_CLOSE:
        c->state = ST_WAIT;
        conn_arm_timer(c, c->arg);
        return;
    case EP_BYTES:
        write_head(c, 200, "application/octet-stream", (int64_t)c->arg);
        c->stream_left = c->head_method ? 0 : c->arg;
        c->state = ST_STREAM;
        stream_refill(c);
        return;
    case EP_SINK:
        respondf(c, 200, "received %" PRIu64 "\n", c->body_seen);
        return;
    case EP_CLOSE:
        c->close_after = true;
        respond(c, 200, "bye\n", 4);
        return;
    case EP_DROP: /* handled when the head is parsed */
    case EP_NOT_FOUND:
        break;
    }
    respond(c, 404, "not found\n", 10);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct conn *c = arg;
    (void)fd;
    (void)what;
    if (c->state == ST_CLOSING || c->ep == EP_SLEEP_CLOSE) {
        conn_free(c);
        return;
    }
    if (c->state == ST_WAIT) { /* /slow */
        respondf(c, 200, "slow %" PRIu64 "\n", c->arg);
        if (conn_process(c))
            conn_kick(c);
    }
}

/* --- request head --------------------------------------------------------- */

/* route maps the request path (no query) to an endpoint and its argument.
 * Returns 0, or an HTTP status for a bad argument. */
static int route(struct conn *c, const char *path, size_t plen, const char *q, size_t qlen)
{
    c->arg = 0;
    if ((plen == 1 && path[0] == '/') || (plen == 6 && memcmp(path, "/hello", 6) == 0)) {
        c->ep = EP_HELLO;
    } else if (plen == 5 && memcmp(path, "/echo", 5) == 0) {
        c->ep = EP_ECHO;
    } else if (plen == 8 && memcmp(path, "/headers", 8) == 0) {
        c->ep = EP_HEADERS;
    } else if (plen > 8 && memcmp(path, "/status/", 8) == 0) {
        c->ep = EP_STATUS;
        if (!parse_u64(path + 8, plen - 8, &c->arg) || c->arg < 200 || c->arg > 599)
            return 400;
    } else if (plen == 5 && memcmp(path, "/slow", 5) == 0) {
        c->ep = EP_SLOW;
        if (query_get(q, qlen, "ms", &c->arg) && c->arg > MAX_WAIT_MS)
            return 400;
    } else if (plen == 6 && memcmp(path, "/bytes", 6) == 0) {
        c->ep = EP_BYTES;
        if (query_get(q, qlen, "n", &c->arg) && c->arg > ((uint64_t)1 << 50))
            return 400;
    } else if (plen == 5 && memcmp(path, "/sink", 5) == 0) {
        c->ep = EP_SINK;
    } else if (plen == 6 && memcmp(path, "/close", 6) == 0) {
        c->ep = EP_CLOSE;
    } else if (plen == 5 && memcmp(path, "/drop", 5) == 0) {
        c->ep = EP_DROP;
    } else if (plen == 17 && memcmp(path, "/sleep-then-close", 17) == 0) {
        c->ep = EP_SLEEP_CLOSE;
        if (query_get(q, qlen, "ms", &c->arg) && c->arg > MAX_WAIT_MS)
            return 400;
    } else {
        c->ep = EP_NOT_FOUND;
    }
    return 0;
}

static bool is_tchar(unsigned char ch)
{
    if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
        return true;
    return ch != 0 && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

/* has_token says whether the comma-separated list [v, v+len) contains
 * |tok| (case-insensitive). */
static bool has_token(const char *v, size_t len, const char *tok)
{
    const char *end = v + len;
    while (v < end) {
        while (v < end && (*v == ' ' || *v == '\t' || *v == ','))
            v++;
        const char *s = v;
        while (v < end && *v != ',')
            v++;
        const char *e = v;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if (ieq(s, (size_t)(e - s), tok))
            return true;
    }
    return false;
}

/* last_token_is says whether the last element of the comma-separated list
 * [v, v+len) is |tok|. */
static bool last_token_is(const char *v, size_t len, const char *tok)
{
    const char *e = v + len;
    while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    const char *s = e;
    while (s > v && s[-1] != ',')
        s--;
    while (s < e && (*s == ' ' || *s == '\t'))
        s++;
    return ieq(s, (size_t)(e - s), tok);
}

/* parse_head parses the head at |p| (|len| bytes, ending in CRLF CRLF) and
 * sets up |c| for the request. Returns 0 or an HTTP error status. */
static int parse_head(struct conn *c, const char *p, size_t len)
{
    const char *end = p + len;
    const char *eol = memchr(p, '\n', len);
    if (!eol || eol == p || eol[-1] != '\r')
        return 400;
    const char *line_end = eol - 1;

    /* request line: method SP target SP version */
    const char *sp1 = memchr(p, ' ', (size_t)(line_end - p));
    if (!sp1 || sp1 == p)
        return 400;
    for (const char *m = p; m < sp1; m++)
        if (!is_tchar((unsigned char)*m))
            return 400;
    const char *target = sp1 + 1;
    const char *sp2 = memchr(target, ' ', (size_t)(line_end - target));
    if (!sp2 || sp2 == target)
        return 400;
    const char *ver = sp2 + 1;
    size_t vlen = (size_t)(line_end - ver);
    if (vlen != 8 || memcmp(ver, "HTTP/1.", 7) != 0) {
        if (vlen == 8 && memcmp(ver, "HTTP/", 5) == 0)
            return 505;
        return 400;
    }
    if (ver[7] == '1')
        c->http10 = false;
    else if (ver[7] == '0')
        c->http10 = true;
    else
        return 505;
    c->head_method = (sp1 - p == 4 && memcmp(p, "HEAD", 4) == 0);

    const char *path = target;
    size_t tlen = (size_t)(sp2 - target);
    for (size_t i = 0; i < tlen; i++)
        if ((unsigned char)target[i] <= ' ' || target[i] == 0x7f)
            return 400;
    if (tlen > 7 && strncasecmp(target, "http://", 7) == 0) { /* absolute-form */
        const char *slash = memchr(target + 7, '/', tlen - 7);
        path = slash ? slash : "/";
        tlen = slash ? (size_t)(sp2 - slash) : 1;
    } else if (target[0] != '/' && !(tlen == 1 && target[0] == '*')) {
        return 400;
    }
    const char *qm = memchr(path, '?', tlen);
    size_t plen = qm ? (size_t)(qm - path) : tlen;
    const char *q = qm ? qm + 1 : path + tlen;
    size_t qlen = qm ? tlen - plen - 1 : 0;
    int st = route(c, path, plen, q, qlen);

    if (c->ep == EP_HEADERS) {
        c->hdrs = evbuffer_new();
        if (!c->hdrs)
            abort();
        evbuffer_add(c->hdrs, p, (size_t)(line_end - p));
        evbuffer_add(c->hdrs, "\n", 1);
    }

    bool conn_close = false, conn_ka = false, te_seen = false, cl_seen = false, expect = false;
    uint64_t cl = 0;
    for (p = eol + 1; p < end;) {
        eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol || eol[-1] != '\r')
            return 400;
        line_end = eol - 1;
        if (line_end == p)
            break; /* the empty line ending the head */
        const char *colon = memchr(p, ':', (size_t)(line_end - p));
        if (!colon || colon == p)
            return 400;
        for (const char *n = p; n < colon; n++)
            if (!is_tchar((unsigned char)*n))
                return 400;
        size_t nlen = (size_t)(colon - p);
        const char *v = colon + 1;
        const char *ve = line_end;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        size_t vl = (size_t)(ve - v);
        for (size_t i = 0; i < vl; i++)
            if (v[i] == '\r' || v[i] == '\n' || v[i] == 0)
                return 400;
        if (c->hdrs) {
            evbuffer_add(c->hdrs, p, nlen);
            evbuffer_add(c->hdrs, ": ", 2);
            evbuffer_add(c->hdrs, v, vl);
            evbuffer_add(c->hdrs, "\n", 1);
        }
        switch (nlen) {
        case 14:
            if (ieq(p, nlen, "content-length")) {
                uint64_t n;
                if (!parse_u64(v, vl, &n) || (cl_seen && n != cl))
                    return 400;
                cl = n;
                cl_seen = true;
            }
            break;
        case 17:
            if (ieq(p, nlen, "transfer-encoding")) {
                if (!last_token_is(v, vl, "chunked"))
                    return 501;
                te_seen = true;
            }
            break;
        case 10:
            if (ieq(p, nlen, "connection")) {
                conn_close |= has_token(v, vl, "close");
                conn_ka |= has_token(v, vl, "keep-alive");
            }
            break;
        case 6:
            if (ieq(p, nlen, "expect"))
                expect = ieq(v, vl, "100-continue");
            break;
        default:
            break;
        }
        p = eol + 1;
    }

    c->keep_alive = c->http10 ? (conn_ka && !conn_close) : !conn_close;
    c->body_seen = 0;
    c->body_left = 0;
    c->chunk = CH_SIZE;
    if (te_seen) {
        c->body = BODY_CHUNKED;
        c->close_after = cl_seen; /* RFC 9112 6.3: both present, close after */
    } else if (cl > 0) {
        c->body = BODY_LENGTH;
        c->body_left = cl;
    } else {
        c->body = BODY_NONE;
    }
    if (st)
        return st;
    if (expect && c->body != BODY_NONE && !c->http10 && c->ep != EP_DROP)
        evbuffer_add(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n", 25);
    return 0;
}

/* read_head tries to take one request head from the input. Returns 1 when a
 * request was set up, 0 when more bytes are needed, -1 when |c| was freed. */
static int read_head(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t avail = evbuffer_get_length(in);
    /* RFC 9112 2.2: ignore empty lines before a request line */
    while (avail >= 2) {
        unsigned char two[2];
        evbuffer_copyout(in, two, 2);
        if (two[0] != '\r' || two[1] != '\n')
            break;
        evbuffer_drain(in, 2);
        avail -= 2;
    }
    if (avail < 4)
        return 0;
    struct evbuffer_ptr pos = evbuffer_search(in, "\r\n\r\n", 4, NULL);
    if (pos.pos < 0) {
        if (avail > MAX_HEAD) {
            respond_error(c, 431);
            return 1;
        }
        return 0;
    }
    size_t head_len = (size_t)pos.pos + 4;
    if (head_len > MAX_HEAD) {
        respond_error(c, 431);
        return 1;
    }
    const char *p = (const char *)evbuffer_pullup(in, (ev_ssize_t)head_len);
    c->close_after = false;
    c->echo_chunked = false;
    c->head_method = false;
    c->http10 = false;
    c->keep_alive = false;
    int st = parse_head(c, p, head_len);
    evbuffer_drain(in, head_len);
    if (st) {
        respond_error(c, st);
        return 1;
    }
    if (c->ep == EP_DROP) {
        conn_free(c);
        return -1;
    }
    if (c->ep == EP_ECHO) {
        /* the response head goes out at once; the body follows as it arrives */
        const char *ct = "application/octet-stream";
        if (c->body == BODY_NONE) {
            write_head(c, 200, ct, 0);
        } else if (c->http10 && c->body == BODY_LENGTH) {
            write_head(c, 200, ct, (int64_t)c->body_left);
        } else if (c->http10) {
            c->close_after = true; /* HTTP/1.0 has no chunked framing */
            write_head(c, 200, ct, LEN_NONE);
        } else {
            c->echo_chunked = true;
            write_head(c, 200, ct, LEN_CHUNKED);
        }
    }
    c->state = ST_BODY;
    return 1;
}

/* --- request body --------------------------------------------------------- */

/* body_take consumes |n| input bytes of body data: echoed for /echo, else
 * dropped. */
static void body_take(struct conn *c, size_t n)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    c->body_seen += n;
    if (c->ep != EP_ECHO || c->head_method) {
        evbuffer_drain(in, n);
        return;
    }
    if (c->echo_chunked)
        evbuffer_add_printf(out, "%zx\r\n", n);
    evbuffer_remove_buffer(in, out, n);
    if (c->echo_chunked)
        evbuffer_add(out, "\r\n", 2);
}

/* take_line returns the next CRLF-terminated line of the input (pulled up,
 * without the CRLF) in *out and *out_len, or 0 if not complete yet, -1 if too
 * long. The caller drains *out_len + 2 bytes. */
static int take_line(struct evbuffer *in, const char **out, size_t *out_len)
{
    size_t eol_len = 0;
    struct evbuffer_ptr pos = evbuffer_search_eol(in, NULL, &eol_len, EVBUFFER_EOL_CRLF_STRICT);
    if (pos.pos < 0)
        return evbuffer_get_length(in) > MAX_CHUNK_LINE ? -1 : 0;
    if ((size_t)pos.pos > MAX_CHUNK_LINE)
        return -1;
    *out = (const char *)evbuffer_pullup(in, pos.pos + 2);
    *out_len = (size_t)pos.pos;
    return 1;
}

/* read_body consumes as much body as the input holds. Returns 1 when the
 * body is complete, 0 when more input is needed (or /echo is waiting for its
 * output to drain), -1 on a framing error. */
static int read_body(struct conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    for (;;) {
        if (c->body == BODY_NONE)
            return 1;
        if (c->ep == EP_ECHO && evbuffer_get_length(out) >= OUT_HIGH)
            return 0; /* backpressure: resumed by the write callback */
        size_t avail = evbuffer_get_length(in);
        if (c->body == BODY_LENGTH || c->chunk == CH_DATA) {
            if (avail == 0)
                return 0;
            size_t n = c->body_left < avail ? (size_t)c->body_left : avail;
            body_take(c, n);
            c->body_left -= n;
            if (c->body_left > 0)
                return 0;
            if (c->body == BODY_LENGTH)
                return 1;
            c->chunk = CH_DATA_CRLF;
            continue;
        }
        const char *line;
        size_t llen;
        int r;
        switch (c->chunk) {
        case CH_SIZE: {
            r = take_line(in, &line, &llen);
            if (r <= 0)
                return r;
            uint64_t size = 0;
            size_t i = 0;
            for (; i < llen; i++) {
                int d;
                char ch = line[i];
                if (ch >= '0' && ch <= '9')
                    d = ch - '0';
                else if (ch >= 'a' && ch <= 'f')
                    d = ch - 'a' + 10;
                else if (ch >= 'A' && ch <= 'F')
                    d = ch - 'A' + 10;
                else
                    break;
                if (i >= 15)
                    return -1;
                size = size * 16 + (uint64_t)d;
            }
            if (i == 0 || (i < llen && line[i] != ';' && line[i] != ' ' && line[i] != '\t'))
                return -1;
            evbuffer_drain(in, llen + 2);
            if (size == 0) {
                c->chunk = CH_TRAILER;
            } else {
                c->body_left = size;
                c->chunk = CH_DATA;
            }
            break;
        }
        case CH_DATA_CRLF: {
            if (avail < 2)
                return 0;
            unsigned char two[2];
            evbuffer_copyout(in, two, 2);
            if (two[0] != '\r' || two[1] != '\n')
                return -1;
            evbuffer_drain(in, 2);
            c->chunk = CH_SIZE;
            break;
        }
        case CH_TRAILER:
            r = take_line(in, &line, &llen);
            if (r <= 0)
                return r;
            evbuffer_drain(in, llen + 2);
            if (llen == 0)
                return 1;
            break;
        case CH_DATA:
            break;
        }
    }
}

/* conn_process runs the request state machine over the buffered input,
 * handling any number of pipelined requests. Returns false if |c| was
 * freed. */
static bool conn_process(struct conn *c)
{
    for (;;) {
        int r;
        switch (c->state) {
        case ST_HEAD:
            r = read_head(c);
            if (r < 0)
                return false;
            if (r == 0)
                return true;
            break;
        case ST_BODY:
            r = read_body(c);
            if (r == 0)
                return true;
            if (r < 0) {
                /* framing broken: nothing sensible can follow */
                if (c->ep == EP_ECHO) {
                    conn_free(c);
                    return false;
                }
                respond_error(c, 400);
                break;
            }
            start_action(c);
            break;
        default:
            return true;
        }
    }
}

/* conn_kick makes sure queued output gets written. Outside of streaming the
 * output is written here directly, with EV_WRITE left disabled: letting
 * bufferevent do it costs two epoll_ctl calls per request (arm the write
 * event, disarm it once drained), which on /hello is as much as the rest of
 * the request. Only when the socket does not take everything, or when
 * /bytes or /echo need the write callback to make progress, is EV_WRITE
 * enabled; write_cb disables it again once the output is empty. */
static void conn_kick(struct conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (bufferevent_get_enabled(c->bev) & EV_WRITE)
        return; /* libevent is writing; write_cb follows */
    bool direct = c->state == ST_HEAD || c->state == ST_WAIT || c->state == ST_CLOSING ||
                  (c->state == ST_BODY && c->ep != EP_ECHO);
    if (direct && evbuffer_get_length(out) > 0) {
        /* A socket bufferevent keeps the front of its output frozen so
         * that only libevent drains it; lift that just for this write, as
         * bufferevent_writecb does. Errors other than EAGAIN show up again
         * when libevent retries with EV_WRITE enabled. */
        evbuffer_unfreeze(out, 1);
        (void)evbuffer_write(out, bufferevent_getfd(c->bev));
        evbuffer_freeze(out, 1);
    }
    if (evbuffer_get_length(out) == 0 && direct) {
        if (c->state == ST_CLOSING && !c->lingering)
            conn_linger(c);
        return;
    }
    bufferevent_enable(c->bev, EV_WRITE);
}

/* --- libevent callbacks --------------------------------------------------- */

static void read_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    if (c->state == ST_CLOSING) {
        struct evbuffer *in = bufferevent_get_input(bev);
        evbuffer_drain(in, evbuffer_get_length(in));
        return;
    }
    if (conn_process(c))
        conn_kick(c);
}

static void write_cb(struct bufferevent *bev, void *arg)
{
    struct conn *c = arg;
    struct evbuffer *out = bufferevent_get_output(bev);
    switch (c->state) {
    case ST_STREAM:
        stream_refill(c);
        if (c->state != ST_STREAM && !conn_process(c))
            return;
        break;
    case ST_BODY:
        if (c->ep == EP_ECHO && !conn_process(c))
            return;
        break;
    default:
        break;
    }
    if (evbuffer_get_length(out) > 0)
        return;
    if (c->state == ST_CLOSING) {
        if (!c->lingering)
            conn_linger(c);
        return;
    }
    if (c->state != ST_STREAM && !(c->state == ST_BODY && c->ep == EP_ECHO))
        bufferevent_disable(bev, EV_WRITE); /* back to direct writes */
}

static void event_cb(struct bufferevent *bev, short what, void *arg)
{
    struct conn *c = arg;
    (void)bev;
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR)) {
        switch (c->state) {
        case ST_HEAD:
            /* queued responses still go out; a partial head is dropped */
            if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
                break;
            c->state = ST_CLOSING;
            return;
        case ST_WAIT:
        case ST_STREAM:
            /* finish the response in progress, then close */
            c->close_after = true;
            return;
        case ST_CLOSING:
            if (!c->lingering)
                return; /* still flushing the last response */
            break;
        default:
            break;
        }
    }
    conn_free(c);
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    struct worker *w = arg;
    (void)l;
    (void)sa;
    (void)salen;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct conn *c = calloc(1, sizeof(*c));
    if (!c)
        abort();
    c->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev) {
        evutil_closesocket(fd);
        free(c);
        return;
    }
    c->w = w;
    c->state = ST_HEAD;
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    bufferevent_setcb(c->bev, read_cb, write_cb, event_cb, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, READ_HIGH);
    bufferevent_setwatermark(c->bev, EV_WRITE, WRITE_LOW, 0);
    bufferevent_set_max_single_read(c->bev, 64 * 1024);
    bufferevent_set_max_single_write(c->bev, 256 * 1024);
    /* bufferevents start with EV_WRITE enabled; we write directly (conn_kick) */
    bufferevent_disable(c->bev, EV_WRITE);
    bufferevent_enable(c->bev, EV_READ);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    (void)l;
    (void)arg;
    /* EMFILE and friends: libevent retries on the next readiness */
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    struct worker *w = arg;
    uint64_t v;
    (void)what;
    if (read(fd, &v, sizeof(v)) < 0) {
        /* nothing to do: the loop stops either way */
    }
    event_base_loopbreak(w->base);
}

static struct worker g_workers[MAX_THREADS];
static int g_nthreads = 1;

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct worker *w0 = arg;
    uint64_t one = 1;
    (void)sig;
    (void)what;
    for (int i = 1; i < g_nthreads; i++)
        if (write(g_workers[i].stop_fd, &one, sizeof(one)) < 0)
            perror("sluice-upstream: eventfd write");
    event_base_loopbreak(w0->base);
}

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    event_base_dispatch(w->base);
    return NULL;
}

/* --- setup ---------------------------------------------------------------- */

struct listen_addr {
    char text[128]; /* as given on the command line */
    struct sockaddr_storage ss;
    int sslen;
};

/* bind_one creates a bound, listening, non-blocking socket for |la|, with
 * SO_REUSEPORT when |reuseport|. Returns the fd or -1 after printing why. */
static int bind_one(const struct listen_addr *la, bool reuseport)
{
    int fd = socket(la->ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        fprintf(stderr, "sluice-upstream: cannot create socket: %s\n", strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (reuseport)
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
    if (bind(fd, (const struct sockaddr *)&la->ss, (socklen_t)la->sslen) != 0 ||
        listen(fd, 4096) != 0) {
        fprintf(stderr, "sluice-upstream: cannot bind '%s': %s\n", la->text, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* port_is_free checks that nobody listens on |la| yet. SO_REUSEPORT would
 * otherwise let a second sluice-upstream (same user) silently share the port
 * with a running one instead of failing with "address in use". A socket
 * without SO_REUSEPORT cannot bind next to any listener, so try one. */
static bool port_is_free(const struct listen_addr *la)
{
    int fd = bind_one(la, false);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

static void format_addr(const struct sockaddr_storage *ss, char *buf, size_t len)
{
    char host[INET6_ADDRSTRLEN] = "?";
    int port = 0;
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
        evutil_inet_ntop(AF_INET, &sin->sin_addr, host, sizeof(host));
        port = ntohs(sin->sin_port);
        snprintf(buf, len, "%s:%d", host, port);
    } else {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
        evutil_inet_ntop(AF_INET6, &sin6->sin6_addr, host, sizeof(host));
        port = ntohs(sin6->sin6_port);
        snprintf(buf, len, "[%s]:%d", host, port);
    }
}

/* parse_listen parses "IPv4:PORT" or "[IPv6]:PORT" (port 0 allowed, unlike
 * evutil_parse_sockaddr_port) into |la|. Returns false if invalid. */
static bool parse_listen(const char *text, struct listen_addr *la)
{
    char host[INET6_ADDRSTRLEN + 2];
    const char *colon = strrchr(text, ':');
    uint64_t port;
    if (!colon || !parse_u64(colon + 1, strlen(colon + 1), &port) || port > 65535)
        return false;
    size_t hlen = (size_t)(colon - text);
    if (hlen == 0 || hlen >= sizeof(host))
        return false;
    memcpy(host, text, hlen);
    host[hlen] = '\0';
    memset(&la->ss, 0, sizeof(la->ss));
    if (host[0] == '[' && host[hlen - 1] == ']') {
        struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&la->ss;
        host[hlen - 1] = '\0';
        if (inet_pton(AF_INET6, host + 1, &sin6->sin6_addr) != 1)
            return false;
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        la->sslen = (int)sizeof(*sin6);
        return true;
    }
    struct sockaddr_in *sin = (struct sockaddr_in *)&la->ss;
    if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
        return false;
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    la->sslen = (int)sizeof(*sin);
    return true;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: sluice-upstream --listen ADDR:PORT [--listen ...] [--name NAME] "
               "[--threads N]\n"
               "  --listen ADDR:PORT  address to serve (repeatable; port 0 picks a free port)\n"
               "  --name NAME         value of the x-upstream response header (default upstream)\n"
               "  --threads N         event loops, each with its own SO_REUSEPORT socket "
               "(default 1)\n");
}

/* opt_value handles "--opt VALUE" and "--opt=VALUE". */
static const char *opt_value(int argc, char **argv, int *i, const char *opt)
{
    size_t n = strlen(opt);
    if (strncmp(argv[*i], opt, n) != 0)
        return NULL;
    if (argv[*i][n] == '=')
        return argv[*i] + n + 1;
    if (argv[*i][n] != '\0')
        return NULL;
    if (*i + 1 >= argc) {
        fprintf(stderr, "sluice-upstream: %s needs a value\n", opt);
        exit(2);
    }
    return argv[++*i];
}

int main(int argc, char **argv)
{
    static struct listen_addr addrs[MAX_LISTEN];
    int naddrs = 0;
    int rc = 1;

    for (int i = 1; i < argc; i++) {
        const char *v;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            usage(stdout);
            return 0;
        } else if ((v = opt_value(argc, argv, &i, "--listen")) != NULL) {
            if (naddrs == MAX_LISTEN) {
                fprintf(stderr, "sluice-upstream: at most %d --listen\n", MAX_LISTEN);
                return 2;
            }
            struct listen_addr *la = &addrs[naddrs];
            snprintf(la->text, sizeof(la->text), "%s", v);
            if (!parse_listen(v, la)) {
                fprintf(stderr, "sluice-upstream: invalid listen address '%s'\n", v);
                return 2;
            }
            naddrs++;
        } else if ((v = opt_value(argc, argv, &i, "--name")) != NULL) {
            size_t n = strlen(v);
            if (n == 0 || n >= sizeof(g_name)) {
                fprintf(stderr, "sluice-upstream: invalid name '%s'\n", v);
                return 2;
            }
            for (size_t k = 0; k < n; k++) {
                if ((unsigned char)v[k] < 0x21 || v[k] == 0x7f) {
                    fprintf(stderr, "sluice-upstream: name must be printable without spaces\n");
                    return 2;
                }
            }
            memcpy(g_name, v, n + 1);
        } else if ((v = opt_value(argc, argv, &i, "--threads")) != NULL) {
            uint64_t t;
            if (!parse_u64(v, strlen(v), &t) || t < 1 || t > MAX_THREADS) {
                fprintf(stderr, "sluice-upstream: --threads must be 1..%d\n", MAX_THREADS);
                return 2;
            }
            g_nthreads = (int)t;
        } else {
            fprintf(stderr, "sluice-upstream: unknown argument '%s'\n", argv[i]);
            usage(stderr);
            return 2;
        }
    }
    if (naddrs == 0) {
        usage(stderr);
        return 2;
    }

    memset(g_xs, 'x', sizeof(g_xs));
    g_hello_len = (size_t)snprintf(g_hello, sizeof(g_hello),
                                   "HTTP/1.1 200 OK\r\nx-upstream: %s\r\n"
                                   "content-type: text/plain\r\ncontent-length: 6\r\n\r\nhello\n",
                                   g_name);
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    /* Worker threads must not take SIGINT/SIGTERM: worker 0 (this thread)
     * gets them through its event_base and stops the others. */
    sigset_t sigs, old;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, &old);

    struct event_config *cfg = event_config_new();
    if (!cfg)
        abort();
    event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
    for (int t = 0; t < g_nthreads; t++) {
        struct worker *w = &g_workers[t];
        w->index = t;
        w->stop_fd = -1;
        w->base = event_base_new_with_config(cfg);
        if (!w->base) {
            fprintf(stderr, "sluice-upstream: cannot create event base\n");
            goto out;
        }
        for (int a = 0; a < naddrs; a++) {
            /* One thread needs no SO_REUSEPORT, and without it "address
             * in use" is reported the plain way. */
            if (t == 0 && g_nthreads > 1 && !port_is_free(&addrs[a]))
                goto out;
            int fd = bind_one(&addrs[a], g_nthreads > 1);
            if (fd < 0)
                goto out;
            if (t == 0) {
                /* Port 0: the other threads must share the port the kernel
                 * picked, so remember it in the address they bind. */
                socklen_t sl = sizeof(addrs[a].ss);
                getsockname(fd, (struct sockaddr *)&addrs[a].ss, &sl);
                addrs[a].sslen = (int)sl;
            }
            w->listeners[a] =
                evconnlistener_new(w->base, accept_cb, w, LEV_OPT_CLOSE_ON_FREE, 0, fd);
            if (!w->listeners[a]) {
                close(fd);
                fprintf(stderr, "sluice-upstream: cannot create listener\n");
                goto out;
            }
            evconnlistener_set_error_cb(w->listeners[a], accept_error_cb);
            w->nlisteners++;
        }
        if (t > 0) {
            w->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
            if (w->stop_fd < 0) {
                fprintf(stderr, "sluice-upstream: eventfd: %s\n", strerror(errno));
                goto out;
            }
            w->stop_ev = event_new(w->base, w->stop_fd, EV_READ | EV_PERSIST, stop_cb, w);
            if (!w->stop_ev || event_add(w->stop_ev, NULL) != 0)
                goto out;
        } else {
            w->sig_ev[0] = evsignal_new(w->base, SIGINT, signal_cb, w);
            w->sig_ev[1] = evsignal_new(w->base, SIGTERM, signal_cb, w);
            if (!w->sig_ev[0] || !w->sig_ev[1] || evsignal_add(w->sig_ev[0], NULL) != 0 ||
                evsignal_add(w->sig_ev[1], NULL) != 0)
                goto out;
        }
    }

    for (int a = 0; a < naddrs; a++) {
        char buf[160];
        format_addr(&addrs[a].ss, buf, sizeof(buf));
        printf("listening %s\n", buf);
    }
    fflush(stdout);

    int started = 1;
    for (int t = 1; t < g_nthreads; t++) {
        if (pthread_create(&g_workers[t].tid, NULL, worker_main, &g_workers[t]) != 0) {
            fprintf(stderr, "sluice-upstream: cannot start thread\n");
            break;
        }
        started++;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (started == g_nthreads)
        event_base_dispatch(g_workers[0].base);
    else
        signal_cb(SIGTERM, 0, &g_workers[0]);
    for (int t = 1; t < started; t++)
        pthread_join(g_workers[t].tid, NULL);
    rc = started == g_nthreads ? 0 : 1;

out:
    for (int t = 0; t < g_nthreads; t++) {
        struct worker *w = &g_workers[t];
        while (w->conns)
            conn_free(w->conns);
        for (int a = 0; a < w->nlisteners; a++)
            evconnlistener_free(w->listeners[a]);
        if (w->stop_ev)
            event_free(w->stop_ev);
        for (int s = 0; s < 2; s++)
            if (w->sig_ev[s])
                event_free(w->sig_ev[s]);
        if (w->stop_fd >= 0)
            close(w->stop_fd);
        if (w->base)
            event_base_free(w->base);
    }
    event_config_free(cfg);
    return rc;
}
