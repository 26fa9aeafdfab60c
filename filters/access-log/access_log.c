/* access-log: Envoy/Istio-style access logs. docs/filters/access-log.md is
 * the reference for every key.
 *
 *   config:
 *     path: /var/log/sluice/access.log   # or /dev/stdout (default), /dev/stderr
 *     format: "%START_TIME% %REQ(:METHOD)% %RESPONSE_CODE%\n"   # or json_format
 *     filter: { status: [{min: 400, max: 599}], expression: "response.code >= 500" }
 *
 * Formats and filters are compiled at config time (alog_format.c). A line is
 * rendered on the stream's worker in on_complete into that worker's scratch
 * buffer, then appended to the worker's pending buffer.
 *
 * THREADS AND OWNERSHIP: the instance (alog_cfg_t) owns one writer thread
 * and one alog_worker_t per worker (slots indexed by worker id, allocated by
 * worker_init, freed by config_free after the writer's last flush, so a
 * buffer never dies with lines in it). The handoff between a worker and the
 * writer is a LOCK: each worker's pending buffer has its own mutex, held by
 * the worker for one memcpy of one line and by the writer for a pointer
 * swap (pending <-> its empty spare). No file I/O ever happens under it, so
 * a slow disk stalls the writer only; a worker whose pending buffer would
 * pass max_backlog_bytes drops the line and counts it. The writer writes
 * outside every lock and, on files, checks each flush whether the path now
 * names another inode (logrotate moved it) and reopens it then.
 */
#include <sluice/filter.h>
#include <sluice/host.h>
#include <sluice/types.h>

#include "alog.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define ALOG_MAX_WORKERS 256

/* Istio's default text format (EnvoyTextLogFormat, meshConfig
 * accessLogFormat unset). */
#define ALOG_ISTIO_FORMAT                                                                          \
    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" "             \
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "   \
    "\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "            \
    "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" "      \
    "\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER% "        \
    "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% "             \
    "%REQUESTED_SERVER_NAME% %ROUTE_NAME%\n"

typedef struct alog_buf {
    char *p;
    size_t len, cap;
} alog_buf_t;

typedef struct alog_worker {
    struct alog_cfg *cfg;
    pthread_mutex_t mu; /* guards pending and pending_lines */
    alog_buf_t pending; /* lines not yet taken by the writer */
    uint64_t pending_lines;
    alog_buf_t spare;             /* writer only: the empty buffer swapped in */
    atomic_uint_fast64_t written; /* lines the writer wrote (writer adds) */
    atomic_uint_fast64_t lost;    /* lines a failed write lost (writer adds) */
    /* Worker only: */
    uint64_t written_reported, lost_reported;
    uint32_t sample_seq;
    alog_buf_t line; /* scratch for rendering one line */
    alog_buf_t val;  /* scratch for one value */
} alog_worker_t;

typedef struct alog_range {
    uint32_t min, max;
} alog_range_t;

typedef struct alog_cfg {
    char *path;
    int fd;
    bool is_std; /* /dev/stdout or /dev/stderr: never reopened or closed */
    dev_t dev;
    ino_t ino;
    alog_fmt_t text; /* when njson == 0 */
    size_t njson;
    char **json_keys;
    alog_fmt_t *json_fmts;
    uint64_t max_backlog;
    uint64_t flush_ms;
    /* filter: every configured criterion must hold */
    alog_range_t *ranges;
    size_t nranges;
    uint32_t flag_mask;
    uint64_t min_duration_ms;
    uint32_t sample_percent;
    alog_expr_t expr;
    slc_metric_t *m_dropped, *m_lines;
    _Atomic(alog_worker_t *) workers[ALOG_MAX_WORKERS];
    pthread_mutex_t io_mu; /* one flush at a time (writer, alog_flush_now) */
    pthread_mutex_t stop_mu;
    pthread_cond_t stop_cv;
    bool stop;
    bool thread_started;
    pthread_t thread;
} alog_cfg_t;

/* ---- config ---------------------------------------------------------------- */

typedef struct raw_top {
    char *path;
    char *format;
    const slc_cfg_node_t *json_format;
    uint32_t max_backlog_bytes;
    uint64_t flush_interval;
    const slc_cfg_node_t *filter;
} raw_top_t;

