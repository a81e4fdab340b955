/* The few BPF helpers and map macros podtap's programs use, declared here so the build
 * needs only the kernel's uapi headers (linux-libc-dev), not libbpf's. Helper numbers
 * are the kernel's stable ABI (enum bpf_func_id in linux/bpf.h). */
#pragma once
#include <linux/bpf.h>
#include <linux/types.h>

#define SEC(name) __attribute__((section(name), used))
#undef __always_inline
#define __always_inline inline __attribute__((always_inline))
/* BTF-defined maps, as libbpf reads them. */
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)BPF_FUNC_map_lookup_elem;
static long (*bpf_clone_redirect)(struct __sk_buff *skb, __u32 ifindex, __u64 flags) =
	(void *)BPF_FUNC_clone_redirect;
static long (*bpf_skb_vlan_push)(struct __sk_buff *skb, __be16 proto, __u16 tci) =
	(void *)BPF_FUNC_skb_vlan_push;
static long (*bpf_skb_vlan_pop)(struct __sk_buff *skb) = (void *)BPF_FUNC_skb_vlan_pop;
static long (*bpf_skb_load_bytes)(const void *skb, __u32 offset, void *to, __u32 len) =
	(void *)BPF_FUNC_skb_load_bytes;
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)BPF_FUNC_redirect_map;

#define bswap16(x) __builtin_bswap16(x)
static long (*bpf_xdp_adjust_head)(struct xdp_md *ctx, int delta) = (void *)BPF_FUNC_xdp_adjust_head;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)BPF_FUNC_ktime_get_ns;
static long (*bpf_skb_change_head)(struct __sk_buff *skb, __u32 len, __u64 flags) =
	(void *)BPF_FUNC_skb_change_head;
static long (*bpf_skb_store_bytes)(struct __sk_buff *skb, __u32 offset, const void *from, __u32 len,
				   __u64 flags) = (void *)BPF_FUNC_skb_store_bytes;

/* The arrival stamp podtap's programs put on frames for its AF_XDP sockets: CLOCK_MONOTONIC
 * nanoseconds and a magic word, in native byte order. Must match STAMP_LEN and STAMP_MAGIC
 * in src/capture/xdp.rs. */
struct podtap_stamp {
	__u64 mono_ns;
	__u64 magic;
};

#define PODTAP_STAMP_MAGIC 0x7374706174646f70ULL /* "podtapts" */
