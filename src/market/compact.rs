//! The data of the three streams Binance sends most (trades, best quotes, diff depth) read
//! in one pass over the bytes when written plainly: one-letter keys in any order, each
//! once, no whitespace, strings without escapes, integers without sign or exponent, and no
//! key the type does not know (Binance's `e` and `M` excepted). Any other text is `None`
//! and goes to the general serde path, whose result is the contract: whatever this accepts,
//! serde reads as the same value (unit and property tests, and the `parse_frame` fuzz
//! target, compare the two). Decimal strings come out as the same bits as the general
//! path's `f64::from_str`: plain ones by one exact division (`plain_decimal`), any other
//! through `f64::from_str` itself.

use serde::Deserialize;

use super::binance::{BookTicker, Trade};
use super::depth::{DepthUpdate, Level};

/// `{"e":…,"E":…,"s":…,"t":…,"p":…,"q":…,"T":…,"m":…,"M":…}`, `e` and `M` optional.
pub fn trade(raw: &str) -> Option<Trade> {
    let (mut event_time_ms, mut symbol, mut trade_id) = (None, None, None);
    let (mut price, mut qty, mut trade_time_ms, mut buyer_is_maker) = (None, None, None, None);
    let mut ignored = (None, None);
    fields(raw, |key, c| match key {
        b'e' => once(&mut ignored.0, c.text()),
        b'E' => once(&mut event_time_ms, c.int()),
        b's' => once(&mut symbol, c.text()),
        b't' => once(&mut trade_id, c.uint()),
        b'p' => once(&mut price, c.decimal()),
        b'q' => once(&mut qty, c.decimal()),
        b'T' => once(&mut trade_time_ms, c.int()),
        b'm' => once(&mut buyer_is_maker, c.bool()),
        b'M' => once(&mut ignored.1, c.bool()),
        _ => None,
    })?;
    Some(Trade {
        event_time_ms: event_time_ms?,
        symbol: symbol?.into(),
        trade_id: trade_id?,
        price: price?,
        qty: qty?,
        trade_time_ms: trade_time_ms?,
        buyer_is_maker: buyer_is_maker?,
    })
}

/// `{"u":…,"s":…,"b":…,"B":…,"a":…,"A":…}`
pub fn book_ticker(raw: &str) -> Option<BookTicker> {
    let (mut update_id, mut symbol) = (None, None);
    let (mut bid_price, mut bid_qty, mut ask_price, mut ask_qty) = (None, None, None, None);
    fields(raw, |key, c| match key {
        b'u' => once(&mut update_id, c.uint()),
        b's' => once(&mut symbol, c.text()),
        b'b' => once(&mut bid_price, c.decimal()),
        b'B' => once(&mut bid_qty, c.decimal()),
        b'a' => once(&mut ask_price, c.decimal()),
        b'A' => once(&mut ask_qty, c.decimal()),
        _ => None,
    })?;
    Some(BookTicker {
        update_id: update_id?,
        symbol: symbol?.into(),
        bid_price: bid_price?,
        bid_qty: bid_qty?,
        ask_price: ask_price?,
        ask_qty: ask_qty?,
    })
}

/// `{"e":…,"E":…,"s":…,"U":…,"u":…,"b":[["p","q"],…],"a":[…]}`, `e` optional.
pub fn depth_update(raw: &str) -> Option<DepthUpdate> {
    let (mut event_time_ms, mut symbol, mut ignored) = (None, None, None);
    let (mut first_update_id, mut final_update_id) = (None, None);
    let (mut bids, mut asks) = (None, None);
    fields(raw, |key, c| match key {
        b'e' => once(&mut ignored, c.text()),
        b'E' => once(&mut event_time_ms, c.int()),
        b's' => once(&mut symbol, c.text()),
        b'U' => once(&mut first_update_id, c.uint()),
        b'u' => once(&mut final_update_id, c.uint()),
        b'b' => once(&mut bids, c.levels()),
        b'a' => once(&mut asks, c.levels()),
        _ => None,
    })?;
    Some(DepthUpdate {
        event_time_ms: event_time_ms?,
        symbol: symbol?.into(),
        first_update_id: first_update_id?,
        final_update_id: final_update_id?,
        bids: bids?,
        asks: asks?,
    })
}

