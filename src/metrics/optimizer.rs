//! The optimizer's metrics (`elf_optimizer_*`) and the view the dashboard reads
//! (`/api/optimizer`): the settings in force, the live recommendations, the watch over the
//! last applied change, and the last changes.

use std::collections::VecDeque;
use std::sync::Mutex;

use prometheus::{Gauge, GaugeVec, IntCounterVec, IntGauge, Opts, Registry};
use serde::Serialize;

use crate::elf::GateTuning;
use crate::optimizer::{Recommendation, SettingChange};

/// The last changes kept for the dashboard.
const RECENT_CHANGES: usize = 20;

pub struct OptimizerMetrics {
    pub changes_total: IntCounterVec,
    pub watch_active: IntGauge,
    pub watch_kpi_us: GaugeVec,
    pub degradation_pct: Gauge,
    pub recommendations: GaugeVec,
    pub setting: GaugeVec,
    view: Mutex<OptimizerView>,
}

/// What `/api/optimizer` answers.
#[derive(Debug, Clone, Default, Serialize)]
pub struct OptimizerView {
    pub tuning: Option<GateTuning>,
    pub kpi: String,
    pub recommendations: Vec<Recommendation>,
    pub watch: Option<WatchView>,
    pub recent_changes: VecDeque<ChangeView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WatchView {
    pub baseline_us: f64,
    pub observed_us: Option<f64>,
    pub observed_decisions: u64,
    pub degradation_pct_allowed: f64,
    pub until_ms: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ChangeView {
    /// CONFIG_APPLY or CONFIG_ROLLBACK.
    pub request: &'static str,
    pub request_id: String,
    pub chain: String,
    pub seq: u64,
    pub ts_ms: i64,
    pub changes: Vec<SettingChange>,
    pub detail: Option<String>,
}

impl OptimizerMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let changes_total = IntCounterVec::new(
            Opts::new(
                "elf_optimizer_changes_total",
                "Performance changes applied (kind=apply) and rolled back (kind=rollback), by \
                 cause (A_B_REPLAY, OPERATOR, RESTART, KPI_DEGRADED)",
            ),
            &["kind", "cause"],
        )?;
        let watch_active = IntGauge::new(
            "elf_optimizer_watch_active",
            "1 while an applied change is watched for degradation",
        )?;
        let watch_kpi_us = GaugeVec::new(
            Opts::new(
                "elf_optimizer_watch_kpi_microseconds",
                "The watched KPI before the change (window=baseline) and since it (observed)",
            ),
            &["window"],
        )?;
        let degradation_pct = Gauge::new(
            "elf_optimizer_degradation_percent",
            "How much worse the watched KPI is since the change (negative: better)",
        )?;
        let recommendations = GaugeVec::new(
            Opts::new(
                "elf_optimizer_recommendations",
                "1 for each setting change the live KPIs recommend (applies: AFTER_AB_REPLAY \
                 or RECOMMEND_ONLY)",
            ),
            &["setting", "to", "applies"],
        )?;
        let setting = GaugeVec::new(
            Opts::new(
                "elf_optimizer_setting",
                "The performance settings in force (booleans as 0/1)",
            ),
            &["setting"],
        )?;
        registry.register(Box::new(changes_total.clone()))?;
        registry.register(Box::new(watch_active.clone()))?;
        registry.register(Box::new(watch_kpi_us.clone()))?;
        registry.register(Box::new(degradation_pct.clone()))?;
        registry.register(Box::new(recommendations.clone()))?;
        registry.register(Box::new(setting.clone()))?;
        Ok(Self {
            changes_total,
            watch_active,
            watch_kpi_us,
            degradation_pct,
            recommendations,
            setting,
            view: Mutex::new(OptimizerView::default()),
        })
    }

    pub fn view(&self) -> OptimizerView {
        self.view.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// The settings in force.
    pub fn set_tuning(&self, t: GateTuning, kpi: &str) {
        let b = |x: bool| if x { 1.0 } else { 0.0 };
        for (name, value) in [
            ("elf.parallelize_l2_l3", b(t.parallelize_l2_l3)),
            ("elf.enable_decision_cache", b(t.enable_decision_cache)),
            ("elf.decision_cache_size", t.decision_cache_size as f64),
            ("elf.decision_cache_ttl_s", t.decision_cache_ttl_s as f64),
        ] {
            self.setting.with_label_values(&[name]).set(value);
        }
        if let Ok(mut v) = self.view.lock() {
            v.tuning = Some(t);
            v.kpi = kpi.to_string();
        }
    }

    pub fn set_recommendations(&self, recs: Vec<Recommendation>) {
        self.recommendations.reset();
        for r in &recs {
            let applies = serde_json::to_value(r.applies)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            self.recommendations
                .with_label_values(&[r.change.setting.key(), &r.change.to, &applies])
                .set(1.0);
        }
        if let Ok(mut v) = self.view.lock() {
            v.recommendations = recs;
        }
    }

    pub fn set_watch(&self, watch: Option<WatchView>) {
        self.watch_active.set(i64::from(watch.is_some()));
        match &watch {
            Some(w) => {
                self.watch_kpi_us
                    .with_label_values(&["baseline"])
                    .set(w.baseline_us);
                if let Some(o) = w.observed_us {
                    self.watch_kpi_us.with_label_values(&["observed"]).set(o);
                    if w.baseline_us > 0.0 {
                        self.degradation_pct
                            .set((o - w.baseline_us) / w.baseline_us * 100.0);
                    }
                }
            }
            None => self.degradation_pct.set(0.0),
        }
        if let Ok(mut v) = self.view.lock() {
            v.watch = watch;
        }
    }

    pub fn note_change(&self, kind: &str, cause: &str, change: ChangeView) {
        self.changes_total.with_label_values(&[kind, cause]).inc();
        if let Ok(mut v) = self.view.lock() {
            if v.recent_changes.len() == RECENT_CHANGES {
                v.recent_changes.pop_front();
            }
            v.recent_changes.push_back(change);
        }
    }
}
