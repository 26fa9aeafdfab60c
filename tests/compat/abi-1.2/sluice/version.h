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
 * (descriptor). 1.2 the response flag SLC_RF_UPE.
 *
 * Only opaque handles, {ptr,len} values, plain enums, the descriptor and the
 * host table cross the boundary, so no build signature is needed.
 */
#ifndef SLUICE_VERSION_H
#define SLUICE_VERSION_H

#define SLC_ABI_MAJOR   1
#define SLC_ABI_MINOR   2
#define SLC_ABI_VERSION ((SLC_ABI_MAJOR << 16) | SLC_ABI_MINOR)

#define SLC_ABI_MAJOR_OF(v) ((unsigned)(v) >> 16)
#define SLC_ABI_MINOR_OF(v) ((unsigned)(v)&0xffffu)

/* SLC_FILTER_ENTRY is the name of the one symbol a filter module exports. */
#define SLC_FILTER_ENTRY      slc_filter_entry
#define SLC_FILTER_ENTRY_NAME "slc_filter_entry"

#endif
