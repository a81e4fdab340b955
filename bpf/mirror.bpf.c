/* tc (cls_bpf, direct action) programs that mirror a pod veth's traffic to podtap's
 * capture device. Each copy carries an 802.1ad tag whose TCI names the veth (a slot
 * number user space assigned, 1..32767, in VID and PCP) and the direction (DEI bit).
 *
 * The tag is pushed as skb metadata (hardware-accelerated tag), not into the packet:
 * bpf_clone_redirect copies the skb, the capture device has tx-vlan-stag-hw-insert
 * off so the kernel writes the tag into the clone's own (unshared) header on transmit,
 * and the original's metadata tag is popped again. The pod's packet bytes are never
 * written.
 *
 * The copy's transmit queue (= receive queue on the capture peer = AF_XDP socket =
 * worker) comes from a symmetric hash of the addresses (and TCP ports), so both
 * directions of a flow reach the same worker.
 *
 * A third program, on the capture device's own egress, stamps each copy with its arrival
 * time (podtap_mirror_ts, below). */
#include "helpers.h"
#include <linux/pkt_cls.h>

#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021AD 0x88A8
#define IPPROTO_TCP 6

struct mirror_cfg {
	__u32 capture_ifindex;
	__u32 queues;
	__u32 stamp;
};

/* Index 0: the capture device, its queue count, and whether copies are stamped. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct mirror_cfg);
} podtap_mcfg SEC(".maps");

/* Mirrored veth ifindex -> slot (1..32767). A veth not in the map is not mirrored. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 32768);
	__type(key, __u32);
	__type(value, __u16);
} podtap_mslots SEC(".maps");

/* Counters, per CPU: 0 copies sent, 1 copies the kernel refused (clone/redirect
 * failed), 2 tag push failed. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} podtap_mstats SEC(".maps");

static __always_inline void count(__u32 i)
{
	__u64 *v = bpf_map_lookup_elem(&podtap_mstats, &i);
	if (v)
		*v += 1;
}

/* Symmetric: a^b for addresses, sport^dport for TCP (UDP: addresses only, so the
 * fragments of a datagram meet its first fragment). */
static __always_inline __u32 flow_hash(struct __sk_buff *skb)
{
	__u32 h = 0;
	__u8 l4 = 0;
	__u32 l4off = 0;
	if (skb->protocol == bswap16(ETH_P_IP)) {
		__u8 ip[20];
		if (bpf_skb_load_bytes(skb, 14, ip, 20))
			return 0;
		__u32 s, d;
		__builtin_memcpy(&s, ip + 12, 4);
		__builtin_memcpy(&d, ip + 16, 4);
		h = s ^ d;
		__u16 frag = ((__u16)ip[6] << 8 | ip[7]) & 0x3fff;
		if (ip[9] == IPPROTO_TCP && frag == 0) {
			l4 = IPPROTO_TCP;
			l4off = 14 + (ip[0] & 0xf) * 4;
		}
	} else if (skb->protocol == bswap16(ETH_P_IPV6)) {
		__u32 ip[10];
		if (bpf_skb_load_bytes(skb, 14, ip, 40))
			return 0;
		h = ip[2] ^ ip[3] ^ ip[4] ^ ip[5] ^ ip[6] ^ ip[7] ^ ip[8] ^ ip[9];
		if (((__u8 *)ip)[6] == IPPROTO_TCP) {
			l4 = IPPROTO_TCP;
			l4off = 54;
		}
	}
	if (l4 == IPPROTO_TCP) {
		__u16 ports[2];
		if (bpf_skb_load_bytes(skb, l4off, ports, 4) == 0)
			h ^= ports[0] ^ ports[1];
	}
	h ^= h >> 16;
	h *= 0x45d9f3b;
	h ^= h >> 16;
	return h;
}

