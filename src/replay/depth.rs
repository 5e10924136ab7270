//! The replay server's `GET /api/v3/depth`: the order book as Binance would serve it at the
//! point the replay has reached.
//!
//! Each symbol's book starts from its capture's REST snapshot line (or, for captures without
//! one, from an empty book) with the history captures' diffs applied, and follows the
//! stream: the diffs streamed to clients (or left out of the stream by fault injection) are
//! applied in the order they were streamed before a snapshot is answered
//! (`replay::depth_notes`), so `lastUpdateId` and the levels match what a live snapshot
//! would hold then. Only the books are kept, never the capture's diffs: memory is bounded
//! by the books' sizes, not the capture's length.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Mutex;

use serde::Deserialize;

use super::decimal_text::DecimalText;
use crate::market::binance::compact_parts;
use crate::market::compact::{self, DepthText};

/// A captured level, read once: its price's key and both texts (served back unchanged), or
/// the removal of a price.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Level {
    Set(u64, DecimalText, DecimalText),
    Remove(u64),
}

impl Level {
    /// A zero quantity removes the price; a level that is unreadable, or whose text is not a
    /// plain decimal that could be served back unchanged (Binance sends plain 8-decimal
    /// strings), is `None`, skipped.
    fn read(price: &str, qty: &str) -> Option<Self> {
        let (price_text, qty_text) = (DecimalText::parse(price), DecimalText::parse(qty));
        // Plain decimals (what Binance sends) have their values without a float parse.
        let value = |text: Option<DecimalText>, raw: &str| {
            text.and_then(DecimalText::value)
                .or_else(|| raw.parse::<f64>().ok())
        };
        let p = value(price_text, price).filter(|x| *x > 0.0 && x.is_finite())?;
        let q = value(qty_text, qty).filter(|x| x.is_finite())?;
        if q <= 0.0 {
            return Some(Self::Remove(p.to_bits()));
        }
        Some(Self::Set(p.to_bits(), price_text?, qty_text?))
    }
}

/// A diff's levels, as captured text or already read.
trait Levels {
    fn each(&self, f: impl FnMut(Level));

    fn read_all(&self) -> Vec<Level> {
        let mut all = Vec::new();
        self.each(|l| all.push(l));
        all
    }
}

impl Levels for [(&str, &str)] {
    fn each(&self, mut f: impl FnMut(Level)) {
        self.iter()
            .filter_map(|(p, q)| Level::read(p, q))
            .for_each(&mut f);
    }
}

impl Levels for [Level] {
    fn each(&self, f: impl FnMut(Level)) {
        self.iter().copied().for_each(f);
    }
}

/// Diffs that arrived before the one they follow (a diff left out of the stream is noted
/// when the source reads it, ahead of what was sent) are held until it comes; more than
/// this many waiting means the capture itself has a hole.
const MAX_AHEAD: usize = 1024;

/// One symbol's book at the point the replay has reached.
#[derive(Debug, Default)]
struct Book {
    last: u64,
    /// Started from a REST snapshot line: a diff that does not follow on waits for the one
    /// before it; if that never comes (a hole in the capture), nothing more is applied and
    /// the book served stays whole, if old.
    based: bool,
    holed: bool,
    ahead: BTreeMap<u64, PendingDiff>,
    bids: Side,
    asks: Side,
}

impl Book {
    fn apply_diff<L: Levels + ?Sized>(&mut self, first: u64, last: u64, bids: &L, asks: &L) {
        if self.holed || last <= self.last {
            return;
        }
        if self.based && first > self.last + 1 {
            if self.ahead.len() >= MAX_AHEAD {
                self.holed = true;
                self.ahead.clear();
            } else {
                self.ahead
                    .insert(first, (first, last, bids.read_all(), asks.read_all()));
            }
            return;
        }
        apply(&mut self.bids, bids);
        apply(&mut self.asks, asks);
        self.last = last;
        // The diffs that were waiting for this one.
        while let Some(entry) = self.ahead.first_entry() {
            if *entry.key() > self.last + 1 {
                break;
            }
            let (_, l, b, a) = entry.remove();
            if l > self.last {
                apply(&mut self.bids, b.as_slice());
                apply(&mut self.asks, a.as_slice());
                self.last = l;
            }
        }
    }
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
struct DiffLine<'a> {
    #[serde(borrow)]
    data: DepthText<'a>,
}

/// The diff of a captured combined-stream line: read in one pass when written as Binance
/// writes it, by serde otherwise (the same result: `market::compact`'s tests).
fn diff_of(json: &str) -> Option<DepthText<'_>> {
    if let Some(d) = compact_parts(json).and_then(|(_, data)| compact::depth_text(data)) {
        return Some(d);
    }
    serde_json::from_str::<DiffLine<'_>>(json)
        .ok()
        .map(|line| line.data)
}

