//! The live subscription requests of Binance's WebSocket streams, as the replay server
//! answers them: `SUBSCRIBE`, `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, and `GET_PROPERTY` /
//! `SET_PROPERTY` of `combined`. A request is `{"method": M, "params": [...], "id": N}`; the
//! answer is `{"result": R, "id": N}` or `{"error": {"code": C, "msg": M}, "id": N}` with
//! Binance's codes (0 unknown property, 1 bad value type, 2 invalid request, 3 invalid JSON).
//! A connection listens to at most 1024 streams, and sends at most 5 messages a second,
//! requests and pings (pongs answer the server's own pings and are not counted); the server
//! closes it beyond that.

use serde_json::{json, Value};

use super::frames::Wanted;

/// Streams one connection may listen to.
pub const MAX_STREAMS: usize = 1024;
/// Incoming messages a connection may send per second (requests and pings).
pub const MAX_MESSAGES_PER_S: u32 = 5;

/// The answer to one request, and whether it changed how frames are wrapped.
pub fn answer(text: &str, wanted: &Wanted, combined: &mut bool) -> String {
    let error = |code: u8, msg: String, id: &Value| {
        json!({"error": {"code": code, "msg": msg}, "id": id}).to_string()
    };
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return error(3, format!("Invalid JSON: {e}"), &Value::Null),
    };
    let Some(obj) = v.as_object() else {
        return error(
            2,
            "Invalid request: expected an object".into(),
            &Value::Null,
        );
    };
    let id = obj.get("id").cloned().unwrap_or(Value::Null);
    if !(id.is_null() || id.is_u64()) {
        return error(
            2,
            "Invalid request: request ID must be an unsigned integer".into(),
            &Value::Null,
        );
    }
    if let Some(name) = obj
        .keys()
        .find(|k| !matches!(k.as_str(), "method" | "params" | "id"))
    {
        return error(0, format!("Unknown property {name:?}"), &id);
    }
    let Some(method) = obj.get("method") else {
        return error(2, "Invalid request: missing field `method`".into(), &id);
    };
    let params = match obj.get("params") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(a)) => a.clone(),
        Some(_) => return error(2, "Invalid request: params must be an array".into(), &id),
    };
    let names = || -> Result<Vec<String>, String> {
        params
            .iter()
            .map(|p| match p.as_str() {
                Some(s) if valid_stream(s) => Ok(s.to_string()),
                Some(s) => Err(format!("Invalid request: invalid stream name {s:?}")),
                None => Err("Invalid request: property name must be a string".into()),
            })
            .collect()
    };
    match method.as_str() {
        Some("SUBSCRIBE") => {
            let streams = match names() {
                Ok(s) => s,
                Err(msg) => return error(2, msg, &id),
            };
            let added = wanted.update(|set| {
                let new = streams.iter().filter(|s| !set.contains(*s)).count();
                if set.len() + new > MAX_STREAMS {
                    return false;
                }
                set.extend(streams);
                true
            });
            if added != Some(true) {
                return error(
                    2,
                    format!(
                        "Invalid request: a connection may listen to at most {MAX_STREAMS} streams"
                    ),
                    &id,
                );
            }
            json!({"result": null, "id": id}).to_string()
        }
        Some("UNSUBSCRIBE") => match names() {
            Ok(streams) => {
                wanted.update(|set| {
                    for s in &streams {
                        set.remove(s);
                    }
                });
                json!({"result": null, "id": id}).to_string()
            }
            Err(msg) => error(2, msg, &id),
        },
        Some("LIST_SUBSCRIPTIONS") => {
            let mut list: Vec<String> = wanted.snapshot().into_iter().collect();
            list.sort();
            json!({"result": list, "id": id}).to_string()
        }
        Some("GET_PROPERTY") => match params.first().and_then(Value::as_str) {
            Some("combined") => json!({"result": *combined, "id": id}).to_string(),
            _ => error(0, "Unknown property".into(), &id),
        },
        Some("SET_PROPERTY") => match (params.first().and_then(Value::as_str), params.get(1)) {
            (Some("combined"), Some(Value::Bool(b))) => {
                *combined = *b;
                json!({"result": null, "id": id}).to_string()
            }
            (Some("combined"), _) => error(1, "Invalid value type: expected Boolean".into(), &id),
            _ => error(0, "Unknown property".into(), &id),
        },
        Some(other) => error(
            2,
            format!(
                "Invalid request: unknown variant `{other}`, expected one of `SUBSCRIBE`, \
                 `UNSUBSCRIBE`, `LIST_SUBSCRIPTIONS`, `SET_PROPERTY`, `GET_PROPERTY`"
            ),
            &id,
        ),
        None => error(2, "Invalid request: method must be a string".into(), &id),
    }
}

