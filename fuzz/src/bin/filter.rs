//! The capture filter language (pcap-filter syntax) parser, and matching with it.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        if let Ok(text) = std::str::from_utf8(data) {
            let _ = podtap::filter::Filter::parse(text);
        }
    });
}
