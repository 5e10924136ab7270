//! The public Binance trades CSV (data.binance.vision): `id,price,qty,quoteQty,time,
//! isBuyerMaker,isBestMatch`, no header, times in milliseconds (microseconds from 2025).
//! One typed reader for the backtest and the capture import.

/// One CSV trade; price and quantity keep their decimal text as published.
#[derive(Debug, Clone, PartialEq)]
pub struct CsvTrade<'a> {
    pub id: u64,
    pub price_text: &'a str,
    pub qty_text: &'a str,
    pub price: f64,
    pub qty: f64,
    pub time_ms: i64,
    pub buyer_is_maker: bool,
    pub best_match: bool,
}

/// A line that is not a trade, with its 1-based number.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct CsvTradeError {
    pub line: usize,
    pub reason: String,
}

/// Parse every non-empty line; trade IDs must increase.
pub fn parse(text: &str) -> Result<Vec<CsvTrade<'_>>, CsvTradeError> {
    let mut out = Vec::new();
    let mut last_id: Option<u64> = None;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| CsvTradeError {
            line: i + 1,
            reason,
        };
        let f: Vec<&str> = line.split(',').map(str::trim).collect();
        if f.len() != 7 {
            return Err(bad(format!("expected 7 fields, got {}", f.len())));
        }
        let id: u64 = f[0]
            .parse()
            .map_err(|_| bad(format!("trade id {:?} is not an integer", f[0])))?;
        if last_id.is_some_and(|last| id <= last) {
            return Err(bad(format!("trade id {id} is not increasing")));
        }
        last_id = Some(id);
        let number = |name: &str, v: &str| -> Result<f64, CsvTradeError> {
            let x: f64 = v
                .parse()
                .map_err(|_| bad(format!("{name} {v:?} is not a number")))?;
            if x > 0.0 && x.is_finite() {
                Ok(x)
            } else {
                Err(bad(format!(
                    "{name} {v:?} must be a positive finite number"
                )))
            }
        };
        let price = number("price", f[1])?;
        let qty = number("qty", f[2])?;
        let time: i64 = f[4]
            .parse()
            .map_err(|_| bad(format!("time {:?} is not an integer", f[4])))?;
        // Milliseconds since 1970 stay below 1e14 until the year 5138.
        let time_ms = if time >= 100_000_000_000_000 {
            time / 1000
        } else {
            time
        };
        let flag = |name: &str, v: &str| match v.to_ascii_lowercase().as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(bad(format!("{name} {v:?} is not true/false"))),
        };
        out.push(CsvTrade {
            id,
            price_text: f[1],
            qty_text: f[2],
            price,
            qty,
            time_ms,
            buyer_is_maker: flag("isBuyerMaker", f[5])?,
            best_match: flag("isBestMatch", f[6])?,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_ms_and_us_times_and_rejects_bad_lines() {
        let t = parse("1,100.5,0.1,10.05,1700000000000,true,True\n\n2,101,0.2,20.2,1700000000500000,False,true\n")
            .unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(
            (t[0].time_ms, t[1].time_ms),
            (1_700_000_000_000, 1_700_000_000_500)
        );
        assert_eq!((t[0].price_text, t[1].buyer_is_maker), ("100.5", false));
        for (text, why) in [
            ("1,2,3\n", "expected 7 fields"),
            ("x,1,1,1,1,true,true\n", "trade id"),
            ("1,-1,1,1,1,true,true\n", "price"),
            ("1,1,0,1,1,true,true\n", "qty"),
            ("1,1,1,1,soon,true,true\n", "time"),
            ("1,1,1,1,1,maybe,true\n", "isBuyerMaker"),
            (
                "2,1,1,1,1,true,true\n1,1,1,1,2,true,true\n",
                "not increasing",
            ),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.reason.contains(why), "{text:?}: {e}");
        }
    }
}