/// A diff-depth update as written, its levels' decimal strings unread: what the replay
/// server keeps to serve them back unchanged. The general path is its serde reading.
#[derive(Debug, PartialEq, Deserialize)]
pub struct DepthText<'a> {
    #[serde(rename = "s")]
    pub symbol: &'a str,
    #[serde(rename = "U")]
    pub first_update_id: u64,
    #[serde(rename = "u")]
    pub final_update_id: u64,
    #[serde(borrow, rename = "b")]
    pub bids: Vec<(&'a str, &'a str)>,
    #[serde(borrow, rename = "a")]
    pub asks: Vec<(&'a str, &'a str)>,
}

/// `{"e":…,"E":…,"s":…,"U":…,"u":…,"b":[["p","q"],…],"a":[…]}`, `e` and `E` optional, as
/// text.
pub fn depth_text(raw: &str) -> Option<DepthText<'_>> {
    let (mut symbol, mut ignored) = (None, (None, None));
    let (mut first_update_id, mut final_update_id) = (None, None);
    let (mut bids, mut asks) = (None, None);
    fields(raw, |key, c| match key {
        b'e' => once(&mut ignored.0, c.text()),
        b'E' => once(&mut ignored.1, c.int()),
        b's' => once(&mut symbol, c.text()),
        b'U' => once(&mut first_update_id, c.uint()),
        b'u' => once(&mut final_update_id, c.uint()),
        b'b' => once(&mut bids, c.level_texts()),
        b'a' => once(&mut asks, c.level_texts()),
        _ => None,
    })?;
    Some(DepthText {
        symbol: symbol?,
        first_update_id: first_update_id?,
        final_update_id: final_update_id?,
        bids: bids?,
        asks: asks?,
    })
}

/// Each member of the object `raw` handed to `member` with its one-byte key, the cursor
/// at its value; `None` if `raw` is not such an object or `member` refuses a member.
fn fields<'a>(
    raw: &'a str,
    mut member: impl FnMut(u8, &mut Cursor<'a>) -> Option<()>,
) -> Option<()> {
    let mut c = Cursor::new(raw);
    c.lit("{")?;
    loop {
        let key = match c.text()?.as_bytes() {
            [key] => *key,
            _ => return None,
        };
        c.lit(":")?;
        member(key, &mut c)?;
        if c.lit("}").is_some() {
            return c.end();
        }
        c.lit(",")?;
    }
}

/// Keep the first value of a key; a second (serde refuses duplicate fields) or an
/// unreadable value is `None`.
fn once<T>(slot: &mut Option<T>, value: Option<T>) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value?);
    Some(())
}

