/* String, header and query-parameter matchers (Istio's StringMatch and
 * HTTPMatchRequest conditions). Compiled once at config time, read-only
 * afterwards, so workers share them. */
#include <sluice/util.h>

#include <string.h>

static bool bytes_eq(const char *a, const char *b, size_t n, bool ci)
{
    if (n == 0) {
        return true;
    }
    return ci ? slcu_caseeq((slc_str_t){a, n}, (slc_str_t){b, n}) : memcmp(a, b, n) == 0;
}

bool slcu_strmatch_value(const slcu_strmatch_t *m, const slc_str_t *v)
{
    if (v == NULL) {
        return m->kind == SLCU_MATCH_ABSENT;
    }
    slc_str_t s = *v;
    if (s.ptr == NULL) {
        s = (slc_str_t){"", 0};
    }
    switch (m->kind) {
    case SLCU_MATCH_EXACT:
        return s.len == m->text.len && bytes_eq(s.ptr, m->text.ptr, s.len, m->ignore_case);
    case SLCU_MATCH_PREFIX:
        return s.len >= m->text.len && bytes_eq(s.ptr, m->text.ptr, m->text.len, m->ignore_case);
    case SLCU_MATCH_SUFFIX:
        return s.len >= m->text.len &&
               bytes_eq(s.ptr + s.len - m->text.len, m->text.ptr, m->text.len, m->ignore_case);
    case SLCU_MATCH_REGEX:
        return m->re != NULL && slcu_regex_match(m->re, s.ptr, s.len);
    case SLCU_MATCH_PRESENT:
        return true;
    case SLCU_MATCH_ABSENT:
        return false;
    }
    return false;
}

bool slcu_header_match(const slcu_kvmatch_t *kv, const slc_str_t *value)
{
    return slcu_strmatch_value(&kv->m, value) != kv->invert;
}

bool slcu_query_match(const slcu_kvmatch_t *kv, slc_str_t query)
{
    slc_str_t v;
    bool there = slcu_query_get(query, kv->name, &v);
    return slcu_strmatch_value(&kv->m, there ? &v : NULL) != kv->invert;
}
