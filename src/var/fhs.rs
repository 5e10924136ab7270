//! Filtered historical simulation on a downside-weighted volatility filter, with adaptive
//! conformal calibration (ACI) of the tail level, and a Bayesian-bootstrap credible interval.
//!
//! Per return r_t (long position, loss = -r), in this order:
//! 1. ACI: if a forecast was made for r_t, move each level's working tail probability
//!    a[alpha] by c*alpha*(alpha - hit), clamped to [0.2 alpha, 3 alpha];
//! 2. residual: from `z_start` on, z = r_t / sqrt(v) joins the sorted pool and a FIFO ring
//!    of at most `window` values (the oldest leaves both);
//! 3. variance: v = lambda v + (1 - lambda) w r^2 with w = 1 + kappa for r < 0, 1 - kappa
//!    otherwise;
//! 4. forecast for r_{t+1} from `t0` on: VaR = -sigma q, ES = -sigma mean(s_0..s_j), where q
//!    interpolates the pool at (N - 1) a[alpha].
//!
//! Short positions (loss = +r) run the same recursion on -r. The state is plain data and
//! serialisable, so it can be snapshotted and restored without a warm-up.

use std::collections::VecDeque;

use rand::Rng;
use rand_distr::{Distribution, Exp1, Gamma};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FhsParams {
    /// Variance-filter memory.
    pub lambda: f64,
    /// Downside weight: losses count 1 + kappa, gains 1 - kappa.
    pub kappa: f64,
    /// Residuals kept in the pool.
    pub window: usize,
    /// ACI step, as a fraction of the tail probability (0 disables calibration).
    pub aci_step: f64,
    /// Tail probabilities (0.01 = 99 % VaR).
    pub alphas: Vec<f64>,
    /// Returns whose population variance starts the filter.
    pub init_returns: usize,
    /// First return index whose residual enters the pool.
    pub z_start: usize,
    /// First return index that gets a forecast.
    pub t0: usize,
}

impl Default for FhsParams {
    fn default() -> Self {
        Self {
            lambda: 0.90,
            kappa: 0.75,
            window: 1000,
            aci_step: 0.1,
            alphas: vec![0.01, 0.025, 0.05],
            init_returns: 50,
            z_start: 50,
            t0: 250,
        }
    }
}

impl FhsParams {
    /// Every problem with the parameters, empty when they are usable.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !(self.lambda > 0.0 && self.lambda < 1.0) {
            out.push(format!("lambda must be in (0, 1), got {}", self.lambda));
        }
        if !(0.0..1.0).contains(&self.kappa) {
            out.push(format!("kappa must be in [0, 1), got {}", self.kappa));
        }
        if self.window < 2 {
            out.push(format!("window must be >= 2, got {}", self.window));
        }
        if !(self.aci_step >= 0.0 && self.aci_step.is_finite()) {
            out.push(format!("aci_step must be >= 0, got {}", self.aci_step));
        }
        if self.alphas.is_empty() {
            out.push("at least one tail probability is needed".into());
        }
        for a in &self.alphas {
            // The ACI clamp reaches 3 alpha, which must stay a tail probability.
            if !(*a > 0.0 && *a < 1.0 / 3.0) {
                out.push(format!("tail probability must be in (0, 1/3), got {a}"));
            }
        }
        if self.init_returns < 2 {
            out.push(format!(
                "init_returns must be >= 2, got {}",
                self.init_returns
            ));
        }
        if self.t0 < self.z_start + 2 {
            out.push(format!(
                "t0 ({}) must be at least z_start + 2 ({}) so the pool holds two residuals",
                self.t0,
                self.z_start + 2
            ));
        }
        out
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Side {
    Long,
    Short,
}

/// VaR and ES (positive losses, fractions of position value) at one nominal tail level.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FhsForecast {
    pub alpha: f64,
    /// Working (ACI-adjusted) tail probability used for this forecast.
    pub adjusted_alpha: f64,
    pub var: f64,
    pub es: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FhsFilter {
    params: FhsParams,
    side: Side,
    /// Returns seen so far (the index of the next return).
    t: usize,
    /// The first `init_returns` returns, held until the filter can start.
    pending: Vec<f64>,
    /// Forecast variance of the next return (None before initialisation).
    v: Option<f64>,
    adjusted: Vec<f64>,
    pool: Vec<f64>,
    ring: VecDeque<f64>,
    /// Forecast for return index `t`, if one was made.
    forecast: Vec<FhsForecast>,
}

