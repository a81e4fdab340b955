/* XDP program for podtap's AF_XDP sockets: every frame of queue q goes to the socket
 * bound to queue q (the xsks map is filled by user space). Two variants differ only in
 * what happens when no socket is bound to a queue: on podtap's own capture device the
 * frames are mirror copies and are dropped; on an interface podtap does not own (a SPAN
 * port) they continue to the kernel stack. */
#include "helpers.h"

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} podtap_xsks SEC(".maps");

SEC("xdp")
int podtap_xsk_drop(struct xdp_md *ctx)
{
	return bpf_redirect_map(&podtap_xsks, ctx->rx_queue_index, XDP_DROP);
}

SEC("xdp")
int podtap_xsk_pass(struct xdp_md *ctx)
{
	return bpf_redirect_map(&podtap_xsks, ctx->rx_queue_index, XDP_PASS);
}

char LICENSE[] SEC("license") = "GPL";
