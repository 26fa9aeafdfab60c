/* ASCII case, edit distance and query strings: the pieces the core and the
 * filters had each written for themselves. Only the C library is used, so
 * the core links this without RE2. */
#include <sluice/util.h>

#include <string.h>

int slcu_casecmp(slc_str_t a, slc_str_t b)
{
    size_t n = a.len < b.len ? a.len : b.len;
    for (size_t i = 0; i < n; i++) {
        int ca = slcu_lower((unsigned char)a.ptr[i]);
        int cb = slcu_lower((unsigned char)b.ptr[i]);
        if (ca != cb) {
            return ca - cb;
        }
    }
    return a.len < b.len ? -1 : a.len > b.len ? 1 : 0;
}

bool slcu_caseeq(slc_str_t a, slc_str_t b)
{
    return a.len == b.len && slcu_casecmp(a, b) == 0;
}

bool slcu_casehasprefix(slc_str_t s, slc_str_t prefix)
{
    return s.len >= prefix.len && slcu_caseeq((slc_str_t){s.ptr, prefix.len}, prefix);
}

size_t slcu_edit_distance(slc_str_t a, slc_str_t b, bool ignore_case)
{
    if (a.len > SLCU_EDIT_MAX || b.len > SLCU_EDIT_MAX) {
        return SIZE_MAX;
    }
    /* One row of the dynamic-programming table, on the stack: hints are
     * computed at config time for short names, and must not allocate. */
    size_t row[SLCU_EDIT_MAX + 1];
    for (size_t j = 0; j <= b.len; j++) {
        row[j] = j;
    }
    for (size_t i = 1; i <= a.len; i++) {
        size_t diag = row[0];
        row[0] = i;
        int ca = (unsigned char)a.ptr[i - 1];
        for (size_t j = 1; j <= b.len; j++) {
            size_t up = row[j];
            int cb = (unsigned char)b.ptr[j - 1];
            bool same = ignore_case ? slcu_lower(ca) == slcu_lower(cb) : ca == cb;
            size_t best = diag + (same ? 0 : 1);
            if (up + 1 < best) {
                best = up + 1;
            }
            if (row[j - 1] + 1 < best) {
                best = row[j - 1] + 1;
            }
            row[j] = best;
            diag = up;
        }
    }
    return row[b.len];
}

bool slcu_query_next(slc_str_t *rest, slc_str_t *name, slc_str_t *value)
{
    const char *p = rest->ptr, *end = rest->ptr + rest->len;
    if (p == NULL) {
        return false;
    }
    const char *hash = memchr(p, '#', rest->len);
    if (hash != NULL) {
        end = hash;
    }
    while (p < end) {
        const char *amp = memchr(p, '&', (size_t)(end - p));
        const char *stop = amp != NULL ? amp : end;
        if (stop == p) {
            p++; /* an empty parameter ("a&&b") names nothing */
            continue;
        }
        const char *eq = memchr(p, '=', (size_t)(stop - p));
        const char *name_end = eq != NULL ? eq : stop;
        *name = (slc_str_t){p, (size_t)(name_end - p)};
        *value = eq != NULL ? (slc_str_t){eq + 1, (size_t)(stop - eq - 1)} : (slc_str_t){stop, 0};
        const char *next = amp != NULL ? amp + 1 : end;
        *rest = (slc_str_t){next, (size_t)(end - next)};
        return true;
    }
    *rest = (slc_str_t){end, 0};
    return false;
}

bool slcu_query_get(slc_str_t query, slc_str_t name, slc_str_t *value)
{
    slc_str_t k, v;
    while (slcu_query_next(&query, &k, &v)) {
        if (k.len == name.len && (k.len == 0 || memcmp(k.ptr, name.ptr, k.len) == 0)) {
            *value = v;
            return true;
        }
    }
    return false;
}

slc_str_t slcu_query_of(slc_str_t target)
{
    const char *q = target.ptr != NULL ? memchr(target.ptr, '?', target.len) : NULL;
    if (q == NULL) {
        return (slc_str_t){NULL, 0};
    }
    return (slc_str_t){q + 1, (size_t)(target.ptr + target.len - q - 1)};
}

void slcu_principal_parts(slc_str_t principal, slc_str_t *trust_domain, slc_str_t *ns)
{
    *trust_domain = *ns = (slc_str_t){NULL, 0};
    const char *p = principal.ptr, *end = p ? p + principal.len : NULL;
    if (p == NULL || principal.len == 0) {
        return;
    }
    if (principal.len >= 9 && memcmp(p, "spiffe://", 9) == 0) {
        p += 9;
    }
    const char *slash = memchr(p, '/', (size_t)(end - p));
    *trust_domain = (slc_str_t){p, (size_t)((slash ? slash : end) - p)};
    if (slash == NULL || end - slash < 4 || memcmp(slash, "/ns/", 4) != 0) {
        return;
    }
    const char *n = slash + 4, *e = memchr(n, '/', (size_t)(end - n));
    if ((e ? e : end) > n) {
        *ns = (slc_str_t){n, (size_t)((e ? e : end) - n)};
    }
}
