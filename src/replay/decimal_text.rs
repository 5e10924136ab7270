//! A captured decimal string (`"61685.99000000"`) held in 8 bytes and written back
//! character for character: the replay server's books hold thousands of levels per symbol
//! and serve their text unchanged.

use std::fmt;

const MANTISSA_BITS: u32 = 60;
const MAX_SCALE: usize = 15;

/// Digits as one integer and the number of them after the point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecimalText(u64);

impl DecimalText {
    /// `text` when it is a plain decimal (`0.5`, `33000`, `1.25869000`: no sign, exponent
    /// or leading zero) of at most 18 digits with at most 15 after the point; `None`
    /// otherwise, as it could not be written back unchanged.
    pub fn parse(text: &str) -> Option<Self> {
        // One pass: the digits as one integer, and where the point was.
        let (mut mantissa, mut digits, mut point) = (0u64, 0usize, None);
        for &b in text.as_bytes() {
            let d = b.wrapping_sub(b'0');
            if d <= 9 {
                mantissa = mantissa.checked_mul(10)?.checked_add(u64::from(d))?;
                digits += 1;
            } else if b == b'.' && point.is_none() {
                point = Some(digits);
            } else {
                return None;
            }
        }
        let int_digits = point.unwrap_or(digits);
        let scale = digits - int_digits;
        let leading_zero = int_digits > 1 && text.starts_with('0');
        if int_digits == 0 || leading_zero || (point.is_some() && scale == 0) || scale > MAX_SCALE {
            return None;
        }
        (mantissa < 1 << MANTISSA_BITS).then_some(Self(mantissa | (scale as u64) << MANTISSA_BITS))
    }

    /// The decimal's value, when the one exact division gives it (the bits
    /// `f64::from_str` gives its text); `None` for mantissas past 2^53.
    pub fn value(self) -> Option<f64> {
        let (mantissa, scale) = self.parts();
        crate::market::compact::exact_decimal(mantissa, scale)
    }

    /// The digits as one integer, and how many of them are after the point.
    fn parts(self) -> (u64, usize) {
        (
            self.0 & ((1 << MANTISSA_BITS) - 1),
            (self.0 >> MANTISSA_BITS) as usize,
        )
    }
}

impl fmt::Display for DecimalText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (mantissa, scale) = self.parts();
        let digits = format!("{mantissa:0>width$}", width = scale + 1);
        let (int, frac) = digits.split_at(digits.len() - scale);
        if scale == 0 {
            f.write_str(int)
        } else {
            write!(f, "{int}.{frac}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn binance_decimals_come_back_unchanged() {
        for text in [
            "61685.99000000",
            "0.00032000",
            "0.00000000",
            "33000",
            "0",
            "0.5",
            "123456789012.345678",
        ] {
            assert_eq!(DecimalText::parse(text).unwrap().to_string(), text);
        }
    }

    #[test]
    fn what_could_not_be_written_back_is_refused() {
        for text in [
            "",
            ".5",
            "5.",
            "-1.0",
            "+1",
            "1e5",
            "01.5",
            "1.5.0",
            "1,5",
            "0.0000000000000001",
            "9999999999999999999",
        ] {
            assert!(DecimalText::parse(text).is_none(), "{text}");
        }
    }

    /// The two-pass reading the one-pass one replaced.
    fn parse_in_parts(text: &str) -> Option<DecimalText> {
        let (int, frac) = match text.split_once('.') {
            Some((i, f)) if !f.is_empty() => (i, f),
            Some(_) => return None,
            None => (text, ""),
        };
        let plain_int = !int.is_empty() && (int == "0" || !int.starts_with('0'));
        let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        if !plain_int || !digits(int) || !digits(frac) || frac.len() > MAX_SCALE {
            return None;
        }
        let mut mantissa: u64 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            mantissa = mantissa.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
        }
        (mantissa < 1 << MANTISSA_BITS)
            .then_some(DecimalText(mantissa | (frac.len() as u64) << MANTISSA_BITS))
    }

    proptest! {
        #[test]
        fn reads_any_text_as_the_two_pass_reading_did(text in "[0-9.]{0,22}|[0-9.eE+-]{0,6}") {
            prop_assert_eq!(DecimalText::parse(&text), parse_in_parts(&text), "{}", text);
        }

        #[test]
        fn any_plain_decimal_round_trips(int in 0u64..10_000_000_000, frac in "[0-9]{0,8}") {
            let text = if frac.is_empty() { int.to_string() } else { format!("{int}.{frac}") };
            prop_assert_eq!(DecimalText::parse(&text).unwrap().to_string(), text);
        }

        #[test]
        fn a_value_is_the_bits_from_str_gives(int in 0u64..100_000_000_000_000, frac in "[0-9]{0,15}") {
            let text = if frac.is_empty() { int.to_string() } else { format!("{int}.{frac}") };
            if let Some(value) = DecimalText::parse(&text).and_then(DecimalText::value) {
                prop_assert_eq!(value.to_bits(), text.parse::<f64>().unwrap().to_bits(), "{}", text);
            }
        }
    }
}