static const slc_cfg_field_t top_fields[] = {
    SLC_FIELD_STR("path", raw_top_t, path, .dflt = "/dev/stdout"),
    SLC_FIELD_STR("format", raw_top_t, format),
    SLC_FIELD_NODE("json_format", raw_top_t, json_format),
    SLC_FIELD_U32("max_backlog_bytes", raw_top_t, max_backlog_bytes, .dflt = "4194304", .min = 4096,
                  .max = 1073741824),
    SLC_FIELD_DURATION("flush_interval", raw_top_t, flush_interval, .dflt = "100ms", .min = 1,
                       .max = 60000),
    SLC_FIELD_NODE("filter", raw_top_t, filter),
    SLC_FIELD_END,
};

typedef struct raw_filter {
    const slc_cfg_node_t *status;
    const slc_cfg_node_t *response_flags;
    uint64_t min_duration;
    uint32_t sample_percent;
    char *expression;
} raw_filter_t;

static const slc_cfg_field_t filter_fields[] = {
    SLC_FIELD_NODE("status", raw_filter_t, status),
    SLC_FIELD_NODE("response_flags", raw_filter_t, response_flags),
    SLC_FIELD_DURATION("min_duration", raw_filter_t, min_duration, .dflt = "0ms"),
    SLC_FIELD_U32("sample_percent", raw_filter_t, sample_percent, .dflt = "100", .max = 100),
    SLC_FIELD_STR("expression", raw_filter_t, expression),
    SLC_FIELD_END,
};

typedef struct raw_range {
    uint32_t min, max;
} raw_range_t;

static const slc_cfg_field_t range_fields[] = {
    SLC_FIELD_U32("min", raw_range_t, min, .required = true, .min = 100, .max = 599),
    SLC_FIELD_U32("max", raw_range_t, max, .min = 100, .max = 599),
    SLC_FIELD_END,
};

static void cfg_release(alog_cfg_t *c)
{
    alog_fmt_free(&c->text);
    for (size_t i = 0; i < c->njson; i++) {
        alog_fmt_free(&c->json_fmts[i]);
    }
    free(c->json_fmts);
    c->json_fmts = NULL;
    alog_expr_free(&c->expr);
    if (!c->is_std && c->fd >= 0) {
        close(c->fd);
    }
    c->fd = -1;
    for (size_t i = 0; i < ALOG_MAX_WORKERS; i++) {
        alog_worker_t *w = atomic_load(&c->workers[i]);
        if (w != NULL) {
            pthread_mutex_destroy(&w->mu);
            free(w->pending.p);
            free(w->spare.p);
            free(w->line.p);
            free(w->val.p);
            free(w);
        }
    }
}

static bool compile_fmt(const slc_host_t *h, slc_diag_t *d, const slc_cfg_node_t *n,
                        alog_fmt_t *out)
{
    slc_str_t s = h->cfg_scalar(n);
    char err[200];
    size_t col = 0;
    if (h->cfg_type(n) != SLC_CFG_SCALAR) {
        slc_diag_error(d, n, "a format must be a string");
        return false;
    }
    if (!alog_fmt_compile(s.ptr, s.len, out, err, sizeof(err), &col)) {
        slc_diag_error(d, n, "bad format at column %zu: %s", col, err);
        return false;
    }
    return true;
}

static bool open_output(alog_cfg_t *c)
{
    if (strcmp(c->path, "/dev/stdout") == 0 || strcmp(c->path, "/dev/stderr") == 0) {
        c->is_std = true;
        c->fd = c->path[5] == 's' && c->path[8] == 'o' ? STDOUT_FILENO : STDERR_FILENO;
        return true;
    }
    int fd = open(c->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        return false;
    }
    struct stat st;
    if (fstat(fd, &st) == 0) {
        c->dev = st.st_dev;
        c->ino = st.st_ino;
    }
    c->fd = fd;
    return true;
}