/// `<symbol>@<kind>`: lower-case symbol, a kind of letters, digits, `@` and `_`.
fn valid_stream(s: &str) -> bool {
    let Some((symbol, kind)) = s.split_once('@') else {
        return false;
    };
    s.len() <= 64
        && !symbol.is_empty()
        && symbol
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && !kind.is_empty()
        && kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'@' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn wanted(streams: &[&str]) -> Wanted {
        Wanted::new(
            streams
                .iter()
                .map(|s| s.to_string())
                .collect::<HashSet<_>>(),
        )
    }

    fn value(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn subscribe_unsubscribe_and_list_change_and_show_the_set() {
        let w = wanted(&["btcusdt@trade"]);
        let mut combined = true;
        let r = answer(
            r#"{"method":"SUBSCRIBE","params":["ethusdt@trade","ethusdt@bookTicker"],"id":1}"#,
            &w,
            &mut combined,
        );
        assert_eq!(value(&r), json!({"result": null, "id": 1}));
        assert_eq!(w.len(), 3);
        let r = answer(
            r#"{"method":"UNSUBSCRIBE","params":["btcusdt@trade"],"id":2}"#,
            &w,
            &mut combined,
        );
        assert_eq!(value(&r), json!({"result": null, "id": 2}));
        let r = answer(
            r#"{"method":"LIST_SUBSCRIPTIONS","id":3}"#,
            &w,
            &mut combined,
        );
        assert_eq!(
            value(&r),
            json!({"result": ["ethusdt@bookTicker", "ethusdt@trade"], "id": 3})
        );
        let r = answer(
            r#"{"method":"SET_PROPERTY","params":["combined",false],"id":4}"#,
            &w,
            &mut combined,
        );
        assert_eq!(value(&r)["result"], Value::Null);
        assert!(!combined);
    }

    #[test]
    fn what_binance_rejects_is_rejected_with_its_codes() {
        let w = wanted(&[]);
        let mut c = true;
        let code = |r: String| value(&r)["error"]["code"].as_u64().unwrap();
        assert_eq!(code(answer("{not json", &w, &mut c)), 3);
        assert_eq!(
            code(answer(r#"{"method":"PUBLISH","id":1}"#, &w, &mut c)),
            2
        );
        assert_eq!(
            code(answer(
                r#"{"method":"SUBSCRIBE","params":[1],"id":1}"#,
                &w,
                &mut c
            )),
            2
        );
        assert_eq!(
            code(answer(
                r#"{"method":"SUBSCRIBE","params":["x"],"id":-1}"#,
                &w,
                &mut c
            )),
            2
        );
        assert_eq!(
            code(answer(
                r#"{"method":"SUBSCRIBE","params":["BTCUSDT@trade"],"id":1}"#,
                &w,
                &mut c
            )),
            2
        );
        assert_eq!(
            code(answer(r#"{"params":["btcusdt@trade"],"id":1}"#, &w, &mut c)),
            2
        );
        assert_eq!(
            code(answer(
                r#"{"method":"GET_PROPERTY","params":["x"],"id":1}"#,
                &w,
                &mut c
            )),
            0
        );
        assert_eq!(
            code(answer(
                r#"{"method":"SET_PROPERTY","params":["combined","yes"],"id":1}"#,
                &w,
                &mut c
            )),
            1
        );
        assert!(w.is_empty(), "nothing subscribed by a rejected request");
        // at most 1024 streams
        let many: Vec<String> = (0..1025).map(|i| format!("s{i}usdt@trade")).collect();
        let r = answer(
            &json!({"method": "SUBSCRIBE", "params": many, "id": 9}).to_string(),
            &w,
            &mut c,
        );
        assert_eq!(code(r), 2);
        assert!(w.is_empty());
    }
}
