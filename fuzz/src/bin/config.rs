//! The config loader: TOML, every section's types, validation, the memory budget.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        if let Ok(text) = std::str::from_utf8(data) {
            let _ = podtap::config::Config::parse(text, std::path::Path::new("fuzz.toml"));
        }
    });
}
