/* abi_layout: the layouts SDK ABI 1.x promises, frozen at compile time.
 *
 * Filters built against an older minor pass these structs (or receive them)
 * with the offsets their headers had. Every number below was printed by a
 * program compiled against the shipped headers in tests/compat/abi-1.0 and
 * abi-1.2, so an edit to the SDK headers that moves, retypes or removes a
 * member fails the build instead of breaking old filters at run time.
 * Appending in a later minor keeps all of them true. The numbers are for
 * LP64 targets (every target sluice ships for); elsewhere only the
 * relative checks apply.
 *
 * Linked into sluice_core, so every build (binary, unit tests) compiles it.
 */
#define SLC_NO_WRAPPERS
#include <sluice/host.h>
#include <stdint.h>

/* Relative checks, true on any target. */
_Static_assert(offsetof(slc_host_t, abi_version) == 0, "host table starts with abi_version");
_Static_assert(offsetof(slc_filter_desc_t, abi_version) == 0, "descriptor starts with abi_version");
_Static_assert(SLC_HOST_SIZE_1_0 == offsetof(slc_host_t, route_set_retry),
               "1.1 entries start where 1.0 ended");
_Static_assert(sizeof(slc_host_t) >= SLC_HOST_SIZE_1_1, "the host table only grows");
_Static_assert(sizeof(slc_filter_desc_t) >= SLC_FILTER_DESC_SIZE_1_0 + sizeof(void (*)(void)),
               "the descriptor only grows");
_Static_assert(offsetof(slc_retry_policy_t, statuses) >=
                   offsetof(slc_retry_policy_t, nretriable_statuses) + sizeof(uint32_t),
               "1.3 retry members follow the 1.1 ones");