impl FhsFilter {
    pub fn new(params: FhsParams, side: Side) -> Self {
        let adjusted = params.alphas.clone();
        Self {
            pending: Vec::with_capacity(params.init_returns),
            pool: Vec::with_capacity(params.window + 1),
            ring: VecDeque::with_capacity(params.window + 1),
            forecast: Vec::with_capacity(params.alphas.len()),
            t: 0,
            v: None,
            adjusted,
            side,
            params,
        }
    }

    pub fn params(&self) -> &FhsParams {
        &self.params
    }

    /// Returns absorbed so far.
    pub fn observations(&self) -> usize {
        self.t
    }

    /// Returns still needed before the first forecast.
    pub fn warmup_remaining(&self) -> usize {
        self.params.t0.saturating_sub(self.t)
    }

    /// Forecast for the next return, empty while warming up.
    pub fn forecast(&self) -> &[FhsForecast] {
        &self.forecast
    }

    /// Forecast volatility of the next return.
    pub fn sigma(&self) -> Option<f64> {
        self.v.map(f64::sqrt)
    }

    /// Sorted standardised residuals (the loss side is the lower tail).
    pub fn pool(&self) -> &[f64] {
        &self.pool
    }

    /// Absorb one log return. Non-finite returns are ignored (the caller reports them).
    pub fn update(&mut self, r: f64) {
        if !r.is_finite() {
            return;
        }
        let x = match self.side {
            Side::Long => r,
            Side::Short => -r,
        };
        match self.v {
            Some(_) => self.step(x),
            None => {
                self.pending.push(x);
                if self.pending.len() == self.params.init_returns {
                    // A tiny positive floor on a flat start is forgotten at rate lambda.
                    self.v = Some(super::start_variance(self.pending.iter().copied()));
                    let held = std::mem::take(&mut self.pending);
                    for p in held {
                        self.step(p);
                    }
                }
            }
        }
    }

    fn step(&mut self, x: f64) {
        let p = &self.params;
        let Some(v) = self.v else { return };
        let t = self.t;
        if t >= p.t0 && !self.forecast.is_empty() {
            for (a, f) in self.adjusted.iter_mut().zip(&self.forecast) {
                let alpha = f.alpha;
                let hit = if -x > f.var { 1.0 } else { 0.0 };
                *a = (*a + p.aci_step * alpha * (alpha - hit)).clamp(0.2 * alpha, 3.0 * alpha);
            }
        }
        if t >= p.z_start {
            let z = x / v.sqrt();
            if z.is_finite() {
                let at = self.pool.partition_point(|s| *s < z);
                self.pool.insert(at, z);
                self.ring.push_back(z);
                if self.ring.len() > p.window {
                    if let Some(old) = self.ring.pop_front() {
                        let at = self.pool.partition_point(|s| *s < old);
                        self.pool.remove(at);
                    }
                }
            }
        }
        let w = if x < 0.0 {
            1.0 + p.kappa
        } else {
            1.0 - p.kappa
        };
        let v = p.lambda * v + (1.0 - p.lambda) * (w * (x * x));
        self.v = Some(v.max(f64::MIN_POSITIVE));
        self.t = t + 1;
        self.forecast.clear();
        if self.t >= p.t0 && self.pool.len() >= 2 {
            let sigma = v.sqrt();
            let used = rearranged(&p.alphas, &self.adjusted);
            for (&alpha, &a) in p.alphas.iter().zip(used.iter()) {
                let (q, tail_mean) = sorted_tail(&self.pool, a);
                self.forecast.push(FhsForecast {
                    alpha,
                    adjusted_alpha: a,
                    var: -sigma * q,
                    es: -sigma * tail_mean,
                });
            }
        }
    }