static bool bind_filter(const slc_host_t *h, slc_diag_t *d, const slc_cfg_node_t *n, alog_cfg_t *c)
{
    raw_filter_t rf = {0};
    if (h->cfg_bind(d, n, filter_fields, &rf) != SLC_OK) {
        return false;
    }
    bool ok = true;
    c->min_duration_ms = rf.min_duration;
    c->sample_percent = rf.sample_percent;
    if (rf.status != NULL) {
        if (h->cfg_type(rf.status) != SLC_CFG_SEQ) {
            slc_diag_error(d, rf.status, "status must be a list of {min, max} ranges");
            return false;
        }
        c->nranges = h->cfg_len(rf.status);
        c->ranges = h->cfg_alloc(d, (c->nranges ? c->nranges : 1) * sizeof(*c->ranges));
        for (size_t i = 0; i < c->nranges; i++) {
            const slc_cfg_node_t *it = h->cfg_at(rf.status, i);
            raw_range_t rr = {0};
            if (h->cfg_bind(d, it, range_fields, &rr) != SLC_OK) {
                ok = false;
                continue;
            }
            if (rr.max == 0) {
                rr.max = rr.min;
            }
            if (rr.max < rr.min) {
                slc_diag_error(d, it, "status range max %u is below min %u", rr.max, rr.min);
                ok = false;
            }
            c->ranges[i] = (alog_range_t){rr.min, rr.max};
        }
    }
    if (rf.response_flags != NULL) {
        if (h->cfg_type(rf.response_flags) != SLC_CFG_SEQ) {
            slc_diag_error(d, rf.response_flags, "response_flags must be a list such as [UO, UF]");
            return false;
        }
        for (size_t i = 0; i < h->cfg_len(rf.response_flags); i++) {
            const slc_cfg_node_t *it = h->cfg_at(rf.response_flags, i);
            slc_str_t s = h->cfg_scalar(it);
            uint32_t bit = h->cfg_type(it) == SLC_CFG_SCALAR ? alog_flag_bit(s.ptr, s.len) : 0;
            if (bit == 0) {
                slc_diag_error(d, it,
                               "unknown response flag '%.*s' (UF UH UT UC UR NR DC LR UO "
                               "DI FI RL UAEX DPE SI UPE)",
                               (int)s.len, s.ptr ? s.ptr : "");
                ok = false;
            }
            c->flag_mask |= bit;
        }
    }
    if (rf.expression != NULL) {
        char err[200];
        size_t col = 0;
        if (!alog_expr_compile(rf.expression, strlen(rf.expression), &c->expr, err, sizeof(err),
                               &col)) {
            slc_diag_error(d, h->cfg_get(n, "expression"), "bad expression at column %zu: %s", col,
                           err);
            ok = false;
        }
    }
    return ok;
}

static void *writer_main(void *arg);

static slc_status_t alog_config_new(const slc_host_t *h, const slc_cfg_node_t *n, void **out,
                                    slc_diag_t *d)
{
    raw_top_t raw = {0};
    if (h->cfg_bind(d, n, top_fields, &raw) != SLC_OK) {
        return SLC_EINVAL;
    }
    /* calloc, not cfg_alloc: the writer thread may outlive nothing of the
     * host's, but the worker slots and fd are released in config_free. */
    alog_cfg_t *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        return SLC_ENOMEM;
    }
    c->fd = -1;
    c->path = raw.path;
    c->max_backlog = raw.max_backlog_bytes;
    c->flush_ms = raw.flush_interval;
    c->sample_percent = 100;
    bool ok = true;
    if (raw.format != NULL && raw.json_format != NULL) {
        slc_diag_error(d, raw.json_format, "format and json_format exclude each other");
        ok = false;
    } else if (raw.json_format != NULL) {
        if (h->cfg_type(raw.json_format) != SLC_CFG_MAP || h->cfg_len(raw.json_format) == 0) {
            slc_diag_error(d, raw.json_format,
                           "json_format must be a non-empty map of key: format");
            ok = false;
        } else {
            c->njson = h->cfg_len(raw.json_format);
            c->json_keys = h->cfg_alloc(d, c->njson * sizeof(char *));
            c->json_fmts = calloc(c->njson, sizeof(*c->json_fmts));
            if (c->json_fmts == NULL) {
                free(c);
                return SLC_ENOMEM;
            }
            for (size_t i = 0; i < c->njson; i++) {
                slc_str_t k = h->cfg_key_at(raw.json_format, i);
                c->json_keys[i] = h->cfg_alloc(d, k.len + 1);
                memcpy(c->json_keys[i], k.ptr, k.len);
                ok = compile_fmt(h, d, h->cfg_at(raw.json_format, i), &c->json_fmts[i]) && ok;
            }
        }
    } else if (raw.format != NULL) {
        ok = compile_fmt(h, d, h->cfg_get(n, "format"), &c->text);
    } else {
        char err[200];
        size_t col;
        ok = alog_fmt_compile(ALOG_ISTIO_FORMAT, strlen(ALOG_ISTIO_FORMAT), &c->text, err,
                              sizeof(err), &col);
    }
    if (raw.filter != NULL) {
        ok = bind_filter(h, d, raw.filter, c) && ok;
    }
    if (ok && !open_output(c)) {
        slc_diag_error(d, h->cfg_get(n, "path"), "cannot open '%s': %s", c->path, strerror(errno));
        ok = false;
    }
    if (ok) {
        c->m_dropped = h->metric_new(d, SLC_METRIC_COUNTER, "access_log_dropped_total",
                                     "Access-log lines dropped: backlog full or write failed.");
        c->m_lines = h->metric_new(d, SLC_METRIC_COUNTER, "access_log_lines_total",
                                   "Access-log lines written to the output.");
    }
    pthread_mutex_init(&c->io_mu, NULL);
    pthread_mutex_init(&c->stop_mu, NULL);
    pthread_cond_init(&c->stop_cv, NULL);
    if (ok && pthread_create(&c->thread, NULL, writer_main, c) != 0) {
        slc_diag_error(d, n, "cannot start the access-log writer thread");
        ok = false;
    }
    if (!ok) {
        cfg_release(c);
        pthread_mutex_destroy(&c->io_mu);
        pthread_mutex_destroy(&c->stop_mu);
        pthread_cond_destroy(&c->stop_cv);
        free(c);
        return SLC_EINVAL;
    }
    c->thread_started = true;
    *out = c;
    return SLC_OK;
}

