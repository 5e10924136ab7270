//! Synthetic instruments derived from a captured one, for load at many symbols: each is a
//! copy of the source's messages with its own name, prices scaled, trade and update IDs
//! shifted, times shifted, and a return noise of its own, so that many synthetic symbols are
//! not perfectly correlated (a portfolio covariance of copies would be singular).
//!
//! Pure: one captured line in, one line out; the host reads and writes the files.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde_json::Value;

/// How one synthetic instrument is derived from its source.
#[derive(Debug, Clone)]
pub struct SyntheticSymbol {
    /// Upper-case name, e.g. `S0007USDT`.
    pub name: String,
    /// The captured instrument it copies, upper case.
    pub source: String,
    pub price_scale: f64,
    pub id_offset: u64,
    pub time_shift_ms: i64,
    /// Standard deviation of the log-price noise added per trade, and its persistence.
    pub noise_sigma: f64,
    pub noise_persistence: f64,
    pub seed: u64,
}

impl SyntheticSymbol {
    /// The `index`-th synthetic symbol of `sources` (taken in turn).
    pub fn nth(index: usize, sources: &[&str]) -> Self {
        let k = index as u64;
        Self {
            name: format!("S{index:04}USDT"),
            source: sources[index % sources.len().max(1)].to_string(),
            price_scale: 0.5 + ((k * 37) % 100) as f64 / 40.0,
            id_offset: (k + 1) * 1_000_000_000_000,
            time_shift_ms: ((k * 13) % 997) as i64,
            noise_sigma: 5e-5,
            noise_persistence: 0.999,
            seed: 0x5EED_0000 + k,
        }
    }
}

/// Update IDs taken between two passes by the diffs that empty the book (`synth`), each
/// removing at most [`PASS_RESET_LEVELS`] levels so that a frame stays well under the
/// engine's 64 KB limit.
pub const PASS_RESET_DIFFS: u64 = 16;
pub const PASS_RESET_LEVELS: usize = 1000;

/// How far a repeated pass of a captured day is moved so that it follows on from the pass
/// before it: times, trade (and aggregate) IDs, and order-book update IDs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PassShift {
    pub time_ms: i64,
    pub trade_ids: u64,
    pub update_ids: u64,
}

/// What a pass spans, measured over the source's lines (`PassSpan::add`): the shift that
/// makes the next pass follow on from it.
#[derive(Debug, Clone, Copy, Default)]
pub struct PassSpan {
    times_ms: Range<i64>,
    trade_ids: Range<u64>,
    /// Every order-book update ID: diffs' `U` and `u`, book tickers' `u`, snapshots'
    /// `lastUpdateId`.
    update_ids: Range<u64>,
    /// The diffs' alone.
    diff_ids: Range<u64>,
}

/// The lowest and highest values seen, if any.
#[derive(Debug, Clone, Copy, Default)]
struct Range<T>(Option<(T, T)>);

impl<T: Copy + Ord> Range<T> {
    fn widen(&mut self, lo: Option<T>, hi: Option<T>) {
        if let (Some(lo), Some(hi)) = (lo.or(hi), hi.or(lo)) {
            self.0 = Some(self.0.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))));
        }
    }
}

/// How many values a range spans (0 for none).
fn ids(r: Range<u64>) -> u64 {
    r.0.map_or(0, |(lo, hi)| hi - lo + 1)
}

impl PassSpan {
    /// The update IDs between a pass's last diff and the next pass's first: at least
    /// [`PASS_RESET_DIFFS`], more when book tickers or a snapshot reach past the diffs. The
    /// diffs that empty the book between passes take them all, so the diff stream has no
    /// hole.
    pub fn reset_ids(&self) -> u64 {
        self.shift().update_ids.saturating_sub(ids(self.diff_ids))
    }

    /// Take one captured line into the span.
    pub fn add(&mut self, json: &str) {
        let Ok(v) = serde_json::from_str::<Value>(json) else {
            return;
        };
        let data = v.get("data").unwrap_or(&v);
        let id = |k: &str| data.get(k).and_then(Value::as_u64);
        self.trade_ids
            .widen(id("t").or(id("f")), id("t").or(id("l")));
        self.update_ids.widen(
            id("U").or(id("lastUpdateId")),
            id("u").or(id("lastUpdateId")),
        );
        if let (Some(first), Some(last)) = (id("U"), id("u")) {
            self.diff_ids.widen(Some(first), Some(last));
        }
        let time = data.get("E").and_then(Value::as_i64);
        self.times_ms.widen(time, time);
    }

    /// The shift of the pass after this one (times: the span plus 100 ms, one diff-depth
    /// interval; update IDs: the span plus those of the diffs that empty the book between
    /// passes, [`PASS_RESET_DIFFS`]).
    pub fn shift(&self) -> PassShift {
        let update_ids = ids(self.update_ids);
        PassShift {
            time_ms: self.times_ms.0.map_or(0, |(lo, hi)| hi - lo + 100),
            trade_ids: ids(self.trade_ids),
            update_ids: if update_ids > 0 {
                update_ids + PASS_RESET_DIFFS
            } else {
                0
            },
        }
    }
}

