//! Field-by-field comparison of a re-derived record with the signed one, and why they
//! differ.

use serde::Serialize;
use serde_json::Value;

use crate::audit::wire::{self, Payload};

/// Why a re-derived record differs from the signed one (stable codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Cause {
    /// The configuration's hash differs from the one the record signs.
    ConfigChanged,
    /// The rule set's hash differs from the one the record signs.
    RulesChanged,
    /// The decision covers other bars or trades than the signed one.
    InputRangeChanged,
    /// The recording does not hold what the engine consumed (an input missing, altered or
    /// added: a fetch it cannot answer, an answer nobody asked for, an input digest that
    /// differs from the one a checkpoint signs).
    RecordingMismatch,
    /// Same configuration, rules and inputs, but another build of the engine signed it.
    BuildChanged,
    /// Same configuration, rules, inputs and build, yet a different figure.
    Unexplained,
    /// The replay derived a record the trail does not hold.
    NotInTrail,
    /// The trail holds a record the replay did not derive.
    NotRederived,
}

impl Cause {
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::ConfigChanged => "CONFIG_CHANGED",
            Cause::RulesChanged => "RULES_CHANGED",
            Cause::InputRangeChanged => "INPUT_RANGE_CHANGED",
            Cause::RecordingMismatch => "RECORDING_MISMATCH",
            Cause::BuildChanged => "BUILD_CHANGED",
            Cause::Unexplained => "UNEXPLAINED",
            Cause::NotInTrail => "NOT_IN_TRAIL",
            Cause::NotRederived => "NOT_REDERIVED",
        }
    }
}

/// One record where the replay and the trail disagree.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Divergence {
    pub chain: String,
    pub seq: u64,
    /// `event` or `checkpoint`.
    pub record: &'static str,
    /// Dotted path of the first field that differs (decision content before provenance).
    pub field: String,
    pub signed: Value,
    pub recomputed: Value,
    pub cause: Cause,
    /// What else is known, e.g. the recording problem seen before it.
    pub detail: String,
}

/// How a re-derived event compares with the signed one.
pub enum Outcome {
    Match,
    /// Equal but for `provenance.build`.
    MatchOtherBuild,
    Differs {
        field: String,
        signed: Value,
        recomputed: Value,
        cause: Cause,
    },
}

fn payload_value(line: &[u8]) -> Result<(Payload, Value), String> {
    let parsed = wire::parse_record(line).map_err(|e| format!("{e:?}"))?;
    let value = serde_json::to_value(&parsed.payload).map_err(|e| e.to_string())?;
    Ok((parsed.payload, value))
}

/// The first path at which `a` and `b` differ, skipping paths `skip` says to.
fn first_difference(
    a: &Value,
    b: &Value,
    path: &str,
    skip: &dyn Fn(&str) -> bool,
) -> Option<String> {
    if skip(path) {
        return None;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|k| {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                first_difference(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    &p,
                    skip,
                )
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (u, v))| first_difference(u, v, &format!("{path}[{i}]"), skip)),
        _ => (a != b).then(|| path.to_string()),
    }
}

fn at<'a>(v: &'a Value, path: &str) -> &'a Value {
    let mut cur = v;
    for part in path.split('.') {
        let (name, index) = match part.split_once('[') {
            Some((n, i)) => (n, i.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        cur = cur.get(name).unwrap_or(&Value::Null);
        if let Some(i) = index {
            cur = cur.get(i).unwrap_or(&Value::Null);
        }
    }
    cur
}

/// Compare the signed event `signed` with the re-derived `recomputed`; `recording_problem`
/// says whether the recording was found wanting before this event.
pub fn events(
    signed: &[u8],
    recomputed: &[u8],
    recording_problem: bool,
) -> Result<Outcome, String> {
    // Canonical bytes: equal payloads are equal byte for byte.
    let bytes = |line| wire::parse_envelope(line).map(|e| e.payload_bytes);
    if let (Ok(a), Ok(b)) = (bytes(signed), bytes(recomputed)) {
        if a == b {
            return Ok(Outcome::Match);
        }
    }
    let (_, s) = payload_value(signed)?;
    let (_, r) = payload_value(recomputed)?;
    let content = first_difference(&s, &r, "", &|p| p == "provenance");
    let provenance = first_difference(&s, &r, "", &|_| false);
    let Some(field) = content.or(provenance) else {
        return Ok(Outcome::Match);
    };
    let differs = |p: &str| at(&s, p) != at(&r, p);
    if field == "provenance.build"
        && !differs("provenance.config_sha256")
        && !differs("provenance.rules_sha256")
    {
        return Ok(Outcome::MatchOtherBuild);
    }
    let cause = if differs("provenance.config_sha256") {
        Cause::ConfigChanged
    } else if differs("provenance.rules_sha256") {
        Cause::RulesChanged
    } else if differs("input") {
        Cause::InputRangeChanged
    } else if recording_problem {
        Cause::RecordingMismatch
    } else if differs("provenance.build") {
        Cause::BuildChanged
    } else {
        Cause::Unexplained
    };
    Ok(Outcome::Differs {
        signed: at(&s, &field).clone(),
        recomputed: at(&r, &field).clone(),
        field,
        cause,
    })
}

/// Compare the signed checkpoint with the re-derived one: what they cover and the input
/// digest; the Merkle root and links depend on the signing key and are `verify`'s.
pub fn checkpoints(
    signed: &[u8],
    recomputed: &[u8],
) -> Result<Option<(String, Value, Value)>, String> {
    let s = wire::parse_checkpoint(signed)
        .map_err(|e| format!("{e:?}"))?
        .checkpoint;
    let r = wire::parse_checkpoint(recomputed)
        .map_err(|e| format!("{e:?}"))?
        .checkpoint;
    let pick = |c: &wire::Checkpoint| {
        serde_json::json!({
            "first_seq": c.first_seq,
            "last_seq": c.last_seq,
            "tree_size": c.tree_size,
            "ts_ms": c.ts_ms,
            "inputs": c.inputs,
            "run_start_sha256": c.run_start_sha256,
        })
    };
    let (s, r) = (pick(&s), pick(&r));
    Ok(first_difference(&s, &r, "", &|_| false).map(|f| {
        let (a, b) = (at(&s, &f).clone(), at(&r, &f).clone());
        (f, a, b)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_first_difference_is_found_in_key_order_and_provenance_can_be_skipped() {
        let a = json!({"a": 1, "b": {"c": [1, 2]}, "provenance": {"build": "x"}});
        let b = json!({"a": 1, "b": {"c": [1, 3]}, "provenance": {"build": "y"}});
        assert_eq!(
            first_difference(&a, &b, "", &|_| false).as_deref(),
            Some("b.c[1]")
        );
        assert_eq!(at(&b, "b.c[1]"), &json!(3));
        let c = json!({"a": 1, "b": {"c": [1, 2]}, "provenance": {"build": "y"}});
        assert_eq!(first_difference(&a, &c, "", &|p| p == "provenance"), None);
        assert_eq!(
            first_difference(&a, &c, "", &|_| false).as_deref(),
            Some("provenance.build")
        );
    }
}
