//! The replay server's `GET /api/v3/depth`: the order book as Binance would serve it at the
//! point the replay has reached.
//!
//! The book starts from a capture's REST snapshot line (or, for captures without one, from
//! an empty book) and has every captured diff update applied up to the last one streamed to
//! a client, so `lastUpdateId` and the levels match what a live snapshot would hold then.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;

use serde::Deserialize;

/// A level as captured: the decimal strings are served back unchanged.
#[derive(Debug, Clone)]
struct RawLevel {
    price: f64,
    price_text: String,
    qty_text: String,
    removes: bool,
}

#[derive(Debug, Clone)]
struct Diff {
    first: u64,
    last: u64,
    bids: Vec<RawLevel>,
    asks: Vec<RawLevel>,
}

#[derive(Debug, Clone, Default)]
struct History {
    snapshot: Option<(u64, Vec<RawLevel>, Vec<RawLevel>)>,
    diffs: Vec<Diff>,
}

#[derive(Deserialize)]
struct SnapshotLine<'a> {
    #[serde(rename = "lastUpdateId")]
    last_update_id: u64,
    #[serde(borrow)]
    bids: Vec<(&'a str, &'a str)>,
    #[serde(borrow)]
    asks: Vec<(&'a str, &'a str)>,
}

#[derive(Deserialize)]
struct DiffData<'a> {
    s: &'a str,
    #[serde(rename = "U")]
    first: u64,
    u: u64,
    #[serde(borrow)]
    b: Vec<(&'a str, &'a str)>,
    #[serde(borrow)]
    a: Vec<(&'a str, &'a str)>,
}

#[derive(Deserialize)]
struct DiffLine<'a> {
    #[serde(borrow)]
    data: DiffData<'a>,
}

#[derive(Deserialize)]
struct StreamedData<'a> {
    s: &'a str,
    u: u64,
}

#[derive(Deserialize)]
struct StreamedLine<'a> {
    #[serde(borrow)]
    data: StreamedData<'a>,
}

fn raw_levels(levels: &[(&str, &str)]) -> Vec<RawLevel> {
    levels
        .iter()
        .filter_map(|(p, q)| {
            let price = p
                .parse::<f64>()
                .ok()
                .filter(|x| *x > 0.0 && x.is_finite())?;
            let qty = q.parse::<f64>().ok().filter(|x| x.is_finite())?;
            Some(RawLevel {
                price,
                price_text: (*p).to_string(),
                qty_text: (*q).to_string(),
                removes: qty <= 0.0,
            })
        })
        .collect()
}

/// Depth history per symbol, and how far each symbol's diff stream has been replayed.
#[derive(Debug, Default)]
pub struct DepthIndex {
    books: HashMap<String, History>,
    streamed: Mutex<HashMap<String, u64>>,
}

impl DepthIndex {
    /// Take one capture line of a file holding `symbol` (REST snapshot lines carry none).
    pub fn add_line(&mut self, symbol: Option<&str>, json: &str, is_depth_stream: bool) {
        if is_depth_stream {
            if let Ok(line) = serde_json::from_str::<DiffLine<'_>>(json) {
                let d = line.data;
                self.books
                    .entry(d.s.to_ascii_uppercase())
                    .or_default()
                    .diffs
                    .push(Diff {
                        first: d.first,
                        last: d.u,
                        bids: raw_levels(&d.b),
                        asks: raw_levels(&d.a),
                    });
            }
        } else if let (Some(symbol), Ok(s)) =
            (symbol, serde_json::from_str::<SnapshotLine<'_>>(json))
        {
            self.books
                .entry(symbol.to_ascii_uppercase())
                .or_default()
                .snapshot = Some((s.last_update_id, raw_levels(&s.bids), raw_levels(&s.asks)));
        }
    }

    /// Order the diffs once all captures are read.
    pub fn finish(&mut self) {
        for h in self.books.values_mut() {
            h.diffs.sort_by_key(|d| d.last);
            h.diffs.dedup_by_key(|d| d.last);
        }
    }

