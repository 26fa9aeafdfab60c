/* Istio durations. The one parser: the core's cfg_duration_ms (what
 * SLC_FIELD_DURATION binds with) calls it, so a filter parsing a duration
 * by hand cannot disagree with the binder. */
#include <sluice/util.h>

#include <string.h>

static const struct {
    const char *name;
    size_t len;
    uint64_t ns;
} duration_units[] = {
    /* Longest first where one unit prefixes another ("ms" before "m"). */
    {"ns", 2, 1},
    {"us", 2, 1000},
    {"\xc2\xb5s", 3, 1000}, /* µs */
    {"ms", 2, 1000000},
    {"h", 1, 3600ull * 1000000000ull},
    {"m", 1, 60ull * 1000000000ull},
    {"s", 1, 1000000000ull},
};

#define NUNITS (sizeof(duration_units) / sizeof(duration_units[0]))

slc_status_t slcu_duration_ms(slc_str_t text, uint64_t *out_ms)
{
    const char *s = text.ptr;
    size_t len = text.len, i = 0;
    uint64_t total = 0;

    if (s == NULL || len == 0) {
        return SLC_EINVAL;
    }
    while (i < len) {
        uint64_t ip = 0;
        size_t idig = 0, fstart, fdig = 0;
        while (i < len && s[i] >= '0' && s[i] <= '9') {
            unsigned dg = (unsigned)(s[i] - '0');
            if (ip > (UINT64_MAX - dg) / 10) {
                return SLC_EINVAL;
            }
            ip = ip * 10 + dg;
            i++;
            idig++;
        }
        if (i < len && s[i] == '.') {
            i++;
            fstart = i;
            while (i < len && s[i] >= '0' && s[i] <= '9') {
                i++;
            }
            fdig = i - fstart;
        } else {
            fstart = i;
        }
        if (idig == 0 && fdig == 0) {
            return SLC_EINVAL;
        }
        size_t u;
        for (u = 0; u < NUNITS; u++) {
            if (len - i >= duration_units[u].len &&
                memcmp(s + i, duration_units[u].name, duration_units[u].len) == 0) {
                break;
            }
        }
        if (u == NUNITS) {
            return SLC_EINVAL; /* no unit, or an unknown one */
        }
        uint64_t unit = duration_units[u].ns;
        i += duration_units[u].len;

        if (ip != 0 && unit > UINT64_MAX / ip) {
            return SLC_EINVAL;
        }
        uint64_t term = ip * unit;
        /* Fraction digit k is worth unit/10^k; every unit is a multiple of
         * 10^k down to 1ns, so this is exact to the nanosecond. */
        uint64_t scale = unit;
        for (size_t k = 0; k < fdig && scale > 0; k++) {
            scale /= 10;
            uint64_t add = (uint64_t)(s[fstart + k] - '0') * scale;
            if (term > UINT64_MAX - add) {
                return SLC_EINVAL;
            }
            term += add;
        }
        if (total > UINT64_MAX - term) {
            return SLC_EINVAL;
        }
        total += term;
    }
    uint64_t ms = total / 1000000 + (total % 1000000 >= 500000 ? 1 : 0);
    if (ms == 0 && total > 0) {
        ms = 1;
    }
    *out_ms = ms;
    return SLC_OK;
}
