//! A bare AF_XDP receive loop: count the frames arriving on queue 0 of an interface
//! until SIGINT/SIGTERM, decoding nothing and stamping nothing (no arrival stamps: the
//! frames are timed by receive batch, which this loop does not even read).
//! `perf/capture_bench.sh` measures podtap's xdp mode against it.
//!
//!     cargo run --release --example xdp_count -- IFACE

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use podtap::capture::Source;
use podtap::capture::xdp::{Decap, XdpConfig, XdpSource};

fn main() -> anyhow::Result<()> {
    let ifname = std::env::args().nth(1).expect("usage: xdp_count IFACE");
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    let cfg = XdpConfig {
        frame_timestamps: false,
        ..Default::default()
    };
    let mut src = XdpSource::open(&ifname, 0, &cfg, Decap::Plain)?;
    let mut frames = 0u64;
    eprintln!("listening on {ifname}");
    while !stop.load(Ordering::Relaxed) {
        let n = src.next_batch(64, |_| {})?.unwrap_or(0);
        frames += n as u64;
        if n == 0 {
            src.wait(100)?;
        }
    }
    src.refresh_kernel_stats();
    let st = src.stats();
    println!(
        "xdp_count frames={frames} dropped={} ring_full={}",
        st.dropped, st.ring_full
    );
    Ok(())
}
