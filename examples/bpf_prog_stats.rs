//! The kernel's run-time statistics of loaded BPF programs whose name starts with a
//! prefix: `name runs total_ns` per program, one line each. The kernel keeps them only
//! while `kernel.bpf_stats_enabled = 1`. `perf/capture_bench.sh` reads what the XDP and
//! tc programs of podtap's xdp mode cost per frame with it.
//!
//!     cargo run --release --example bpf_prog_stats -- podtap_

fn main() {
    let prefix = std::env::args().nth(1).unwrap_or_default();
    let mut id = 0u32;
    // SAFETY: plain libbpf calls; the fd we get is closed; info is a zeroed C struct of
    // the size we pass.
    unsafe {
        while libxdp_sys::bpf_prog_get_next_id(id, &mut id) == 0 {
            let fd = libxdp_sys::bpf_prog_get_fd_by_id(id);
            if fd < 0 {
                continue;
            }
            let mut info: libxdp_sys::bpf_prog_info = std::mem::zeroed();
            let mut len = std::mem::size_of::<libxdp_sys::bpf_prog_info>() as u32;
            let r = libxdp_sys::bpf_prog_get_info_by_fd(fd, &mut info, &mut len);
            libc::close(fd);
            if r != 0 {
                continue;
            }
            let name: String = info
                .name
                .iter()
                .take_while(|&&c| c != 0)
                .map(|&c| c as u8 as char)
                .collect();
            if name.starts_with(&prefix) {
                println!("{name} {} {}", info.run_cnt, info.run_time_ns);
            }
        }
    }
}
