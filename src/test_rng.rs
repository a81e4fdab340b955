//! A tiny deterministic generator for randomized tests (xorshift64): the same values every
//! run, no dependency.

/// A generator seeded with `seed` (not zero): each call gives a value below its argument.
pub(crate) fn rng(mut seed: u64) -> impl FnMut(u64) -> u64 {
    move |n| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    }
}
