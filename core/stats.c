#include "stats.h"

#include "log.h"

#include <sluice/util.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static stat_t overflow_slot;

static uint64_t hash_str(const char *s)
{
    return slcu_fnv1a64(s, strlen(s));
}

static stats_shard_t *const *worker_shards;

void stats_set_worker_shards(stats_shard_t *const *shards)
{
    worker_shards = shards;
}

stats_shard_t *stats_worker_shard(int id)
{
    return worker_shards[id];
}

stats_shard_t *stats_shard_new(void)
{
    stats_shard_t *s = calloc(1, sizeof(*s));
    if (!s)
        abort();
    return s;
}

void stats_shard_free(stats_shard_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < STATS_SLOTS; i++)
        free((void *)atomic_load_explicit(&s->slots[i].key, memory_order_relaxed));
    free(s);
}

stat_t *stats_get(stats_shard_t *s, const char *key)
{
    size_t mask = STATS_SLOTS - 1;
    for (size_t i = hash_str(key) & mask, n = 0; n < STATS_SLOTS; i = (i + 1) & mask, n++) {
        const char *k = atomic_load_explicit(&s->slots[i].key, memory_order_acquire);
        if (!k) {
            if (s->used >= STATS_SLOTS * 3 / 4)
                break;
            char *dup = strdup(key);
            if (!dup)
                abort();
            atomic_store_explicit(&s->slots[i].value, 0, memory_order_relaxed);
            atomic_store_explicit(&s->slots[i].key, dup, memory_order_release);
            s->used++;
            return &s->slots[i];
        }
        if (strcmp(k, key) == 0)
            return &s->slots[i];
    }
    static _Atomic int warned;
    if (!atomic_exchange(&warned, 1))
        log_warn("metrics table full; further series are dropped", "series_count=%zu", s->used);
    return &overflow_slot;
}

stat_t *stats_getf(stats_shard_t *s, const char *fmt, ...)
{
    char key[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(key, sizeof(key), fmt, ap);
    va_end(ap);
    return stats_get(s, key);
}

/* ---- family descriptions -------------------------------------------- */

typedef struct family {
    char *name, *type, *help;
} family_t;

static pthread_mutex_t fam_lock = PTHREAD_MUTEX_INITIALIZER;
static family_t *fams;
static size_t nfams, capfams;

void stats_describe(const char *family, const char *type, const char *help)
{
    /* Config time only (main thread, or filter config_new): a lock is fine. */
    pthread_mutex_lock(&fam_lock);
    for (size_t i = 0; i < nfams; i++)
        if (strcmp(fams[i].name, family) == 0)
            goto out;
    if (nfams == capfams) {
        capfams = capfams ? capfams * 2 : 32;
        fams = realloc(fams, capfams * sizeof(*fams));
        if (!fams)
            abort();
    }
    fams[nfams].name = strdup(family);
    fams[nfams].type = strdup(type);
    fams[nfams].help = strdup(help);
    nfams++;
out:
    pthread_mutex_unlock(&fam_lock);
}

/* ---- rendering ------------------------------------------------------ */

typedef struct series {
    const char *key;
    int64_t value;
} series_t;

static size_t family_len(const char *key)
{
    const char *b = strchr(key, '{');
    return b ? (size_t)(b - key) : strlen(key);
}

/* series_cmp orders by family name first, so "x{a=1}" never lands after
 * "x_total" and splits family "x" in two (Prometheus rejects that). */
static int series_cmp(const void *a, const void *b)
{
    const char *ka = ((const series_t *)a)->key, *kb = ((const series_t *)b)->key;
    size_t la = family_len(ka), lb = family_len(kb);
    int c = strncmp(ka, kb, la < lb ? la : lb);
    if (c != 0)
        return c;
    if (la != lb)
        return la < lb ? -1 : 1;
    return strcmp(ka + la, kb + lb);
}

static int collect(stats_shard_t *const *shards, size_t n, series_t **out)
{
    size_t cap = 256, cnt = 0;
    series_t *v = malloc(cap * sizeof(*v));
    if (!v)
        abort();
    for (size_t w = 0; w < n; w++) {
        if (!shards[w])
            continue;
        for (size_t i = 0; i < STATS_SLOTS; i++) {
            const char *k = atomic_load_explicit(&shards[w]->slots[i].key, memory_order_acquire);
            if (!k)
                continue;
            if (cnt == cap) {
                cap *= 2;
                v = realloc(v, cap * sizeof(*v));
                if (!v)
                    abort();
            }
            v[cnt].key = k;
            v[cnt].value = atomic_load_explicit(&shards[w]->slots[i].value, memory_order_relaxed);
            cnt++;
        }
    }
    qsort(v, cnt, sizeof(*v), series_cmp);
    /* Merge the same series from different shards. */
    size_t m = 0;
    for (size_t i = 0; i < cnt; i++) {
        if (m && strcmp(v[m - 1].key, v[i].key) == 0)
            v[m - 1].value += v[i].value;
        else
            v[m++] = v[i];
    }
    *out = v;
    return (int)m;
}

void stats_render(stats_shard_t *const *shards, size_t n, FILE *out)
{
    series_t *v;
    int cnt = collect(shards, n, &v);
    const char *cur = NULL;
    size_t curlen = 0;
    pthread_mutex_lock(&fam_lock);
    /* Families with no series yet still get HELP/TYPE, so a scraper and an
     * operator see every metric name from the first scrape on. */
    for (size_t f = 0; f < nfams; f++) {
        bool seen = false;
        size_t fl = strlen(fams[f].name);
        for (int i = 0; i < cnt && !seen; i++)
            seen = family_len(v[i].key) == fl && strncmp(v[i].key, fams[f].name, fl) == 0;
        if (!seen)
            fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", fams[f].name, fams[f].help, fams[f].name,
                    fams[f].type);
    }
    for (int i = 0; i < cnt; i++) {
        size_t fl = family_len(v[i].key);
        if (!cur || fl != curlen || strncmp(cur, v[i].key, fl) != 0) {
            cur = v[i].key;
            curlen = fl;
            for (size_t f = 0; f < nfams; f++) {
                if (strlen(fams[f].name) == fl && strncmp(fams[f].name, cur, fl) == 0) {
                    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", fams[f].name, fams[f].help,
                            fams[f].name, fams[f].type);
                    break;
                }
            }
        }
        fprintf(out, "%s %lld\n", v[i].key, (long long)v[i].value);
    }
    pthread_mutex_unlock(&fam_lock);
    free(v);
}

int64_t stats_sum(stats_shard_t *const *shards, size_t n, const char *key)
{
    int64_t sum = 0;
    for (size_t w = 0; w < n; w++) {
        if (!shards[w])
            continue;
        for (size_t i = 0; i < STATS_SLOTS; i++) {
            const char *k = atomic_load_explicit(&shards[w]->slots[i].key, memory_order_acquire);
            if (k && strcmp(k, key) == 0)
                sum += atomic_load_explicit(&shards[w]->slots[i].value, memory_order_relaxed);
        }
    }
    return sum;
}