#if defined(__LP64__)
/* FROZEN: |member| of |type| starts at |off| and is |size| bytes wide. */
#define FROZEN(type, member, off, size)                                                            \
    _Static_assert(offsetof(type, member) == (off) && sizeof(((type *)0)->member) == (size),       \
                   #type "." #member " moved or was retyped")

/* slc_host_t */
FROZEN(slc_host_t, abi_version, 0, 4);
FROZEN(slc_host_t, struct_size, 4, 4);
FROZEN(slc_host_t, log, 8, 8);
FROZEN(slc_host_t, log_enabled, 16, 8);
FROZEN(slc_host_t, cfg_type, 24, 8);
FROZEN(slc_host_t, cfg_scalar, 32, 8);
FROZEN(slc_host_t, cfg_len, 40, 8);
FROZEN(slc_host_t, cfg_at, 48, 8);
FROZEN(slc_host_t, cfg_key_at, 56, 8);
FROZEN(slc_host_t, cfg_get, 64, 8);
FROZEN(slc_host_t, cfg_bind, 72, 8);
FROZEN(slc_host_t, cfg_duration_ms, 80, 8);
FROZEN(slc_host_t, diag_error, 88, 8);
FROZEN(slc_host_t, diag_warn, 96, 8);
FROZEN(slc_host_t, cfg_cluster, 104, 8);
FROZEN(slc_host_t, cfg_alloc, 112, 8);
FROZEN(slc_host_t, metric_new, 120, 8);
FROZEN(slc_host_t, cluster_name, 128, 8);
FROZEN(slc_host_t, cluster_endpoint_count, 136, 8);
FROZEN(slc_host_t, cluster_endpoint, 144, 8);
FROZEN(slc_host_t, endpoint_address, 152, 8);
FROZEN(slc_host_t, endpoint_active_requests, 160, 8);
FROZEN(slc_host_t, endpoint_healthy, 168, 8);
FROZEN(slc_host_t, arena_alloc, 176, 8);
FROZEN(slc_host_t, arena_defer, 184, 8);
FROZEN(slc_host_t, header_get, 192, 8);
FROZEN(slc_host_t, header_set, 200, 8);
FROZEN(slc_host_t, header_add, 208, 8);
FROZEN(slc_host_t, header_remove, 216, 8);
FROZEN(slc_host_t, header_iterate, 224, 8);
FROZEN(slc_host_t, pseudo, 232, 8);
FROZEN(slc_host_t, set_pseudo, 240, 8);
FROZEN(slc_host_t, response_status, 248, 8);
FROZEN(slc_host_t, set_response_status, 256, 8);
FROZEN(slc_host_t, send_local_reply, 264, 8);
FROZEN(slc_host_t, resume, 272, 8);
FROZEN(slc_host_t, route_set_cluster, 280, 8);
FROZEN(slc_host_t, route_cluster, 288, 8);
FROZEN(slc_host_t, route_set_timeout, 296, 8);
FROZEN(slc_host_t, cluster_get, 304, 8);
FROZEN(slc_host_t, upstream_set_endpoint, 312, 8);
FROZEN(slc_host_t, stream_info, 320, 8);
FROZEN(slc_host_t, set_response_flag, 328, 8);
FROZEN(slc_host_t, req_conn, 336, 8);
FROZEN(slc_host_t, req_worker, 344, 8);
FROZEN(slc_host_t, timer_add, 352, 8);
FROZEN(slc_host_t, timer_cancel, 360, 8);
FROZEN(slc_host_t, metric_add, 368, 8);
FROZEN(slc_host_t, conn_peer, 376, 8);
FROZEN(slc_host_t, conn_local, 384, 8);
FROZEN(slc_host_t, conn_set_transport, 392, 8);
FROZEN(slc_host_t, conn_emit, 400, 8);
FROZEN(slc_host_t, conn_transport_ready, 408, 8);
FROZEN(slc_host_t, conn_peer_identity, 416, 8);
FROZEN(slc_host_t, conn_sni, 424, 8);
FROZEN(slc_host_t, conn_alpn, 432, 8);
FROZEN(slc_host_t, route_set_retry, 440, 8);
FROZEN(slc_host_t, upstream_tried, 448, 8);
FROZEN(slc_host_t, route_set_mirror, 456, 8);
FROZEN(slc_host_t, endpoint_eject, 464, 8);
FROZEN(slc_host_t, endpoint_ejected_until, 472, 8);
FROZEN(slc_host_t, now_ms, 480, 8);
FROZEN(slc_host_t, metric_new_labeled, 488, 8);
FROZEN(slc_host_t, metric_add_global, 496, 8);
FROZEN(slc_host_t, endpoint_index, 504, 8);
FROZEN(slc_host_t, endpoint_cluster, 512, 8);
FROZEN(slc_host_t, req_attempts, 520, 8);
FROZEN(slc_host_t, cfg_cluster_pool, 528, 8);
/* ABI 1.3 */
FROZEN(slc_host_t, attempt_retry, 536, 8);
FROZEN(slc_host_t, route_keep_body, 544, 8);
FROZEN(slc_host_t, route_set_try_timeout, 552, 8);
FROZEN(slc_host_t, cluster_usable_count, 560, 8);
/* ABI 1.4 */
FROZEN(slc_host_t, conn_peer_cert, 568, 8);
FROZEN(slc_host_t, conn_secure, 576, 8);
FROZEN(slc_host_t, req_fact_set, 584, 8);
FROZEN(slc_host_t, req_fact_get, 592, 8);
FROZEN(slc_host_t, metric_set_global, 600, 8);
/* ABI 1.5 */
FROZEN(slc_host_t, metric_family_new, 608, 8);
FROZEN(slc_host_t, metric_series, 616, 8);
FROZEN(slc_host_t, series_add, 624, 8);
FROZEN(slc_host_t, series_observe, 632, 8);
FROZEN(slc_host_t, worker_timer_add, 640, 8);
FROZEN(slc_host_t, worker_timer_cancel, 648, 8);
FROZEN(slc_host_t, http_call, 656, 8);
FROZEN(slc_host_t, req_trace_id, 664, 8);

/* slc_filter_desc_t */
FROZEN(slc_filter_desc_t, abi_version, 0, 4);
FROZEN(slc_filter_desc_t, struct_size, 4, 4);
FROZEN(slc_filter_desc_t, name, 8, 8);
FROZEN(slc_filter_desc_t, version, 16, 8);
FROZEN(slc_filter_desc_t, config_new, 24, 8);
FROZEN(slc_filter_desc_t, config_free, 32, 8);
FROZEN(slc_filter_desc_t, worker_init, 40, 8);
FROZEN(slc_filter_desc_t, worker_fini, 48, 8);
FROZEN(slc_filter_desc_t, on_connection, 56, 8);
FROZEN(slc_filter_desc_t, request_new, 64, 8);
FROZEN(slc_filter_desc_t, on_request_headers, 72, 8);
FROZEN(slc_filter_desc_t, on_request_body, 80, 8);
FROZEN(slc_filter_desc_t, on_upstream_select, 88, 8);
FROZEN(slc_filter_desc_t, on_upstream_connect, 96, 8);
FROZEN(slc_filter_desc_t, on_response_headers, 104, 8);
FROZEN(slc_filter_desc_t, on_response_body, 112, 8);
FROZEN(slc_filter_desc_t, on_complete, 120, 8);
FROZEN(slc_filter_desc_t, on_upstream_result, 128, 8);
FROZEN(slc_filter_desc_t, on_reopen, 136, 8); /* ABI 1.5 */

/* slc_transport_t */
FROZEN(slc_transport_t, struct_size, 0, 4);
FROZEN(slc_transport_t, recv, 8, 8);
FROZEN(slc_transport_t, send, 16, 8);
FROZEN(slc_transport_t, shutdown, 24, 8);
FROZEN(slc_transport_t, free, 32, 8);
FROZEN(slc_transport_t, peer_identity, 40, 8);
FROZEN(slc_transport_t, sni, 48, 8);
FROZEN(slc_transport_t, alpn, 56, 8);
/* ABI 1.4 */
FROZEN(slc_transport_t, peer_cert, 64, 8);
FROZEN(slc_transport_t, secure, 72, 8);
FROZEN(slc_transport_t, failure_reason, 80, 8);

/* slc_peer_cert_t (ABI 1.4) */
FROZEN(slc_peer_cert_t, struct_size, 0, 4);
FROZEN(slc_peer_cert_t, principal, 8, 16);
FROZEN(slc_peer_cert_t, trust_domain, 24, 16);
FROZEN(slc_peer_cert_t, ns, 40, 16);
FROZEN(slc_peer_cert_t, spiffe_id, 56, 16);
FROZEN(slc_peer_cert_t, subject, 72, 16);
FROZEN(slc_peer_cert_t, uri_sans, 88, 8);
FROZEN(slc_peer_cert_t, nuri_sans, 96, 4);
FROZEN(slc_peer_cert_t, dns_sans, 104, 8);
FROZEN(slc_peer_cert_t, ndns_sans, 112, 4);
FROZEN(slc_peer_cert_t, sha256_hex, 120, 16);
FROZEN(slc_peer_cert_t, not_before, 136, 8);
FROZEN(slc_peer_cert_t, not_after, 144, 8);
FROZEN(slc_peer_cert_t, pem, 152, 16);

/* slc_str_t */
FROZEN(slc_str_t, ptr, 0, 8);
FROZEN(slc_str_t, len, 8, 8);

/* slc_stream_info_t */
FROZEN(slc_stream_info_t, struct_size, 0, 4);
FROZEN(slc_stream_info_t, response_flags, 4, 4);
FROZEN(slc_stream_info_t, status, 8, 4);
FROZEN(slc_stream_info_t, start_us, 16, 8);
FROZEN(slc_stream_info_t, duration_us, 24, 8);
FROZEN(slc_stream_info_t, upstream_start_us, 32, 8);
FROZEN(slc_stream_info_t, bytes_received, 40, 8);
FROZEN(slc_stream_info_t, bytes_sent, 48, 8);
FROZEN(slc_stream_info_t, cluster, 56, 16);
FROZEN(slc_stream_info_t, upstream, 72, 16);
FROZEN(slc_stream_info_t, listener, 88, 16);
FROZEN(slc_stream_info_t, request_id, 104, 16);
FROZEN(slc_stream_info_t, protocol, 120, 16);
FROZEN(slc_stream_info_t, attempts, 136, 4);
FROZEN(slc_stream_info_t, client_address, 144, 16); /* ABI 1.3 */
/* ABI 1.5 */
FROZEN(slc_stream_info_t, upstream_failure_reason, 160, 16);
FROZEN(slc_stream_info_t, response_start_us, 176, 8);
FROZEN(slc_stream_info_t, request_header_bytes, 184, 8);
FROZEN(slc_stream_info_t, response_header_bytes, 192, 8);

/* slc_metric_spec_t, slc_http_call_t, slc_http_result_t (ABI 1.5) */
FROZEN(slc_metric_spec_t, struct_size, 0, 4);
FROZEN(slc_metric_spec_t, kind, 4, 4);
FROZEN(slc_metric_spec_t, name, 8, 8);
FROZEN(slc_metric_spec_t, help, 16, 8);
FROZEN(slc_metric_spec_t, labels, 24, 8);
FROZEN(slc_metric_spec_t, nlabels, 32, 4);
FROZEN(slc_metric_spec_t, buckets, 40, 8);
FROZEN(slc_metric_spec_t, nbuckets, 48, 4);
FROZEN(slc_metric_spec_t, max_series, 52, 4);
FROZEN(slc_metric_spec_t, flags, 56, 4);
FROZEN(slc_http_call_t, struct_size, 0, 4);
FROZEN(slc_http_call_t, address, 8, 16);
FROZEN(slc_http_call_t, method, 24, 16);
FROZEN(slc_http_call_t, path, 40, 16);
FROZEN(slc_http_call_t, authority, 56, 16);
FROZEN(slc_http_call_t, headers, 72, 8);
FROZEN(slc_http_call_t, nheaders, 80, 4);
FROZEN(slc_http_call_t, body, 88, 16);
FROZEN(slc_http_call_t, timeout_ms, 104, 8);
FROZEN(slc_http_call_t, max_response_bytes, 112, 4);
FROZEN(slc_http_result_t, struct_size, 0, 4);
FROZEN(slc_http_result_t, status, 4, 4);
FROZEN(slc_http_result_t, http_status, 8, 4);
FROZEN(slc_http_result_t, body, 16, 16);
FROZEN(slc_http_result_t, error, 32, 8);

/* slc_cfg_field_t */
FROZEN(slc_cfg_field_t, kind, 0, 4);
FROZEN(slc_cfg_field_t, key, 8, 8);
FROZEN(slc_cfg_field_t, offset, 16, 8);
FROZEN(slc_cfg_field_t, required, 24, 1);
FROZEN(slc_cfg_field_t, min, 32, 8);
FROZEN(slc_cfg_field_t, max, 40, 8);
FROZEN(slc_cfg_field_t, dflt, 48, 8);
FROZEN(slc_cfg_field_t, names, 56, 8);

/* slc_retry_policy_t */
FROZEN(slc_retry_policy_t, struct_size, 0, 4);
FROZEN(slc_retry_policy_t, max_retries, 4, 4);
FROZEN(slc_retry_policy_t, retry_on, 8, 4);
FROZEN(slc_retry_policy_t, per_try_timeout_ms, 16, 8);
FROZEN(slc_retry_policy_t, backoff_base_ms, 24, 8);
FROZEN(slc_retry_policy_t, retriable_statuses, 32, 16);
FROZEN(slc_retry_policy_t, nretriable_statuses, 48, 4);

/* slc_pool_options_t */
FROZEN(slc_pool_options_t, struct_size, 0, 4);
FROZEN(slc_pool_options_t, connect_timeout_ms, 8, 8);
FROZEN(slc_pool_options_t, idle_timeout_ms, 16, 8);
FROZEN(slc_pool_options_t, max_requests_per_connection, 24, 4);
FROZEN(slc_pool_options_t, max_connections, 28, 4);
FROZEN(slc_pool_options_t, max_pending_requests, 32, 4);

/* The prefixes each minor's filters and hosts know: 1.0, then 1.1 and 1.2
 * (which added nothing to these two tables). */
_Static_assert(SLC_HOST_SIZE_1_0 == 440, "1.0 host table size");
_Static_assert(SLC_HOST_SIZE_1_1 == 536, "1.1/1.2 host table size");
_Static_assert(SLC_HOST_SIZE_1_3 == 568, "1.3 host table size");
_Static_assert(SLC_HOST_SIZE_1_4 == 608, "1.4 host table size");
_Static_assert(SLC_FILTER_DESC_SIZE_1_4 == 136, "1.1-1.4 descriptor size");
_Static_assert(SLC_FILTER_DESC_SIZE_1_0 == 128, "1.0 descriptor size");
_Static_assert(offsetof(slc_filter_desc_t, on_upstream_result) + sizeof(void (*)(void)) == 136,
               "1.1/1.2 descriptor size");
_Static_assert(SLC_TRANSPORT_SIZE_1_0 == 64, "1.0 transport size");
_Static_assert(sizeof(slc_str_t) == 16, "slc_str_t is {ptr,len}");
_Static_assert(offsetof(slc_stream_info_t, attempts) + sizeof(uint32_t) <= 144 &&
                   sizeof(slc_stream_info_t) >= 144,
               "1.0 stream info size");
_Static_assert(sizeof(slc_cfg_field_t) == 64, "field tables of 1.0-1.3 share one stride");
/* 1.3 appends statuses/nstatuses right after the 1.1 policy. */
FROZEN(slc_retry_policy_t, statuses, 56, 8);
FROZEN(slc_retry_policy_t, nstatuses, 64, 4);
_Static_assert(sizeof(slc_pool_options_t) >= 40, "1.1 pool options size");
#endif
