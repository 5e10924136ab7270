//! VaR model costs: per-tick updates of both models, Monte-Carlo and bootstrap intervals,
//! one symbol's whole per-bar forecast at the defaults, the tail quantiles of a bar's draws,
//! portfolio models at 20 symbols, and the backtest statistics.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StudentT};

use bizra_risk::backtest::stats;
use bizra_risk::config::Config;
use bizra_risk::var::fhs::{BootstrapScratch, FhsFilter, FhsParams, Side};
use bizra_risk::var::nig::{McScratch, NigParams, NigPosterior};
use bizra_risk::var::portfolio::NiwPosterior;
use bizra_risk::var::portfolio_fhs::PortfolioFhs;
use bizra_risk::var::quantiles::select_quantiles;
use bizra_risk::var::symbol_risk::{ModelScratch, SymbolRiskModel};

/// Fat-tailed returns (t with 4 df, scaled to about 0.1 % per bar).
fn returns(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let t = StudentT::new(4.0).unwrap();
    (0..n).map(|_| t.sample(&mut rng) * 7e-4).collect()
}

/// Positions of `d` symbols and `count` bars of their returns: a common factor (`common`,
/// in turn) and a noise of each symbol's own.
fn portfolio_load(d: usize, count: usize, common: &[f64]) -> (Vec<f64>, Vec<Vec<f64>>) {
    let weights = (0..d).map(|j| 1000.0 + 100.0 * j as f64).collect();
    let vectors = (0..count)
        .map(|k| {
            let c = common[k % common.len()];
            let own = returns(d, 100 + k as u64);
            own.iter().map(|x| 0.6 * c + 0.8 * x).collect()
        })
        .collect();
    (weights, vectors)
}

fn nig() -> NigPosterior {
    let mut p = NigPosterior::new(
        NigParams {
            m: 0.0,
            k: 0.01,
            a: 1.0,
            b: 1e-8,
        },
        0.995,
    );
    for r in returns(500, 1) {
        p.update(r);
    }
    p
}

fn benches(c: &mut Criterion) {
    let rs = returns(4096, 2);

    let mut p = nig();
    let mut i = 0;
    c.bench_function("nig_update_and_closed_form_var_es_1_level", |b| {
        b.iter(|| {
            i = (i + 1) % rs.len();
            p.update(black_box(rs[i]));
            p.var_es(0.99)
        })
    });
    c.bench_function("nig_update_and_closed_form_var_es_3_levels", |b| {
        b.iter(|| {
            i = (i + 1) % rs.len();
            p.update(black_box(rs[i]));
            (p.var_es(0.99), p.var_es(0.975), p.var_es(0.95))
        })
    });
    let p = nig();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut scratch = McScratch::default();
    c.bench_function("nig_monte_carlo_10k_draws_1_level", |b| {
        b.iter(|| p.risk(&[0.99], 10_000, 0.9, &mut rng, &mut scratch))
    });
    c.bench_function("nig_monte_carlo_10k_draws_3_levels", |b| {
        b.iter(|| p.risk(&[0.99, 0.975, 0.95], 10_000, 0.9, &mut rng, &mut scratch))
    });

    let mut f = FhsFilter::new(FhsParams::default(), Side::Long);
    for r in returns(2000, 3) {
        f.update(r);
    }
    c.bench_function("fhs_aci_update_and_forecast_3_levels_w1000", |b| {
        b.iter(|| {
            i = (i + 1) % rs.len();
            f.update(black_box(rs[i]));
            f.forecast().first().map(|x| x.var)
        })
    });
    // The per-bar model work of one symbol at the embedded defaults (both models, every
    // level, the horizon, both credible intervals), after a full FHS window of returns.
    let config = Config::embedded().unwrap();
    let mut model = SymbolRiskModel::new(config.symbol_model(0));
    model.warm(&returns(2000, 4));
    let mut scratch = ModelScratch::default();
    c.bench_function("symbol_forecast_per_bar_defaults", |b| {
        b.iter(|| {
            i = (i + 1) % rs.len();
            model.absorb(black_box(rs[i]));
            model.forecast(&mut scratch)
        })
    });
    let mut boot = BootstrapScratch::default();
    c.bench_function("fhs_bayesian_bootstrap_200_draws_3_levels", |b| {
        b.iter(|| f.credible_intervals(200, 0.9, &mut rng, &mut boot))
    });

    const D: usize = 20;
    let (weights, vectors) = portfolio_load(D, 1024, &rs);
    let mut niw = NiwPosterior::new(D, 0.01, 1e-8, 0.995);
    for v in vectors.iter().take(300) {
        niw.update(v).unwrap();
    }
    let mut k = 0;
    c.bench_function("niw_update_and_var_es_components_20_symbols", |b| {
        b.iter(|| {
            k = (k + 1) % vectors.len();
            niw.update(black_box(&vectors[k])).unwrap();
            niw.risk(&weights, 0.99)
        })
    });
    let mut pf = PortfolioFhs::new(FhsParams::default(), 0.01, D);
    for v in vectors.iter().cycle().take(1200) {
        pf.update(v, &weights).unwrap();
    }
    let mut order = Vec::new();
    c.bench_function("portfolio_fhs_update_and_forecast_20_symbols_w1000", |b| {
        b.iter(|| {
            k = (k + 1) % vectors.len();
            pf.update(black_box(&vectors[k]), &weights).unwrap();
            pf.forecast(0.99, &weights, &mut order)
        })
    });

    // The portfolio's NIW update and VaR at many symbols: its cost per bar grows with the
    // cube of the symbols (the predictive's factorisation).
    for d in [100usize, 300, 1000] {
        let (weights, vectors) = portfolio_load(d, 64, &rs);
        let mut niw = NiwPosterior::new(d, 0.01, 1e-8, 0.995);
        for v in &vectors {
            niw.update(v).unwrap();
        }
        let mut k = 0;
        c.bench_function(
            &format!("niw_update_and_var_es_components_{d}_symbols"),
            |b| {
                b.iter(|| {
                    k = (k + 1) % vectors.len();
                    niw.update(black_box(&vectors[k])).unwrap();
                    niw.risk(&weights, 0.99)
                })
            },
        );
    }

    // The quantiles a bar asks of its 2 000 draws: the simulated VaR at two levels, and a
    // credible interval. Each iteration copies the draws back (~16 KB) before selecting.
    let draws = returns(2000, 5);
    let mut work = draws.clone();
    for (name, ps) in [
        (
            "quantiles_of_2000_draws_at_1_and_2_5_percent",
            [0.01, 0.025],
        ),
        ("quantiles_of_2000_draws_at_5_and_95_percent", [0.05, 0.95]),
    ] {
        c.bench_function(name, |b| {
            b.iter(|| {
                work.copy_from_slice(&draws);
                let mut out = [0.0; 2];
                select_quantiles(black_box(&mut work), &ps, &mut out);
                out
            })
        });
    }

    let hits: Vec<bool> = returns(8000, 4).iter().map(|r| *r < -1.6e-3).collect();
    c.bench_function("kupiec_and_christoffersen_8000_forecasts", |b| {
        b.iter(|| {
            (
                stats::kupiec(black_box(&hits), 0.01),
                stats::christoffersen_cc(black_box(&hits), 0.01),
            )
        })
    });
}

criterion_group!(var, benches);
criterion_main!(var);
