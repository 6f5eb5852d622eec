//! Deterministic pseudo-random numbers for porthole's stable fuzz tests.
//!
//! Every parser of untrusted bytes has a test that runs its fuzz entry point over seeds and
//! thousands of mutations of them on stable Rust. The mutations must be the same on every run,
//! so a failure in CI reproduces on a developer's machine from the seed alone: hence a fixed
//! generator (xorshift64*), not a random one. No dependencies, so any crate's tests can use it.

/// xorshift64* (Vigna): fast, 64 bits of state, good enough to spread mutations.
#[derive(Debug, Clone)]
pub struct Rng(pub u64);

impl Rng {
    /// A generator for `seed`; a zero seed (a fixed point of xorshift) is replaced.
    pub fn new(seed: u64) -> Self {
        Self(if seed == 0 {
            0x9e37_79b9_7f4a_7c15
        } else {
            seed
        })
    }

    // Not `Iterator::next`: the stream never ends, so an Option would only add unwraps.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn same_seed_same_sequence_and_bounds_hold() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        for _ in 0..1000 {
            assert_eq!(a.next(), b.next());
            assert!(a.below(10) < 10);
            b.below(10);
        }
        assert_eq!(Rng::new(0).below(0), 0);
        assert_ne!(Rng::new(0).next(), 0);
    }
}
