//! A whole worker on one fuzzed connection: flow table, TCP reassembly with any segment
//! order, overlap and duplication, protocol detection, and the L7 parser of the port or
//! content; then the flow's end (every decoder's close path).
use podtap::capture::Frame;
use podtap::export::RecordSink;

struct Discard;
impl RecordSink for Discard {
    fn flow(&mut self, _: podtap::flow::FlowRecord) {}
    fn transaction(&mut self, _: podtap::proto::Transaction) {}
}

fn main() {
    let cfg = podtap::config::Config::default();
    afl::fuzz!(|data: &[u8]| {
        let mut w = podtap::worker::Worker::new(&cfg, Discard);
        for (i, f) in podtap_fuzz::frames(data).iter().enumerate() {
            w.process(&Frame {
                data: f,
                ts: podtap::time::Timestamp(1_000_000_000 + i as u64 * 1000),
                wire_len: f.len() as u32,
                link: podtap::packet::LinkType::Ethernet,
                obs: 1,
            });
        }
        let _ = w.finish();
    });
}
