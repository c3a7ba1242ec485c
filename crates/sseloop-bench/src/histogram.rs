//! The latency histogram: log-linear buckets in nanoseconds with under 1 %
//! error, fixed in size so that recording a delivery never allocates.

/// Sub-buckets per power of two: 2^7 = 128, so a bucket is under 0.8 % wide.
const SUB_BITS: u32 = 7;
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) << SUB_BITS;

/// Log-linear latency histogram in nanoseconds: exact below 256 ns, then 128
/// buckets per power of two. Fixed size (58 KiB): recording never allocates.
pub(crate) struct Histogram {
    counts: Vec<u64>,
    total: u64,
    sum: u128,
    pub(crate) min: u64,
    pub(crate) max: u64,
}

impl Default for Histogram {
    fn default() -> Self {
        let counts = vec![0; BUCKETS];
        Histogram {
            counts,
            total: 0,
            sum: 0,
            min: u64::MAX,
            max: 0,
        }
    }
}

impl Histogram {
    fn index(v: u64) -> usize {
        if v < 1 << (SUB_BITS + 1) {
            return v as usize;
        }
        let shift = 63 - v.leading_zeros() - SUB_BITS;
        ((shift as usize) << SUB_BITS) + (v >> shift) as usize
    }

    /// The middle of bucket `i`'s range.
    fn value(i: usize) -> u64 {
        if i < 1 << (SUB_BITS + 1) {
            return i as u64;
        }
        let shift = (i >> SUB_BITS) as u32 - 1;
        let mantissa = (i - ((shift as usize) << SUB_BITS)) as u64;
        (mantissa << shift) + (1 << shift) / 2
    }

    pub(crate) fn record(&mut self, v: u64) {
        self.counts[Self::index(v)] += 1;
        self.total += 1;
        self.sum += u128::from(v);
        self.min = self.min.min(v);
        self.max = self.max.max(v);
    }

    /// The value at quantile `q` (0..=1); 0 when empty.
    pub(crate) fn quantile(&self, q: f64) -> u64 {
        let rank = ((q * self.total as f64).ceil() as u64).clamp(1, self.total.max(1));
        if rank >= self.total {
            return self.max;
        }
        let mut seen = 0;
        let i = self.counts.iter().position(|&c| {
            seen += c;
            seen >= rank
        });
        i.map_or(self.max, |i| Self::value(i).clamp(self.min, self.max))
    }

    pub(crate) fn mean(&self) -> u64 {
        (self.sum / u128::from(self.total.max(1))) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_within_one_percent() {
        let mut h = Histogram::default();
        (1..=100_000u64).for_each(|v| h.record(v * 1000));
        for (q, want) in [(0.5, 50e6), (0.99, 99e6), (0.999, 99.9e6)] {
            let got = h.quantile(q) as f64;
            assert!((got - want).abs() / want < 0.01, "q {q}: {got} vs {want}");
        }
        assert_eq!(h.quantile(1.0), 100_000_000);
        for v in [0, 1, 255, 256, 257, 1 << 20, 123_456_789, u64::MAX] {
            let mid = Histogram::value(Histogram::index(v)) as f64;
            assert!((mid - v as f64).abs() <= v as f64 * 0.004, "{v}: {mid}");
        }
    }
}