/* ---- the writer -------------------------------------------------------------- */

static void reopen_if_moved(alog_cfg_t *c)
{
    if (c->is_std) {
        return;
    }
    struct stat st;
    if (stat(c->path, &st) == 0 && st.st_dev == c->dev && st.st_ino == c->ino) {
        return;
    }
    /* The path names another file, or none: logrotate moved ours away.
     * Everything written so far went to the moved file; open the new one. */
    int fd = open(c->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        return; /* keep writing to the old file rather than lose lines */
    }
    if (fstat(fd, &st) == 0) {
        c->dev = st.st_dev;
        c->ino = st.st_ino;
    }
    close(c->fd);
    c->fd = fd;
}

static bool write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            return false;
        }
        p += w;
        n -= (size_t)w;
    }
    return true;
}

void alog_flush_now(alog_cfg_t *c)
{
    pthread_mutex_lock(&c->io_mu);
    reopen_if_moved(c);
    for (size_t i = 0; i < ALOG_MAX_WORKERS; i++) {
        alog_worker_t *w = atomic_load_explicit(&c->workers[i], memory_order_acquire);
        if (w == NULL) {
            continue;
        }
        /* The handoff: a pointer swap under the worker's lock. */
        pthread_mutex_lock(&w->mu);
        alog_buf_t full = w->pending;
        uint64_t lines = w->pending_lines;
        w->pending = w->spare;
        w->pending.len = 0;
        w->pending_lines = 0;
        pthread_mutex_unlock(&w->mu);
        if (full.len > 0) {
            if (write_all(c->fd, full.p, full.len)) {
                atomic_fetch_add(&w->written, lines);
            } else {
                atomic_fetch_add(&w->lost, lines);
            }
        }
        full.len = 0;
        w->spare = full;
    }
    pthread_mutex_unlock(&c->io_mu);
}

static void *writer_main(void *arg)
{
    alog_cfg_t *c = arg;
    pthread_mutex_lock(&c->stop_mu);
    while (!c->stop) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t ns = (uint64_t)ts.tv_nsec + c->flush_ms * 1000000ull;
        ts.tv_sec += (time_t)(ns / 1000000000ull);
        ts.tv_nsec = (long)(ns % 1000000000ull);
        pthread_cond_timedwait(&c->stop_cv, &c->stop_mu, &ts);
        pthread_mutex_unlock(&c->stop_mu);
        alog_flush_now(c);
        pthread_mutex_lock(&c->stop_mu);
    }
    pthread_mutex_unlock(&c->stop_mu);
    alog_flush_now(c); /* the last lines, after every stream ended */
    return NULL;
}

