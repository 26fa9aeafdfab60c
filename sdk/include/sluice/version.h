/* sluice filter SDK: ABI version.
 *
 * ABI POLICY
 *
 * SLC_ABI_VERSION is (major << 16) | minor.
 *
 *  - The host loads a filter only if the filter's major equals the host's
 *    major and the filter's minor is <= the host's minor.
 *  - A minor bump may only append: new entries at the end of slc_host_t, new
 *    hooks at the end of slc_filter_desc_t, new enum values, new fields at the
 *    end of structs that carry a struct_size. Nothing is reordered, removed or
 *    retyped.
 *  - Anything else is a major bump.
 *  - A filter that wants a host entry added in a later minor checks
 *    slc_host_has(host, entry) before calling it (struct_size test), so it can
 *    still run on an older host of the same major.
 *
 * History: 1.0 first release. 1.1 retries, mirroring, endpoint ejection,
 * monotonic time, labelled metrics (host table) and on_upstream_result
 * (descriptor). 1.2 the response flag SLC_RF_UPE. 1.3 the exported
 * slc_filter_abi_version constant (checked before the entry point runs),
 * layouts frozen by static asserts, slc_retry_policy_t.statuses/nstatuses,
 * struct_size honoured on slc_transport_t, per-minor strides for
 * slc_cfg_field_t tables, lifetime and phase contracts on every entry;
 * retries a filter decides (attempt_retry, route_keep_body,
 * route_set_try_timeout), cluster_usable_count and
 * slc_stream_info_t.client_address. 1.4 identity: slc_peer_cert_t with
 * conn_peer_cert and the transport members peer_cert, secure and
 * failure_reason; conn_secure; stream facts (req_fact_set/req_fact_get); metric_set_global;
 * SLC_FILTER_NODELETE.
 *
 * Only opaque handles, {ptr,len} values, plain enums, the descriptor, the
 * host table and the struct_size-carrying structs cross the boundary, so no
 * build signature is needed. Since 1.3 the module also exports the version
 * its headers declared (SLC_FILTER_ABI_SYMBOL), so the host can refuse it
 * before running any of its code.
 */
#ifndef SLUICE_VERSION_H
#define SLUICE_VERSION_H

#define SLC_ABI_MAJOR   1
#define SLC_ABI_MINOR   5
#define SLC_ABI_VERSION ((SLC_ABI_MAJOR << 16) | SLC_ABI_MINOR)

#define SLC_ABI_MAJOR_OF(v) ((unsigned)(v) >> 16)
#define SLC_ABI_MINOR_OF(v) ((unsigned)(v)&0xffffu)

/* SLC_FILTER_ENTRY is the module's entry function; SLC_FILTER_DEFINE writes
 * it. Modules built before 1.3 export only this symbol. */
#define SLC_FILTER_ENTRY      slc_filter_entry
#define SLC_FILTER_ENTRY_NAME "slc_filter_entry"

/* SLC_FILTER_ABI_SYMBOL (ABI 1.3): a `const uint32_t` holding the
 * SLC_ABI_VERSION of the headers the module was compiled with, also written
 * by SLC_FILTER_DEFINE. The host reads it with dlsym before it calls the
 * entry function, so an incompatible module never runs. It also tells the
 * host which layouts the module's structs have (e.g. the stride of its
 * slc_cfg_field_t tables). */
#define SLC_FILTER_ABI_SYMBOL      slc_filter_abi_version
#define SLC_FILTER_ABI_SYMBOL_NAME "slc_filter_abi_version"

#endif
