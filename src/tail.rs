//! `tail`: decoded, verified events for trading desks, one line each.

use serde::Serialize;

use crate::audit::wire::{self, ActionRecord, Payload};
use crate::audit::{FailureReason, Verifier};
use crate::elf::Verdict;

/// Which events to show.
#[derive(Debug, Clone, Default)]
pub struct TailFilter {
    /// Empty: every symbol.
    pub symbols: Vec<String>,
    /// Empty: every verdict.
    pub verdicts: Vec<Verdict>,
}

/// One event as a desk sees it.
#[derive(Debug, Clone, Serialize)]
pub struct TailItem {
    pub position: String,
    pub chain: Option<String>,
    pub seq: Option<u64>,
    /// Signature, payload hash and chain link all checked.
    pub verified: bool,
    pub failures: Vec<FailureReason>,
    pub ts_ms: Option<i64>,
    pub symbol: Option<String>,
    pub action: Option<ActionRecord>,
    pub verdict: Option<Verdict>,
    pub reasons: Vec<String>,
    pub var_usd: Option<f64>,
    pub es_usd: Option<f64>,
    pub limit_usd: Option<f64>,
    /// For a KEY_ROTATION event: the key the chain now uses.
    pub new_key_id: Option<String>,
    /// For a CONTROL_REQUEST event: `<outcome> <request> by <token ID>` and its reason.
    pub control: Option<String>,
}

/// Verify `line` (in stream order, through `verifier`) and decode it.
pub fn decode(verifier: &mut Verifier, position: &str, line: &[u8]) -> TailItem {
    let failures: Vec<FailureReason> = verifier
        .push_now(position, line)
        .into_iter()
        .map(|f| f.reason)
        .collect();
    let mut item = TailItem {
        position: position.to_string(),
        chain: None,
        seq: None,
        verified: failures.is_empty(),
        failures,
        ts_ms: None,
        symbol: None,
        action: None,
        verdict: None,
        reasons: Vec::new(),
        var_usd: None,
        es_usd: None,
        limit_usd: None,
        new_key_id: None,
        control: None,
    };
    if let Ok(rec) = wire::parse_record(line) {
        item.chain = Some(rec.event.chain.clone());
        item.seq = Some(rec.event.seq);
        item.ts_ms = Some(rec.event.ts_ms);
        match rec.payload {
            Payload::RiskDecision(d) => {
                item.symbol = Some(d.symbol.clone());
                item.verdict = Some(d.verdict);
                item.reasons = d.reasons.iter().map(|r| r.as_str().to_string()).collect();
                let finite = |x: f64| x.is_finite().then_some(x);
                item.var_usd = finite(d.evidence.var_usd.0);
                item.es_usd = finite(d.evidence.es_usd.0);
                item.limit_usd = finite(d.evidence.limit_usd.0);
                item.action = Some(d.action);
            }
            Payload::KeyRotation(r) => item.new_key_id = Some(r.new_key_id),
            Payload::ControlRequest(c) => {
                let request = c
                    .request
                    .as_ref()
                    .and_then(|r| serde_json::to_value(r).ok())
                    .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string))
                    .unwrap_or_else(|| format!("{} {}", c.method, c.path));
                let by = c.token_id.as_deref().unwrap_or(match c.source {
                    wire::ControlSource::Signal => "signal",
                    wire::ControlSource::Restart => "restart",
                    wire::ControlSource::Watchdog => "watchdog",
                    wire::ControlSource::Http => "anonymous",
                });
                let outcome = serde_json::to_value(c.outcome)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default();
                item.control = Some(format!("{outcome} {request} by {by}"));
                item.reasons = c.reason.iter().map(|r| r.as_str().to_string()).collect();
            }
        }
    }
    item
}

impl TailFilter {
    /// Unverifiable records are always shown: a desk must see them.
    pub fn shows(&self, item: &TailItem) -> bool {
        if !item.verified {
            return true;
        }
        let symbol_ok = self.symbols.is_empty()
            || item
                .symbol
                .as_ref()
                .is_some_and(|s| self.symbols.iter().any(|f| f.eq_ignore_ascii_case(s)));
        let verdict_ok =
            self.verdicts.is_empty() || item.verdict.is_some_and(|v| self.verdicts.contains(&v));
        symbol_ok && verdict_ok
    }
}

fn usd(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{v:.2}"))
}

/// `ts chain #seq SYMBOL ACTION VERDICT var= es= limit= [reasons] OK|INVALID(...)`.
pub fn render(item: &TailItem) -> String {
    let check = if item.verified {
        "OK".to_string()
    } else {
        let codes: Vec<String> = item
            .failures
            .iter()
            .map(|f| {
                serde_json::to_value(f)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_default()
            })
            .collect();
        format!("INVALID({})", codes.join(","))
    };
    let when = item.ts_ms.map_or("-".to_string(), crate::clock::utc_label);
    let head = format!(
        "{when} {} #{}",
        item.chain.as_deref().unwrap_or("?"),
        item.seq.map_or("?".into(), |s| s.to_string())
    );
    if let Some(k) = &item.new_key_id {
        return format!("{head} KEY_ROTATION new_key_id={k} {check}");
    }
    if let Some(c) = &item.control {
        let reasons = item.reasons.join(",");
        return format!("{head} CONTROL {c} {reasons} {check}");
    }
    let action = item
        .action
        .as_ref()
        .and_then(|a| serde_json::to_value(a).ok())
        .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(str::to_string))
        .unwrap_or_else(|| "?".into());
    format!(
        "{head} {} {action} {} var={} es={} limit={} [{}] {check}  ({})",
        item.symbol.as_deref().unwrap_or("?"),
        item.verdict.map_or("?", |v| v.as_str()),
        usd(item.var_usd),
        usd(item.es_usd),
        usd(item.limit_usd),
        item.reasons.join(","),
        item.position
    )
}
