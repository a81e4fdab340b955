//! The pcap and pcapng reader: headers, blocks, options, every record of a fuzzed file.
use podtap::capture::Source;

fn main() {
    afl::fuzz!(|data: &[u8]| {
        let Ok(mut src) = podtap::capture::pcap_file::PcapFileSource::from_reader(
            "fuzz",
            Box::new(std::io::Cursor::new(data.to_vec())),
        ) else {
            return;
        };
        while let Ok(Some(_)) = src.next_batch(64, |_| {}) {}
    });
}
