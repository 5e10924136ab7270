//! Type-7 quantiles of unsorted draws by selection: each bar asks a few tail quantiles of a
//! few thousand Monte-Carlo or bootstrap draws, and sorting them all would cost more than
//! drawing them.

/// Type-7 quantiles of unsorted data at each of `ps` (any order) into `out`: the same values
/// as interpolating in the sorted data. Each quantile after the first works only on the part
/// of `data` above the one before it; a rank near either end of that part is selected among
/// the values beyond a pivot sampled from it (one pass that moves them without branching, no
/// allocation), any other in the whole part. Reorders `data`.
pub fn select_quantiles(data: &mut [f64], ps: &[f64], out: &mut [f64]) {
    let n = data.len();
    if n == 0 {
        out.fill(f64::NAN);
        return;
    }
    // The order of the quantiles asked, on the stack for the few a bar asks.
    let count = ps.len().min(out.len());
    let (mut few, mut many) = ([0usize; 8], Vec::new());
    let order: &mut [usize] = if count <= few.len() {
        &mut few[..count]
    } else {
        many.resize(count, 0);
        &mut many
    };
    for (k, slot) in order.iter_mut().enumerate() {
        *slot = k;
    }
    order.sort_by(|&a, &b| ps[a].total_cmp(&ps[b]));
    // Everything before `start` ranks below every order statistic still to come.
    let mut start = 0;
    let mut last: Option<(usize, f64, Option<f64>)> = None;
    for &i in order.iter() {
        let h = (n - 1) as f64 * ps[i].clamp(0.0, 1.0);
        let j = (h.floor() as usize).min(n - 1);
        let g = h - j as f64;
        let (lo, next) = match last {
            Some((k, lo, next)) if k == j => (lo, next),
            _ => {
                let found = order_statistic(data, start, j);
                start = j + 1;
                found
            }
        };
        last = Some((j, lo, next));
        out[i] = match next {
            Some(next) if g > 0.0 => lo + g * (next - lo),
            _ => lo,
        };
    }
}

/// Puts the `j`-th order statistic of `data` at `j`, those below it before and those above it
/// after, given that `data[..start]` ranks below all of `data[start..]` and `j >= start`.
/// Returns it and the next order statistic, if any.
fn order_statistic(data: &mut [f64], start: usize, j: usize) -> (f64, Option<f64>) {
    let n = data.len();
    let len = n - start;
    let below = j - start + 2; // the values up to and including the next order statistic
    let above = n - j; // the values from the j-th on
    if len >= TAIL_MIN_LEN {
        if j + 1 < n && below * TAIL_FRACTION <= len {
            let pivot = sample_rank(&data[start..], below, Side::Low);
            let end = gather_low(data, start, pivot);
            if end - start >= below {
                return select_within(data, start..end, j);
            }
        } else if above * TAIL_FRACTION <= len {
            let pivot = sample_rank(&data[start..], above, Side::High);
            let begin = gather_high(data, start, pivot);
            if n - begin >= above {
                return select_within(data, begin..n, j);
            }
        }
    }
    select_within(data, start..n, j)
}

/// Parts at least this long have a rank near their ends found by sampling a pivot.
const TAIL_MIN_LEN: usize = 512;
/// A rank within this fraction of either end of the part searched is a tail rank.
const TAIL_FRACTION: usize = 8;
/// Values sampled to choose the pivot.
const SAMPLE: usize = 128;

enum Side {
    Low,
    High,
}

/// A value that `count` or more values of `data` are likely (but not sure) to reach from
/// `side`: an order statistic of an evenly spaced sample, a few standard deviations beyond
/// the expected rank.
fn sample_rank(data: &[f64], count: usize, side: Side) -> f64 {
    let len = data.len();
    let mut sample = [0.0; SAMPLE];
    for (i, slot) in sample.iter_mut().enumerate() {
        *slot = data[i * len / SAMPLE];
    }
    let expected = count as f64 * SAMPLE as f64 / len as f64;
    let rank = ((expected + 3.0 * expected.sqrt() + 1.0).ceil() as usize).min(SAMPLE - 1);
    let rank = match side {
        Side::Low => rank,
        Side::High => SAMPLE - 1 - rank,
    };
    let (_, pivot, _) = sample.select_nth_unstable_by(rank, f64::total_cmp);
    *pivot
}

/// Moves the values of `data[start..]` at or below `pivot` to its front, without branching
/// on them; returns where they end.
fn gather_low(data: &mut [f64], start: usize, pivot: f64) -> usize {
    let mut end = start;
    for i in start..data.len() {
        let keep = data[i].total_cmp(&pivot).is_le();
        data.swap(i, end);
        end += usize::from(keep);
    }
    end
}

