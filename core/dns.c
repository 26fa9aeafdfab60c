/* dns: name resolution for `resolution: dns` clusters (Istio ServiceEntry
 * `resolution: DNS`, Envoy's STRICT_DNS).
 *
 * A cache of name -> addresses lives on the main thread. Generations are
 * built from the cache (gen.c asks dns_lookup), so a worker never resolves
 * anything. The cache is filled by evdns on the main loop: before the first
 * generation, before each reload's generation, and every dns_refresh_rate;
 * when a refresh changes any answer, the server rebuilds the generation from
 * the same configuration text (server.c). A failed lookup keeps the last
 * answer that worked, as Envoy does.
 *
 * OWNERSHIP: the cache and the evdns base are the server's (main thread).
 */
#include "dns.h"

#include "log.h"

#include <arpa/inet.h>
#include <event2/dns.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    struct entry *next;
    char *name;
    char **addrs; /* sorted, "ip" text */
    size_t n;
} entry_t;

struct dns {
    struct event_base *base;
    struct evdns_base *evdns;
    entry_t *cache;
};

typedef struct batch {
    dns_t *dns;
    size_t left;
    int changed, failed;
    dns_done_fn done;
    void *arg;
} batch_t;

typedef struct query {
    batch_t *b;
    char *name;
} query_t;

dns_t *dns_new(struct event_base *base, const char *const *nameservers, size_t n)
{
    dns_t *d = calloc(1, sizeof(*d));
    if (!d)
        abort();
    d->base = base;
    d->evdns = evdns_base_new(base, n ? 0 : EVDNS_BASE_INITIALIZE_NAMESERVERS);
    if (!d->evdns) {
        free(d);
        return NULL;
    }
    for (size_t i = 0; i < n; i++)
        if (evdns_base_nameserver_ip_add(d->evdns, nameservers[i]) != 0)
            log_error("bad DNS nameserver", "nameserver=%s", nameservers[i]);
    /* Names in /etc/hosts resolve as the system resolver would. */
    evdns_base_load_hosts(d->evdns, NULL);
    evdns_base_set_option(d->evdns, "timeout:", "2");
    evdns_base_set_option(d->evdns, "attempts:", "2");
    return d;
}

void dns_free(dns_t *d)
{
    if (!d)
        return;
    evdns_base_free(d->evdns, 1); /* fail pending requests: their batches complete */
    while (d->cache) {
        entry_t *e = d->cache;
        d->cache = e->next;
        for (size_t i = 0; i < e->n; i++)
            free(e->addrs[i]);
        free(e->addrs);
        free(e->name);
        free(e);
    }
    free(d);
}

static entry_t *find(dns_t *d, const char *name)
{
    for (entry_t *e = d->cache; e; e = e->next)
        if (strcmp(e->name, name) == 0)
            return e;
    return NULL;
}

const char *const *dns_lookup(dns_t *d, const char *name, size_t *n)
{
    entry_t *e = d ? find(d, name) : NULL;
    *n = e ? e->n : 0;
    return e ? (const char *const *)e->addrs : NULL;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* store replaces |name|'s answer; returns 1 if it differs from before. */
static int store(dns_t *d, const char *name, char **addrs, size_t n)
{
    qsort(addrs, n, sizeof(char *), cmp_str);
    entry_t *e = find(d, name);
    if (!e) {
        e = calloc(1, sizeof(*e));
        if (!e || !(e->name = strdup(name)))
            abort();
        e->next = d->cache;
        d->cache = e;
    }
    int changed = e->n != n;
    for (size_t i = 0; !changed && i < n; i++)
        changed = strcmp(e->addrs[i], addrs[i]) != 0;
    for (size_t i = 0; i < e->n; i++)
        free(e->addrs[i]);
    free(e->addrs);
    e->addrs = addrs;
    e->n = n;
    return changed;
}

char **dns_addrinfo_ips(const struct evutil_addrinfo *res, size_t *n)
{
    size_t cap = 4;
    char **out = malloc(cap * sizeof(char *));
    if (!out)
        abort();
    *n = 0;
    for (const struct evutil_addrinfo *ai = res; ai; ai = ai->ai_next) {
        char ip[INET6_ADDRSTRLEN];
        const void *src = ai->ai_family == AF_INET
                              ? (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr
                              : (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
        if (!inet_ntop(ai->ai_family, src, ip, sizeof(ip)))
            continue;
        bool dup = false;
        for (size_t i = 0; i < *n; i++)
            dup = dup || strcmp(out[i], ip) == 0;
        if (dup)
            continue;
        if (*n == cap && !(out = realloc(out, (cap *= 2) * sizeof(char *))))
            abort();
        if (!(out[(*n)++] = strdup(ip)))
            abort();
    }
    return out;
}

static void on_answer(int err, struct evutil_addrinfo *res, void *arg)
{
    query_t *q = arg;
    batch_t *b = q->b;
    if (err || !res) {
        b->failed++;
        log_warn("DNS lookup failed; keeping the last answer", "name=%s error=\"%s\"", q->name,
                 evutil_gai_strerror(err));
    } else {
        size_t n;
        char **addrs = dns_addrinfo_ips(res, &n);
        evutil_freeaddrinfo(res);
        if (n) {
            b->changed += store(b->dns, q->name, addrs, n);
        } else {
            free(addrs);
            b->failed++;
        }
    }
    free(q->name);
    free(q);
    if (--b->left == 0) {
        b->done(b->arg, b->changed, b->failed);
        free(b);
    }
}

void dns_resolve(dns_t *d, const char *const *names, size_t n, dns_done_fn done, void *arg)
{
    batch_t *b = calloc(1, sizeof(*b));
    if (!b)
        abort();
    b->dns = d;
    b->done = done;
    b->arg = arg;
    b->left = n + 1; /* +1: the batch cannot complete while we are still issuing */
    for (size_t i = 0; i < n; i++) {
        query_t *q = calloc(1, sizeof(*q));
        if (!q || !(q->name = strdup(names[i])))
            abort();
        q->b = b;
        struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
        /* May answer at once (hosts file, numeric) by calling on_answer. */
        evdns_getaddrinfo(d->evdns, names[i], NULL, &hints, on_answer, q);
    }
    if (--b->left == 0) {
        b->done(b->arg, b->changed, b->failed);
        free(b);
    }
}
