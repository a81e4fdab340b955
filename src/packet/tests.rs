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

/// An IPv4 header (no options) with the given fragment fields, followed by `payload`.
fn ipv4_fragment(id: u16, offset8: u16, more: bool, proto: u8, payload: &[u8]) -> Vec<u8> {
    let total = 20 + payload.len();
    let flags_off = (if more { 0x2000 } else { 0 }) | offset8;
    let mut ip = vec![
        0x45,
        0,
        (total >> 8) as u8,
        total as u8,
        (id >> 8) as u8,
        id as u8,
    ];
    ip.extend_from_slice(&flags_off.to_be_bytes());
    ip.extend_from_slice(&[64, proto, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2]);
    ip.extend_from_slice(payload);
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    f.extend_from_slice(&ip);
    f
}

#[test]
fn ipv4_fragments_reassemble_through_decode() {
    // A UDP datagram (8-byte header + 24 bytes) in three fragments, sent out of order.
    let mut udp = vec![0x13, 0x88, 0x00, 0x35, 0, 32, 0, 0];
    udp.extend((0..24u8).map(|i| b'a' + i));
    let frags = [
        ipv4_fragment(7, 2, true, 17, &udp[16..32]),
        ipv4_fragment(7, 0, true, 17, &udp[0..16]),
        ipv4_fragment(7, 4, false, 17, &udp[32..]),
    ];
    let mut d = Defragmenter::default();
    let mut got = None;
    for (i, f) in frags.iter().enumerate() {
        match decode(
            f,
            LinkType::Ethernet,
            Timestamp(i as u64),
            f.len() as u32,
            &mut d,
        )
        .unwrap()
        {
            Decoded::FragmentHeld => assert!(i < 2),
            Decoded::Packet(p) => got = Some((p.l4, p.payload.to_vec())),
        }
    }
    let (l4, payload) = got.expect("reassembled");
    assert_eq!(
        l4,
        L4::Udp {
            src_port: 5000,
            dst_port: 53
        }
    );
    assert_eq!(payload, &udp[8..]);
}

#[test]
fn ipv6_extension_headers_and_fragments() {
    // Hop-by-hop options (8 bytes, next = TCP) before a TCP header.
    let tcp = {
        let mut v = Vec::new();
        PacketBuilder::ipv6([0xfd; 16], [0xfe; 16], 64)
            .tcp(1111, 80, 1, 100)
            .write(&mut v, b"data")
            .unwrap();
        v[40..].to_vec()
    };
    let mut ip6 = vec![0x60, 0, 0, 0];
    ip6.extend_from_slice(&((8 + tcp.len()) as u16).to_be_bytes());
    ip6.extend_from_slice(&[0, 64]); // next header: hop-by-hop
    ip6.extend_from_slice(&[0xfd; 16]);
    ip6.extend_from_slice(&[0xfe; 16]);
    ip6.extend_from_slice(&[6, 0, 1, 4, 0, 0, 0, 0]); // next TCP, len 0, PadN
    ip6.extend_from_slice(&tcp);
    let p = decode_one(&ip6, LinkType::RawIp).unwrap();
    assert_eq!(p.ip_proto, IPPROTO_TCP);
    assert_eq!(p.payload, b"data");

    // The same TCP segment split into two IPv6 fragments (fragment header, next = TCP).
    let frag = |off8: u16, more: bool, data: &[u8]| {
        let mut v = vec![0x60, 0, 0, 0];
        v.extend_from_slice(&((8 + data.len()) as u16).to_be_bytes());
        v.extend_from_slice(&[44, 64]);
        v.extend_from_slice(&[0xfd; 16]);
        v.extend_from_slice(&[0xfe; 16]);
        v.extend_from_slice(&[6, 0]);
        v.extend_from_slice(&((off8 << 3) | more as u16).to_be_bytes());
        v.extend_from_slice(&0xabcdu32.to_be_bytes());
        v.extend_from_slice(data);
        v
    };
    let mut d = Defragmenter::default();
    let f1 = frag(0, true, &tcp[..16]);
    let f2 = frag(2, false, &tcp[16..]);
    assert_eq!(
        decode(&f1, LinkType::RawIp, Timestamp(1), f1.len() as u32, &mut d),
        Ok(Decoded::FragmentHeld)
    );
    let Ok(Decoded::Packet(p)) =
        decode(&f2, LinkType::RawIp, Timestamp(2), f2.len() as u32, &mut d)
    else {
        panic!("second fragment completes the datagram")
    };
    assert_eq!(p.ports(), (1111, 80));
    assert_eq!(p.payload, b"data");
}

#[test]
fn gre_erspan_and_geneve_frames() {
    let inner = tcp_frame(b"mirrored");
    // ERSPAN type II in GRE (with sequence number), session 33, in IPv4.
    let mut gre = vec![
        0x10, 0x00, 0x88, 0xbe, 0, 0, 0, 9, 0x10, 0x00, 0x00, 33, 0, 0, 0, 0,
    ];
    gre.extend_from_slice(&inner);
    let mut outer = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 9], [2, 0, 0, 0, 0, 8])
        .ipv4([192, 0, 2, 9], [192, 0, 2, 8], 64)
        .write(&mut outer, etherparse::IpNumber(IPPROTO_GRE), &gre)
        .unwrap();
    let p = decode_one(&outer, LinkType::Ethernet).unwrap();
    assert_eq!(
        p.tunnel,
        TunnelId {
            kind: TunnelKind::Erspan,
            id: 33
        }
    );
    assert_eq!(
        (p.src, p.payload),
        ("10.0.0.1".parse::<IpAddr>().unwrap(), &b"mirrored"[..])
    );

    // GENEVE carrying Ethernet, VNI 77, on UDP 6081.
    let mut geneve = vec![0x00, 0x00, 0x65, 0x58, 0, 0, 77, 0];
    geneve.extend_from_slice(&inner);
    let mut outer = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv6([1; 16], [2; 16], 64)
        .udp(40000, 6081)
        .write(&mut outer, &geneve)
        .unwrap();
    let p = decode_one(&outer, LinkType::Ethernet).unwrap();
    assert_eq!(
        p.tunnel,
        TunnelId {
            kind: TunnelKind::Geneve,
            id: 77
        }
    );
    assert_eq!(p.payload, b"mirrored");
}

