/* outlier: consecutive-error outlier detection for the circuit-breaker
 * filter (Envoy's consecutive_5xx and consecutive_gateway_failure
 * detectors, as Istio's DestinationRule outlierDetection configures them),
 * and the per-cluster state that must outlive a filter instance.
 *
 * State lives in a module-wide table of entries keyed by text: one entry
 * per endpoint ("cluster|ip:port") holding its consecutive-error counters,
 * ejection multiplier and whether the ejections gauge counts it; one per
 * cluster ("cluster|") holding the lock that serialises ejection decisions
 * in that cluster, the cluster's in-flight request and retry counts and
 * when to look for ended ejections next. Entries are inserted only on the
 * main thread (config_new) and never freed, so a reload of the filter keeps
 * every host's history and every request still in flight stays counted;
 * workers only read the table and touch an entry's atomics. The ejection
 * itself (ejected_until) is the core's (endpoint_eject), which also
 * survives reloads.
 *
 * THREADS: ob_entry_get(..., create=true) on the main thread only; the rest
 * on any thread.
 */
#ifndef SLUICE_CB_OUTLIER_H
#define SLUICE_CB_OUTLIER_H

#include <sluice/host.h>
#include <sluice/types.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* ob_settings_t is one cluster's outlierDetection, bound at config time. */
typedef struct ob_settings {
    uint32_t consecutive_5xx;     /* threshold; 0 = detector off */
    uint32_t consecutive_gateway; /* threshold; 0 = detector off */
    uint64_t interval_ms;         /* multiplier decay period */
    uint64_t base_ejection_ms;
    uint64_t max_ejection_ms; /* Envoy's cap: max(300s, base_ejection_ms) */
    uint32_t max_ejection_percent;
    uint32_t min_health_percent;
} ob_settings_t;

typedef struct ob_entry ob_entry_t;

/* OB_SLOTS is the capacity of the module-wide table (endpoints plus
 * clusters, over all instances and reloads, since entries are never
 * freed). */
#define OB_SLOTS 4096

/* ob_entry_get finds the entry keyed |a| "|" |b| (a cluster's: |b| empty).
 * With |create| it inserts a missing one (main thread only).
 * Returns NULL when absent (or the table is full).
 * LIFETIME: module; never freed. */
ob_entry_t *ob_entry_get(slc_str_t a, slc_str_t b, bool create);

/* ob_record counts one attempt outcome of the endpoint of |h|: a response
 * below 500 resets both counters; 5xx (and connect failures, resets and
 * timeouts) count for consecutive_5xx, 502/503/504 (and those failures)
 * for consecutive_gateway. Returns true when a counter just reached its
 * threshold (it is reset), or a trip that found the cluster busy is due
 * (see ob_try_eject): the caller then tries ob_try_eject. */
bool ob_record(ob_entry_t *h, const ob_settings_t *s, slc_attempt_result_t res, int status);

/* ob_try_eject ejects endpoint |e| (entry |h|, cluster entry |cl|) unless
 * it is ejected already, ejected% of its cluster is at max_ejection_percent
 * or more, or healthy% is below min_health_percent. The ejection lasts
 * base_ejection_ms times the host's ejection count (capped), after the
 * count decayed by one per full interval_ms the host spent back in service.
 * It also marks |h| counted (*out_newly: it was not) and brings the
 * cluster's next scan forward to the ejection's end.
 * Returns the until_ms passed to endpoint_eject, or 0 if not ejected; 0
 * also when another worker is deciding for the cluster right now, and the
 * trip is then carried to |h|'s next failure (ob_record). Never waits. */
uint64_t ob_try_eject(ob_entry_t *cl, ob_entry_t *h, const ob_settings_t *s,
                      const slc_endpoint_t *e, uint64_t now_ms, bool *out_newly);

/* ob_reset clears |h|'s consecutive counters (a host back in service
 * starts from zero, as in Envoy). */
void ob_reset(ob_entry_t *h);

/* ob_ejections: how many times in a row |h| was ejected (the multiplier),
 * before any pending decay. */
uint32_t ob_ejections(const ob_entry_t *h);

/* ob_trylock / ob_unlock: a flag in entry |h| that serialises ejection
 * decisions and scans of a cluster. Nobody waits for it: a worker that
 * finds it taken skips the scan, or carries its trip to the next failure. */
bool ob_trylock(ob_entry_t *h);
void ob_unlock(ob_entry_t *h);

/* ob_set_counted marks whether host |h|'s ejection is counted in the
 * cb_ejections_active gauge; returns the previous mark. Gauge series are
 * kept by the host across reloads, so the mark is too: whichever instance
 * sees the change applies the +1 or -1, exactly once. */
bool ob_set_counted(ob_entry_t *h, bool on);
bool ob_counted(const ob_entry_t *h);

/* ob_next_scan / ob_set_next_scan: when cluster |cl|'s endpoints should be
 * looked at again for ended ejections (set under ob_trylock). */
uint64_t ob_next_scan(const ob_entry_t *cl);
void ob_set_next_scan(ob_entry_t *cl, uint64_t ms);

/* ob_active / ob_retrying: cluster |cl|'s requests in flight and streams
 * retrying, over all workers and instances (http2_max_requests and
 * max_retries are per cluster, and a reload must not reset them). */
_Atomic uint32_t *ob_active(ob_entry_t *cl);
_Atomic uint32_t *ob_retrying(ob_entry_t *cl);

#endif