static void alog_config_free(void *cfg)
{
    alog_cfg_t *c = cfg;
    if (c->thread_started) {
        pthread_mutex_lock(&c->stop_mu);
        c->stop = true;
        pthread_cond_signal(&c->stop_cv);
        pthread_mutex_unlock(&c->stop_mu);
        pthread_join(c->thread, NULL);
    }
    cfg_release(c);
    pthread_mutex_destroy(&c->io_mu);
    pthread_mutex_destroy(&c->stop_mu);
    pthread_cond_destroy(&c->stop_cv);
    free(c);
}

static slc_status_t alog_worker_init(void *cfg, int worker_id, void **out)
{
    alog_cfg_t *c = cfg;
    if (worker_id < 0 || worker_id >= ALOG_MAX_WORKERS) {
        return SLC_EINVAL;
    }
    alog_worker_t *w = atomic_load(&c->workers[worker_id]);
    if (w == NULL) {
        w = calloc(1, sizeof(*w));
        if (w == NULL) {
            return SLC_ENOMEM;
        }
        w->cfg = c;
        pthread_mutex_init(&w->mu, NULL);
        atomic_store_explicit(&c->workers[worker_id], w, memory_order_release);
    }
    *out = w;
    return SLC_OK;
}

/* worker_fini frees nothing: the slot may still hold lines, which the
 * writer's last flush in config_free writes before freeing it. */
static void alog_worker_fini(void *cfg, void *wctx)
{
    (void)cfg;
    (void)wctx;
}

static slc_status_t alog_request_new(void *cfg, void *wctx, slc_req_t *r, void **out)
{
    (void)cfg;
    (void)r;
    *out = wctx; /* the stream needs only its worker's state */
    return SLC_OK;
}

/* ---- rendering ---------------------------------------------------------------- */

static bool buf_reserve(alog_buf_t *b, size_t more)
{
    if (b->len + more <= b->cap) {
        return true;
    }
    size_t nc = b->cap ? b->cap : 512;
    while (nc < b->len + more) {
        nc *= 2;
    }
    char *np = realloc(b->p, nc);
    if (np == NULL) {
        return false;
    }
    b->p = np;
    b->cap = nc;
    return true;
}

