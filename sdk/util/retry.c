/* Retry policy helpers: Istio's retryOn semantics over slc_retry_policy_t
 * and Envoy's jittered backoff, shared by the core's built-in policy
 * (route_set_retry) and filters that decide their own retries (ABI 1.3),
 * so the two deciders cannot drift apart. */
#include <sluice/filter.h>
#include <sluice/util.h>

/* statuses_of: the appendable list when the policy carries one (1.3),
 * else the 1.1 fixed array. */
static bool status_listed(const slc_retry_policy_t *p, int status)
{
    const uint16_t *v = p->retriable_statuses;
    uint32_t n = p->nretriable_statuses < 8 ? p->nretriable_statuses : 8;
    if (slc_struct_has(p, slc_retry_policy_t, statuses)) {
        v = p->statuses;
        n = p->nstatuses;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (v[i] == status) {
            return true;
        }
    }
    return false;
}

bool slcu_retry_covers(const slc_retry_policy_t *p, slc_attempt_result_t res, int status)
{
    uint32_t on = p->retry_on;
    switch (res) {
    case SLC_ATTEMPT_CONNECT_FAILURE:
        return on & (SLC_RETRY_CONNECT_FAILURE | SLC_RETRY_5XX | SLC_RETRY_GATEWAY_ERROR);
    case SLC_ATTEMPT_RESET:
        return on & (SLC_RETRY_RESET | SLC_RETRY_5XX | SLC_RETRY_GATEWAY_ERROR);
    case SLC_ATTEMPT_TIMEOUT: /* a per-try timeout counts as a 504 */
        return on & (SLC_RETRY_5XX | SLC_RETRY_GATEWAY_ERROR);
    case SLC_ATTEMPT_RESPONSE:
        if ((on & SLC_RETRY_5XX) && status >= 500 && status <= 599) {
            return true;
        }
        if ((on & SLC_RETRY_GATEWAY_ERROR) && status >= 502 && status <= 504) {
            return true;
        }
        return (on & SLC_RETRY_RETRIABLE_STATUS) && status_listed(p, status);
    }
    return false;
}

uint64_t slcu_retry_backoff_ms(uint64_t base_ms, uint32_t n, uint64_t random)
{
    if (base_ms == 0) {
        base_ms = 25;
    }
    uint32_t shift = n > 0 ? n - 1 : 0;
    uint64_t span = base_ms << (shift < 10 ? shift : 10);
    if (span > base_ms * 10) {
        span = base_ms * 10;
    }
    return random % (span + 1);
}
