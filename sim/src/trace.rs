//! The trace: a running hash over everything that happens, plus the last few
//! records in readable form for failure reports.

use std::collections::VecDeque;
use std::fmt::Write as _;

const OFFSET: u64 = 0xCBF2_9CE4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01B3;

/// An FNV-style hasher that takes a word at a time (own code, no std hasher).
///
/// ```
/// use estafeta_sim::TraceHasher;
/// let mut a = TraceHasher::default();
/// a.word(7);
/// a.bytes(b"hello");
/// let mut b = TraceHasher::default();
/// b.word(7);
/// b.bytes(b"hello");
/// assert_eq!(a.finish(), b.finish());
/// b.word(0);
/// assert_ne!(a.finish(), b.finish());
/// ```
#[derive(Clone, Debug)]
pub struct TraceHasher(u64);

impl Default for TraceHasher {
    fn default() -> Self {
        TraceHasher(OFFSET)
    }
}

impl TraceHasher {
    /// Mixes in one 64-bit word.
    pub fn word(&mut self, w: u64) {
        self.0 = (self.0 ^ w).wrapping_mul(PRIME);
        self.0 ^= self.0 >> 29;
    }

    /// Mixes in a byte string (its length, then 8 bytes at a time).
    pub fn bytes(&mut self, b: &[u8]) {
        self.word(b.len() as u64);
        let mut chunks = b.chunks_exact(8);
        for c in &mut chunks {
            self.word(u64::from_le_bytes(c.try_into().expect("8 bytes")));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.word(u64::from_le_bytes(w));
        }
    }

    /// The hash so far.
    pub fn finish(&self) -> u64 {
        self.0
    }
}

/// One trace record kept for failure reports: a virtual time, a kind and a
/// formatted description.
#[derive(Clone, Debug)]
pub struct Record {
    /// Virtual time in microseconds.
    pub at: u64,
    /// What happened.
    pub what: String,
}

/// The run's trace: the hash of every record and the most recent ones.
#[derive(Debug)]
pub struct Trace {
    hash: TraceHasher,
    count: u64,
    recent: VecDeque<Record>,
    keep: usize,
    echo: bool,
}

impl Trace {
    /// A trace keeping the last `keep` records readable; `echo` prints every
    /// record to stderr as it happens (for replaying one seed).
    pub fn new(keep: usize, echo: bool) -> Trace {
        Trace { hash: TraceHasher::default(), count: 0, recent: VecDeque::with_capacity(keep), keep, echo }
    }

    /// Hashes a record made of a kind code and words. The description is only
    /// built if it will be kept or printed.
    pub fn record(&mut self, at: u64, kind: u64, words: &[u64], describe: impl FnOnce() -> String) {
        self.hash.word(at);
        self.hash.word(kind);
        for w in words {
            self.hash.word(*w);
        }
        self.count += 1;
        if self.keep > 0 || self.echo {
            let what = describe();
            if self.echo {
                eprintln!("{} {what}", fmt_time(at));
            }
            if self.keep > 0 {
                if self.recent.len() == self.keep {
                    self.recent.pop_front();
                }
                self.recent.push_back(Record { at, what });
            }
        }
    }

    /// Hashes bytes (written to or read from a connection).
    pub fn bytes(&mut self, b: &[u8]) {
        self.hash.bytes(b);
    }

    /// The hash of everything recorded so far.
    pub fn hash(&self) -> u64 {
        self.hash.finish()
    }

    /// How many records were hashed.
    pub fn len(&self) -> u64 {
        self.count
    }

    /// True if nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The most recent records, oldest first, one per line.
    pub fn tail(&self) -> String {
        let mut s = String::new();
        for r in &self.recent {
            let _ = writeln!(s, "  {} {}", fmt_time(r.at), r.what);
        }
        s
    }
}

/// Virtual microseconds as `s.micros`.
pub fn fmt_time(us: u64) -> String {
    format!("{}.{:06}s", us / 1_000_000, us % 1_000_000)
}
