/* outlier: see outlier.h. */
#include "outlier.h"

#include <sluice/util.h>

#include <stdatomic.h>
#include <string.h>

/* Keys longer than OB_KEY_MAX are told apart by their 64-bit hash and
 * length beyond the stored prefix. */
#define OB_KEY_MAX 128

struct ob_entry {
    _Atomic uint32_t ready; /* 1 once published by the main thread */
    uint32_t keylen;
    uint64_t hash;
    char key[OB_KEY_MAX]; /* a prefix of the key; immutable once ready */

    _Atomic uint32_t c5xx;       /* consecutive 5xx-class failures */
    _Atomic uint32_t cgw;        /* consecutive gateway failures */
    _Atomic uint32_t ejections;  /* multiplier of base_ejection_time */
    _Atomic uint64_t decay_from; /* when the last ejection ended (now_ms clock) */
    _Atomic bool counted;        /* in the cb_ejections_active gauge */
    /* A detector tripped while another worker held the cluster's decision:
     * the trip is carried to the host's next failure instead of waiting. */
    _Atomic bool retrip;

    /* Cluster entries only. */
    _Atomic bool lock;
    _Atomic uint64_t next_scan;
    _Atomic uint32_t active;
    _Atomic uint32_t retrying;
};

/* Zero-initialised static storage: every slot starts empty. Pages are only
 * committed once a slot in them is used. */
static ob_entry_t ob_table[OB_SLOTS];

/* key_prefix copies the first OB_KEY_MAX bytes of a "|" b into |out|. */
static size_t key_prefix(char *out, slc_str_t a, slc_str_t b)
{
    size_t o = 0;
    for (size_t i = 0; i < a.len && o < OB_KEY_MAX; i++) {
        out[o++] = a.ptr[i];
    }
    if (o < OB_KEY_MAX) {
        out[o++] = '|';
    }
    for (size_t i = 0; i < b.len && o < OB_KEY_MAX; i++) {
        out[o++] = b.ptr[i];
    }
    return o;
}

ob_entry_t *ob_entry_get(slc_str_t a, slc_str_t b, bool create)
{
    uint64_t h = slcu_fnv1a64_add(SLCU_FNV1A64_INIT, a.ptr, a.len);
    h = slcu_fnv1a64_add(h, "|", 1);
    h = slcu_fnv1a64_add(h, b.ptr, b.len);
    size_t len = a.len + 1 + b.len;
    char want[OB_KEY_MAX];
    size_t plen = key_prefix(want, a, b);
    for (size_t probe = 0; probe < OB_SLOTS; probe++) {
        ob_entry_t *e = &ob_table[(h + probe) & (OB_SLOTS - 1)];
        if (!atomic_load_explicit(&e->ready, memory_order_acquire)) {
            if (!create) {
                return NULL;
            }
            /* Only the main thread inserts, so no other writer races us;
             * readers ignore the slot until `ready` is published. */
            e->hash = h;
            e->keylen = (uint32_t)len;
            memcpy(e->key, want, plen);
            atomic_store_explicit(&e->c5xx, 0, memory_order_relaxed);
            atomic_store_explicit(&e->cgw, 0, memory_order_relaxed);
            atomic_store_explicit(&e->ejections, 0, memory_order_relaxed);
            atomic_store_explicit(&e->decay_from, 0, memory_order_relaxed);
            atomic_store_explicit(&e->counted, false, memory_order_relaxed);
            atomic_store_explicit(&e->retrip, false, memory_order_relaxed);
            atomic_store_explicit(&e->lock, false, memory_order_relaxed);
            atomic_store_explicit(&e->next_scan, 0, memory_order_relaxed);
            atomic_store_explicit(&e->active, 0, memory_order_relaxed);
            atomic_store_explicit(&e->retrying, 0, memory_order_relaxed);
            atomic_store_explicit(&e->ready, 1, memory_order_release);
            return e;
        }
        if (e->hash == h && e->keylen == len && memcmp(e->key, want, plen) == 0) {
            return e;
        }
    }
    return NULL;
}

bool ob_trylock(ob_entry_t *h)
{
    return !atomic_exchange_explicit(&h->lock, true, memory_order_acquire);
}

void ob_unlock(ob_entry_t *h)
{
    atomic_store_explicit(&h->lock, false, memory_order_release);
}

bool ob_set_counted(ob_entry_t *h, bool on)
{
    if (atomic_load_explicit(&h->counted, memory_order_relaxed) == on) {
        return on;
    }
    return atomic_exchange_explicit(&h->counted, on, memory_order_relaxed);
}

bool ob_counted(const ob_entry_t *h)
{
    return atomic_load_explicit(&h->counted, memory_order_relaxed);
}

uint64_t ob_next_scan(const ob_entry_t *cl)
{
    return atomic_load_explicit(&cl->next_scan, memory_order_relaxed);
}

void ob_set_next_scan(ob_entry_t *cl, uint64_t ms)
{
    atomic_store_explicit(&cl->next_scan, ms, memory_order_relaxed);
}

_Atomic uint32_t *ob_active(ob_entry_t *cl)
{
    return &cl->active;
}

_Atomic uint32_t *ob_retrying(ob_entry_t *cl)
{
    return &cl->retrying;
}

/* bump adds one to |c| and tells whether it just reached |threshold|; then
 * it restarts from zero, so the detector fires again after as many more
 * failures (Envoy resets the counter whether or not the ejection happens). */
static bool bump(_Atomic uint32_t *c, uint32_t threshold)
{
    if (threshold == 0) {
        return false;
    }
    if (atomic_fetch_add_explicit(c, 1, memory_order_relaxed) + 1 == threshold) {
        atomic_store_explicit(c, 0, memory_order_relaxed);
        return true;
    }
    return false;
}

