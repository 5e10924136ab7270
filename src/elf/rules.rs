//! L3: declarative policy rules (trigger -> check -> enforce), loaded from YAML, parsed and
//! type-checked at load into a small AST over a closed set of typed fields.
//!
//! ```yaml
//! version: 1
//! rules:
//!   - id: halt-needs-tight-interval
//!     trigger: [HALT, REDUCE_EXPOSURE]      # action kinds, or [ANY]
//!     check: "var_ci_rel_width > 1.5 and ess < 200"
//!     enforce: require_review               # block | require_review | allow_with_flag
//! ```
//! Check grammar: `or`, `and`, `not`, parentheses, comparisons `< <= > >= == !=` between
//! numeric fields and numbers, `action == HALT`, `symbol == "BTCUSDT"`, `feed_healthy`.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ActionRequest;
use crate::risk::{ActionKind, RiskAction};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Enforcement {
    Block,
    RequireReview,
    AllowWithFlag,
}

impl Enforcement {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Block => "block",
            Self::RequireReview => "require_review",
            Self::AllowWithFlag => "allow_with_flag",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RuleError {
    #[error("rules file {path}: {message}")]
    Io { path: String, message: String },
    #[error("rules file: {0}")]
    Yaml(String),
    #[error("rule {rule:?} (line {line}): {message}")]
    Rule {
        rule: String,
        line: usize,
        message: String,
    },
    #[error("rules file: unsupported version {0} (expected 1)")]
    Version(u32),
}

/// The largest rules file read. YAML nesting is bounded by the parser (128 levels).
pub const MAX_RULES_FILE_BYTES: u64 = 1 << 20;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    version: u32,
    rules: Vec<RuleSpec>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    id: String,
    #[serde(default)]
    description: String,
    trigger: Vec<String>,
    check: String,
    enforce: Enforcement,
}

/// A rule that fired on a request.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleHit {
    pub rule_id: Arc<str>,
    pub enforce: Enforcement,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NumField {
    VarUsd,
    EsUsd,
    LimitUsd,
    LimitCapUsd,
    VarToLimit,
    VarCiLowUsd,
    VarCiHighUsd,
    VarCiRelWidth,
    PositionQty,
    Price,
    Ess,
    McZ,
    Exceedances,
    ExpectedExceedances,
    DataAgeMs,
    Level,
    TargetQty,
    NewLimitUsd,
    NewLimitRatio,
    ExceedanceRatio,
}

const NUM_FIELDS: [(&str, NumField); 20] = [
    ("var_usd", NumField::VarUsd),
    ("es_usd", NumField::EsUsd),
    ("limit_usd", NumField::LimitUsd),
    ("limit_cap_usd", NumField::LimitCapUsd),
    ("var_to_limit", NumField::VarToLimit),
    ("var_ci_low_usd", NumField::VarCiLowUsd),
    ("var_ci_high_usd", NumField::VarCiHighUsd),
    ("var_ci_rel_width", NumField::VarCiRelWidth),
    ("position_qty", NumField::PositionQty),
    ("price", NumField::Price),
    ("ess", NumField::Ess),
    ("mc_z", NumField::McZ),
    ("exceedances", NumField::Exceedances),
    ("expected_exceedances", NumField::ExpectedExceedances),
    ("data_age_ms", NumField::DataAgeMs),
    ("level", NumField::Level),
    ("target_qty", NumField::TargetQty),
    ("new_limit_usd", NumField::NewLimitUsd),
    ("new_limit_ratio", NumField::NewLimitRatio),
    ("exceedance_ratio", NumField::ExceedanceRatio),
];