static bool buf_put(alog_buf_t *b, const char *s, size_t n)
{
    if (!buf_reserve(b, n)) {
        return false;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return true;
}

typedef struct alog_ctx {
    slc_req_t *r;
    slc_stream_info_t info;
    bool have_info_client;
} alog_ctx_t;

static slc_str_t header_value(slc_req_t *r, slc_hdrs_t which, const char *name, size_t len)
{
    if (len > 0 && name[0] == ':' && which == SLC_REQUEST_HEADERS) {
        static const struct {
            const char *n;
            slc_pseudo_t p;
        } ps[] = {{":method", SLC_PSEUDO_METHOD},
                  {":path", SLC_PSEUDO_PATH},
                  {":authority", SLC_PSEUDO_AUTHORITY},
                  {":scheme", SLC_PSEUDO_SCHEME}};
        for (size_t i = 0; i < sizeof(ps) / sizeof(ps[0]); i++) {
            if (strlen(ps[i].n) == len && strncasecmp(ps[i].n, name, len) == 0) {
                slc_str_t v = slc_pseudo(r, ps[i].p);
                return v.len > 0 ? v : SLC_STR_NULL;
            }
        }
        return SLC_STR_NULL;
    }
    slc_str_t v = SLC_STR_NULL;
    if (slc_header_get(r, which, (slc_str_t){name, len}, &v) != SLC_OK) {
        return SLC_STR_NULL;
    }
    return v;
}

static slc_str_t nonempty(slc_str_t s)
{
    return s.ptr != NULL && s.len > 0 ? s : SLC_STR_NULL;
}

static slc_str_t fact(slc_req_t *r, slc_str_t name)
{
    if (!slc_host_has(slc_host, req_fact_get)) {
        return SLC_STR_NULL;
    }
    return nonempty(slc_host->req_fact_get(r, name));
}

/* value writes the value of operator |p| into |tmp| (a scratch for numbers
 * and joined lists) or points *out at stream-owned bytes. false: missing. */
static bool value(const alog_piece_t *p, alog_ctx_t *x, alog_buf_t *tmp, slc_str_t *out,
                  int64_t *num, bool *is_num)
{
    slc_req_t *r = x->r;
    const slc_stream_info_t *in = &x->info;
    char nb[32];
    *is_num = false;
    tmp->len = 0;
    switch (p->op) {
    case ALOG_OP_LITERAL:
        *out = (slc_str_t){p->text, p->len};
        return true;
    case ALOG_OP_START_TIME: {
        char tb[256];
        size_t n = alog_strftime(p->text, in->start_us, tb, sizeof(tb));
        if (!buf_put(tmp, tb, n)) {
            return false;
        }
        *out = (slc_str_t){tmp->p, tmp->len};
        return true;
    }
    case ALOG_OP_REQ:
    case ALOG_OP_RESP: {
        slc_hdrs_t w = p->op == ALOG_OP_REQ ? SLC_REQUEST_HEADERS : SLC_RESPONSE_HEADERS;
        *out = nonempty(header_value(r, w, p->text, p->len));
        if (out->ptr == NULL && p->alt != NULL) {
            *out = nonempty(header_value(r, w, p->alt, p->alt_len));
        }
        return out->ptr != NULL;
    }
    case ALOG_OP_PROTOCOL:
        *out = nonempty(in->protocol);
        return out->ptr != NULL;
    case ALOG_OP_RESPONSE_CODE:
        if (in->status == 0) {
            /* Envoy logs 0 for a stream that never got a response. */
            *num = 0;
        } else {
            *num = in->status;
        }
        *is_num = true;
        break;
    case ALOG_OP_RESPONSE_FLAGS:
        for (size_t i = 0; i < alog_nflag_names; i++) {
            if (in->response_flags & (1u << i)) {
                if ((tmp->len > 0 && !buf_put(tmp, ",", 1)) ||
                    !buf_put(tmp, alog_flag_names[i], strlen(alog_flag_names[i]))) {
                    return false;
                }
            }
        }
        if (tmp->len == 0) {
            return false;
        }
        *out = (slc_str_t){tmp->p, tmp->len};
        return true;
    case ALOG_OP_BYTES_RECEIVED:
        *num = (int64_t)in->bytes_received, *is_num = true;
        break;
    case ALOG_OP_BYTES_SENT:
        *num = (int64_t)in->bytes_sent, *is_num = true;
        break;
    case ALOG_OP_DURATION:
        *num = (int64_t)(in->duration_us / 1000), *is_num = true;
        break;
    case ALOG_OP_RESPONSE_DURATION:
        /* Needs the time of the upstream's first response byte, which
         * slc_stream_info_t (1.4) does not carry. */
        return false;
    case ALOG_OP_UPSTREAM_HOST:
        *out = nonempty(in->upstream);
        return out->ptr != NULL;
    case ALOG_OP_UPSTREAM_CLUSTER:
        *out = nonempty(in->cluster);
        return out->ptr != NULL;
    case ALOG_OP_DOWNSTREAM_REMOTE_ADDRESS:
    case ALOG_OP_DOWNSTREAM_LOCAL_ADDRESS:
    case ALOG_OP_REQUESTED_SERVER_NAME:
    case ALOG_OP_DOWNSTREAM_PEER_URI_SAN: {
        slc_conn_t *c = slc_host->req_conn(r);
        if (c == NULL) {
            return false;
        }
        if (p->op == ALOG_OP_DOWNSTREAM_REMOTE_ADDRESS) {
            *out = nonempty(slc_host->conn_peer(c));
        } else if (p->op == ALOG_OP_DOWNSTREAM_LOCAL_ADDRESS) {
            *out = nonempty(slc_host->conn_local(c));
        } else if (p->op == ALOG_OP_REQUESTED_SERVER_NAME) {
            *out = nonempty(slc_host->conn_sni(c));
        } else {
            slc_peer_cert_t pc = {.struct_size = sizeof(pc)};
            if (!slc_host_has(slc_host, conn_peer_cert) ||
                slc_host->conn_peer_cert(c, &pc) != SLC_OK) {
                return false;
            }
            /* Envoy joins every URI SAN with ','. */
            for (uint32_t i = 0; pc.uri_sans != NULL && i < pc.nuri_sans; i++) {
                if ((tmp->len > 0 && !buf_put(tmp, ",", 1)) ||
                    !buf_put(tmp, pc.uri_sans[i].ptr, pc.uri_sans[i].len)) {
                    return false;
                }
            }
            if (tmp->len > 0) {
                *out = (slc_str_t){tmp->p, tmp->len};
            } else {
                *out = nonempty(pc.spiffe_id);
            }
        }
        return out->ptr != NULL;
    }
    case ALOG_OP_REQUEST_ID:
        *out = nonempty(in->request_id);
        return out->ptr != NULL;
    case ALOG_OP_ROUTE_NAME:
        *out = fact(r, SLC_STR("route.name"));
        return out->ptr != NULL;
    case ALOG_OP_RBAC_POLICY:
        *out = fact(r, SLC_STR("rbac.policy"));
        return out->ptr != NULL;
    case ALOG_OP_FACT:
        *out = fact(r, (slc_str_t){p->text, p->len});
        return out->ptr != NULL;
    case ALOG_OP_UPSTREAM_REQUEST_ATTEMPT_COUNT:
        *num = in->attempts, *is_num = true;
        break;
    case ALOG_OP_UNAVAILABLE:
        return false;
    }
    int n = snprintf(nb, sizeof(nb), "%lld", (long long)*num);
    if (!buf_put(tmp, nb, (size_t)n)) {
        return false;
    }
    *out = (slc_str_t){tmp->p, tmp->len};
    return true;
}

/* render appends |f| for the stream to |b|. |escape|: text lines replace
 * control bytes in values with \xHH so that one stream is one line; JSON
 * leaves them to jansson. */
static bool render(const alog_fmt_t *f, alog_ctx_t *x, alog_buf_t *tmp, alog_buf_t *b, bool escape)
{
    for (size_t i = 0; i < f->n; i++) {
        const alog_piece_t *p = &f->pieces[i];
        slc_str_t v;
        int64_t num = 0;
        bool is_num;
        if (!value(p, x, tmp, &v, &num, &is_num)) {
            v = SLC_STR("-");
        }
        if (p->max_len > 0 && v.len > p->max_len) {
            v.len = p->max_len;
        }
        if (!escape || p->op == ALOG_OP_LITERAL) {
            if (!buf_put(b, v.ptr, v.len)) {
                return false;
            }
            continue;
        }
        for (size_t k = 0; k < v.len; k++) {
            unsigned char ch = (unsigned char)v.ptr[k];
            if (ch < 0x20 || ch == 0x7f) {
                char e[5];
                snprintf(e, sizeof(e), "\\x%02x", ch);
                if (!buf_put(b, e, 4)) {
                    return false;
                }
            } else if (!buf_put(b, (const char *)&ch, 1)) {
                return false;
            }
        }
    }
    return true;
}

static bool render_json(const alog_cfg_t *c, alog_ctx_t *x, alog_worker_t *w)
{
    json_t *o = json_object();
    if (o == NULL) {
        return false;
    }
    bool ok = true;
    for (size_t i = 0; ok && i < c->njson; i++) {
        const alog_fmt_t *f = &c->json_fmts[i];
        json_t *v = NULL;
        if (f->n == 1 && f->pieces[0].op != ALOG_OP_LITERAL) {
            /* One operator: its typed value, or null when missing (Envoy). */
            slc_str_t s;
            int64_t num = 0;
            bool is_num;
            if (!value(&f->pieces[0], x, &w->val, &s, &num, &is_num)) {
                v = json_null();
            } else if (is_num && f->pieces[0].max_len == 0) {
                v = json_integer(num);
            }
        }
        if (v == NULL) {
            w->val.len = 0;
            alog_buf_t tmp = {0};
            alog_buf_t txt = {0};
            ok = render(f, x, &tmp, &txt, false);
            /* jansson refuses invalid UTF-8: replace each bad byte with
             * U+FFFD (3 bytes), so reserve three times the input. */
            if (ok && buf_reserve(&w->val, txt.len * 3 + 1)) {
                size_t n = alog_utf8_sanitize(txt.p ? txt.p : "", txt.len, w->val.p);
                v = json_stringn(w->val.p, n);
            }
            free(tmp.p);
            free(txt.p);
        }
        if (v == NULL || json_object_set_new(o, c->json_keys[i], v) != 0) {
            ok = false;
        }
    }
    char *s = ok ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(o);
    if (s == NULL) {
        return false;
    }
    ok = buf_put(&w->line, s, strlen(s)) && buf_put(&w->line, "\n", 1);
    free(s);
    return ok;
}

static uint32_t fnv1a(slc_str_t s)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < s.len; i++) {
        h ^= (unsigned char)s.ptr[i];
        h *= 16777619u;
    }
    return h;
}

