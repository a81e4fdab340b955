/* XDP program for podtap's AF_XDP sockets: every frame of queue q goes to the socket
 * bound to queue q (the xsks map is filled by user space). Two variants differ only in
 * what happens when no socket is bound to a queue: on podtap's own capture device the
 * frames are mirror copies and are dropped; on an interface podtap does not own (a SPAN
 * port) they continue to the kernel stack, as they came.
 *
 * Each variant exists twice. The default ones stamp every frame with its arrival time
 * (bpf_ktime_get_ns: CLOCK_MONOTONIC) in a 16-byte header pushed in front of the packet
 * (bpf_xdp_adjust_head into the headroom XDP guarantees), which user space reads and
 * strips. Not XDP metadata (bpf_xdp_adjust_meta): some kernels refuse that helper to XDP
 * programs and several drivers do not support it, while every XDP driver moves the head.
 * A frame whose head cannot be moved is still redirected, unstamped; user space tells
 * by the magic word. On the capture device the mirror has stamped most copies already
 * (when the pod veth passed them); only the others get the XDP stamp. The `nts` variants (capture.xdp.frame_timestamps = false) stamp
 * nothing and user space times frames by receive batch. Names stay within the kernel's
 * 15 characters. */
#include "helpers.h"

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u32);
} podtap_xsks SEC(".maps");

/* Returns whether the frame now starts with a stamp. */
static __always_inline int stamp(struct xdp_md *ctx)
{
	__u64 now = bpf_ktime_get_ns();
	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct podtap_stamp)))
		return 0;
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct podtap_stamp *s = data;
	if ((void *)(s + 1) > data_end) {
		/* Cannot happen (the packet only grew); leave no half-written header. */
		bpf_xdp_adjust_head(ctx, (int)sizeof(struct podtap_stamp));
		return 0;
	}
	s->mono_ns = now;
	s->magic = PODTAP_STAMP_MAGIC;
	return 1;
}

/* Whether the frame already starts with a stamp: on podtap's capture device, copies the
 * mirror stamped when the pod veth passed them (bpf/mirror.bpf.c). */
static __always_inline int stamped(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct podtap_stamp *s = data;
	return (void *)(s + 1) <= data_end && s->magic == PODTAP_STAMP_MAGIC;
}

SEC("xdp")
int podtap_xsk_drop(struct xdp_md *ctx)
{
	if (!stamped(ctx))
		stamp(ctx);
	return bpf_redirect_map(&podtap_xsks, ctx->rx_queue_index, XDP_DROP);
}

SEC("xdp")
int podtap_xsk_pass(struct xdp_md *ctx)
{
	int stamped = stamp(ctx);
	int action = bpf_redirect_map(&podtap_xsks, ctx->rx_queue_index, XDP_PASS);
	/* A frame no socket took goes on to the stack without the stamp. */
	if (action == XDP_PASS && stamped)
		bpf_xdp_adjust_head(ctx, (int)sizeof(struct podtap_stamp));
	return action;
}

SEC("xdp")
int podtap_xsk_dnts(struct xdp_md *ctx)
{
	return bpf_redirect_map(&podtap_xsks, ctx->rx_queue_index, XDP_DROP);
}

SEC("xdp")
int podtap_xsk_pnts(struct xdp_md *ctx)
{
	return bpf_redirect_map(&podtap_xsks, ctx->rx_queue_index, XDP_PASS);
}

char LICENSE[] SEC("license") = "GPL";