/// A position in the text being read. A read that fails may leave it anywhere: the whole
/// object is then refused.
struct Cursor<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Cursor<'a> {
    fn new(text: &'a str) -> Self {
        Self { text, at: 0 }
    }

    fn rest(&self) -> &'a [u8] {
        self.text.as_bytes().get(self.at..).unwrap_or_default()
    }

    fn lit(&mut self, lit: &str) -> Option<()> {
        self.rest().starts_with(lit.as_bytes()).then(|| {
            self.at += lit.len();
        })
    }

    fn end(&self) -> Option<()> {
        (self.at == self.text.len()).then_some(())
    }

    /// A JSON integer without sign: `0`, or digits not starting with `0` (JSON has no
    /// leading zeros), that fits a `u64`.
    fn uint(&mut self) -> Option<u64> {
        let digits = self
            .rest()
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        let text = self.rest().get(..digits)?;
        if digits == 0 || (digits > 1 && text[0] == b'0') {
            return None;
        }
        let mut value: u64 = 0;
        for &d in text {
            value = value.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
        }
        self.at += digits;
        Some(value)
    }

    /// A non-negative JSON integer that fits an `i64`.
    fn int(&mut self) -> Option<i64> {
        self.uint().and_then(|v| i64::try_from(v).ok())
    }

    fn bool(&mut self) -> Option<bool> {
        if self.lit("true").is_some() {
            Some(true)
        } else {
            self.lit("false").map(|()| false)
        }
    }

    /// A JSON string without escapes or control characters: its text as written.
    fn text(&mut self) -> Option<&'a str> {
        let body = self.rest().strip_prefix(b"\"")?;
        for (len, &b) in body.iter().enumerate() {
            match b {
                b'"' => {
                    // Both ends are ASCII quotes, so the slice falls on character boundaries.
                    let text = self.text.get(self.at + 1..self.at + 1 + len)?;
                    self.at += len + 2;
                    return Some(text);
                }
                b'\\' | 0..=0x1f => return None,
                _ => {}
            }
        }
        None
    }

    /// A decimal string, read to the same bits as the general path reads it.
    fn decimal(&mut self) -> Option<f64> {
        if let Some((value, len)) = plain_decimal(self.rest()) {
            self.at += len;
            return Some(value);
        }
        self.text().and_then(|t| t.parse::<f64>().ok())
    }

    /// `[["price","qty"],…]`, possibly empty.
    fn levels(&mut self) -> Option<Vec<Level>> {
        self.pairs(|c| {
            let price = c.decimal()?;
            c.lit(",")?;
            Some(Level {
                price,
                qty: c.decimal()?,
            })
        })
    }

    /// `[["price","qty"],…]` as written.
    fn level_texts(&mut self) -> Option<Vec<(&'a str, &'a str)>> {
        self.pairs(|c| {
            let price = c.text()?;
            c.lit(",")?;
            Some((price, c.text()?))
        })
    }

    /// `[[…],…]`, possibly empty, each inner array's content read by `pair`.
    fn pairs<T>(&mut self, mut pair: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        self.lit("[")?;
        let mut all = Vec::new();
        if self.lit("]").is_some() {
            return Some(all);
        }
        loop {
            self.lit("[")?;
            all.push(pair(self)?);
            self.lit("]")?;
            if self.lit("]").is_some() {
                return Some(all);
            }
            self.lit(",")?;
        }
    }
}

/// Powers of ten that are exact doubles.
const EXACT_POWERS_OF_TEN: [f64; 23] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// `mantissa / 10^scale` when both are exact doubles (the mantissa below 2^53, the scale
/// at most 22): the one division then rounds the decimal's exact value correctly, bit for
/// bit what `f64::from_str` gives for its text.
pub(crate) fn exact_decimal(mantissa: u64, scale: usize) -> Option<f64> {
    if mantissa >= 1 << 53 {
        return None;
    }
    Some(mantissa as f64 / EXACT_POWERS_OF_TEN.get(scale)?)
}

