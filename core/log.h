/* log: structured single-line logs on stderr ("ts=... level=... msg=..."). */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#define SLC_NO_WRAPPERS
#include <sluice/types.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>

/* log_set_level sets the minimum level written. Any thread. */
void log_set_level(slc_log_level_t level);
slc_log_level_t log_get_level(void);
bool log_enabled(slc_log_level_t level);
/* log_parse_level maps "debug|info|warn|error"; returns -1 if unknown. */
int log_parse_level(const char *s);

/* slog writes one line: msg="<msg>" then the optional printf-formatted
 * key=value tail |fmt|. One write(2) per line, so lines from different
 * threads never interleave. */
__attribute__((format(printf, 3, 4))) void slog(slc_log_level_t level, const char *msg,
                                                const char *fmt, ...);
void vslog(slc_log_level_t level, const char *msg, const char *fmt, va_list ap);

/* log_limit_t rate-limits one kind of line across threads: at most one per
 * interval, the rest counted. Zero-initialised; lives as long as its owner. */
typedef struct log_limit {
    _Atomic uint64_t last_ms; /* monotonic ms of the last line; 0 = never */
    _Atomic uint64_t suppressed;
} log_limit_t;

/* log_limit_take returns true if a line may be written now; then
 * *suppressed is how many were held back since the previous one. Any
 * thread; lock-free. */
bool log_limit_take(log_limit_t *l, uint64_t interval_ms, uint64_t *suppressed);

#define log_debug(msg, ...)                                                                        \
    do {                                                                                           \
        if (log_enabled(SLC_LOG_DEBUG))                                                            \
            slog(SLC_LOG_DEBUG, msg, __VA_ARGS__);                                                 \
    } while (0)
#define log_info(msg, ...)  slog(SLC_LOG_INFO, msg, __VA_ARGS__)
#define log_warn(msg, ...)  slog(SLC_LOG_WARN, msg, __VA_ARGS__)
#define log_error(msg, ...) slog(SLC_LOG_ERROR, msg, __VA_ARGS__)

#endif
