/* Unit tests for core/log.c (and the host table's log entry): level names,
 * thresholds, and the exact line format, read back by pointing stderr at a
 * temporary file with dup2 while the code under test writes. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"

#define SLC_NO_WRAPPERS
#include <sluice/host.h>

/* The core's host table (core/hostapi.c). */
extern const slc_host_t host_table;

/* ---- capturing stderr ------------------------------------------------- */

typedef struct capture {
    int saved; /* the real stderr */
    FILE *tmp;
} capture_t;

static void capture_start(capture_t *c)
{
    fflush(stderr);
    c->tmp = tmpfile();
    assert_non_null(c->tmp);
    c->saved = dup(STDERR_FILENO);
    assert_true(c->saved >= 0);
    assert_true(dup2(fileno(c->tmp), STDERR_FILENO) >= 0);
}

/* capture_end restores stderr and returns what was written (malloc'd). */
static char *capture_end(capture_t *c)
{
    fflush(stderr);
    assert_true(dup2(c->saved, STDERR_FILENO) >= 0);
    close(c->saved);
    off_t end = lseek(fileno(c->tmp), 0, SEEK_END);
    assert_true(end >= 0);
    char *buf = malloc((size_t)end + 1);
    assert_non_null(buf);
    assert_int_equal(pread(fileno(c->tmp), buf, (size_t)end, 0), end);
    buf[end] = '\0';
    fclose(c->tmp);
    return buf;
}

static size_t count_char(const char *s, char ch)
{
    size_t n = 0;
    for (; *s; s++)
        n += *s == ch;
    return n;
}

static int setup(void **state)
{
    (void)state;
    log_set_level(SLC_LOG_INFO);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    log_set_level(SLC_LOG_INFO);
    return 0;
}

/* ---- levels ------------------------------------------------------------- */

static void test_parse_level(void **state)
{
    (void)state;
    assert_int_equal(log_parse_level("debug"), SLC_LOG_DEBUG);
    assert_int_equal(log_parse_level("info"), SLC_LOG_INFO);
    assert_int_equal(log_parse_level("warn"), SLC_LOG_WARN);
    assert_int_equal(log_parse_level("error"), SLC_LOG_ERROR);
    assert_int_equal(log_parse_level("INFO"), -1);
    assert_int_equal(log_parse_level("warning"), -1);
    assert_int_equal(log_parse_level("err"), -1);
    assert_int_equal(log_parse_level(""), -1);
    assert_int_equal(log_parse_level("info "), -1);
}

static void test_thresholds(void **state)
{
    (void)state;
    log_set_level(SLC_LOG_WARN);
    assert_int_equal(log_get_level(), SLC_LOG_WARN);
    assert_false(log_enabled(SLC_LOG_DEBUG));
    assert_false(log_enabled(SLC_LOG_INFO));
    assert_true(log_enabled(SLC_LOG_WARN));
    assert_true(log_enabled(SLC_LOG_ERROR));

    log_set_level(SLC_LOG_DEBUG);
    assert_true(log_enabled(SLC_LOG_DEBUG));
    assert_true(log_enabled(SLC_LOG_INFO));

    log_set_level(SLC_LOG_ERROR);
    assert_false(log_enabled(SLC_LOG_WARN));
    assert_true(log_enabled(SLC_LOG_ERROR));
    /* The host table answers the same. */
    assert_false(host_table.log_enabled(SLC_LOG_WARN));
    assert_true(host_table.log_enabled(SLC_LOG_ERROR));
}

static void test_below_threshold_writes_nothing(void **state)
{
    (void)state;
    log_set_level(SLC_LOG_WARN);
    capture_t c;
    capture_start(&c);
    slog(SLC_LOG_INFO, "quiet", "k=%d", 1);
    log_info("quiet too", "k=%d", 2);
    slog(SLC_LOG_DEBUG, "quieter", NULL);
    char *out = capture_end(&c);
    assert_string_equal(out, "");
    free(out);
}

static int evaluated;
static int side_effect(void)
{
    return ++evaluated;
}

static void test_log_debug_skips_argument_evaluation(void **state)
{
    (void)state;
    evaluated = 0;
    capture_t c;
    capture_start(&c);
    log_debug("never", "n=%d", side_effect());
    log_set_level(SLC_LOG_DEBUG);
    log_debug("now", "n=%d", side_effect());
    char *out = capture_end(&c);
    assert_int_equal(evaluated, 1);
    assert_null(strstr(out, "never"));
    assert_non_null(strstr(out, "level=debug msg=\"now\" n=1\n"));
    free(out);
}

