//! Interleaved samples and medians: how every ratio case of the bench
//! measures its two (or more) sides.
//!
//! A case measures its sides in turn, `n` rounds of one sample each (ours,
//! baseline, ours, baseline, ...), so that whatever the shared machine does
//! meanwhile falls on both sides alike; it then prints the median of each
//! side and the ratio of the medians, with the number of samples and each
//! side's spread ((max - min) / median):
//!
//! ```text
//! case=<name> ours=<median> baseline=<median> unit=<u> ratio=<ours/baseline> samples=<n> spread=<ours>/<baseline> ci90=<lo>..<hi>
//! ```
//!
//! `ci90` is a 90 % bootstrap interval of the ratio: the ratio of medians
//! recomputed over 2,000 resamples of each side's figures (drawn with
//! replacement, a fixed seed), the 5th and 95th percentiles. On the 2-vCPU
//! development machine one sample of a 64 B throughput case varies by
//! 7-14 % (coefficient of variation), and with 11 samples a side the
//! intervals of the 64 B `session/` and `secure/` lines spanned 0.06 to
//! 0.22: a ratio of 0.93 whose interval reaches past 1.0 says the run
//! cannot tell the two sides apart. (Comparing a build with itself in the
//! `session/` layout gave ratios from 0.88 to 1.05.)
//!
//! `n` is `E2E_SAMPLES` (default 5) for short cases and `E2E_SAMPLES_LONG`
//! (default 3, at most `E2E_SAMPLES`) for long ones (a 1 GiB file, 50 nodes
//! discovering each other); see [`Settings::samples`](super::Settings::samples).
//!
//! The lines judged against a target a few percent from 1.0 (`session/`
//! throughput, on against off, ≥ 0.95; `secure/`, encrypted against
//! plaintext, RTT ≤ 1.1) take `E2E_SAMPLES_PRECISE` (default 21): the
//! difference they look for is smaller than one sample's noise. In one run
//! with 15 samples a side, tokio's 64 B samples fell in two modes (about
//! 3.1-3.6 M or 4.8-5.2 M msg/s, on either side alike; not traced), and the
//! 64 KiB samples spread over a factor of three. More samples narrow the
//! interval but do not let one run decide a difference of a few percent:
//! with 11 or 21 samples a side, single runs of the `session/` lines read
//! 0.888 to 1.207 (smol, 64 KiB) and 0.937 to 1.022 (smol, 64 B) in six
//! runs on 2026-12-01, and 0.885 to 1.133 over all six lines in five runs
//! on 2026-12-02 (`707d195` to `1d5a999`). Compare several runs.

/// How long one sample of a case takes, which sets how many are taken.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Length {
    /// Up to a few seconds a sample: `E2E_SAMPLES`.
    Short,
    /// Many seconds a sample: `E2E_SAMPLES_LONG`.
    Long,
    /// Up to a few seconds a sample, judged against a target near 1.0:
    /// `E2E_SAMPLES_PRECISE`.
    Precise,
}

/// One side's figures, in the unit printed.
#[derive(Clone, Debug, Default)]
pub(crate) struct Samples(Vec<f64>);

impl Samples {
    /// The figures given.
    pub(crate) fn of(v: impl IntoIterator<Item = f64>) -> Samples {
        Samples(v.into_iter().collect())
    }

    /// Every figure multiplied by `k` (a rate per subscriber to an aggregate).
    pub(crate) fn scaled(&self, k: f64) -> Samples {
        Samples::of(self.0.iter().map(|v| v * k))
    }

    /// How many figures.
    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    /// The median (the mean of the middle two for an even count); 0 if none.
    pub(crate) fn median(&self) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        match v.len() {
            0 => 0.0,
            n if n % 2 == 1 => v[n / 2],
            n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
        }
    }

    /// (max - min) / median: 0 for one sample, 0.5 if they lie 50 % apart.
    pub(crate) fn spread(&self) -> f64 {
        let (lo, hi) = self.0.iter().fold((f64::MAX, f64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let m = self.median();
        if self.0.is_empty() || m == 0.0 {
            0.0
        } else {
            (hi - lo) / m
        }
    }
}

/// Measures `sides` sides in turn for `rounds` rounds (side 0, side 1, ...,
/// side 0, side 1, ...); `once(i)` takes one sample of side `i`. Returns each
/// side's samples in the order taken.
pub(crate) fn interleave<T>(rounds: usize, sides: usize, mut once: impl FnMut(usize) -> T) -> Vec<Vec<T>> {
    let mut out: Vec<Vec<T>> = (0..sides).map(|_| Vec::with_capacity(rounds)).collect();
    for _ in 0..rounds.max(1) {
        for (i, side) in out.iter_mut().enumerate() {
            side.push(once(i));
        }
    }
    out
}

/// Two sides in turn, ours first: `once(true)` is a sample of ours,
/// `once(false)` one of the baseline. Returns (ours, baseline).
pub(crate) fn ours_and_baseline(rounds: usize, mut once: impl FnMut(bool) -> f64) -> (Samples, Samples) {
    let mut v = interleave(rounds, 2, |i| once(i == 0)).into_iter().map(Samples::of);
    let ours = v.next().expect("two sides");
    let base = v.next().expect("two sides");
    (ours, base)
}

/// The 5th and 95th percentiles of the ratio of medians over `rounds`
/// bootstrap resamples of both sides (a fixed seed: the same figures give
/// the same interval). `None` with fewer than three figures a side.
pub(crate) fn ratio_interval(ours: &Samples, base: &Samples, rounds: usize) -> Option<(f64, f64)> {
    if ours.len() < 3 || base.len() < 3 {
        return None;
    }
    // The simulator's generator: seeded, so the same figures give the same interval.
    let mut rng = estafeta_sim::Rng::new(7);
    let mut resample = |v: &Samples| Samples::of((0..v.len()).map(|_| v.0[rng.below(v.len() as u64) as usize]));
    let mut ratios: Vec<f64> =
        (0..rounds).map(|_| resample(ours).median() / resample(base).median()).filter(|r| r.is_finite()).collect();
    if ratios.is_empty() {
        return None;
    }
    ratios.sort_by(f64::total_cmp);
    let at = |q: f64| ratios[((ratios.len() - 1) as f64 * q).round() as usize];
    Some((at(0.05), at(0.95)))
}

/// Prints a case's line from the medians of both sides.
pub(crate) fn ratio_line(case: &str, ours: &Samples, base: &Samples, unit: &str) {
    let fmt = |v: f64| {
        if v >= 1000.0 {
            format!("{v:.0}")
        } else if v >= 10.0 || v == 0.0 {
            format!("{v:.1}")
        } else {
            format!("{v:.3}")
        }
    };
    let (o, b) = (ours.median(), base.median());
    let ci = ratio_interval(ours, base, 2_000).map_or(String::new(), |(lo, hi)| format!(" ci90={lo:.3}..{hi:.3}"));
    println!(
        "case={case} ours={} baseline={} unit={unit} ratio={:.3} samples={} spread={:.2}/{:.2}{ci}",
        fmt(o),
        fmt(b),
        o / b,
        ours.len().max(base.len()),
        ours.spread(),
        base.spread()
    );
}