/// Moves the values of `data[start..]` at or above `pivot` to its back, without branching
/// on them; returns where they begin.
fn gather_high(data: &mut [f64], start: usize, pivot: f64) -> usize {
    let mut begin = data.len();
    for i in (start..data.len()).rev() {
        let keep = data[i].total_cmp(&pivot).is_ge();
        data.swap(i, begin - 1);
        begin -= usize::from(keep);
    }
    begin
}

/// The `j`-th order statistic put in place within `range`, which holds it and every value
/// after `range` ranks above all of `range`; and the next one up.
fn select_within(data: &mut [f64], range: std::ops::Range<usize>, j: usize) -> (f64, Option<f64>) {
    let part = &mut data[range.clone()];
    part.select_nth_unstable_by(j - range.start, f64::total_cmp);
    let next = data[j + 1..range.end]
        .iter()
        .copied()
        .min_by(f64::total_cmp);
    let next = next.or_else(|| {
        data.get(range.end..)
            .and_then(|rest| rest.iter().copied().min_by(f64::total_cmp))
    });
    (data[j], next)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The reference: linear-interpolated quantile of sorted data (type 7).
    fn sorted_quantile(sorted: &[f64], p: f64) -> f64 {
        if sorted.is_empty() {
            return f64::NAN;
        }
        let h = (sorted.len() - 1) as f64 * p.clamp(0.0, 1.0);
        let j = h.floor() as usize;
        let g = h - j as f64;
        match sorted.get(j + 1) {
            Some(next) => sorted[j] + g * (next - sorted[j]),
            None => sorted[j],
        }
    }

    fn values() -> impl Strategy<Value = f64> {
        // Few distinct values too, so that ties and repeated ranks occur.
        prop_oneof![-1.0f64..1.0, (0u8..4).prop_map(f64::from)]
    }

    fn probabilities() -> impl Strategy<Value = f64> {
        prop_oneof![
            0.0f64..1.0,
            0.0f64..0.08,
            0.92f64..1.0,
            Just(0.0),
            Just(1.0)
        ]
    }

    proptest! {
        #[test]
        fn several_quantiles_by_selection_equal_each_sorted_quantile(
            mut xs in prop::collection::vec(values(), 1..3000),
            ps in prop::collection::vec(probabilities(), 0..6),
        ) {
            let mut sorted = xs.clone();
            sorted.sort_unstable_by(f64::total_cmp);
            let mut out = vec![0.0; ps.len()];
            select_quantiles(&mut xs, &ps, &mut out);
            for (p, q) in ps.iter().zip(&out) {
                prop_assert_eq!(q.to_bits(), sorted_quantile(&sorted, *p).to_bits());
            }
        }

        #[test]
        fn an_order_statistic_splits_the_data_around_it(
            mut xs in prop::collection::vec(values(), 2..3000),
            at in probabilities(),
        ) {
            let n = xs.len();
            let j = ((n - 1) as f64 * at) as usize;
            let mut sorted = xs.clone();
            sorted.sort_unstable_by(f64::total_cmp);
            let (lo, next) = order_statistic(&mut xs, 0, j);
            prop_assert_eq!(lo.to_bits(), sorted[j].to_bits());
            prop_assert_eq!(next.map(f64::to_bits), sorted.get(j + 1).map(|x| x.to_bits()));
            prop_assert_eq!(xs[j].to_bits(), lo.to_bits());
            prop_assert!(xs[..j].iter().all(|x| x.total_cmp(&lo).is_le()));
            prop_assert!(xs[j + 1..].iter().all(|x| x.total_cmp(&lo).is_ge()));
        }
    }

    #[test]
    fn tails_of_many_draws_take_the_sampled_pivot_and_agree_with_sorting() {
        // 2 000 values in a scrambled order, asked at the ranks a bar asks.
        let mut xs: Vec<f64> = (0..2000u64)
            .map(|i| ((i * 7919) % 2000) as f64 / 7.0)
            .collect();
        let mut sorted = xs.clone();
        sorted.sort_unstable_by(f64::total_cmp);
        let ps = [0.05, 0.95, 0.01, 0.025, 0.5];
        let mut out = [0.0; 5];
        select_quantiles(&mut xs, &ps, &mut out);
        for (p, q) in ps.iter().zip(&out) {
            assert_eq!(q.to_bits(), sorted_quantile(&sorted, *p).to_bits(), "{p}");
        }
    }
}