/* ---- line format ---------------------------------------------------------- */

static const char line_re[] =
    "^ts=([0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2})\\.[0-9]{3}Z "
    "level=info msg=\"x\" k=v\n$";

static void test_line_format(void **state)
{
    (void)state;
    time_t before = time(NULL);
    capture_t c;
    capture_start(&c);
    slog(SLC_LOG_INFO, "x", "k=%s", "v");
    char *out = capture_end(&c);
    time_t after = time(NULL);

    regex_t re;
    assert_int_equal(regcomp(&re, line_re, REG_EXTENDED), 0);
    regmatch_t m[2];
    int rc = regexec(&re, out, 2, m, 0);
    if (rc != 0)
        fail_msg("line does not match: [%s]", out);
    regfree(&re);

    /* The timestamp is UTC and now. */
    struct tm tm = {0};
    char ts[32];
    snprintf(ts, sizeof(ts), "%.*s", (int)(m[1].rm_eo - m[1].rm_so), out + m[1].rm_so);
    assert_non_null(strptime(ts, "%Y-%m-%dT%H:%M:%S", &tm));
    time_t t = timegm(&tm);
    assert_true(t >= before - 1 && t <= after + 1);
    free(out);
}

static void test_levels_named_and_one_line_per_call(void **state)
{
    (void)state;
    log_set_level(SLC_LOG_DEBUG);
    capture_t c;
    capture_start(&c);
    slog(SLC_LOG_DEBUG, "d", "a=%d", 1);
    log_info("i", "b=%s", "two");
    log_warn("w", "e=%d", 5);
    log_error("e", "c=%d d=%d", 3, 4);
    char *out = capture_end(&c);
    assert_int_equal(count_char(out, '\n'), 4);
    char *lines[4];
    char *save = NULL, *p = out;
    for (int i = 0; i < 4; i++) {
        lines[i] = strtok_r(p, "\n", &save);
        p = NULL;
        assert_non_null(lines[i]);
        assert_int_equal(strncmp(lines[i], "ts=", 3), 0);
    }
    assert_non_null(strstr(lines[0], " level=debug msg=\"d\" a=1"));
    assert_non_null(strstr(lines[1], " level=info msg=\"i\" b=two"));
    assert_non_null(strstr(lines[3], " level=error msg=\"e\" c=3 d=4"));
    assert_non_null(strstr(lines[2], " level=warn msg=\"w\" e=5"));
    free(out);
}

/* vslog_call reaches vslog without the printf-format check, so an empty
 * format can be passed as callers computing it at run time would. */
static void vslog_call(slc_log_level_t level, const char *msg, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vslog(level, msg, fmt, ap);
    va_end(ap);
}

static void test_no_tail(void **state)
{
    (void)state;
    capture_t c;
    capture_start(&c);
    slog(SLC_LOG_INFO, "bare", NULL);
    vslog_call(SLC_LOG_INFO, "empty", "");
    char *out = capture_end(&c);
    assert_non_null(strstr(out, " level=info msg=\"bare\"\n"));
    assert_non_null(strstr(out, " level=info msg=\"empty\"\n"));
    assert_int_equal(count_char(out, '\n'), 2);
    free(out);
}

static void test_long_line_truncated_to_one_line(void **state)
{
    (void)state;
    char big[5000];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    capture_t c;
    capture_start(&c);
    slog(SLC_LOG_INFO, "long", "v=%s", big);
    slog(SLC_LOG_INFO, big, "v=%d", 1); /* a huge message, too */
    slog(SLC_LOG_INFO, "after", NULL);
    char *out = capture_end(&c);
    assert_int_equal(count_char(out, '\n'), 3);
    char *nl = strchr(out, '\n');
    assert_true(nl - out + 1 <= 2048);
    char *nl2 = strchr(nl + 1, '\n');
    assert_true(nl2 - nl <= 2048);
    assert_non_null(strstr(nl2 + 1, "msg=\"after\"\n"));
    free(out);
}

/* Lines from many threads never interleave: one write(2) each. */
struct burst {
    int id;
};