#[test]
fn linux_cooked_capture_frame() {
    let eth = tcp_frame(b"x");
    let mut sll = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00];
    sll.extend_from_slice(&eth[14..]);
    let p = decode_one(&sll, LinkType::LinuxSll).unwrap();
    assert_eq!((p.ports(), p.payload), ((40000, 80), &b"x"[..]));
}

#[test]
fn fanout_hash_is_symmetric_for_frames() {
    let a = tcp_frame(b"");
    let b = {
        let mut v = Vec::new();
        PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
            .tcp(80, 40000, 1, 1)
            .write(&mut v, b"")
            .unwrap();
        v
    };
    assert_eq!(
        fanout_hash(&a, LinkType::Ethernet),
        fanout_hash(&b, LinkType::Ethernet)
    );
}

/// The IPv4 fast path agrees with etherparse on every header it accepts, and leaves the
/// rest (options kept, fragments, bad lengths, AH) to it.
#[test]
fn plain_ipv4_fast_path_matches_etherparse() {
    let ip = |f: &[u8]| f[14..].to_vec();
    let base = ip(&tcp_frame(b"hello world"));
    let mut cases: Vec<(Vec<u8>, bool)> = vec![(base.clone(), true)];
    // Ethernet padding after the datagram.
    let mut padded = base.clone();
    padded.extend_from_slice(&[0; 6]);
    cases.push((padded, true));
    // Cut by the snap length: the declared length stays the wire length.
    cases.push((base[..base.len() - 4].to_vec(), true));
    // Options (IHL 6): accepted, payload after them.
    let mut opts = base[..20].to_vec();
    opts[0] = 0x46;
    opts.extend_from_slice(&[1, 1, 1, 0]);
    opts.extend_from_slice(&base[20..]);
    let total = u16::from_be_bytes([opts[2], opts[3]]) + 4;
    opts[2..4].copy_from_slice(&total.to_be_bytes());
    cases.push((opts, true));
    // Left to etherparse: a fragment, a length shorter than the header, IHL below 5, AH.
    let mut frag = base.clone();
    frag[6] = 0x20;
    cases.push((frag, false));
    let mut short = base.clone();
    short[2..4].copy_from_slice(&10u16.to_be_bytes());
    cases.push((short, false));
    let mut ihl = base.clone();
    ihl[0] = 0x44;
    cases.push((ihl, false));
    let mut ah = base.clone();
    ah[9] = 51;
    cases.push((ah, false));
    for (i, (b, fast)) in cases.iter().enumerate() {
        let got = plain_ipv4(ETHERTYPE_IPV4, b);
        assert_eq!(got.is_some(), *fast, "case {i}");
        if let Some(got) = got {
            let mut d = Defragmenter::default();
            let want = ip_layer_general(ETHERTYPE_IPV4, b, Timestamp(1), &mut Some(&mut d))
                .unwrap()
                .unwrap();
            assert_eq!(got, want, "case {i}");
        }
    }
    assert!(plain_ipv4(ETHERTYPE_IPV6, &base).is_none());
}

/// The straight-line path and the layer-by-layer path agree on every frame the first one
/// accepts, and it declines (leaving the error to the layers) what it must not take:
/// tunnels, truncated and malformed frames.
#[test]
fn straight_line_decode_matches_the_layers() {
    let udp = |dst: u16, payload: &[u8]| {
        let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(5000, dst);
        let mut v = Vec::new();
        b.write(&mut v, payload).unwrap();
        v
    };
    let mut padded = tcp_frame(b"x");
    padded.extend_from_slice(&[0; 6]);
    let accepted = [
        tcp_frame(b""),
        tcp_frame(b"GET / HTTP/1.1\r\n\r\n"),
        padded,
        udp(53, b"q"),
    ];
    for f in &accepted {
        let plain = decode_plain(f, LinkType::Ethernet, Timestamp(7), f.len() as u32)
            .expect("a plain frame takes the straight path");
        let mut d = Defragmenter::default();
        let Ok(Decoded::Packet(layered)) =
            decode_layers(f, LinkType::Ethernet, Timestamp(7), f.len() as u32, &mut d)
        else {
            panic!("layers reject a plain frame")
        };
        assert_eq!(plain, layered);
    }
    let tcp = tcp_frame(b"abc");
    let declined = [
        udp(4789, &[0; 16]), // VXLAN
        udp(6081, &[0; 16]), // GENEVE
        tcp[..40].to_vec(),  // TCP header cut short
        tcp[..20].to_vec(),  // IPv4 header cut short
    ];
    for (i, f) in declined.iter().enumerate() {
        assert!(
            decode_plain(f, LinkType::Ethernet, Timestamp(7), f.len() as u32).is_none(),
            "frame {i}"
        );
    }
    assert!(decode_plain(&tcp, LinkType::RawIp, Timestamp(7), tcp.len() as u32).is_none());
}
