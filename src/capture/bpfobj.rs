//! The BPF objects podtap ships (compiled from `bpf/*.bpf.c` by `build.rs` and embedded),
//! loaded with libbpf (linked in by libxdp-sys), and the few map and program calls the
//! AF_XDP source and the mirror need.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::RawFd;

use libxdp_sys as sys;

/// XDP program object: `podtap_xsk_drop`, `podtap_xsk_pass` (frames stamped in XDP
/// metadata), `podtap_xsk_dnts`, `podtap_xsk_pnts` (the same without stamps), map
/// `podtap_xsks`.
pub const XSK_OBJ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/xsk.bpf.o"));
/// tc mirror object: `podtap_mirror_in`, `podtap_mirror_eg`, maps `podtap_mcfg`,
/// `podtap_mslots`, `podtap_mstats`.
pub const MIRROR_OBJ: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/mirror.bpf.o"));

/// A loaded BPF object; programs and maps live until it is dropped (or longer, while
/// attached somewhere).
pub struct BpfObject {
    obj: *mut sys::bpf_object,
}

// SAFETY: the libbpf object is only used through &self calls that read fds, and freed once.
unsafe impl Send for BpfObject {}
unsafe impl Sync for BpfObject {}

fn neg_errno(r: i64) -> io::Error {
    io::Error::from_raw_os_error((-r) as i32)
}

impl BpfObject {
    /// Open and load an embedded object, loading only the programs named in `programs`.
    pub fn load(name: &str, bytes: &'static [u8], programs: &[&str]) -> io::Result<BpfObject> {
        let cname = CString::new(name).map_err(io::Error::other)?;
        // SAFETY: libbpf copies what it needs from the buffer; opts carry the object name.
        unsafe {
            let mut opts: sys::bpf_object_open_opts = std::mem::zeroed();
            opts.sz = std::mem::size_of::<sys::bpf_object_open_opts>();
            opts.object_name = cname.as_ptr();
            let obj = sys::bpf_object__open_mem(bytes.as_ptr().cast(), bytes.len(), &opts);
            if obj.is_null() {
                // libbpf 1.x returns NULL and sets errno.
                return Err(io::Error::last_os_error());
            }
            let this = BpfObject { obj };
            let mut p = sys::bpf_object__next_program(obj, std::ptr::null_mut());
            while !p.is_null() {
                let pname = CStr::from_ptr(sys::bpf_program__name(p)).to_string_lossy();
                sys::bpf_program__set_autoload(p, programs.iter().any(|n| *n == pname));
                p = sys::bpf_object__next_program(obj, p);
            }
            let r = sys::bpf_object__load(obj);
            if r < 0 {
                return Err(neg_errno(r as i64));
            }
            Ok(this)
        }
    }

    pub fn prog_fd(&self, name: &str) -> Option<RawFd> {
        let c = CString::new(name).ok()?;
        // SAFETY: obj is a loaded object; the name is NUL-terminated.
        let fd = unsafe {
            let p = sys::bpf_object__find_program_by_name(self.obj, c.as_ptr());
            if p.is_null() {
                return None;
            }
            sys::bpf_program__fd(p)
        };
        (fd >= 0).then_some(fd)
    }

    pub fn map_fd(&self, name: &str) -> Option<RawFd> {
        let c = CString::new(name).ok()?;
        // SAFETY: as above.
        let fd = unsafe { sys::bpf_object__find_map_fd_by_name(self.obj, c.as_ptr()) };
        (fd >= 0).then_some(fd)
    }
}

impl Drop for BpfObject {
    fn drop(&mut self) {
        // SAFETY: obj came from bpf_object__open_mem and is closed once.
        unsafe { sys::bpf_object__close(self.obj) };
    }
}

type PrintFn = Option<unsafe extern "C" fn(i32, *const libc::c_char, *mut libc::c_void) -> i32>;

unsafe extern "C" {
    // libbpf's logger switch (linked in through libxdp-sys; not in its bindings).
    fn libbpf_set_print(f: PrintFn) -> PrintFn;
}

/// Run `f` with libbpf's messages silenced: for probes whose failure is the expected
/// answer (no clsact qdisc on an interface), which libbpf would print to stderr.
pub fn quietly<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: swapping the print callback; the old one is restored.
    let old = unsafe { libbpf_set_print(None) };
    let r = f();
    // SAFETY: as above.
    unsafe { libbpf_set_print(old) };
    r
}

unsafe extern "C" {
    // The C library's formatter: libbpf hands its callback a format and a va_list, which
    // on the supported ABIs (x86_64, aarch64) is passed as a pointer.
    fn vsnprintf(
        buf: *mut libc::c_char,
        len: usize,
        fmt: *const libc::c_char,
        ap: *mut libc::c_void,
    ) -> i32;
}