    /// Bayesian-bootstrap credible interval of VaR and ES at each level: the pool is
    /// reweighted with Dirichlet(1, ..., 1) weights `draws` times. Returns
    /// (var_low, var_high, es_low, es_high) per level at `credible` (e.g. 0.9), or an
    /// empty vector while warming up.
    pub fn credible_intervals<R: Rng>(
        &self,
        draws: usize,
        credible: f64,
        rng: &mut R,
        scratch: &mut BootstrapScratch,
    ) -> Vec<[f64; 4]> {
        let (Some(sigma), false) = (self.sigma(), self.forecast.is_empty()) else {
            return Vec::new();
        };
        let n = self.pool.len();
        let max_a = self
            .forecast
            .iter()
            .map(|f| f.adjusted_alpha)
            .fold(0.0, f64::max);
        // Only the lower tail matters: draw its exponential weights one by one and the
        // rest of the Dirichlet normaliser as a single Gamma(n - k) variate. k is the
        // weights the walk to the largest tail probability needs on average plus one
        // standard deviation (about a·n ± √(a·n)); a walk that needs more (about one draw
        // in twelve) splits them off the remainder exactly (`TailWeights::extend`), which
        // costs about six exponentials a weight.
        let expected = max_a * n as f64;
        let k = n.min(((expected + expected.sqrt()).ceil() as usize).saturating_add(2));
        let rest = (n > k)
            .then(|| Gamma::new((n - k) as f64, 1.0).ok())
            .flatten();
        let tail = (1.0 - credible) / 2.0;
        scratch.var.clear();
        scratch.es.clear();
        scratch.var.resize(self.adjusted.len() * draws, 0.0);
        scratch.es.resize(self.adjusted.len() * draws, 0.0);
        for d in 0..draws {
            scratch.weights.clear();
            let mut drawn = 0.0;
            for _ in 0..k {
                let w: f64 = Exp1.sample(rng);
                scratch.weights.push(w);
                drawn += w;
            }
            let remainder = rest.as_ref().map_or(0.0, |g| g.sample(rng));
            let mut weights = TailWeights {
                weights: &mut scratch.weights,
                remainder,
                n,
                total: drawn + remainder,
            };
            let mut walk = Walk::default();
            for (l, a) in self.forecast.iter().map(|f| f.adjusted_alpha).enumerate() {
                let (q, mean) = weights.tail(&self.pool, a, &mut walk, rng);
                scratch.var[l * draws + d] = -sigma * q;
                scratch.es[l * draws + d] = -sigma * mean;
            }
        }
        let mut out = Vec::with_capacity(self.adjusted.len());
        // Four quantiles of each level's draws by selection, not a sort: the same values.
        let (mut v, mut e) = ([0.0; 2], [0.0; 2]);
        for l in 0..self.adjusted.len() {
            let range = l * draws..(l + 1) * draws;
            super::quantiles::select_quantiles(
                &mut scratch.var[range.clone()],
                &[tail, 1.0 - tail],
                &mut v,
            );
            super::quantiles::select_quantiles(&mut scratch.es[range], &[tail, 1.0 - tail], &mut e);
            out.push([v[0], v[1], e[0], e[1]]);
        }
        out
    }
}

/// Reused buffers of the bootstrap so a bar does not allocate.
#[derive(Debug, Default)]
pub struct BootstrapScratch {
    weights: Vec<f64>,
    var: Vec<f64>,
    es: Vec<f64>,
}

/// Interpolated quantile of sorted data at (N - 1) a, and the mean of s_0..s_j (N >= 1).
pub fn sorted_tail(pool: &[f64], a: f64) -> (f64, f64) {
    let n = pool.len();
    let h = (n - 1) as f64 * a;
    let j = (h.floor() as usize).min(n - 1);
    let g = h - j as f64;
    let q = match pool.get(j + 1) {
        Some(next) => pool[j] + g * (next - pool[j]),
        None => pool[j],
    };
    let mean = pool[..=j].iter().sum::<f64>() / (j + 1) as f64;
    (q, mean)
}

/// Where a walk over the sorted pool stopped: the index it stopped at, the weight and the
/// weighted sum of the values before it, and the target it walked to.
#[derive(Debug, Default, Clone, Copy)]
struct Walk {
    at: usize,
    cum: f64,
    sum: f64,
    target: f64,
}

/// One bootstrap draw's Dirichlet weights of the sorted pool's lowest values, as unnormalised
/// exponentials, and the sum of the weights not drawn one by one (a Gamma(n - len) variate).
struct TailWeights<'a> {
    weights: &'a mut Vec<f64>,
    remainder: f64,
    n: usize,
    total: f64,
}