static bool wanted(const alog_cfg_t *c, alog_worker_t *w, const slc_stream_info_t *in)
{
    uint64_t dur_ms = in->duration_us / 1000;
    if (c->nranges > 0) {
        bool hit = false;
        for (size_t i = 0; i < c->nranges && !hit; i++) {
            hit = in->status >= (int)c->ranges[i].min && in->status <= (int)c->ranges[i].max;
        }
        if (!hit) {
            return false;
        }
    }
    if (c->flag_mask != 0 && (in->response_flags & c->flag_mask) == 0) {
        return false;
    }
    if (dur_ms < c->min_duration_ms) {
        return false;
    }
    if (!alog_expr_eval(&c->expr, in->status, (int64_t)dur_ms)) {
        return false;
    }
    if (c->sample_percent < 100) {
        /* Deterministic: the x-request-id's FNV-1a hash decides, so every
         * proxy that sees the id decides alike; a stream without one
         * takes the next slot (n mod 100) of a per-worker counter, so the
         * first |sample_percent| of every 100 such streams are kept. */
        uint32_t slot =
            in->request_id.len > 0 ? fnv1a(in->request_id) % 100 : (w->sample_seq++ % 100);
        if (slot >= c->sample_percent) {
            return false;
        }
    }
    return true;
}

