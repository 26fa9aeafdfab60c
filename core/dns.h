/* dns: the main thread's name cache for `resolution: dns` clusters. See
 * dns.c. Main thread only. */
#ifndef SLUICE_DNS_H
#define SLUICE_DNS_H

#include <event2/event.h>
#include <stddef.h>

typedef struct dns dns_t;

/* dns_done_fn: a batch finished; |changed| names got a different answer,
 * |failed| could not be resolved (their last answer is kept). */
typedef void (*dns_done_fn)(void *arg, int changed, int failed);

/* dns_new: evdns on |base| with |nameservers| ("ip[:port]"), or the
 * system's resolv.conf when there are none; /etc/hosts is honoured. */
dns_t *dns_new(struct event_base *base, const char *const *nameservers, size_t n);
void dns_free(dns_t *d);
/* dns_resolve looks |names| up and calls |done| once all have answered
 * (possibly before it returns). */
void dns_resolve(dns_t *d, const char *const *names, size_t n, dns_done_fn done, void *arg);
/* dns_lookup: the cached addresses of |name| ("ip" text), or NULL.
 * LIFETIME: until the next answer for |name|. */
const char *const *dns_lookup(dns_t *d, const char *name, size_t *n);
/* dns_addrinfo_ips: the distinct addresses of |res| as "ip" text
 * (malloc'd array of malloc'd strings). */
struct evutil_addrinfo;
char **dns_addrinfo_ips(const struct evutil_addrinfo *res, size_t *n);

#endif