    /// A diff-depth frame (combined envelope) was sent to a client: snapshots from now on
    /// include it.
    pub fn note_streamed(&self, json: &str) {
        if let Ok(line) = serde_json::from_str::<StreamedLine<'_>>(json) {
            let mut streamed = self.streamed.lock().unwrap_or_else(|e| e.into_inner());
            // Every client replays from the start: the server's "now" is the furthest any
            // client has got, so a new client never pulls snapshots back in time.
            let u = line.data.u;
            streamed
                .entry(line.data.s.to_ascii_uppercase())
                .and_modify(|v| *v = (*v).max(u))
                .or_insert(u);
        }
    }

    /// `{"lastUpdateId":N,"bids":[[p,q]..],"asks":[[p,q]..]}` with `limit` levels per side,
    /// or `None` for a symbol without depth data.
    pub fn snapshot_json(&self, symbol: &str, limit: usize) -> Option<String> {
        let history = self.books.get(&symbol.to_ascii_uppercase())?;
        let upto = self
            .streamed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&symbol.to_ascii_uppercase())
            .copied()
            .unwrap_or(0);
        let (mut last, mut bids, mut asks) = match &history.snapshot {
            Some((id, b, a)) => (*id, side(b), side(a)),
            None => (0, BTreeMap::new(), BTreeMap::new()),
        };
        let start = last;
        for d in history
            .diffs
            .iter()
            .filter(|d| d.last > start && d.last <= upto)
        {
            if history.snapshot.is_some() && d.first > last + 1 {
                break; // the capture itself has a hole: serve what is known to be whole
            }
            apply(&mut bids, &d.bids);
            apply(&mut asks, &d.asks);
            last = d.last;
        }
        let mut body = format!("{{\"lastUpdateId\":{last},\"bids\":[");
        write_levels(&mut body, bids.values().rev().take(limit));
        body.push_str("],\"asks\":[");
        write_levels(&mut body, asks.values().take(limit));
        body.push_str("]}");
        Some(body)
    }
}

type Side = BTreeMap<u64, (String, String)>;

fn side(levels: &[RawLevel]) -> Side {
    let mut s = Side::new();
    apply(&mut s, levels);
    s
}

fn apply(side: &mut Side, levels: &[RawLevel]) {
    for l in levels {
        if l.removes {
            side.remove(&l.price.to_bits());
        } else {
            side.insert(
                l.price.to_bits(),
                (l.price_text.clone(), l.qty_text.clone()),
            );
        }
    }
}

fn write_levels<'a>(out: &mut String, levels: impl Iterator<Item = &'a (String, String)>) {
    for (i, (p, q)) in levels.enumerate() {
        if i > 0 {
            out.push(',');
        }
        let _ = write!(out, "[\"{p}\",\"{q}\"]");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::market::depth::{BookSync, DepthSnapshot, OrderBook};

    const SNAP: &str = r#"{"lastUpdateId":10,"bids":[["100.00","1.0"],["99.00","2.0"]],"asks":[["101.00","1.0"],["102.00","2.0"]]}"#;

    fn diff(first: u64, last: u64, bids: &str, asks: &str) -> String {
        format!(
            r#"{{"stream":"btcusdt@depth@100ms","data":{{"e":"depthUpdate","E":1,"s":"BTCUSDT","U":{first},"u":{last},"b":{bids},"a":{asks}}}}}"#
        )
    }

    #[test]
    fn snapshots_follow_the_replayed_diffs_and_sync_a_client_book() {
        let mut index = DepthIndex::default();
        index.add_line(None, &diff(5, 9, "[]", "[]"), true);
        index.add_line(Some("BTCUSDT"), SNAP, false);
        let d1 = diff(11, 12, r#"[["100.00","0.0"]]"#, "[]");
        let d2 = diff(13, 14, "[]", r#"[["101.50","3.0"]]"#);
        index.add_line(None, &d1, true);
        index.add_line(None, &d2, true);
        index.finish();
        // Nothing after the snapshot streamed yet: the captured snapshot.
        let s: DepthSnapshot =
            serde_json::from_str(&index.snapshot_json("btcusdt", 100).unwrap()).unwrap();
        assert_eq!((s.last_update_id, s.bids.len()), (10, 2));
        index.note_streamed(&d1);
        let s: DepthSnapshot =
            serde_json::from_str(&index.snapshot_json("BTCUSDT", 1).unwrap()).unwrap();
        assert_eq!(s.last_update_id, 12);
        assert_eq!(
            (s.bids.len(), s.bids[0].price),
            (1, 99.0),
            "limit and removal"
        );
        // A client that saw d1 and d2 syncs from it.
        let mut book = OrderBook::new(100, 100);
        let parse = |line: &str| {
            let env: serde_json::Value = serde_json::from_str(line).unwrap();
            serde_json::from_value(env["data"].clone()).unwrap()
        };
        book.on_update(parse(&d1));
        book.on_update(parse(&d2));
        assert_eq!(book.load_snapshot(&s), None);
        assert_eq!(book.sync(), BookSync::InSync);
        assert_eq!(book.best_ask().unwrap().price, 101.0);
        assert!(index.snapshot_json("ETHUSDT", 5).is_none());
    }
}
