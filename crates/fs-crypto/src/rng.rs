//! Randomness as an injected dependency, so the IKE state machine can run deterministically
//! in simulation (seeded [`TestRng`]) and with the system CSPRNG in production ([`SystemRng`]).

/// A source of random bytes.
pub trait Rng: Send {
    /// Fill `dest` with random bytes.
    fn fill(&mut self, dest: &mut [u8]);
}

/// The system CSPRNG (aws-lc-rs).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemRng;

/// A deterministic ChaCha20 RNG from a 64-bit seed. For tests and simulation only.
pub struct TestRng(rand_chacha::ChaCha20Rng);

// IMPLEMENTATION: fs-crypto owner (see DESIGN.md).
impl Rng for SystemRng {
    #[allow(clippy::expect_used)] // deliberate: abort rather than key material from zeros
    fn fill(&mut self, dest: &mut [u8]) {
        // aws-lc's RNG does not fail in practice; abort loudly rather than use zeros.
        aws_lc_rs::rand::fill(dest).expect("system RNG failure");
    }
}

impl TestRng {
    /// A generator whose output is fixed by `seed`.
    pub fn from_seed(seed: u64) -> Self {
        use rand_core::SeedableRng;
        TestRng(rand_chacha::ChaCha20Rng::seed_from_u64(seed))
    }
}

impl Rng for TestRng {
    fn fill(&mut self, dest: &mut [u8]) {
        use rand_core::RngCore;
        self.0.fill_bytes(dest)
    }
}
