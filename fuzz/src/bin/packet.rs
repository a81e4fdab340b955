//! Packet decode (L2 to L4, VLANs, tunnels, IP fragments) of one frame, on every link type.
use podtap::packet::LinkType;
use podtap::packet::defrag::{DefragLimits, Defragmenter};

const LINKS: [LinkType; 8] = [
    LinkType::Ethernet,
    LinkType::LinuxSll,
    LinkType::LinuxSll2,
    LinkType::RawIp,
    LinkType::Ipv4,
    LinkType::Ipv6,
    LinkType::Null,
    LinkType::Loop,
];

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Some((&l, frame)) = data.split_first() else {
            return;
        };
        let mut d = Defragmenter::new(DefragLimits::default());
        let ts = podtap::time::Timestamp(1);
        let link = LINKS[l as usize % LINKS.len()];
        let _ = podtap::packet::decode(frame, link, ts, frame.len() as u32, &mut d);
    });
}
