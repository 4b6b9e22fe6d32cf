//! How sure a benchmark ratio is: a 95 % confidence interval for "ours over theirs" from paired,
//! interleaved rounds, by the percentile bootstrap.
//!
//! Round `i` of every path runs within the same stretch of time (see `paths::measure_paths`),
//! so the ratio of round `i` on one path to round `i` on the other cancels most of the
//! machine's drift; what is left varies from round to round, and the interval says how far
//! the mean ratio could be from the true one. The mean is taken of the logarithms (the
//! geometric mean), so 2x faster and 2x slower weigh alike. A goal counts as met only when the
//! whole interval clears it.

use std::fmt;

/// Bootstrap resamples per interval: enough for stable 2.5th/97.5th percentiles.
const RESAMPLES: usize = 4000;
/// The interval's confidence level.
pub const LEVEL: f64 = 0.95;

/// A ratio with its confidence interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    /// The geometric mean of the paired ratios.
    pub estimate: f64,
    /// The interval's lower end.
    pub low: f64,
    /// Its upper end.
    pub high: f64,
    /// How many paired rounds it rests on.
    pub rounds: usize,
}

impl Interval {
    /// The interval's relative half-width: how far, as a fraction of the estimate, its ends
    /// lie from it at most.
    pub fn relative_half_width(&self) -> f64 {
        ((self.high - self.estimate).max(self.estimate - self.low)) / self.estimate
    }

    /// What the interval says about the goal "at least `goal`".
    pub fn judge(&self, goal: f64) -> Verdict {
        if self.low >= goal {
            Verdict::Met
        } else if self.high < goal {
            Verdict::NotMet
        } else {
            Verdict::Undecided
        }
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:.2}x [{:.2}, {:.2}] ({} rounds)",
            self.estimate, self.low, self.high, self.rounds
        )
    }
}

/// A goal judged by an interval.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// The whole interval clears the goal.
    Met,
    /// The whole interval lies below it.
    NotMet,
    /// The interval straddles it: more rounds could tell.
    Undecided,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Met => "met",
            Self::NotMet => "NOT met",
            Self::Undecided => "undecided",
        })
    }
}

/// The ratio `ours[i] / theirs[i]` over paired rounds with its 95 % interval; None when fewer
/// than two rounds pair up or a figure is not positive (nothing to divide).
pub fn paired_ratio(ours: &[f64], theirs: &[f64]) -> Option<Interval> {
    if ours.len() != theirs.len() || ours.len() < 2 {
        return None;
    }
    let logs: Vec<f64> = ours
        .iter()
        .zip(theirs)
        .map(|(a, b)| (*a > 0.0 && *b > 0.0).then(|| (a / b).ln()))
        .collect::<Option<_>>()?;
    let mean = |values: &mut dyn Iterator<Item = f64>, count: usize| -> f64 {
        values.sum::<f64>() / count as f64
    };
    let estimate = mean(&mut logs.iter().copied(), logs.len());
    // A generator seeded from the figures: the same rounds give the same interval.
    let mut random = SplitMix64(logs.iter().fold(0x9e37_79b9_7f4a_7c15, |seed, value| {
        seed ^ value.to_bits().rotate_left(17)
    }));
    let mut means: Vec<f64> = (0..RESAMPLES)
        .map(|_| {
            let mut picks = (0..logs.len()).map(|_| logs[random.below(logs.len())]);
            mean(&mut picks, logs.len())
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let tail = (1.0 - LEVEL) / 2.0;
    let at = |fraction: f64| means[((fraction * RESAMPLES as f64) as usize).min(RESAMPLES - 1)];
    Some(Interval {
        estimate: estimate.exp(),
        low: at(tail).exp(),
        high: at(1.0 - tail).exp(),
        rounds: logs.len(),
    })
}

/// A small, fast generator (Steele, Lea and Flood's SplitMix64): plenty for resampling, and
/// deterministic.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..bound` (bound > 0; the modulo bias is negligible for round counts).
    fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steady_rounds_give_a_narrow_interval_around_the_ratio() {
        let theirs = [100.0, 110.0, 90.0, 105.0, 95.0];
        let ours: Vec<f64> = theirs.iter().map(|t| t * 1.2).collect();
        let interval = paired_ratio(&ours, &theirs).unwrap();
        assert!((interval.estimate - 1.2).abs() < 1e-9, "{interval}");
        assert!((interval.low - 1.2).abs() < 1e-9 && (interval.high - 1.2).abs() < 1e-9);
        assert_eq!(interval.judge(1.1), Verdict::Met);
        assert_eq!(interval.judge(1.3), Verdict::NotMet);
    }

    #[test]
    fn noisy_rounds_widen_the_interval_and_may_leave_a_goal_undecided() {
        let theirs = [100.0; 6];
        let ours = [80.0, 125.0, 95.0, 110.0, 90.0, 120.0];
        let interval = paired_ratio(&ours, &theirs).unwrap();
        assert!(interval.low < interval.estimate && interval.estimate < interval.high);
        assert!(interval.low > 0.8 && interval.high < 1.25, "{interval}");
        assert_eq!(interval.judge(1.0), Verdict::Undecided);
        assert!(interval.relative_half_width() > 0.03);
        // The same rounds give the same interval.
        assert_eq!(paired_ratio(&ours, &theirs), Some(interval));
        // More rounds of the same spread narrow it.
        let many_ours: Vec<f64> = ours.iter().cycle().take(36).copied().collect();
        let narrower = paired_ratio(&many_ours, &[100.0; 36]).unwrap();
        assert!(narrower.relative_half_width() < interval.relative_half_width());
    }

    #[test]
    fn too_few_or_empty_rounds_give_no_interval() {
        assert_eq!(paired_ratio(&[1.0], &[1.0]), None);
        assert_eq!(paired_ratio(&[1.0, 2.0], &[1.0]), None);
        assert_eq!(paired_ratio(&[1.0, 0.0], &[1.0, 1.0]), None);
        let text = paired_ratio(&[2.0, 2.0], &[1.0, 1.0]).unwrap().to_string();
        assert_eq!(text, "2.00x [2.00, 2.00] (2 rounds)");
    }
}
