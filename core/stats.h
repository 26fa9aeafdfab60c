/* stats: lock-free per-worker metric shards, summed at scrape time.
 *
 * Each worker (and the main thread, shard 0 of "main") owns a fixed-size
 * open-addressing table of series keyed by their full Prometheus series name
 * ("sluice_requests_total{listener=\"public\",code_class=\"2xx\"}"). Only the
 * owning thread inserts and writes; the admin thread reads. A slot's key is
 * published with release order after its value is zeroed, and values are
 * written with relaxed stores of load+add (one writer, so no locked
 * instruction), so a scrape sees every update eventually and never a torn one.
 *
 * Hot paths look a series up once (per connection, per cluster per
 * generation) and keep the stat_t pointer.
 */
#ifndef SLUICE_STATS_H
#define SLUICE_STATS_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

typedef struct stat_slot {
    _Atomic(const char *) key; /* malloc'd, never freed while the shard lives */
    _Atomic int64_t value;
} stat_t;

#define STATS_SLOTS 4096

typedef struct stats_shard {
    stat_t slots[STATS_SLOTS];
    size_t used;
} stats_shard_t;

stats_shard_t *stats_shard_new(void);
void stats_shard_free(stats_shard_t *s);

/* stats_set_worker_shards publishes the workers' shards ([id]; the array
 * is the server's and outlives every caller of stats_worker_shard), so
 * code below the server (the host table's metric_add_global) finds worker
 * |id|'s shard without calling up into the server. Main thread, once,
 * before the workers start. */
void stats_set_worker_shards(stats_shard_t *const *shards);
stats_shard_t *stats_worker_shard(int id);

/* stats_get returns the series |key| of shard |s|, creating it. When the
 * table is full it returns a shared overflow slot (counted, logged once). */
stat_t *stats_get(stats_shard_t *s, const char *key);
/* stats_getf builds the key with printf. */
__attribute__((format(printf, 2, 3))) stat_t *stats_getf(stats_shard_t *s, const char *fmt, ...);

static inline void stat_add(stat_t *st, int64_t v)
{
    int64_t cur = atomic_load_explicit(&st->value, memory_order_relaxed);
    atomic_store_explicit(&st->value, cur + v, memory_order_relaxed);
}
static inline void stat_inc(stat_t *st)
{
    stat_add(st, 1);
}

/* Metric families: name, type and help for the exposition's HELP/TYPE lines. */
void stats_describe(const char *family, const char *type, const char *help);

/* stats_render sums |n| shards and writes Prometheus text format to |out|,
 * families sorted by name. Main thread. */
void stats_render(stats_shard_t *const *shards, size_t n, FILE *out);

/* stats_sum: the total of one series over |n| shards (tests, /ready). */
int64_t stats_sum(stats_shard_t *const *shards, size_t n, const char *key);

#endif