/// The instrument whose diff-depth stream carries this captured line (`btcusdt` of
/// `{"stream":"btcusdt@depth@100ms",...`), or `None` for any other line. The streamed
/// diffs that reach the books are exactly the lines this names, whoever notes them.
pub(super) fn streamed_diff_instrument(json: &str) -> Option<&str> {
    let (instrument, kind) = crate::market::capture::stream_of(json)?.split_once('@')?;
    kind.starts_with("depth").then_some(instrument)
}

/// A history diff read but not yet applied: a capture file may hold its REST snapshot
/// after diffs that bridge it, so a file's diffs are applied in update-ID order once the
/// whole file is read (`finish_file`).
type PendingDiff = (u64, u64, Vec<Level>, Vec<Level>);

/// The book of every symbol with depth data.
#[derive(Debug, Default)]
pub struct DepthIndex {
    books: Mutex<crate::fast_hash::FastMap<String, Book>>,
    pending: HashMap<String, Vec<PendingDiff>>,
}

impl DepthIndex {
    fn with_book<T>(&self, symbol: &str, f: impl FnOnce(&mut Book) -> T) -> T {
        let mut books = self.books.lock().unwrap_or_else(|e| e.into_inner());
        // Symbols arrive upper-case: look up without allocating first.
        if let Some(book) = books.get_mut(symbol) {
            return f(book);
        }
        f(books.entry(symbol.to_ascii_uppercase()).or_default())
    }