static void alog_on_complete(void *ctx, slc_req_t *r)
{
    alog_worker_t *w = ctx;
    alog_cfg_t *c = w->cfg;

    /* Report what the writer did since the last stream on this worker: the
     * metrics are sharded per worker and only a worker may add to its own. */
    uint64_t wr = atomic_load(&w->written), lo = atomic_load(&w->lost);
    if (wr > w->written_reported && c->m_lines != NULL) {
        slc_host->metric_add(r, c->m_lines, (int64_t)(wr - w->written_reported));
    }
    if (lo > w->lost_reported && c->m_dropped != NULL) {
        slc_host->metric_add(r, c->m_dropped, (int64_t)(lo - w->lost_reported));
    }
    w->written_reported = wr;
    w->lost_reported = lo;

    alog_ctx_t x = {.r = r, .info = {.struct_size = sizeof(slc_stream_info_t)}};
    slc_host->stream_info(r, &x.info);
    if (!wanted(c, w, &x.info)) {
        return;
    }
    w->line.len = 0;
    bool ok;
    if (c->njson > 0) {
        ok = render_json(c, &x, w);
    } else {
        ok = render(&c->text, &x, &w->val, &w->line, true);
        if (ok && (w->line.len == 0 || w->line.p[w->line.len - 1] != '\n')) {
            ok = buf_put(&w->line, "\n", 1);
        }
    }
    bool dropped = !ok;
    if (ok) {
        pthread_mutex_lock(&w->mu);
        if (w->pending.len + w->line.len > c->max_backlog ||
            !buf_put(&w->pending, w->line.p, w->line.len)) {
            dropped = true;
        } else {
            w->pending_lines++;
        }
        pthread_mutex_unlock(&w->mu);
    }
    if (dropped && c->m_dropped != NULL) {
        slc_host->metric_add(r, c->m_dropped, 1);
    }
}

static const slc_filter_desc_t alog_desc = {
    .abi_version = SLC_ABI_VERSION,
    .struct_size = sizeof(slc_filter_desc_t),
    .name = "access-log",
    .version = "0.1.0",
    .config_new = alog_config_new,
    .config_free = alog_config_free,
    .worker_init = alog_worker_init,
    .worker_fini = alog_worker_fini,
    .request_new = alog_request_new,
    .on_complete = alog_on_complete,
};

SLC_FILTER_DEFINE(alog_desc)
