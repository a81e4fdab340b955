//! Decoding of whole frames, built byte for byte with etherparse's packet builder.

use super::*;
use etherparse::PacketBuilder;

fn decode_one(frame: &[u8], link: LinkType) -> Result<Packet<'static>, Event> {
    // Leak a defragmenter per call: tests only.
    let d: &'static mut Defragmenter = Box::leak(Box::default());
    let frame: &'static [u8] = Box::leak(frame.to_vec().into_boxed_slice());
    match decode(frame, link, Timestamp(7), frame.len() as u32, d)? {
        Decoded::Packet(p) => Ok(p),
        Decoded::FragmentHeld => panic!("unexpected fragment"),
    }
}

fn tcp_frame(payload: &[u8]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .tcp(40000, 80, 1000, 65535)
        .ack(5)
        .psh();
    let mut v = Vec::new();
    b.write(&mut v, payload).unwrap();
    v
}

#[test]
fn ethernet_ipv4_tcp() {
    let f = tcp_frame(b"GET / HTTP/1.1\r\n\r\n");
    let p = decode_one(&f, LinkType::Ethernet).unwrap();
    assert_eq!(p.src, "10.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(p.ports(), (40000, 80));
    let L4::Tcp(t) = p.l4 else { panic!() };
    assert_eq!((t.seq, t.ack, t.window), (1000, 5, 65535));
    assert!(t.has(tcp_flags::ACK) && t.has(tcp_flags::PSH) && !t.has(tcp_flags::SYN));
    assert_eq!(p.payload, b"GET / HTTP/1.1\r\n\r\n");
    assert_eq!(p.payload_wire_len, 18);
}

#[test]
fn ipv6_udp_with_vlan() {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .single_vlan(42.try_into().unwrap())
        .ipv6([0xfd; 16], [0xfe; 16], 64)
        .udp(5353, 53);
    let mut f = Vec::new();
    b.write(&mut f, b"dns!").unwrap();
    let p = decode_one(&f, LinkType::Ethernet).unwrap();
    assert!(p.is_ipv6());
    assert_eq!(p.vlan, 42);
    assert_eq!(
        p.l4,
        L4::Udp {
            src_port: 5353,
            dst_port: 53
        }
    );
    assert_eq!(p.payload, b"dns!");
}

#[test]
fn ethernet_padding_is_not_payload() {
    let mut f = tcp_frame(b"");
    f.extend_from_slice(&[0; 6]); // pad to the 60-byte minimum
    let p = decode_one(&f, LinkType::Ethernet).unwrap();
    assert_eq!(p.payload, b"");
}

#[test]
fn snaplen_cut_is_reported_in_wire_len() {
    let f = tcp_frame(&[b'x'; 100]);
    let cut = &f[..f.len() - 40];
    let p = decode_one(cut, LinkType::Ethernet).unwrap();
    assert_eq!(p.payload.len(), 60);
    assert_eq!(p.payload_wire_len, 100);
}

#[test]
fn truncated_headers_are_errors_not_panics() {
    let f = tcp_frame(b"hello");
    // Every prefix of the frame decodes to a value (packet or error), never a panic.
    for n in 0..f.len() {
        let _ = decode_one(&f[..n], LinkType::Ethernet);
    }
    assert_eq!(
        decode_one(&f[..14 + 10], LinkType::Ethernet),
        Err(Event::MalformedIpv4)
    );
    assert_eq!(
        decode_one(&f[..14 + 20 + 10], LinkType::Ethernet),
        Err(Event::MalformedTcp)
    );
}

#[test]
fn vxlan_decapsulates_to_inner_packet() {
    let inner = tcp_frame(b"inner");
    let mut vx = vec![0x08, 0, 0, 0, 0, 0, 100, 0];
    vx.extend_from_slice(&inner);
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 3], [2, 0, 0, 0, 0, 4])
        .ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
        .udp(12345, 4789);
    let mut f = Vec::new();
    b.write(&mut f, &vx).unwrap();
    let p = decode_one(&f, LinkType::Ethernet).unwrap();
    assert_eq!(
        p.tunnel,
        TunnelId {
            kind: TunnelKind::Vxlan,
            id: 100
        }
    );
    assert_eq!(p.src, "10.0.0.1".parse::<IpAddr>().unwrap());
    assert_eq!(p.payload, b"inner");
    assert_eq!(
        p.wire_len,
        f.len() as u32,
        "wire length is the outer frame's"
    );
}

#[test]
fn non_ip_is_counted_not_decoded() {
    let mut f = vec![0xff; 12];
    f.extend_from_slice(&[0x08, 0x06]); // ARP
    f.extend_from_slice(&[0; 28]);
    assert_eq!(decode_one(&f, LinkType::Ethernet), Err(Event::NonIp));
}