static void *burst_thread(void *arg)
{
    struct burst *b = arg;
    for (int i = 0; i < 200; i++)
        slog(SLC_LOG_INFO, "burst", "thread=%d i=%d pad=%s", b->id, i,
             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    return NULL;
}

static void test_threads_do_not_interleave(void **state)
{
    (void)state;
    capture_t c;
    capture_start(&c);
    pthread_t th[4];
    struct burst b[4];
    for (int i = 0; i < 4; i++) {
        b[i].id = i;
        assert_int_equal(pthread_create(&th[i], NULL, burst_thread, &b[i]), 0);
    }
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    char *out = capture_end(&c);
    regex_t re;
    assert_int_equal(regcomp(&re,
                             "^ts=[^ ]+Z level=info msg=\"burst\" thread=[0-3] i=[0-9]+ "
                             "pad=x{80}$",
                             REG_EXTENDED | REG_NOSUB),
                     0);
    int lines = 0;
    char *save = NULL;
    for (char *l = strtok_r(out, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
        if (regexec(&re, l, 0, NULL, 0) != 0)
            fail_msg("mangled line: [%s]", l);
        lines++;
    }
    regfree(&re);
    assert_int_equal(lines, 800);
    free(out);
}

/* ---- the host table's log entry ------------------------------------------ */

static void host_log(slc_log_level_t lvl, const char *filter, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    host_table.log(lvl, filter, fmt, ap);
    va_end(ap);
}

static void test_host_log_quotes_and_filter(void **state)
{
    (void)state;
    capture_t c;
    capture_start(&c);
    /* A filter's message may contain quotes and newlines: the line must
     * stay one parseable line. */
    host_log(SLC_LOG_WARN, "rbac", "denied \"%s\"\nnext", "alice");
    host_log(SLC_LOG_DEBUG, "rbac", "hidden"); /* below threshold */
    host_log(SLC_LOG_INFO, NULL, "anon");
    char *out = capture_end(&c);
    assert_int_equal(count_char(out, '\n'), 2);
    assert_non_null(strstr(out, " level=warn msg=\"denied 'alice''next\" filter=rbac\n"));
    assert_non_null(strstr(out, " level=info msg=\"anon\" filter=?\n"));
    assert_null(strstr(out, "hidden"));
    free(out);
}

/* log_limit_take: one line per interval, the rest counted and reported
 * with the next line; threads race for the slot without losing counts. */
static void test_limit_one_per_interval(void **state)
{
    (void)state;
    log_limit_t l = {0};
    uint64_t supp = 99;
    assert_true(log_limit_take(&l, 50, &supp));
    assert_int_equal(supp, 0);
    for (int i = 0; i < 5; i++)
        assert_false(log_limit_take(&l, 50, &supp));
    struct timespec ts = {0, 60 * 1000 * 1000};
    nanosleep(&ts, NULL);
    assert_true(log_limit_take(&l, 50, &supp));
    assert_int_equal(supp, 5);
}

typedef struct limit_race {
    log_limit_t *l;
    _Atomic uint64_t taken, reported;
} limit_race_t;

static void *limit_racer(void *arg)
{
    limit_race_t *r = arg;
    for (int i = 0; i < 10000; i++) {
        uint64_t supp;
        if (log_limit_take(r->l, 1000000, &supp)) {
            atomic_fetch_add(&r->taken, 1);
            atomic_fetch_add(&r->reported, supp);
        }
    }
    return NULL;
}

static void test_limit_threads_elect_one(void **state)
{
    (void)state;
    log_limit_t l = {0};
    limit_race_t r = {.l = &l};
    pthread_t t[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, limit_racer, &r), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], NULL);
    assert_int_equal(atomic_load(&r.taken), 1);
    assert_int_equal(atomic_load(&l.suppressed), 4 * 10000 - 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_parse_level, setup, teardown),
        cmocka_unit_test_setup_teardown(test_thresholds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_below_threshold_writes_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_log_debug_skips_argument_evaluation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_line_format, setup, teardown),
        cmocka_unit_test_setup_teardown(test_levels_named_and_one_line_per_call, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_tail, setup, teardown),
        cmocka_unit_test_setup_teardown(test_long_line_truncated_to_one_line, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads_do_not_interleave, setup, teardown),
        cmocka_unit_test_setup_teardown(test_host_log_quotes_and_filter, setup, teardown),
        cmocka_unit_test(test_limit_one_per_interval),
        cmocka_unit_test(test_limit_threads_elect_one),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