impl NumField {
    fn read(self, r: &ActionRequest) -> f64 {
        let e = &r.evidence;
        match self {
            Self::VarUsd => e.var_usd,
            Self::EsUsd => e.es_usd,
            Self::LimitUsd => e.limit_usd,
            Self::LimitCapUsd => e.limit_cap_usd,
            Self::VarToLimit => e.var_usd / e.limit_usd,
            Self::VarCiLowUsd => e.var_ci_low_usd,
            Self::VarCiHighUsd => e.var_ci_high_usd,
            Self::VarCiRelWidth => (e.var_ci_high_usd - e.var_ci_low_usd) / e.var_usd,
            Self::PositionQty => e.position_qty,
            Self::Price => e.price,
            Self::Ess => e.ess,
            Self::McZ => e.mc_z,
            Self::Exceedances => e.exceedances,
            Self::ExpectedExceedances => e.expected_exceedances,
            Self::DataAgeMs => r.decided_at_ms.saturating_sub(r.data_time_ms) as f64,
            Self::Level => e.level,
            Self::TargetQty => match r.action {
                RiskAction::ReduceExposure { target_qty, .. } => target_qty,
                _ => f64::NAN,
            },
            Self::NewLimitUsd => match r.action {
                RiskAction::SetLimit { new_limit_usd } => new_limit_usd,
                _ => f64::NAN,
            },
            Self::ExceedanceRatio => e.exceedances / e.expected_exceedances,
            Self::NewLimitRatio => match r.action {
                RiskAction::SetLimit { new_limit_usd } => new_limit_usd / e.limit_usd,
                _ => f64::NAN,
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

impl CmpOp {
    /// IEEE semantics: any comparison with NaN is false except `!=`.
    fn apply(self, a: f64, b: f64) -> bool {
        match self {
            Self::Lt => a < b,
            Self::Le => a <= b,
            Self::Gt => a > b,
            Self::Ge => a >= b,
            Self::Eq => a == b,
            Self::Ne => a != b,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Field(NumField),
    Lit(f64),
}

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Const(bool),
    Or(Vec<Expr>),
    And(Vec<Expr>),
    Not(Box<Expr>),
    Cmp(Operand, CmpOp, Operand),
    ActionIs(ActionKind, bool),
    SymbolIs(String, bool),
    FeedHealthy(bool),
}

impl Expr {
    fn eval(&self, r: &ActionRequest) -> bool {
        match self {
            Self::Const(b) => *b,
            Self::Or(xs) => xs.iter().any(|x| x.eval(r)),
            Self::And(xs) => xs.iter().all(|x| x.eval(r)),
            Self::Not(x) => !x.eval(r),
            Self::Cmp(a, op, b) => {
                let v = |o: &Operand| match o {
                    Operand::Field(f) => f.read(r),
                    Operand::Lit(x) => *x,
                };
                op.apply(v(a), v(b))
            }
            Self::ActionIs(k, eq) => (r.action.kind() == *k) == *eq,
            Self::SymbolIs(s, eq) => (r.symbol == *s) == *eq,
            Self::FeedHealthy(eq) => r.feed_healthy == *eq,
        }
    }
}

#[derive(Debug, Clone)]
struct CompiledRule {
    id: Arc<str>,
    /// None = any action.
    triggers: Option<Vec<ActionKind>>,
    check: Expr,
    enforce: Enforcement,
}

/// A loaded, type-checked rule set and the SHA-256 of its canonical form.
#[derive(Debug, Clone)]
pub struct RuleSet {
    rules: Vec<CompiledRule>,
    hash_hex: String,
}

impl RuleSet {
    /// Read and compile a rules file of at most `MAX_RULES_FILE_BYTES`.
    pub fn load(path: &std::path::Path) -> Result<Self, RuleError> {
        let io = |message: String| RuleError::Io {
            path: path.display().to_string(),
            message,
        };
        let len = std::fs::metadata(path)
            .map_err(|e| io(e.to_string()))?
            .len();
        if len > MAX_RULES_FILE_BYTES {
            return Err(io(format!(
                "{len} bytes is over the limit of {MAX_RULES_FILE_BYTES}"
            )));
        }
        let text = std::fs::read_to_string(path).map_err(|e| io(e.to_string()))?;
        Self::parse(&text)
    }

    pub fn empty() -> Self {
        Self::parse("version: 1\nrules: []\n").unwrap_or(Self {
            rules: Vec::new(),
            hash_hex: String::new(),
        })
    }

    pub fn parse(text: &str) -> Result<Self, RuleError> {
        let file: RulesFile =
            serde_yaml_ng::from_str(text).map_err(|e| RuleError::Yaml(e.to_string()))?;
        if file.version != 1 {
            return Err(RuleError::Version(file.version));
        }
        let mut rules = Vec::with_capacity(file.rules.len());
        let mut ids = std::collections::HashSet::new();
        for spec in &file.rules {
            let line = line_of(text, &spec.id);
            let err = |message: String| RuleError::Rule {
                rule: spec.id.clone(),
                line,
                message,
            };
            if spec.id.is_empty() || !ids.insert(spec.id.clone()) {
                return Err(err("rule id must be non-empty and unique".into()));
            }
            let triggers = if spec.trigger.iter().any(|t| t == "ANY") {
                None
            } else {
                let mut ks = Vec::new();
                for t in &spec.trigger {
                    ks.push(ActionKind::parse(t).ok_or_else(|| {
                        err(format!(
                            "unknown action kind {t:?} in trigger (expected ANY or one of {})",
                            kinds_list()
                        ))
                    })?);
                }
                if ks.is_empty() {
                    return Err(err(
                        "trigger must list at least one action kind or ANY".into()
                    ));
                }
                Some(ks)
            };
            let check = Parser::new(&spec.check)
                .parse_all()
                .map_err(|m| err(format!("check: {m}")))?;
            rules.push(CompiledRule {
                id: Arc::from(spec.id.as_str()),
                triggers,
                check,
                enforce: spec.enforce,
            });
        }
        let canonical =
            serde_json_canonicalizer::to_vec(&file).map_err(|e| RuleError::Yaml(e.to_string()))?;
        Ok(Self {
            rules,
            hash_hex: hex::encode(Sha256::digest(canonical)),
        })
    }

    pub fn hash_hex(&self) -> &str {
        &self.hash_hex
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Every rule whose trigger matches and whose check holds, in file order.
    pub fn evaluate(&self, req: &ActionRequest, hits: &mut Vec<RuleHit>) {
        let kind = req.action.kind();
        for rule in &self.rules {
            if rule.fires(kind, req) {
                hits.push(rule.hit());
            }
        }
    }

    /// Which rules fire, as bits (no allocation, nothing shared: for evaluation on
    /// another thread); None for sets larger than `RuleMatches::CAPACITY`.
    pub fn matches(&self, req: &ActionRequest) -> Option<RuleMatches> {
        if self.rules.len() > RuleMatches::CAPACITY {
            return None;
        }
        let kind = req.action.kind();
        let mut m = RuleMatches::default();
        for (i, rule) in self.rules.iter().enumerate() {
            if rule.fires(kind, req) {
                m.0[i / 64] |= 1 << (i % 64);
            }
        }
        Some(m)
    }

    /// The hits `m` names, in file order: what `evaluate` gives for the same request.
    pub fn hits_of(&self, m: &RuleMatches, hits: &mut Vec<RuleHit>) {
        for (i, rule) in self.rules.iter().enumerate().take(RuleMatches::CAPACITY) {
            if m.0[i / 64] & (1 << (i % 64)) != 0 {
                hits.push(rule.hit());
            }
        }
    }
}

/// The rules of one set that fired for one request: bit i for rule i.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleMatches([u64; 4]);

impl RuleMatches {
    pub const CAPACITY: usize = 256;
}

impl CompiledRule {
    fn fires(&self, kind: ActionKind, req: &ActionRequest) -> bool {
        self.triggers.as_ref().is_none_or(|ks| ks.contains(&kind)) && self.check.eval(req)
    }

    fn hit(&self) -> RuleHit {
        RuleHit {
            rule_id: self.id.clone(),
            enforce: self.enforce,
        }
    }
}

fn kinds_list() -> String {
    ActionKind::ALL
        .iter()
        .map(|k| k.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// 1-based line of `id: <id>` in the source (0 when not found).
fn line_of(text: &str, id: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start().trim_start_matches("- ").trim();
            l.strip_prefix("id:")
                .is_some_and(|v| v.trim().trim_matches(['"', '\'']) == id)
        })
        .map_or(0, |i| i + 1)
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Num(f64),
    Str(String),
    Op(CmpOp),
    LParen,
    RParen,
}

impl fmt::Display for Tok {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "{s}"),
            Tok::Num(x) => write!(f, "{x}"),
            Tok::Str(s) => write!(f, "{s:?}"),
            Tok::Op(o) => write!(f, "{o:?}"),
            Tok::LParen => write!(f, "("),
            Tok::RParen => write!(f, ")"),
        }
    }
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let b = s.as_bytes();
    let mut i = 0;
    let mut out = Vec::new();
    while i < b.len() {
        let c = b[i] as char;
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == '(' {
            out.push(Tok::LParen);
            i += 1;
        } else if c == ')' {
            out.push(Tok::RParen);
            i += 1;
        } else if "<>=!".contains(c) {
            let two = s.get(i..i + 2).unwrap_or("");
            let (op, n) = match two {
                "<=" => (CmpOp::Le, 2),
                ">=" => (CmpOp::Ge, 2),
                "==" => (CmpOp::Eq, 2),
                "!=" => (CmpOp::Ne, 2),
                _ if c == '<' => (CmpOp::Lt, 1),
                _ if c == '>' => (CmpOp::Gt, 1),
                _ => return Err(format!("unexpected {c:?} at column {}", i + 1)),
            };
            out.push(Tok::Op(op));
            i += n;
        } else if c == '"' || c == '\'' {
            let end = s[i + 1..]
                .find(c)
                .ok_or_else(|| format!("unterminated string at column {}", i + 1))?;
            out.push(Tok::Str(s[i + 1..i + 1 + end].to_string()));
            i += end + 2;
        } else if c.is_ascii_digit() || c == '-' || c == '.' {
            let start = i;
            i += 1;
            while i < b.len() {
                let d = b[i] as char;
                let exp_sign = (d == '-' || d == '+') && matches!(b[i - 1], b'e' | b'E');
                if d.is_ascii_digit() || d == '.' || d == 'e' || d == 'E' || exp_sign {
                    i += 1;
                } else {
                    break;
                }
            }
            let lit = &s[start..i];
            let x: f64 = lit
                .parse()
                .map_err(|_| format!("bad number {lit:?} at column {}", start + 1))?;
            if !x.is_finite() {
                return Err(format!("number {lit:?} is not finite"));
            }
            out.push(Tok::Num(x));
        } else if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < b.len() && ((b[i] as char).is_ascii_alphanumeric() || b[i] == b'_') {
                i += 1;
            }
            out.push(Tok::Ident(s[start..i].to_string()));
        } else {
            return Err(format!("unexpected {c:?} at column {}", i + 1));
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    err: Option<String>,
}

impl Parser {
    fn new(src: &str) -> Self {
        match tokenize(src) {
            Ok(toks) => Self {
                toks,
                pos: 0,
                err: None,
            },
            Err(e) => Self {
                toks: Vec::new(),
                pos: 0,
                err: Some(e),
            },
        }
    }

    fn parse_all(mut self) -> Result<Expr, String> {
        if let Some(e) = self.err.take() {
            return Err(e);
        }
        if self.toks.is_empty() {
            return Err("empty expression".into());
        }
        let e = self.or()?;
        match self.toks.get(self.pos) {
            None => Ok(e),
            Some(t) => Err(format!("unexpected {t} after a complete expression")),
        }
    }

    fn peek_ident(&self, word: &str) -> bool {
        matches!(self.toks.get(self.pos), Some(Tok::Ident(w)) if w == word)
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut xs = vec![self.and()?];
        while self.peek_ident("or") {
            self.pos += 1;
            xs.push(self.and()?);
        }
        Ok(if xs.len() == 1 {
            xs.remove(0)
        } else {
            Expr::Or(xs)
        })
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut xs = vec![self.not()?];
        while self.peek_ident("and") {
            self.pos += 1;
            xs.push(self.not()?);
        }
        Ok(if xs.len() == 1 {
            xs.remove(0)
        } else {
            Expr::And(xs)
        })
    }

    fn not(&mut self) -> Result<Expr, String> {
        if self.peek_ident("not") {
            self.pos += 1;
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn atom(&mut self) -> Result<Expr, String> {
        match self.next() {
            Some(Tok::LParen) => {
                let e = self.or()?;
                match self.next() {
                    Some(Tok::RParen) => Ok(e),
                    _ => Err("missing ')'".into()),
                }
            }
            Some(Tok::Ident(w)) if w == "true" => Ok(Expr::Const(true)),
            Some(Tok::Ident(w)) if w == "false" => Ok(Expr::Const(false)),
            Some(Tok::Ident(w)) if w == "action" => {
                let eq = self.eq_op("action")?;
                match self.next() {
                    Some(Tok::Ident(k)) => ActionKind::parse(&k)
                        .map(|k| Expr::ActionIs(k, eq))
                        .ok_or_else(|| {
                            format!(
                                "type mismatch: action compared with {k:?}, expected one of {}",
                                kinds_list()
                            )
                        }),
                    Some(t) => Err(format!(
                        "type mismatch: action compared with {t}, expected an action kind"
                    )),
                    None => Err("expected an action kind after the operator".into()),
                }
            }
            Some(Tok::Ident(w)) if w == "symbol" => {
                let eq = self.eq_op("symbol")?;
                match self.next() {
                    Some(Tok::Str(s)) => Ok(Expr::SymbolIs(s, eq)),
                    Some(t) => Err(format!(
                        "type mismatch: symbol compared with {t}, expected a quoted string"
                    )),
                    None => Err("expected a string after the operator".into()),
                }
            }
            Some(Tok::Ident(w)) if w == "feed_healthy" => {
                if let Some(Tok::Op(op @ (CmpOp::Eq | CmpOp::Ne))) =
                    self.toks.get(self.pos).cloned()
                {
                    self.pos += 1;
                    let v = match self.next() {
                        Some(Tok::Ident(b)) if b == "true" => true,
                        Some(Tok::Ident(b)) if b == "false" => false,
                        other => {
                            return Err(format!(
                                "type mismatch: feed_healthy is boolean, compared with {}",
                                other.map_or("nothing".into(), |t| t.to_string())
                            ))
                        }
                    };
                    Ok(Expr::FeedHealthy(v == (op == CmpOp::Eq)))
                } else {
                    Ok(Expr::FeedHealthy(true))
                }
            }
            Some(t @ (Tok::Ident(_) | Tok::Num(_))) => {
                let lhs = self.operand(t)?;
                let op = match self.next() {
                    Some(Tok::Op(op)) => op,
                    _ => {
                        return Err("expected a comparison operator after a numeric operand".into())
                    }
                };
                let rhs = match self.next() {
                    Some(t) => self.operand(t)?,
                    None => return Err("expected an operand after the operator".into()),
                };
                Ok(Expr::Cmp(lhs, op, rhs))
            }
            Some(t) => Err(format!("unexpected {t}")),
            None => Err("unexpected end of expression".into()),
        }
    }

    fn eq_op(&mut self, field: &str) -> Result<bool, String> {
        match self.next() {
            Some(Tok::Op(CmpOp::Eq)) => Ok(true),
            Some(Tok::Op(CmpOp::Ne)) => Ok(false),
            _ => Err(format!("type mismatch: {field} supports only == and !=")),
        }
    }

    fn operand(&self, t: Tok) -> Result<Operand, String> {
        match t {
            Tok::Num(x) => Ok(Operand::Lit(x)),
            Tok::Ident(name) => NUM_FIELDS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, f)| Operand::Field(*f))
                .ok_or_else(|| {
                    if matches!(name.as_str(), "action" | "symbol" | "feed_healthy") {
                        format!("type mismatch: {name} is not numeric")
                    } else {
                        format!(
                            "unknown field {name:?} (numeric fields: {})",
                            NUM_FIELDS.map(|(n, _)| n).join(", ")
                        )
                    }
                }),
            Tok::Str(s) => Err(format!(
                "type mismatch: string {s:?} where a number was expected"
            )),
            other => Err(format!("unexpected {other}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::{Evidence, InputRange};

    fn req(action: RiskAction, var_usd: f64) -> ActionRequest {
        ActionRequest {
            action_id: "t/1".into(),
            symbol: "BTCUSDT".into(),
            action,
            data_time_ms: 1000,
            decided_at_ms: 1200,
            feed_healthy: true,
            evidence: Evidence {
                var_usd,
                limit_usd: 100.0,
                var_ci_low_usd: 40.0,
                var_ci_high_usd: 80.0,
                ess: 50.0,
                ..Default::default()
            },
            input: InputRange::default(),
        }
    }

    #[test]
    fn evaluates_typed_rules() {
        let rs = RuleSet::parse(
            r#"
version: 1
rules:
  - id: big
    trigger: [HALT]
    check: "var_to_limit > 1.5 and not (ess >= 100) and symbol == 'BTCUSDT'"
    enforce: block
  - id: age
    trigger: [ANY]
    check: "data_age_ms > 100 or action == RESUME"
    enforce: allow_with_flag
"#,
        )
        .unwrap();
        let mut hits = Vec::new();
        rs.evaluate(&req(RiskAction::Halt, 200.0), &mut hits);
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[0].enforce, Enforcement::Block);
        hits.clear();
        rs.evaluate(&req(RiskAction::Halt, 120.0), &mut hits);
        assert_eq!(
            hits.iter().map(|h| &*h.rule_id).collect::<Vec<_>>(),
            vec!["age"]
        );
        assert_eq!(rs.hash_hex().len(), 64);
    }

    fn numbered_rules(n: usize) -> RuleSet {
        let mut text = String::from("version: 1\nrules:\n");
        for i in 0..n {
            text.push_str(&format!(
                "  - id: r{i}\n    trigger: [ANY]\n    check: \"var_usd > {i}\"\n    enforce: allow_with_flag\n"
            ));
        }
        RuleSet::parse(&text).unwrap()
    }

    #[test]
    fn rule_bits_name_the_same_hits_as_evaluation() {
        let rs = numbered_rules(150);
        for var in [0.0, 1.5, 63.5, 64.5, 100.0, 149.5, 500.0] {
            let r = req(RiskAction::Halt, var);
            let mut expected = Vec::new();
            rs.evaluate(&r, &mut expected);
            let mut from_bits = Vec::new();
            rs.hits_of(&rs.matches(&r).unwrap(), &mut from_bits);
            assert_eq!(from_bits, expected, "var_usd {var}");
        }
        assert!(numbered_rules(RuleMatches::CAPACITY + 1)
            .matches(&req(RiskAction::Halt, 1.0))
            .is_none());
    }

    #[test]
    fn errors_name_rule_and_line() {
        let src = "version: 1\nrules:\n  - id: ok\n    trigger: [ANY]\n    check: \"ess > 1\"\n    enforce: block\n  - id: bad\n    trigger: [ANY]\n    check: \"no_such_field > 1\"\n    enforce: block\n";
        match RuleSet::parse(src) {
            Err(RuleError::Rule {
                rule,
                line,
                message,
            }) => {
                assert_eq!(rule, "bad");
                assert_eq!(line, 7);
                assert!(message.contains("unknown field"), "{message}");
            }
            other => panic!("{other:?}"),
        }
        for (check, want) in [
            ("action > 3", "type mismatch"),
            ("symbol == 3", "type mismatch"),
            ("var_usd > 'x'", "type mismatch"),
            ("action == FLY", "type mismatch"),
            ("var_usd >", "expected an operand"),
            ("(ess > 1", "missing ')'"),
            ("ess > 1 ess", "unexpected"),
        ] {
            let src = format!("version: 1\nrules:\n  - id: r\n    trigger: [ANY]\n    check: \"{check}\"\n    enforce: block\n");
            let err = RuleSet::parse(&src).unwrap_err().to_string();
            assert!(err.contains(want), "{check}: {err}");
        }
        let unknown_key = "version: 1\nrules:\n  - id: r\n    trigger: [ANY]\n    check: \"ess > 1\"\n    enforce: block\n    when: x\n";
        assert!(RuleSet::parse(unknown_key)
            .unwrap_err()
            .to_string()
            .contains("line"));
    }
}