impl TailWeights<'_> {
    /// The weighted quantile at `a` (the first sorted value whose cumulative weight reaches
    /// a·total) and the weighted mean of the tail up to it. `walk` is where the walk to the
    /// previous level stopped: a level whose target is not below it goes on from there (the
    /// same sums, added in the same order, as a walk from the start), any other starts over.
    fn tail<R: Rng>(&mut self, pool: &[f64], a: f64, walk: &mut Walk, rng: &mut R) -> (f64, f64) {
        let target = a * self.total;
        if target < walk.target {
            *walk = Walk::default();
        }
        walk.target = target;
        let Walk {
            mut at,
            mut cum,
            mut sum,
            ..
        } = *walk;
        while let Some(s) = pool.get(at) {
            if at == self.weights.len() && !self.extend(rng) {
                break;
            }
            let w = self.weights[at];
            if cum + w >= target {
                (walk.at, walk.cum, walk.sum) = (at, cum, sum);
                sum += (target - cum) * s;
                return (*s, sum / target);
            }
            cum += w;
            sum += w * s;
            at += 1;
        }
        (walk.at, walk.cum, walk.sum) = (at, cum, sum);
        // Rounding left the walk short of `a`: use what it has.
        let last = pool.last().copied().unwrap_or(f64::NAN);
        (last, if cum > 0.0 { sum / cum } else { last })
    }

    /// Split the next weight off the remainder: of m exponentials summing to G, the first
    /// is G·B with B ~ Beta(1, m - 1) independent of G, so the draw stays exact.
    fn extend<R: Rng>(&mut self, rng: &mut R) -> bool {
        let m = self.n.saturating_sub(self.weights.len());
        if m == 0 {
            return false;
        }
        let w = if m == 1 {
            self.remainder
        } else {
            let u: f64 = rng.random();
            self.remainder * (1.0 - u.powf(1.0 / (m - 1) as f64))
        };
        self.remainder -= w;
        self.weights.push(w);
        true
    }
}

