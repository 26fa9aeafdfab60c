#include "log.h"

#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static _Atomic int min_level = SLC_LOG_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(slc_log_level_t level)
{
    atomic_store_explicit(&min_level, (int)level, memory_order_relaxed);
}

slc_log_level_t log_get_level(void)
{
    return (slc_log_level_t)atomic_load_explicit(&min_level, memory_order_relaxed);
}

bool log_enabled(slc_log_level_t level)
{
    return (int)level >= atomic_load_explicit(&min_level, memory_order_relaxed);
}

bool log_limit_take(log_limit_t *l, uint64_t interval_ms, uint64_t *suppressed)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    uint64_t now = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u + 1;
    uint64_t last = atomic_load_explicit(&l->last_ms, memory_order_relaxed);
    /* The compare-and-swap elects one thread per interval. */
    if ((last && now - last < interval_ms) ||
        !atomic_compare_exchange_strong_explicit(&l->last_ms, &last, now, memory_order_relaxed,
                                                 memory_order_relaxed)) {
        atomic_fetch_add_explicit(&l->suppressed, 1, memory_order_relaxed);
        return false;
    }
    *suppressed = atomic_exchange_explicit(&l->suppressed, 0, memory_order_relaxed);
    return true;
}

int log_parse_level(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

void vslog(slc_log_level_t level, const char *msg, const char *fmt, va_list ap)
{
    if (!log_enabled(level))
        return;
    char line[2048];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    int n =
        snprintf(line, sizeof(line), "ts=%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ level=%s msg=\"%s\"",
                 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                 (long)(tv.tv_usec / 1000), level_names[level], msg);
    if (n < 0)
        return;
    if (fmt && *fmt && (size_t)n < sizeof(line) - 2) {
        line[n++] = ' ';
        int m = vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
        if (m > 0)
            n += m;
    }
    if ((size_t)n >= sizeof(line) - 1)
        n = (int)sizeof(line) - 2;
    line[n++] = '\n';
    /* One write per line; a short write to stderr is not worth a retry. */
    ssize_t w = write(STDERR_FILENO, line, (size_t)n);
    (void)w;
}

void slog(slc_log_level_t level, const char *msg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vslog(level, msg, fmt, ap);
    va_end(ap);
}
