/* CIDR ranges, IPv4 and IPv6, for source-address policies (rbac, lb). */
#include <sluice/util.h>

#include <arpa/inet.h>
#include <string.h>

/* The longest address text inet_pton needs, with room for its NUL. */
#define IP_TEXT_MAX 64

static bool parse_addr(const char *p, size_t n, slcu_cidr_t *out)
{
    char buf[IP_TEXT_MAX];
    if (n > 2 && p[0] == '[' && p[n - 1] == ']') {
        p++;
        n -= 2;
    }
    if (n == 0 || n >= sizeof(buf) || memchr(p, '\0', n) != NULL) {
        return false;
    }
    memcpy(buf, p, n);
    buf[n] = '\0';
    memset(out, 0, sizeof(*out));
    if (memchr(buf, ':', n) == NULL) {
        if (inet_pton(AF_INET, buf, out->addr) != 1) {
            return false;
        }
        out->family = 4;
        out->prefix = 32;
        return true;
    }
    if (inet_pton(AF_INET6, buf, out->addr) != 1) {
        return false;
    }
    out->family = 6;
    out->prefix = 128;
    return true;
}

bool slcu_ip_parse(slc_str_t text, slcu_cidr_t *out)
{
    return text.ptr != NULL && parse_addr(text.ptr, text.len, out);
}

/* bits_clear tells whether every bit of |a| from |from| on is zero. */
static bool bits_clear(const uint8_t *a, unsigned from, unsigned total)
{
    for (unsigned b = from; b < total; b++) {
        if (a[b / 8] & (0x80u >> (b % 8))) {
            return false;
        }
    }
    return true;
}

bool slcu_cidr_parse(slc_str_t text, slcu_cidr_t *out)
{
    if (text.ptr == NULL) {
        return false;
    }
    const char *slash = memchr(text.ptr, '/', text.len);
    size_t alen = slash != NULL ? (size_t)(slash - text.ptr) : text.len;
    slcu_cidr_t c;
    if (!parse_addr(text.ptr, alen, &c)) {
        return false;
    }
    if (slash != NULL) {
        const char *p = slash + 1, *end = text.ptr + text.len;
        unsigned v = 0;
        if (p == end || end - p > 3) {
            return false;
        }
        for (; p < end; p++) {
            if (*p < '0' || *p > '9') {
                return false;
            }
            v = v * 10 + (unsigned)(*p - '0');
        }
        if (v > c.prefix) {
            return false;
        }
        if (!bits_clear(c.addr, v, c.prefix)) {
            return false;
        }
        c.prefix = (uint8_t)v;
    }
    *out = c;
    return true;
}

static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool slcu_cidr_contains(const slcu_cidr_t *range, const slcu_cidr_t *ip)
{
    const uint8_t *a = ip->addr;
    if (range->family == 4 && ip->family == 6) {
        if (memcmp(ip->addr, v4_mapped, sizeof(v4_mapped)) != 0) {
            return false;
        }
        a = ip->addr + 12;
    } else if (range->family != ip->family) {
        return false;
    }
    unsigned full = range->prefix / 8, rest = range->prefix % 8;
    if (memcmp(a, range->addr, full) != 0) {
        return false;
    }
    if (rest == 0) {
        return true;
    }
    uint8_t mask = (uint8_t)(0xffu << (8 - rest));
    return (a[full] & mask) == (range->addr[full] & mask);
}

bool slcu_cidr_match_text(const slcu_cidr_t *range, slc_str_t ip)
{
    slcu_cidr_t a;
    return slcu_ip_parse(ip, &a) && slcu_cidr_contains(range, &a);
}