/// The ACI-adjusted tail probabilities in the order of the nominal ones (rearrangement).
/// Each level's ACI state moves on its own and two can cross, which would put a more
/// extreme level's VaR below a milder one's; handing the sorted values out in level order
/// keeps VaR and ES monotone in the level while using the same set of probabilities.
fn rearranged<'a>(alphas: &[f64], adjusted: &'a [f64]) -> std::borrow::Cow<'a, [f64]> {
    let ascending = |v: &[f64]| v.windows(2).all(|w| w[0] <= w[1]);
    if ascending(alphas) && ascending(adjusted) {
        return std::borrow::Cow::Borrowed(adjusted);
    }
    let mut order: Vec<usize> = (0..alphas.len()).collect();
    order.sort_by(|&i, &j| alphas[i].total_cmp(&alphas[j]));
    let mut values: Vec<f64> = order.iter().map(|&i| adjusted[i]).collect();
    values.sort_by(f64::total_cmp);
    let mut out = vec![0.0; alphas.len()];
    for (&i, v) in order.iter().zip(values) {
        out[i] = v;
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    const SMALL: [f64; 12] = [
        0.01, -0.02, 0.015, -0.03, 0.005, 0.02, -0.01, -0.025, 0.03, 0.001, -0.04, 0.012,
    ];

    fn small_params(alphas: Vec<f64>) -> FhsParams {
        FhsParams {
            lambda: 0.5,
            kappa: 0.5,
            window: 5,
            aci_step: 0.1,
            alphas,
            init_returns: 2,
            z_start: 2,
            t0: 4,
        }
    }

    #[test]
    fn first_forecast_by_hand() {
        // b0 = popvar(0.01, -0.02) = 0.000225
        // t=0 gain: v = .5 b0 + .5 * .5 * 1e-4            = 1.375e-4
        // t=1 loss: v = .5 v + .5 * 1.5 * 4e-4             = 3.6875e-4
        // t=2: z = .015 / sqrt(3.6875e-4) = 0.78113;  v = 2.40625e-4
        // t=3: z = -.03 / sqrt(2.40625e-4) = -1.93398; v = 7.953125e-4
        // forecast for r_4: sigma = 0.0282013, h = 0.25, q = s0 + .25 (s1 - s0)
        let mut f = FhsFilter::new(small_params(vec![0.25]), Side::Long);
        for r in &SMALL[..4] {
            f.update(*r);
        }
        let sigma = 7.953125e-4f64.sqrt();
        let s0 = -0.03 / 2.40625e-4f64.sqrt();
        let s1 = 0.015 / 3.6875e-4f64.sqrt();
        let fc = f.forecast()[0];
        assert!((fc.var - (-sigma * (s0 + 0.25 * (s1 - s0)))).abs() < 1e-15);
        assert!((fc.var - 0.03539819619069351).abs() < 1e-15);
        assert!((fc.es - 0.05454058419814849).abs() < 1e-15);
    }

    #[test]
    fn matches_reference_recursion_with_eviction_and_aci() {
        // Independent implementation of the published recursion (W = 5 evicts from t = 7).
        let expected = [
            (0.03539819619069351, 0.05454058419814849, 0.25),
            (0.017121960242181135, 0.03886790817260797, 0.25625),
            (
                0.004715166746272513,
                0.033606295792352914,
                0.26249999999999996,
            ),
            (
                0.009161452821842206,
                0.029072513461361384,
                0.24374999999999997,
            ),
            (
                0.040765221524627894,
                0.046646031693245604,
                0.22499999999999998,
            ),
            (
                0.014923382746914944,
                0.037772704769229934,
                0.23124999999999998,
            ),
            (0.010120652979064662, 0.026722276403401253, 0.2375),
            (0.06439546705619409, 0.09075538797949682, 0.21875),
            (0.04620477412015747, 0.0658890464119323, 0.225),
        ];
        let mut f = FhsFilter::new(small_params(vec![0.25]), Side::Long);
        let mut got = Vec::new();
        for r in SMALL {
            f.update(r);
            if let Some(fc) = f.forecast().first() {
                got.push((fc.var, fc.es, fc.adjusted_alpha));
            }
        }
        assert_eq!(got.len(), expected.len());
        for (g, e) in got.iter().zip(expected) {
            assert!((g.0 - e.0).abs() < 1e-14, "{g:?} vs {e:?}");
            assert!((g.1 - e.1).abs() < 1e-14, "{g:?} vs {e:?}");
            assert!((g.2 - e.2).abs() < 1e-15, "{g:?} vs {e:?}");
        }
        assert!(f.pool().len() <= 5);
    }

    #[test]
    fn warmup_counts_down_and_non_finite_is_ignored() {
        let mut f = FhsFilter::new(small_params(vec![0.25]), Side::Long);
        assert_eq!(f.warmup_remaining(), 4);
        f.update(f64::NAN);
        f.update(0.01);
        assert_eq!(f.warmup_remaining(), 4, "pending returns do not count yet");
        f.update(-0.02);
        assert_eq!(f.warmup_remaining(), 2);
        assert!(f.forecast().is_empty());
    }

    #[test]
    fn bootstrap_interval_brackets_the_point_forecast() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let normal = rand_distr::Normal::new(0.0, 0.01).unwrap();
        let mut f = FhsFilter::new(FhsParams::default(), Side::Long);
        for _ in 0..1500 {
            f.update(normal.sample(&mut rng));
        }
        let mut scratch = BootstrapScratch::default();
        let ci = f.credible_intervals(400, 0.9, &mut rng, &mut scratch);
        assert_eq!(ci.len(), 3);
        for (c, fc) in ci.iter().zip(f.forecast()) {
            assert!(c[0] < fc.var && fc.var < c[1], "{c:?} {fc:?}");
            assert!(c[2] < fc.es && fc.es < c[3], "{c:?} {fc:?}");
        }
    }

    /// Walking on from where the previous level stopped gives, bit for bit, what a walk
    /// from the start gives, with the same draws (weights split off the remainder included),
    /// whatever the order of the levels.
    #[test]
    fn a_walk_that_goes_on_equals_one_from_the_start() {
        let n = 300;
        let pool: Vec<f64> = (0..n).map(|i| (i as f64 - 150.0) / 37.0).collect();
        let gamma = Gamma::new((n - 4) as f64, 1.0).unwrap();
        for seed in 0..200 {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let first: Vec<f64> = (0..4).map(|_| Exp1.sample(&mut rng)).collect();
            let remainder = gamma.sample(&mut rng);
            let total = first.iter().sum::<f64>() + remainder;
            let levels = [0.01, 0.03, 0.02, 0.05, 0.05, 0.2];
            let run = |go_on: bool, rng: &mut ChaCha8Rng| {
                let mut weights = first.clone();
                let mut tw = TailWeights {
                    weights: &mut weights,
                    remainder,
                    n,
                    total,
                };
                let mut walk = Walk::default();
                let out: Vec<(u64, u64)> = levels
                    .iter()
                    .map(|a| {
                        if !go_on {
                            walk = Walk::default();
                        }
                        let (q, mean) = tw.tail(&pool, *a, &mut walk, rng);
                        (q.to_bits(), mean.to_bits())
                    })
                    .collect();
                (out, rng.get_word_pos())
            };
            let mut again = rng.clone();
            assert_eq!(run(true, &mut rng), run(false, &mut again), "seed {seed}");
        }
    }

    /// Weights split off the remainder one by one have the law of weights drawn one by one:
    /// the tail quantile and mean over many draws agree with all n weights drawn as
    /// exponentials, to a few standard errors.
    #[test]
    fn tail_weights_split_off_the_remainder_are_exact() {
        let n = 200;
        let pool: Vec<f64> = (0..n).map(|i| i as f64 / n as f64).collect();
        let a = 0.05;
        let draws = 20_000;
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let gamma = Gamma::new(n as f64, 1.0).unwrap();
        let (mut lazy, mut full) = (Vec::new(), Vec::new());
        for _ in 0..draws {
            // None drawn one by one: every weight comes from the remainder.
            let mut weights = Vec::new();
            let remainder = gamma.sample(&mut rng);
            let mut tw = TailWeights {
                weights: &mut weights,
                remainder,
                n,
                total: remainder,
            };
            lazy.push(tw.tail(&pool, a, &mut Walk::default(), &mut rng));
            let mut all: Vec<f64> = (0..n).map(|_| Exp1.sample(&mut rng)).collect();
            let total = all.iter().sum();
            let mut tw = TailWeights {
                weights: &mut all,
                remainder: 0.0,
                n,
                total,
            };
            full.push(tw.tail(&pool, a, &mut Walk::default(), &mut rng));
        }
        let moments = |v: &[(f64, f64)], pick: fn(&(f64, f64)) -> f64| {
            let m = v.iter().map(pick).sum::<f64>() / v.len() as f64;
            let var = v.iter().map(|x| (pick(x) - m).powi(2)).sum::<f64>() / v.len() as f64;
            (m, var.sqrt() / (v.len() as f64).sqrt())
        };
        for pick in [|x: &(f64, f64)| x.0, |x: &(f64, f64)| x.1] {
            let (m1, se1) = moments(&lazy, pick);
            let (m2, se2) = moments(&full, pick);
            let z = (m1 - m2).abs() / (se1 * se1 + se2 * se2).sqrt();
            assert!(z < 4.0, "means {m1} and {m2}, z = {z}");
        }
    }

    fn run(params: &FhsParams, side: Side, rs: &[f64]) -> Vec<Vec<FhsForecast>> {
        let mut f = FhsFilter::new(params.clone(), side);
        rs.iter()
            .map(|r| {
                f.update(*r);
                f.forecast().to_vec()
            })
            .collect()
    }

    fn returns() -> impl Strategy<Value = Vec<f64>> {
        prop::collection::vec(-0.05f64..0.05, 30..80)
    }

    fn params() -> FhsParams {
        FhsParams {
            window: 20,
            init_returns: 5,
            z_start: 5,
            t0: 12,
            ..FhsParams::default()
        }
    }

    proptest! {
        #[test]
        fn var_monotone_in_level_and_es_above_var(rs in returns()) {
            for fc in run(&params(), Side::Long, &rs) {
                for pair in fc.windows(2) {
                    // alphas are ascending, so VaR falls as the tail widens
                    prop_assert!(pair[0].var >= pair[1].var - 1e-15);
                }
                for f in fc {
                    prop_assert!(f.es >= f.var - 1e-15);
                }
            }
        }

        #[test]
        fn scaling_returns_scales_var_and_es(rs in returns(), k in 0.1f64..10.0) {
            let scaled: Vec<f64> = rs.iter().map(|r| r * k).collect();
            let a = run(&params(), Side::Long, &rs);
            let b = run(&params(), Side::Long, &scaled);
            for (x, y) in a.iter().flatten().zip(b.iter().flatten()) {
                prop_assert!((x.var * k - y.var).abs() <= 1e-9 * (x.var * k).abs().max(1e-12));
                prop_assert!((x.es * k - y.es).abs() <= 1e-9 * (x.es * k).abs().max(1e-12));
            }
        }

        #[test]
        fn short_on_r_equals_long_on_minus_r(rs in returns()) {
            let neg: Vec<f64> = rs.iter().map(|r| -r).collect();
            prop_assert_eq!(run(&params(), Side::Short, &rs), run(&params(), Side::Long, &neg));
        }

        #[test]
        fn zero_step_keeps_nominal_levels(rs in returns()) {
            let p = FhsParams { aci_step: 0.0, ..params() };
            for f in run(&p, Side::Long, &rs).into_iter().flatten() {
                prop_assert_eq!(f.adjusted_alpha, f.alpha);
            }
        }
    }
}
