//! How a connection subscribes to its streams as Binance expects: a few in the URL, the
//! rest by `SUBSCRIBE` messages in batches, each answered `{"result":null,"id":N}` (or
//! `{"error":{...},"id":N}`). Pure: the ingest host sends the messages, paced, and hands
//! every text frame to `reply` before the feed step sees it.

/// The URL part and the `SUBSCRIBE` batches of a connection's streams.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionPlan {
    pub url_streams: Vec<String>,
    pub batches: Vec<Vec<String>>,
}

/// The first `url_max` streams in the URL, the rest in batches of `batch`.
pub fn plan(streams: &[String], url_max: usize, batch: usize) -> SubscriptionPlan {
    let split = streams.len().min(url_max.max(1));
    SubscriptionPlan {
        url_streams: streams[..split].to_vec(),
        batches: streams[split..]
            .chunks(batch.max(1))
            .map(<[String]>::to_vec)
            .collect(),
    }
}

/// The `SUBSCRIBE` message of one batch.
pub fn subscribe_request(id: u64, streams: &[String]) -> String {
    serde_json::json!({"method": "SUBSCRIBE", "params": streams, "id": id}).to_string()
}

/// A text frame that answers a request rather than carrying market data.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    Confirmed {
        id: Option<u64>,
    },
    Rejected {
        id: Option<u64>,
        code: i64,
        msg: String,
    },
}

/// The answer in `text`, or `None` for a market-data frame (which never starts with these
/// members: combined frames start with `stream`, raw ones with `e` or `u`).
pub fn reply(text: &str) -> Option<Reply> {
    let head = text.trim_start();
    if !(head.starts_with("{\"result\"")
        || head.starts_with("{\"error\"")
        || head.starts_with("{\"id\""))
    {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    let id = v.get("id").and_then(serde_json::Value::as_u64);
    match v.get("error") {
        Some(e) if !e.is_null() => Some(Reply::Rejected {
            id,
            code: e
                .get("code")
                .and_then(serde_json::Value::as_i64)
                .unwrap_or(-1),
            msg: e
                .get("msg")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect(),
        }),
        _ => v.get("result").map(|_| Reply::Confirmed { id }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("s{i}usdt@trade")).collect()
    }

    #[test]
    fn a_few_streams_in_the_url_the_rest_in_batches() {
        let p = plan(&names(5), 32, 200);
        assert_eq!((p.url_streams.len(), p.batches.len()), (5, 0));
        let p = plan(&names(800), 32, 200);
        assert_eq!(p.url_streams.len(), 32);
        assert_eq!(
            p.batches.iter().map(Vec::len).collect::<Vec<_>>(),
            [200, 200, 200, 168]
        );
        let r: serde_json::Value =
            serde_json::from_str(&subscribe_request(7, &p.batches[0])).unwrap();
        assert_eq!(r["method"], "SUBSCRIBE");
        assert_eq!(r["id"], 7);
        assert_eq!(r["params"].as_array().unwrap().len(), 200);
    }

    #[test]
    fn answers_are_told_from_market_data() {
        assert_eq!(
            reply(r#"{"result":null,"id":3}"#),
            Some(Reply::Confirmed { id: Some(3) })
        );
        assert!(matches!(
            reply(r#"{"error":{"code":2,"msg":"Invalid request"},"id":4}"#),
            Some(Reply::Rejected {
                code: 2,
                id: Some(4),
                ..
            })
        ));
        assert_eq!(
            reply(r#"{"stream":"btcusdt@trade","data":{"e":"trade"}}"#),
            None
        );
        assert_eq!(reply(r#"{"e":"trade","E":1}"#), None);
    }
}