thread_local! {
    /// The last warning libbpf gave on this thread: the kernel's own explanation of a
    /// refused attach ("Kernel error message: ..."), which the caller's error quotes.
    static LAST_WARNING: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// libbpf's messages, formatted and sent to `tracing` (target `libbpf`) instead of being
/// printed raw to stderr.
unsafe extern "C" fn libbpf_to_tracing(
    level: i32,
    fmt: *const libc::c_char,
    ap: *mut libc::c_void,
) -> i32 {
    let mut buf = [0u8; 512];
    // SAFETY: libbpf passes a valid format and its arguments; the buffer bound is given.
    let n = unsafe { vsnprintf(buf.as_mut_ptr().cast(), buf.len(), fmt, ap) };
    let msg = std::ffi::CStr::from_bytes_until_nul(&buf)
        .map(|c| c.to_string_lossy())
        .unwrap_or_default();
    let msg = msg.trim_end();
    // LIBBPF_WARN = 0, LIBBPF_INFO = 1, LIBBPF_DEBUG = 2.
    match level {
        0 => {
            LAST_WARNING.with(|w| {
                let mut w = w.borrow_mut();
                w.clear();
                w.push_str(msg.strip_prefix("libbpf: ").unwrap_or(msg));
            });
            tracing::warn!(target: "libbpf", "{msg}")
        }
        1 => tracing::info!(target: "libbpf", "{msg}"),
        _ => tracing::debug!(target: "libbpf", "{msg}"),
    }
    n
}

/// Send libbpf's messages through podtap's log from now on (call once, at start-up).
pub fn route_libbpf_logs() {
    // SAFETY: installs a callback with libbpf's print signature.
    unsafe { libbpf_set_print(Some(libbpf_to_tracing)) };
}

/// The last warning libbpf gave on this thread since the last call, if any.
pub fn take_libbpf_warning() -> Option<String> {
    LAST_WARNING.with(|w| {
        let s = std::mem::take(&mut *w.borrow_mut());
        (!s.is_empty()).then_some(s)
    })
}

/// Write one map element (`BPF_ANY`).
pub fn map_update<K, V>(fd: RawFd, key: &K, value: &V) -> io::Result<()> {
    // SAFETY: key and value point to values of the map's key and value sizes.
    let r = unsafe {
        sys::bpf_map_update_elem(fd, (key as *const K).cast(), (value as *const V).cast(), 0)
    };
    if r < 0 {
        Err(neg_errno(r as i64))
    } else {
        Ok(())
    }
}

pub fn map_delete<K>(fd: RawFd, key: &K) -> io::Result<()> {
    // SAFETY: key points to a value of the map's key size.
    let r = unsafe { sys::bpf_map_delete_elem(fd, (key as *const K).cast()) };
    if r < 0 {
        Err(neg_errno(r as i64))
    } else {
        Ok(())
    }
}

/// Sum of a per-CPU u64 array element over all possible CPUs.
pub fn percpu_sum(fd: RawFd, index: u32) -> io::Result<u64> {
    let n = possible_cpus()?;
    // SAFETY: the buffer holds one u64 per possible CPU, what the kernel writes.
    unsafe {
        let mut vals = vec![0u64; n];
        let r =
            sys::bpf_map_lookup_elem(fd, (&index as *const u32).cast(), vals.as_mut_ptr().cast());
        if r < 0 {
            return Err(neg_errno(r as i64));
        }
        Ok(vals.iter().sum())
    }
}

/// Number of possible CPUs (the size of per-CPU map values), from sysfs (`0-3,5`).
fn possible_cpus() -> io::Result<usize> {
    let s = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    parse_cpu_list(&s).ok_or_else(|| io::Error::other(format!("bad cpu list {s:?}")))
}

fn parse_cpu_list(s: &str) -> Option<usize> {
    let mut max = None;
    for part in s.trim().split(',').filter(|p| !p.is_empty()) {
        let hi = part.rsplit('-').next()?.parse::<usize>().ok()?;
        max = Some(max.map_or(hi, |m: usize| m.max(hi)));
    }
    max.map(|m| m + 1)
}

/// The name of a loaded program by id (None when it is gone).
pub fn prog_name(id: u32) -> Option<String> {
    // SAFETY: the fd returned is ours and closed here; info is a zeroed C struct.
    unsafe {
        let fd = sys::bpf_prog_get_fd_by_id(id);
        if fd < 0 {
            return None;
        }
        let mut info: sys::bpf_prog_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<sys::bpf_prog_info>() as u32;
        let r = sys::bpf_prog_get_info_by_fd(fd, &mut info, &mut len);
        libc::close(fd);
        if r < 0 {
            return None;
        }
        let name: Vec<u8> = info
            .name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        Some(String::from_utf8_lossy(&name).into_owned())
    }
}

/// Make sure a BPF filesystem is mounted at /sys/fs/bpf (libxdp keeps state there),
/// mounting it when it is not.
pub fn ensure_bpffs() -> io::Result<()> {
    const BPF_FS_MAGIC: i64 = 0xcafe_4a11;
    let path = c"/sys/fs/bpf";
    // SAFETY: statfs(2) into a zeroed struct; mount(2) with static C strings.
    unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        if libc::statfs(path.as_ptr(), &mut st) == 0 && st.f_type as i64 == BPF_FS_MAGIC {
            return Ok(());
        }
        if libc::mount(
            c"bpf".as_ptr(),
            path.as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        ) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn cpu_lists() {
        assert_eq!(super::parse_cpu_list("0-1\n"), Some(2));
        assert_eq!(super::parse_cpu_list("0"), Some(1));
        assert_eq!(super::parse_cpu_list("0-3,5,7-9"), Some(10));
        assert_eq!(super::parse_cpu_list("x"), None);
    }

    #[test]
    fn libbpf_warnings_are_formatted_into_the_log_and_kept_for_the_error() {
        super::route_libbpf_logs();
        let _ = super::take_libbpf_warning();
        // Not an ELF file: libbpf refuses it with a formatted warning.
        static JUNK: [u8; 64] = [0x5a; 64];
        assert!(super::BpfObject::load("junk", &JUNK, &[]).is_err());
        let w = super::take_libbpf_warning().expect("libbpf warned");
        assert!(w.contains("elf"), "{w}");
        assert!(!w.contains('%'), "format expanded: {w}");
        assert_eq!(super::take_libbpf_warning(), None, "taken once");
    }
}