    /// Take one capture line of a file holding `symbol` (REST snapshot lines carry none);
    /// `true` if it was read. Diffs of the history (`before_stream`) are applied now; those
    /// of the streamed captures later, in the order streamed (`note_streamed`, through
    /// `replay::depth_notes`): here they only name the book.
    pub fn add_line(
        &mut self,
        symbol: Option<&str>,
        json: &str,
        is_depth_stream: bool,
        before_stream: bool,
    ) -> bool {
        if is_depth_stream {
            let Some(d) = diff_of(json) else {
                return false;
            };
            {
                self.with_book(d.symbol, |_| ());
                if before_stream {
                    self.pending
                        .entry(d.symbol.to_ascii_uppercase())
                        .or_default()
                        .push((
                            d.first_update_id,
                            d.final_update_id,
                            d.bids.read_all(),
                            d.asks.read_all(),
                        ));
                }
            }
            true
        } else if let (Some(symbol), Ok(s)) =
            (symbol, serde_json::from_str::<SnapshotLine<'_>>(json))
        {
            self.with_book(symbol, |book| {
                // A snapshot supersedes whatever came before it.
                if s.last_update_id >= book.last || !book.based {
                    *book = Book {
                        last: s.last_update_id,
                        based: true,
                        holed: false,
                        ahead: BTreeMap::new(),
                        bids: side(s.bids.as_slice()),
                        asks: side(s.asks.as_slice()),
                    };
                }
            });
            true
        } else {
            false
        }
    }

    /// Take the books of `other`, an index of other instruments; `false` (and nothing
    /// taken) when the two hold a book of the same symbol.
    pub fn absorb(&mut self, other: DepthIndex) -> bool {
        let theirs = other.books.into_inner().unwrap_or_else(|e| e.into_inner());
        let ours = self.books.get_mut().unwrap_or_else(|e| e.into_inner());
        if theirs.keys().any(|symbol| ours.contains_key(symbol)) {
            return false;
        }
        ours.extend(theirs);
        true
    }

    /// The capture file read last is complete: apply its history diffs in update-ID order.
    pub fn finish_file(&mut self) {
        for (symbol, mut diffs) in std::mem::take(&mut self.pending) {
            diffs.sort_by_key(|d| d.1);
            diffs.dedup_by_key(|d| d.1);
            self.with_book(&symbol, |book| {
                for (first, last, bids, asks) in &diffs {
                    book.apply_diff(*first, *last, bids.as_slice(), asks.as_slice());
                }
            });
        }
    }

    /// Apply a streamed diff-depth frame (combined envelope): `replay::depth_notes` calls
    /// this in the order the diffs were streamed, reading them again or as they pass. A
    /// diff the book has already passed changes nothing.
    ///
    /// A diff moves the book its stream names (`streamed_diff_instrument`) and no other: a
    /// line whose stream and data name different symbols is passed over.
    pub fn note_streamed(&self, json: &str) {
        let Some(instrument) = streamed_diff_instrument(json) else {
            return;
        };
        if let Some(d) = diff_of(json).filter(|d| d.symbol.eq_ignore_ascii_case(instrument)) {
            self.with_book(d.symbol, |book| {
                book.apply_diff(
                    d.first_update_id,
                    d.final_update_id,
                    d.bids.as_slice(),
                    d.asks.as_slice(),
                )
            });
        }
    }

    /// `{"lastUpdateId":N,"bids":[[p,q]..],"asks":[[p,q]..]}` with `limit` levels per side,
    /// or `None` for a symbol without depth data.
    pub fn snapshot_json(&self, symbol: &str, limit: usize) -> Option<String> {
        let books = self.books.lock().unwrap_or_else(|e| e.into_inner());
        let book = books.get(&symbol.to_ascii_uppercase())?;
        let mut body = format!("{{\"lastUpdateId\":{},\"bids\":[", book.last);
        write_levels(&mut body, best_first(&book.bids, limit, true));
        body.push_str("],\"asks\":[");
        write_levels(&mut body, best_first(&book.asks, limit, false));
        body.push_str("]}");
        Some(body)
    }
}

/// Levels by the bits of their price, their captured text in 8 bytes each. Unordered:
/// every streamed diff updates the book, but only a snapshot request (rare) needs it in
/// price order.
type Side = crate::fast_hash::FastMap<u64, (DecimalText, DecimalText)>;

/// The `limit` best levels: highest prices first for bids, lowest first for asks. The keys
/// are bit patterns of positive finite prices, which order as the prices do.
fn best_first(
    side: &Side,
    limit: usize,
    highest: bool,
) -> impl Iterator<Item = &(DecimalText, DecimalText)> {
    let mut keys: Vec<u64> = side.keys().copied().collect();
    if highest {
        keys.sort_unstable_by(|a, b| b.cmp(a));
    } else {
        keys.sort_unstable();
    }
    keys.truncate(limit);
    keys.into_iter().filter_map(move |k| side.get(&k))
}

fn side(levels: &[(&str, &str)]) -> Side {
    let mut s = Side::default();
    apply(&mut s, levels);
    s
}

fn apply<L: Levels + ?Sized>(side: &mut Side, levels: &L) {
    levels.each(|level| match level {
        Level::Set(key, price, qty) => {
            side.insert(key, (price, qty));
        }
        Level::Remove(key) => {
            side.remove(&key);
        }
    });
}

fn write_levels<'a>(
    out: &mut String,
    levels: impl Iterator<Item = &'a (DecimalText, DecimalText)>,
) {
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
        index.add_line(None, &diff(5, 9, "[]", "[]"), true, true);
        index.add_line(Some("BTCUSDT"), SNAP, false, true);
        let d1 = diff(11, 12, r#"[["100.00","0.0"]]"#, "[]");
        let d2 = diff(13, 14, "[]", r#"[["101.50","3.0"]]"#);
        index.add_line(None, &d1, true, false);
        index.add_line(None, &d2, true, false);
        index.finish_file();
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

    #[test]
    fn a_diff_noted_ahead_waits_for_the_one_before_it_and_a_real_hole_freezes_the_book() {
        let mut index = DepthIndex::default();
        index.add_line(Some("BTCUSDT"), SNAP, false, true);
        index.finish_file();
        let d1 = diff(11, 12, r#"[["100.00","0.0"]]"#, "[]");
        let d2 = diff(13, 14, "[]", r#"[["101.50","3.0"]]"#);
        let last = |i: &DepthIndex| {
            let s: DepthSnapshot =
                serde_json::from_str(&i.snapshot_json("BTCUSDT", 5).unwrap()).unwrap();
            s.last_update_id
        };
        // d2 left out of the stream is noted when read, before d1 is sent.
        index.note_streamed(&d2);
        assert_eq!(last(&index), 10, "waits for d1");
        index.note_streamed(&d1);
        assert_eq!(last(&index), 14, "then both apply");
        // A diff that never comes: after MAX_AHEAD later ones, the book stops there.
        for k in 0..=MAX_AHEAD as u64 {
            index.note_streamed(&diff(20 + 2 * k, 21 + 2 * k, "[]", "[]"));
        }
        index.note_streamed(&diff(15, 19, "[]", "[]"));
        assert_eq!(
            last(&index),
            14,
            "a hole in the capture: served whole, if old"
        );
    }

    /// How a level was read before plain decimals skipped the float parse.
    fn read_by_float_parse(p: &str, q: &str) -> Option<Level> {
        let price = p
            .parse::<f64>()
            .ok()
            .filter(|x| *x > 0.0 && x.is_finite())?;
        let qty = q.parse::<f64>().ok().filter(|x| x.is_finite())?;
        if qty <= 0.0 {
            return Some(Level::Remove(price.to_bits()));
        }
        Some(Level::Set(
            price.to_bits(),
            DecimalText::parse(p)?,
            DecimalText::parse(q)?,
        ))
    }

    fn level_text() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => (0u64..10_000_000_000, "[0-9]{0,15}").prop_map(|(i, f)| {
                if f.is_empty() { i.to_string() } else { format!("{i}.{f}") }
            }),
            1 => "[0-9]{1,20}(\\.[0-9]{0,24})?",
            1 => prop::sample::select(vec![
                "0", "0.0", "0.00000000", "-1.0", "1e5", "01.5", ".5", "5.", "NaN", "inf",
                "0.0000000000000001", "9999999999999999999", "18014398509481985",
            ]).prop_map(str::to_string),
        ]
    }

    use proptest::prelude::*;

    proptest! {
        #[test]
        fn a_level_reads_as_the_float_parse_read_it(p in level_text(), q in level_text()) {
            prop_assert_eq!(Level::read(&p, &q), read_by_float_parse(&p, &q), "{} {}", p, q);
        }
    }
}