/// A JSON string `"digits[.digits]"` at the start of `bytes` (as Binance writes prices and
/// quantities) whose digits, read as one integer, are below 2^53, with at most 22 after the
/// point: that integer over a power of ten, and the bytes it took. Both are exact doubles,
/// so the one division rounds the decimal's exact value correctly, which is what
/// `f64::from_str` returns (its own fast path is this division). `None` for anything else.
fn plain_decimal(bytes: &[u8]) -> Option<(f64, usize)> {
    let body = bytes.strip_prefix(b"\"")?;
    let (mut mantissa, mut digits, mut point) = (0u64, 0usize, None);
    for (i, &b) in body.iter().enumerate() {
        let d = b.wrapping_sub(b'0');
        if d <= 9 {
            // Past 19 digits this wraps; such a value is refused at the closing quote.
            mantissa = mantissa.wrapping_mul(10).wrapping_add(u64::from(d));
            digits += 1;
        } else if b == b'.' && point.is_none() {
            point = Some(digits);
        } else if b == b'"' {
            if digits == 0 || digits > 19 {
                return None;
            }
            let value = exact_decimal(mantissa, digits - point.unwrap_or(digits))?;
            return Some((value, i + 2));
        } else {
            return None;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const TRADE: &str = r#"{"e":"trade","E":1723161253900,"s":"BTCUSDT","t":3735683259,"p":"61556.04000000","q":"0.00100000","T":1723161253899,"m":true,"M":true}"#;
    const BOOK: &str = r#"{"u":35346513512,"s":"ETHUSDT","b":"2673.60000000","B":"1.00000000","a":"2673.61000000","A":"2.50000000"}"#;
    const DEPTH: &str = r#"{"e":"depthUpdate","E":1723161255208,"s":"BTCUSDT","U":50093239189,"u":50093239202,"b":[["61737.63000000","0.00000000"],["61730.17000000","1.5"]],"a":[]}"#;

    /// Whatever the one-pass reader accepts, serde reads as the same value.
    fn agrees(raw: &str) -> Result<(), TestCaseError> {
        // Compared as printed, so a NaN read by both agrees and -0 differs from 0.
        let same = |ours: Option<String>, theirs: Option<String>| match ours {
            Some(ours) => {
                prop_assert_eq!(Some(ours), theirs, "{}", raw);
                Ok(())
            }
            None => Ok(()),
        };
        let shown = |v: &dyn std::fmt::Debug| format!("{v:?}");
        same(
            trade(raw).map(|t| shown(&t)),
            serde_json::from_str::<Trade>(raw).ok().map(|t| shown(&t)),
        )?;
        same(
            book_ticker(raw).map(|b| shown(&b)),
            serde_json::from_str::<BookTicker>(raw)
                .ok()
                .map(|b| shown(&b)),
        )?;
        same(
            depth_update(raw).map(|d| shown(&d)),
            serde_json::from_str::<DepthUpdate>(raw)
                .ok()
                .map(|d| shown(&d)),
        )?;
        same(
            depth_text(raw).map(|d| shown(&d)),
            serde_json::from_str::<DepthText<'_>>(raw)
                .ok()
                .map(|d| shown(&d)),
        )
    }

    #[test]
    fn plain_layouts_are_read_in_one_pass_as_serde_reads_them() {
        assert!(trade(TRADE).is_some());
        assert!(book_ticker(BOOK).is_some());
        assert_eq!(depth_update(DEPTH).map(|d| d.bids.len()), Some(2));
        assert_eq!(
            depth_text(DEPTH).map(|d| d.bids),
            Some(vec![
                ("61737.63000000", "0.00000000"),
                ("61730.17000000", "1.5")
            ])
        );
        assert!(depth_text(&DEPTH.replace("\"E\":1723161255208,", "")).is_some());
        // Keys in another order (sorted, as a generic JSON writer puts them), `e` and `M`
        // left out.
        let sorted = r#"{"A":"2.50000000","B":"1.00000000","a":"2673.61000000","b":"2673.60000000","s":"ETHUSDT","u":35346513512}"#;
        assert_eq!(book_ticker(sorted), book_ticker(BOOK));
        let bare = TRADE
            .replace("\"e\":\"trade\",", "")
            .replace(",\"M\":true", "");
        assert_eq!(trade(&bare), trade(TRADE));
        for raw in [TRADE, BOOK, DEPTH, sorted, &bare] {
            agrees(raw).unwrap();
        }
    }

    #[test]
    fn other_layouts_and_values_are_left_to_serde() {
        for raw in [
            TRADE.replace(",\"m\":true", ""),
            TRADE.replace(",\"M\":true", ",\"M\":true,\"m\":false"),
            TRADE.replace(",\"M\":true", ",\"M\":1"),
            TRADE.replace("\"E\":", "\"E\": "),
            TRADE.replace("\"t\":3735683259", "\"t\":03735683259"),
            TRADE.replace("\"t\":3735683259", "\"t\":-1"),
            TRADE.replace("\"t\":3735683259", "\"t\":18446744073709551616"),
            TRADE.replace("\"E\":1723161253900", "\"E\":9223372036854775808"),
            TRADE.replace("\"E\":1723161253900", "\"E\":1.5"),
            TRADE.replace("BTCUSDT", "BTC\\u0055SDT"),
            TRADE.replace("\"61556.04000000\"", "61556.04"),
            TRADE.replace("\"61556.04000000\"", "\"abc\""),
            BOOK.replace('}', ",\"x\":1}"),
            BOOK.replace('}', ",\"xy\":\"1\"}"),
            "{}".to_string(),
            format!("{BOOK} "),
            DEPTH.replace("\"a\":[]", "\"a\":[[\"1.0\"]]"),
            DEPTH.replace("\"a\":[]", "\"a\":[[\"1.0\",\"2.0\"],]"),
        ] {
            assert!(
                trade(&raw).is_none()
                    && book_ticker(&raw).is_none()
                    && depth_update(&raw).is_none()
                    && depth_text(&raw).is_none(),
                "{raw}"
            );
        }
    }

    fn plain(text: &str) -> Option<f64> {
        let quoted = format!("\"{text}\"");
        let (value, len) = plain_decimal(quoted.as_bytes())?;
        assert_eq!(len, quoted.len());
        Some(value)
    }

    #[test]
    fn plain_decimals_by_hand() {
        for text in [
            "61556.04000000",
            "0.00100000",
            "0.1",
            "5.",
            ".5",
            "0",
            "00.0",
            "90071992.54740991",
            "9007199254740991",
            "0.000000000000000001",
        ] {
            assert_eq!(
                plain(text).map(f64::to_bits),
                text.parse::<f64>().ok().map(f64::to_bits),
                "{text}"
            );
        }
        for text in [
            "",
            ".",
            "1.2.3",
            "9007199254740992",
            "1e5",
            "-1",
            "+1",
            "NaN",
            "0.00000000000000000000001",
            "12345678901234567890",
        ] {
            assert_eq!(plain(text), None, "{text}");
        }
    }

    proptest! {
        #[test]
        fn plain_decimals_are_the_bits_from_str_gives(
            text in "[0-9]{0,20}(\\.[0-9]{0,24})?|\\.[0-9]{1,5}|[0-9]{1,5}\\.",
        ) {
            if let Some(x) = plain(&text) {
                prop_assert_eq!(Some(x.to_bits()), text.parse::<f64>().ok().map(f64::to_bits), "{}", text);
            }
        }

        #[test]
        fn any_byte_changed_is_read_as_serde_reads_it_or_left_to_it(
            which in 0usize..3,
            at in 0usize..1000,
            byte in any::<u8>(),
        ) {
            let raw = [TRADE, BOOK, DEPTH][which];
            let mut bytes = raw.as_bytes().to_vec();
            let at = at % bytes.len();
            bytes[at] = byte;
            if let Ok(text) = String::from_utf8(bytes) {
                agrees(&text)?;
            }
        }

        #[test]
        fn any_numbers_are_read_as_serde_reads_them(
            ids in prop::array::uniform3(any::<u64>()),
            times in prop::array::uniform2(any::<i64>()),
            decimals in prop::collection::vec("[0-9]{0,12}(\\.[0-9]{0,10})?|[+-]?[0-9]e[0-9]|NaN|inf", 6),
            flags in prop::array::uniform2(any::<bool>()),
        ) {
            let [t, u, first] = ids;
            let [e, tt] = times;
            let [m, mm] = flags;
            let d = |k: usize| &decimals[k];
            agrees(&format!(
                r#"{{"e":"trade","E":{e},"s":"X","t":{t},"p":"{}","q":"{}","T":{tt},"m":{m},"M":{mm}}}"#,
                d(0), d(1)
            ))?;
            agrees(&format!(
                r#"{{"u":{u},"s":"X","b":"{}","B":"{}","a":"{}","A":"{}"}}"#,
                d(0), d(1), d(2), d(3)
            ))?;
            agrees(&format!(
                r#"{{"e":"depthUpdate","E":{e},"s":"X","U":{first},"u":{u},"b":[["{}","{}"],["{}","{}"]],"a":[["{}","{}"]]}}"#,
                d(0), d(1), d(2), d(3), d(4), d(5)
            ))?;
        }
    }
}
