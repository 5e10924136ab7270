use super::RiskAction;

/// Where a book stands against its limit, as the engine last proposed it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Posture {
    Normal,
    Reducing,
    Halted,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LimitPolicy {
    pub limit_usd: f64,
    pub reduce_ratio: f64,
    pub halt_ratio: f64,
    pub resume_ratio: f64,
}

/// Turns each bar's VaR into risk actions. Escalation is proposed once per episode;
/// a breach alert is raised on every bar above the limit.
#[derive(Debug, Clone)]
pub struct LimitTracker {
    pub policy: LimitPolicy,
    pub posture: Posture,
}

impl LimitTracker {
    pub fn new(policy: LimitPolicy) -> Self {
        Self {
            policy,
            posture: Posture::Normal,
        }
    }

    /// Actions for a new VaR figure (USDT) on a position of `qty`.
    pub fn evaluate(&mut self, var_usd: f64, qty: f64, out: &mut Vec<RiskAction>) {
        let p = self.policy;
        out.push(RiskAction::PublishRiskSnapshot);
        if !var_usd.is_finite() {
            return;
        }
        let ratio = var_usd / p.limit_usd;
        if ratio > 1.0 {
            out.push(RiskAction::LimitBreach {
                var_usd,
                limit_usd: p.limit_usd,
            });
        }
        if ratio > p.halt_ratio && self.posture != Posture::Halted {
            out.push(RiskAction::Halt);
            self.posture = Posture::Halted;
        } else if ratio > p.reduce_ratio && self.posture == Posture::Normal {
            let target = if ratio > 0.0 { qty / ratio } else { qty };
            out.push(RiskAction::ReduceExposure {
                current_qty: qty,
                target_qty: target,
            });
            self.posture = Posture::Reducing;
        } else if ratio < p.resume_ratio && self.posture != Posture::Normal {
            out.push(RiskAction::Resume);
            self.posture = Posture::Normal;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::risk::ActionKind;

    fn kinds(t: &mut LimitTracker, var: f64) -> Vec<ActionKind> {
        let mut out = Vec::new();
        t.evaluate(var, 2.0, &mut out);
        out.iter().map(RiskAction::kind).collect()
    }

    #[test]
    fn escalates_once_and_resumes() {
        use ActionKind::*;
        let mut t = LimitTracker::new(LimitPolicy {
            limit_usd: 100.0,
            reduce_ratio: 1.0,
            halt_ratio: 1.5,
            resume_ratio: 0.8,
        });
        assert_eq!(kinds(&mut t, 50.0), vec![PublishRiskSnapshot]);
        assert_eq!(
            kinds(&mut t, 110.0),
            vec![PublishRiskSnapshot, LimitBreach, ReduceExposure]
        );
        assert_eq!(kinds(&mut t, 120.0), vec![PublishRiskSnapshot, LimitBreach]);
        assert_eq!(
            kinds(&mut t, 160.0),
            vec![PublishRiskSnapshot, LimitBreach, Halt]
        );
        assert_eq!(kinds(&mut t, 90.0), vec![PublishRiskSnapshot]);
        assert_eq!(kinds(&mut t, 70.0), vec![PublishRiskSnapshot, Resume]);
        assert_eq!(t.posture, Posture::Normal);
    }

    #[test]
    fn reduce_target_brings_var_to_limit() {
        let mut t = LimitTracker::new(LimitPolicy {
            limit_usd: 100.0,
            reduce_ratio: 1.0,
            halt_ratio: 1.5,
            resume_ratio: 0.8,
        });
        let mut out = Vec::new();
        t.evaluate(125.0, 2.0, &mut out);
        assert!(out.contains(&RiskAction::ReduceExposure {
            current_qty: 2.0,
            target_qty: 1.6
        }));
    }
}