/// Turns the source's lines into the synthetic symbol's, in order.
pub struct Deriver {
    symbol: SyntheticSymbol,
    pass: PassShift,
    lower: String,
    source_lower: String,
    rng: ChaCha8Rng,
    /// The log-price noise now (moves at each trade, mean-reverting).
    log_noise: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SyntheticError {
    #[error("not a capture line of {0}: {1}")]
    NotSource(String, &'static str),
}

impl Deriver {
    pub fn new(symbol: SyntheticSymbol) -> Self {
        Self {
            lower: symbol.name.to_lowercase(),
            source_lower: symbol.source.to_lowercase(),
            rng: ChaCha8Rng::seed_from_u64(symbol.seed),
            log_noise: 0.0,
            pass: PassShift::default(),
            symbol,
        }
    }

    /// Derive the lines of a repeated pass of the source, moved by `pass` (the noise runs
    /// on).
    pub fn set_pass(&mut self, pass: PassShift) {
        self.pass = pass;
    }

    /// The synthetic line for a captured `<local_ns> <json>` line of the source; `None` for
    /// a line of another instrument.
    pub fn derive(&mut self, local_ns: u64, json: &str) -> Result<Option<String>, SyntheticError> {
        let bad = |why| SyntheticError::NotSource(self.symbol.source.clone(), why);
        let v: Value = serde_json::from_str(json).map_err(|_| bad("not JSON"))?;
        // A REST depth snapshot kept in the source's file has no stream name.
        let (kind, mut data) = match v["stream"].as_str() {
            Some(stream) => match stream.strip_prefix(&format!("{}@", self.source_lower)) {
                Some(kind) => (
                    kind.to_string(),
                    v.get("data").cloned().ok_or_else(|| bad("no data"))?,
                ),
                None => return Ok(None),
            },
            None if v.get("lastUpdateId").is_some() => ("depthSnapshot".to_string(), v),
            None => return Err(bad("no stream")),
        };
        let kind = kind.as_str();
        let shift = self.symbol.time_shift_ms + self.pass.time_ms;
        let is_trade = kind == "trade";
        if is_trade {
            let z: f64 = StandardNormal.sample(&mut self.rng);
            self.log_noise =
                self.symbol.noise_persistence * self.log_noise + self.symbol.noise_sigma * z;
        }
        // Trades and the best quote move with the noise; the depth book keeps the plain
        // scale so that a level removed later is the level added earlier.
        let noisy = self.symbol.price_scale * self.log_noise.exp();
        let plain = self.symbol.price_scale;
        let obj = data
            .as_object_mut()
            .ok_or_else(|| bad("data is not an object"))?;
        for (key, value) in obj.iter_mut() {
            match key.as_str() {
                "s" => *value = Value::String(self.symbol.name.clone()),
                "E" | "T" => shift_time(value, shift),
                // Numbers only: a bookTicker's `a` is a price string and stays as it is here.
                "t" | "a" | "f" | "l" => {
                    shift_id(value, self.symbol.id_offset + self.pass.trade_ids)
                }
                "U" | "u" | "pu" | "lastUpdateId" => {
                    shift_id(value, self.symbol.id_offset + self.pass.update_ids)
                }
                _ => {}
            }
        }
        match kind {
            "trade" | "aggTrade" => scale_price(obj.get_mut("p"), noisy),
            "bookTicker" => {
                scale_price(obj.get_mut("b"), noisy);
                scale_price(obj.get_mut("a"), noisy);
            }
            k if k.starts_with("depth") => {
                for side in ["b", "a", "bids", "asks"] {
                    if let Some(Value::Array(levels)) = obj.get_mut(side) {
                        for level in levels {
                            if let Value::Array(pq) = level {
                                scale_price(pq.get_mut(0), plain);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
        let ns = i128::from(local_ns) + i128::from(shift) * 1_000_000;
        let ns = u64::try_from(ns.max(0)).unwrap_or(0);
        let body = serde_json::to_string(&data).unwrap_or_default();
        if kind == "depthSnapshot" {
            return Ok(Some(format!("{ns} {body}")));
        }
        Ok(Some(format!(
            "{ns} {{\"stream\":\"{}@{kind}\",\"data\":{body}}}",
            self.lower,
        )))
    }
}

fn shift_time(value: &mut Value, shift_ms: i64) {
    if let Some(t) = value.as_i64() {
        *value = Value::from(t + shift_ms);
    }
}

fn shift_id(value: &mut Value, offset: u64) {
    if let Some(id) = value.as_u64() {
        *value = Value::from(id + offset);
    }
}

/// A price string times `factor`, written with 8 decimals like Binance's.
fn scale_price(value: Option<&mut Value>, factor: f64) {
    if let Some(v) = value {
        if let Some(p) = v.as_str().and_then(|s| s.parse::<f64>().ok()) {
            *v = Value::String(format!("{:.8}", p * factor));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRADE: &str = r#"{"stream":"btcusdt@trade","data":{"e":"trade","E":1723161601273,"s":"BTCUSDT","t":3700000000,"p":"60000.00000000","q":"0.01000000","T":1723161601272,"m":true,"M":true}}"#;
    const DEPTH: &str = r#"{"stream":"btcusdt@depth@100ms","data":{"e":"depthUpdate","E":1723161601273,"s":"BTCUSDT","U":50093421585,"u":50093421612,"b":[["61685.99000000","1.25869000"]],"a":[["61686.00000000","2.0"]]}}"#;

    #[test]
    fn a_synthetic_trade_has_its_own_name_ids_times_and_prices() {
        let s = SyntheticSymbol::nth(3, &["BTCUSDT", "ETHUSDT"]);
        assert_eq!(
            (s.name.as_str(), s.source.as_str()),
            ("S0003USDT", "ETHUSDT")
        );
        let s = SyntheticSymbol::nth(2, &["BTCUSDT", "ETHUSDT"]);
        let scale = s.price_scale;
        let mut d = Deriver::new(s);
        let line = d.derive(1_000_000_000, TRADE).unwrap().unwrap();
        let (ns, json) = line.split_once(' ').unwrap();
        assert_eq!(ns, (1_000_000_000u64 + 26 * 1_000_000).to_string());
        let v: Value = serde_json::from_str(json).unwrap();
        assert!(json.starts_with(r#"{"stream":"s0002usdt@trade","#));
        assert_eq!(v["data"]["s"], "S0002USDT");
        assert_eq!(v["data"]["t"], 3_000_000_000_000u64 + 3_700_000_000);
        assert_eq!(v["data"]["T"], 1723161601272i64 + 26);
        let p: f64 = v["data"]["p"].as_str().unwrap().parse().unwrap();
        assert!((p / (60_000.0 * scale) - 1.0).abs() < 1e-3, "{p}");
        assert_ne!(p, 60_000.0 * scale, "noise");
        // depth levels keep the plain scale, so the same level maps to the same price
        let depth = d.derive(1, DEPTH).unwrap().unwrap();
        let v: Value = serde_json::from_str(depth.split_once(' ').unwrap().1).unwrap();
        assert_eq!(
            v["data"]["b"][0][0],
            format!("{:.8}", 61685.99 * scale),
            "{depth}"
        );
        assert_eq!(v["data"]["U"], 3_000_000_000_000u64 + 50093421585);
        // another instrument's line is not this one's
        let eth = TRADE.replace("btcusdt", "ethusdt");
        assert_eq!(d.derive(1, &eth).unwrap(), None);
    }

    #[test]
    fn a_repeated_pass_follows_on_from_the_one_before() {
        let mut span = PassSpan::default();
        span.add(TRADE);
        span.add(
            &TRADE
                .replace("3700000000", "3700000009")
                .replace("1723161601273", "1723161901273"),
        );
        span.add(DEPTH);
        let shift = span.shift();
        assert_eq!(
            shift,
            PassShift {
                time_ms: 300_100,
                trade_ids: 10,
                update_ids: 28 + PASS_RESET_DIFFS,
            }
        );
        let s = SyntheticSymbol::nth(0, &["BTCUSDT"]);
        let offset = s.id_offset;
        let mut d = Deriver::new(s);
        d.set_pass(shift);
        let depth = d.derive(1, DEPTH).unwrap().unwrap();
        let v: Value = serde_json::from_str(depth.split_once(' ').unwrap().1).unwrap();
        // The next pass's first diff follows on from this pass's last and the reset diffs
        // between them.
        assert_eq!(v["data"]["U"], offset + 50093421612 + PASS_RESET_DIFFS + 1);
        let trade = d.derive(1, TRADE).unwrap().unwrap();
        let v: Value = serde_json::from_str(trade.split_once(' ').unwrap().1).unwrap();
        assert_eq!(v["data"]["t"], offset + 3_700_000_010);
        assert_eq!(v["data"]["E"], 1723161601273i64 + 300_100);
    }

    #[test]
    fn the_diffs_between_passes_take_every_update_id_the_book_tickers_reach_past_the_diffs() {
        let mut span = PassSpan::default();
        span.add(DEPTH);
        assert_eq!(span.reset_ids(), PASS_RESET_DIFFS);
        // A book ticker after the last diff: its `u` is past the diffs' last.
        span.add(
            r#"{"stream":"btcusdt@bookTicker","data":{"u":50093421620,"s":"BTCUSDT","b":"1","B":"1","a":"2","A":"1"}}"#,
        );
        let shift = span.shift();
        assert_eq!(shift.update_ids, 36 + PASS_RESET_DIFFS);
        // The next pass's first diff (U + shift) follows the last reset ID (u + reset_ids).
        assert_eq!(
            50093421585 + shift.update_ids,
            50093421612 + span.reset_ids() + 1
        );
    }
}
