//! Compiles podtap's BPF programs (bpf/*.bpf.c) to BPF ELF objects with clang; the
//! crate embeds them with include_bytes! (src/capture/bpfobj.rs).

use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    println!("cargo:rerun-if-changed=bpf");
    // pgo/build.sh names the profile a release build is optimised with: new counts
    // rebuild the crate (the RUSTFLAGS carrying the profile's path stay the same).
    println!("cargo:rerun-if-env-changed=PODTAP_PGO_PROFILE");
    if let Some(profile) = std::env::var_os("PODTAP_PGO_PROFILE") {
        println!("cargo:rerun-if-changed={}", profile.to_string_lossy());
    }
    // The uapi asm/ headers live in the multiarch directory on Debian.
    let multiarch = Command::new("gcc")
        .arg("-print-multiarch")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "x86_64-linux-gnu".to_string());
    for name in ["xsk", "mirror"] {
        let src = format!("bpf/{name}.bpf.c");
        let obj = out.join(format!("{name}.bpf.o"));
        let status = Command::new("clang")
            .args(["-O2", "-g", "-Wall", "-Werror", "-target", "bpf"])
            .arg(format!("-I/usr/include/{multiarch}"))
            .args(["-c", &src, "-o"])
            .arg(&obj)
            .status()
            .unwrap_or_else(|e| {
                panic!("clang not found ({e}): install clang and llvm (make deps)")
            });
        assert!(status.success(), "clang failed to compile {src}");
    }
}