/* clear stores 0 only when needed, so successes do not dirty the cache
 * line that all workers share. */
static void clear(_Atomic uint32_t *c)
{
    if (atomic_load_explicit(c, memory_order_relaxed) != 0) {
        atomic_store_explicit(c, 0, memory_order_relaxed);
    }
}

bool ob_record(ob_entry_t *h, const ob_settings_t *s, slc_attempt_result_t res, int status)
{
    bool server_error, gateway_error;
    if (res == SLC_ATTEMPT_RESPONSE) {
        server_error = status >= 500;
        gateway_error = status >= 502 && status <= 504;
    } else {
        /* Connect failures, resets and timeouts are local-origin errors;
         * without split_external_local_origin_errors (Istio never sets it)
         * Envoy counts them as gateway errors, hence 5xx too. */
        server_error = gateway_error = true;
    }
    if (!server_error) {
        clear(&h->c5xx);
        clear(&h->cgw);
        if (atomic_load_explicit(&h->retrip, memory_order_relaxed))
            atomic_store_explicit(&h->retrip, false, memory_order_relaxed); /* the run broke */
        return false;
    }
    bool trip = atomic_load_explicit(&h->retrip, memory_order_relaxed) &&
                atomic_exchange_explicit(&h->retrip, false, memory_order_relaxed);
    if (gateway_error) {
        trip = bump(&h->cgw, s->consecutive_gateway);
    } else {
        clear(&h->cgw); /* a 500 breaks a run of gateway errors */
    }
    if (bump(&h->c5xx, s->consecutive_5xx)) {
        trip = true;
    }
    return trip;
}

void ob_reset(ob_entry_t *h)
{
    clear(&h->c5xx);
    clear(&h->cgw);
    if (atomic_load_explicit(&h->retrip, memory_order_relaxed))
        atomic_store_explicit(&h->retrip, false, memory_order_relaxed);
}

uint32_t ob_ejections(const ob_entry_t *h)
{
    return atomic_load_explicit(&h->ejections, memory_order_relaxed);
}

/* decay lowers the multiplier by one per full interval the host has been
 * back in service since its last ejection ended, which is what Envoy's
 * interval timer does to hosts that are not ejected. Done lazily, only
 * when the multiplier is about to be used. Caller holds the cluster lock. */
static void decay(ob_entry_t *h, const ob_settings_t *s, uint64_t now)
{
    uint32_t k = atomic_load_explicit(&h->ejections, memory_order_relaxed);
    uint64_t from = atomic_load_explicit(&h->decay_from, memory_order_relaxed);
    if (k == 0 || s->interval_ms == 0 || now < from || now - from < s->interval_ms) {
        return;
    }
    uint64_t steps = (now - from) / s->interval_ms;
    atomic_store_explicit(&h->ejections, steps >= k ? 0 : k - (uint32_t)steps,
                          memory_order_relaxed);
    atomic_store_explicit(&h->decay_from, from + steps * s->interval_ms, memory_order_relaxed);
}

uint64_t ob_try_eject(ob_entry_t *cl, ob_entry_t *h, const ob_settings_t *s,
                      const slc_endpoint_t *e, uint64_t now, bool *out_newly)
{
    *out_newly = false;
    const slc_host_t *host = slc_host;
    if (host->endpoint_ejected_until(e) != 0) {
        return 0; /* results of requests in flight when it was ejected */
    }
    const slc_cluster_t *c = host->endpoint_cluster(e);
    size_t n = c != NULL ? host->cluster_endpoint_count(c) : 0;
    if (n == 0) {
        return 0;
    }
    uint64_t until = 0;
    /* No waiting on the request path: if another worker is deciding an
     * ejection in this cluster, this trip is carried to the host's next
     * failure (retrip) rather than spun for. */
    if (!ob_trylock(cl)) {
        atomic_store_explicit(&h->retrip, true, memory_order_relaxed);
        return 0;
    }
    if (host->endpoint_ejected_until(e) != 0) {
        goto out; /* both detectors fired at once on two workers */
    }
    size_t ejected = 0, healthy = 0;
    for (size_t i = 0; i < n; i++) {
        const slc_endpoint_t *x = host->cluster_endpoint(c, i);
        if (x == NULL) {
            continue;
        }
        if (host->endpoint_ejected_until(x) != 0) {
            ejected++;
        }
        if (host->endpoint_healthy(x)) {
            healthy++;
        }
    }
    /* Envoy: eject while the share already ejected is below the maximum,
     * so at least one host can go unless the maximum is 0. */
    if ((uint64_t)ejected * 100 >= (uint64_t)s->max_ejection_percent * n) {
        goto out;
    }
    /* Below min_health_percent healthy, outlier ejection is suspended. */
    if ((uint64_t)healthy * 100 < (uint64_t)s->min_health_percent * n) {
        goto out;
    }
    decay(h, s, now);
    uint32_t k = atomic_load_explicit(&h->ejections, memory_order_relaxed);
    /* As Envoy: the multiplier stops growing once it reaches the cap. */
    if ((uint64_t)k * s->base_ejection_ms < s->max_ejection_ms) {
        k++;
    }
    uint64_t dur = (uint64_t)k * s->base_ejection_ms;
    if (dur > s->max_ejection_ms) {
        dur = s->max_ejection_ms;
    }
    until = now + dur;
    host->endpoint_eject(e, until);
    atomic_store_explicit(&h->ejections, k, memory_order_relaxed);
    atomic_store_explicit(&h->decay_from, until, memory_order_relaxed);
    ob_reset(h);
    *out_newly = !ob_set_counted(h, true);
    if (until < ob_next_scan(cl)) {
        ob_set_next_scan(cl, until);
    }
out:
    ob_unlock(cl);
    return until;
}