static __always_inline int mirror(struct __sk_buff *skb, __u16 to_pod)
{
	__u32 zero = 0;
	struct mirror_cfg *cfg = bpf_map_lookup_elem(&podtap_mcfg, &zero);
	if (!cfg || cfg->capture_ifindex == 0)
		return TC_ACT_OK;
	__u32 ifindex = skb->ifindex;
	__u16 *slot = bpf_map_lookup_elem(&podtap_mslots, &ifindex);
	if (!slot)
		return TC_ACT_OK;
	__u16 s = *slot;
	/* VID = slot bits 0-11, PCP = slot bits 12-14, DEI = direction. */
	__u16 tci = (s & 0x0fff) | ((s & 0x7000) << 1) | (to_pod ? 0x1000 : 0);
	__u32 queues = cfg->queues;
	__u32 ifi = cfg->capture_ifindex;
	__u32 q = queues > 1 ? flow_hash(skb) % queues : 0;
	if (bpf_skb_vlan_push(skb, bswap16(ETH_P_8021AD), tci)) {
		count(2);
		return TC_ACT_OK;
	}
	/* queue_mapping n+1 reads as "received on queue n": the capture device's transmit
	 * queue pick (skb_tx_hash) then uses n. */
	__u32 saved = skb->queue_mapping;
	skb->queue_mapping = q + 1;
	long r = bpf_clone_redirect(skb, ifi, 0);
	skb->queue_mapping = saved;
	bpf_skb_vlan_pop(skb);
	count(r == 0 ? 0 : 1);
	return TC_ACT_OK;
}

/* On the host end of a pod veth, ingress is what the pod sent. */
SEC("tc")
int podtap_mirror_in(struct __sk_buff *skb)
{
	return mirror(skb, 0);
}

/* Egress is what the pod receives. */
SEC("tc")
int podtap_mirror_eg(struct __sk_buff *skb)
{
	return mirror(skb, 1);
}

/* On the capture device's own egress: each copy, handed over by bpf_clone_redirect while
 * the mirror program runs, i.e. when the pod veth passes the packet, gets that time as a
 * 16-byte header (struct podtap_stamp) in front of its Ethernet header. Taken here rather
 * than by the XDP program on the peer, which runs only when the peer's NAPI poll gets to
 * the copy: after the rest of the softirq's work, by which time a server in another pod
 * may already have answered (measured: a SYN and its SYN-ACK stamped 1.4 us apart there,
 * against the 11 us between them on the veths).
 *
 * The copy is ours to change: growing it unshares its data from the pod's packet, the
 * copy the kernel's tag insertion would make anyway. The kernel writes a metadata tag at
 * offset 12 of the frame, which after the stamp would land inside it, so the tag is
 * written here, behind the addresses. A GSO super-segment is segmented after this hook
 * (the device has GSO off) and every segment repeats the headers, stamp included. A copy
 * left unstamped (no tag: not the mirror's) is stamped by the XDP program instead.
 * Switched off with capture.xdp.frame_timestamps = false. */
SEC("tc")
int podtap_mirror_ts(struct __sk_buff *skb)
{
	__u32 zero = 0;
	struct mirror_cfg *cfg = bpf_map_lookup_elem(&podtap_mcfg, &zero);
	if (!cfg || !cfg->stamp || !skb->vlan_present)
		return TC_ACT_OK;
	/* A clock read costs 15-50 ns (most of this program's own work): only when used. */
	__u64 now = bpf_ktime_get_ns();
	__u16 tci = skb->vlan_tci;
	__be16 proto = skb->vlan_proto;
	struct {
		struct podtap_stamp stamp;
		__u8 addrs[12];
		__be16 proto;
		__be16 tci;
	} h = { .stamp = { .mono_ns = now, .magic = PODTAP_STAMP_MAGIC },
		.proto = proto,
		.tci = bswap16(tci) };
	if (bpf_skb_vlan_pop(skb))
		return TC_ACT_OK;
	if (bpf_skb_change_head(skb, sizeof(h) - 12, 0)) {
		bpf_skb_vlan_push(skb, proto, tci);
		return TC_ACT_OK;
	}
	/* [20 new bytes][dst][src][type]... becomes [stamp][dst][src][tag][type]... */
	if (bpf_skb_load_bytes(skb, sizeof(h) - 12, h.addrs, 12) ||
	    bpf_skb_store_bytes(skb, 0, &h, sizeof(h), 0))
		return TC_ACT_SHOT;
	return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
