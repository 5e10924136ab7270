//! RFC 8785 (JSON Canonicalization Scheme) encoding of serde values, in one pass.
//!
//! serde_json drives a formatter that writes straight into one buffer and remembers where
//! each member of every open object starts. Members that arrive in canonical order (struct
//! fields declared in key order, sorted maps) stay where they are; an object whose keys
//! arrive out of order is sorted in place when it closes. Numbers are written as
//! ECMAScript's `Number.prototype.toString` (ryu-js), strings with JSON's minimal escapes.
//!
//! Keys are compared as raw bytes, which equals RFC 8785's UTF-16 order for keys made of
//! ASCII letters, digits and `_` (all keys of the signed format); other keys are rejected
//! so the encoder can never silently produce a non-canonical order.

use std::io;
use std::ops::Range;

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter};

#[derive(Debug, thiserror::Error)]
pub enum JcsError {
    #[error("cannot encode: {0}")]
    Encode(String),
}

thread_local! {
    /// Buffers reused across calls on this thread (bounded by the deepest and largest
    /// value encoded so far).
    static FORMATTER: std::cell::RefCell<JcsFormatter> = std::cell::RefCell::default();
}

/// Canonical bytes of `value`.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, JcsError> {
    FORMATTER.with(|cell| {
        let mut fresh = JcsFormatter::default();
        let mut borrowed = cell.try_borrow_mut();
        // Re-entrant use (a Serialize impl that encodes) gets its own buffers.
        let formatter = match borrowed.as_deref_mut() {
            Ok(f) => f,
            Err(_) => &mut fresh,
        };
        formatter.open.clear();
        formatter.out = Vec::with_capacity(4096);
        let mut ser = serde_json::Serializer::with_formatter(io::sink(), &mut *formatter);
        let done = value
            .serialize(&mut ser)
            .map_err(|e| JcsError::Encode(e.to_string()));
        let out = std::mem::take(&mut formatter.out);
        done.map(|_| out)
    })
}

/// One open object: where its members start and where each member's key and value lie.
#[derive(Default)]
struct Frame {
    /// Just after the `{`.
    start: usize,
    members: Vec<(Range<usize>, Range<usize>)>,
    /// Every key so far came after the one before it.
    in_order: bool,
    key_start: usize,
    key_end: usize,
    value_start: usize,
}

#[derive(Default)]
struct JcsFormatter {
    out: Vec<u8>,
    open: Vec<Frame>,
    /// Finished frames kept for their allocations.
    spare: Vec<Frame>,
    /// Scratch copy of an object being put in order.
    reorder: Vec<u8>,
}

impl JcsFormatter {
    fn put<W: ?Sized + io::Write>(&mut self, _: &mut W, bytes: &[u8]) -> io::Result<()> {
        self.out.extend_from_slice(bytes);
        Ok(())
    }

    /// Sort the members of the object that starts at `frame.start` by key, in place.
    fn put_in_order(&mut self, frame: &mut Frame) -> io::Result<()> {
        self.reorder.clear();
        self.reorder.extend_from_slice(&self.out[frame.start..]);
        let base = frame.start;
        let scratch = &self.reorder;
        let key = |r: &Range<usize>| &scratch[r.start - base..r.end - base];
        frame
            .members
            .sort_unstable_by(|a, b| key(&a.0).cmp(key(&b.0)));
        if frame
            .members
            .windows(2)
            .any(|pair| key(&pair[0].0) == key(&pair[1].0))
        {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "duplicate key"));
        }
        self.out.truncate(base);
        for (i, (k, v)) in frame.members.iter().enumerate() {
            if i > 0 {
                self.out.push(b',');
            }
            self.out.extend_from_slice(key(k));
            self.out.push(b':');
            self.out
                .extend_from_slice(&scratch[v.start - base..v.end - base]);
        }
        Ok(())
    }
}

/// Byte order of two short keys (a plain loop beats a `memcmp` call at these lengths).
fn short_cmp(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

fn key_ok(key: &[u8]) -> bool {
    // The key is written with its quotes.
    key.len() >= 2
        && key[1..key.len() - 1]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_')
}

impl Formatter for &mut JcsFormatter {
    fn write_null<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.put(w, b"null")
    }

    fn write_bool<W: ?Sized + io::Write>(&mut self, w: &mut W, value: bool) -> io::Result<()> {
        self.put(w, if value { b"true" } else { b"false" })
    }

    fn write_i8<W: ?Sized + io::Write>(&mut self, w: &mut W, v: i8) -> io::Result<()> {
        self.write_f64(w, f64::from(v))
    }

    fn write_i16<W: ?Sized + io::Write>(&mut self, w: &mut W, v: i16) -> io::Result<()> {
        self.write_f64(w, f64::from(v))
    }

    fn write_i32<W: ?Sized + io::Write>(&mut self, w: &mut W, v: i32) -> io::Result<()> {
        self.write_f64(w, f64::from(v))
    }

    fn write_i64<W: ?Sized + io::Write>(&mut self, w: &mut W, v: i64) -> io::Result<()> {
        // JSON numbers are IEEE doubles in RFC 8785.
        self.write_f64(w, v as f64)
    }

    fn write_i128<W: ?Sized + io::Write>(&mut self, w: &mut W, v: i128) -> io::Result<()> {
        self.write_f64(w, v as f64)
    }

    fn write_u8<W: ?Sized + io::Write>(&mut self, w: &mut W, v: u8) -> io::Result<()> {
        self.write_f64(w, f64::from(v))
    }

    fn write_u16<W: ?Sized + io::Write>(&mut self, w: &mut W, v: u16) -> io::Result<()> {
        self.write_f64(w, f64::from(v))
    }

    fn write_u32<W: ?Sized + io::Write>(&mut self, w: &mut W, v: u32) -> io::Result<()> {
        self.write_f64(w, f64::from(v))
    }

    fn write_u64<W: ?Sized + io::Write>(&mut self, w: &mut W, v: u64) -> io::Result<()> {
        self.write_f64(w, v as f64)
    }

    fn write_u128<W: ?Sized + io::Write>(&mut self, w: &mut W, v: u128) -> io::Result<()> {
        self.write_f64(w, v as f64)
    }

    fn write_f32<W: ?Sized + io::Write>(&mut self, w: &mut W, v: f32) -> io::Result<()> {
        self.write_f64(w, f64::from(v))
    }

    fn write_f64<W: ?Sized + io::Write>(&mut self, w: &mut W, v: f64) -> io::Result<()> {
        if !v.is_finite() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "RFC 8785 has no NaN or infinity",
            ));
        }
        // Whole numbers below 2^53 print as their integer digits in ECMAScript too.
        if v.fract() == 0.0 && v.abs() < 9_007_199_254_740_992.0 {
            let mut buf = itoa::Buffer::new();
            return self.put(w, buf.format(v as i64).as_bytes());
        }
        let mut buf = ryu_js::Buffer::new();
        let text = buf.format_finite(v);
        self.put(w, text.as_bytes())
    }

    fn write_number_str<W: ?Sized + io::Write>(&mut self, _: &mut W, _: &str) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "arbitrary-precision numbers are not canonical",
        ))
    }

    fn begin_string<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.put(w, b"\"")
    }

    fn end_string<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.put(w, b"\"")
    }

    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        self.put(w, fragment.as_bytes())
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        escape: CharEscape,
    ) -> io::Result<()> {
        let mut hex = [b'\\', b'u', b'0', b'0', 0, 0];
        let bytes: &[u8] = match escape {
            CharEscape::Quote => b"\\\"",
            CharEscape::ReverseSolidus => b"\\\\",
            CharEscape::Solidus => b"/",
            CharEscape::Backspace => b"\\b",
            CharEscape::FormFeed => b"\\f",
            CharEscape::LineFeed => b"\\n",
            CharEscape::CarriageReturn => b"\\r",
            CharEscape::Tab => b"\\t",
            CharEscape::AsciiControl(c) => {
                const DIGITS: &[u8; 16] = b"0123456789abcdef";
                hex[4] = DIGITS[usize::from(c >> 4)];
                hex[5] = DIGITS[usize::from(c & 0xf)];
                &hex
            }
        };
        self.put(w, bytes)
    }

    fn begin_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.put(w, b"[")
    }

    fn end_array<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.put(w, b"]")
    }

    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            self.put(w, b",")
        }
    }

    fn end_array_value<W: ?Sized + io::Write>(&mut self, _: &mut W) -> io::Result<()> {
        Ok(())
    }

    fn begin_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.put(w, b"{")?;
        let mut frame = self.spare.pop().unwrap_or_default();
        frame.members.clear();
        frame.start = self.out.len();
        frame.in_order = true;
        self.open.push(frame);
        Ok(())
    }

    fn end_object<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        let Some(mut frame) = self.open.pop() else {
            return Err(io::Error::other("unbalanced object"));
        };
        let result = if frame.in_order {
            Ok(())
        } else {
            self.put_in_order(&mut frame)
        };
        self.spare.push(frame);
        result.and_then(|_| self.put(w, b"}"))
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if !first {
            self.put(w, b",")?;
        }
        let pos = self.out.len();
        if let Some(f) = self.open.last_mut() {
            f.key_start = pos;
        }
        Ok(())
    }

    fn end_object_key<W: ?Sized + io::Write>(&mut self, _: &mut W) -> io::Result<()> {
        let pos = self.out.len();
        let Some(f) = self.open.last_mut() else {
            return Err(io::Error::other("key outside an object"));
        };
        f.key_end = pos;
        let key = &self.out[f.key_start..f.key_end];
        if !key_ok(key) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "object keys must be [A-Za-z0-9_]",
            ));
        }
        if let Some((previous, _)) = f.members.last() {
            match short_cmp(&self.out[previous.clone()], key) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => {
                    return Err(io::Error::new(io::ErrorKind::InvalidData, "duplicate key"))
                }
                std::cmp::Ordering::Greater => f.in_order = false,
            }
        }
        Ok(())
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.put(w, b":")?;
        let pos = self.out.len();
        if let Some(f) = self.open.last_mut() {
            f.value_start = pos;
        }
        Ok(())
    }

    fn end_object_value<W: ?Sized + io::Write>(&mut self, _: &mut W) -> io::Result<()> {
        let pos = self.out.len();
        if let Some(f) = self.open.last_mut() {
            let member = (f.key_start..f.key_end, f.value_start..pos);
            f.members.push(member);
        }
        Ok(())
    }

    fn write_raw_fragment<W: ?Sized + io::Write>(&mut self, _: &mut W, _: &str) -> io::Result<()> {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "raw JSON is not canonical",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::{json, Value};

    #[test]
    #[allow(clippy::excessive_precision)] // the RFC 8785 example literal, as published
    fn rfc8785_examples() {
        let v = json!({"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
                       "string": "\u{20ac}$\u{000F}\u{000a}A'\u{0042}\u{0022}\u{005c}\\\"/",
                       "literals": [null, true, false]});
        let out = String::from_utf8(to_vec(&v).unwrap()).unwrap();
        assert_eq!(
            out,
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
        assert_eq!(
            to_vec(&json!({"b": {"d": 1, "c": -0.0}, "a": []})).unwrap(),
            br#"{"a":[],"b":{"c":0,"d":1}}"#
        );
    }

    #[test]
    fn rejects_what_it_cannot_order_or_encode() {
        assert!(to_vec(&json!({"é": 1})).is_err());
        assert!(to_vec(&json!({"a b": 1})).is_err());
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<f64>()
                .prop_filter("finite", |x| x.is_finite())
                .prop_map(|x| json!(x)),
            any::<i32>().prop_map(|x| json!(x)),
            "\\PC{0,12}".prop_map(Value::String),
            "[\\x00-\\x1f\"\\\\/a]{0,6}".prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map("[A-Za-z0-9_]{1,8}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Members serialized in the given order, as a struct with unsorted fields or a hash
    /// map would be.
    struct InOrder(Vec<(String, Value)>);

    impl Serialize for InOrder {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            use serde::ser::SerializeMap;
            let mut m = s.serialize_map(Some(self.0.len()))?;
            for (k, v) in &self.0 {
                m.serialize_entry(k, v)?;
            }
            m.end()
        }
    }

    #[test]
    fn duplicate_keys_are_refused_in_and_out_of_order() {
        let one = || json!(1);
        let dup = InOrder(vec![("a".into(), one()), ("a".into(), one())]);
        assert!(to_vec(&dup).is_err());
        let dup = InOrder(vec![
            ("b".into(), one()),
            ("a".into(), one()),
            ("b".into(), one()),
        ]);
        assert!(to_vec(&dup).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn whole_floats_print_as_ecmascript_does(i in -(1i64 << 60)..(1i64 << 60), shift in 0u32..60) {
            let v = (i >> shift) as f64;
            let ours = String::from_utf8(to_vec(&v).unwrap()).unwrap();
            let mut buf = ryu_js::Buffer::new();
            prop_assert_eq!(ours, buf.format_finite(v).to_string());
        }

        #[test]
        fn objects_in_any_member_order_come_out_sorted(
            members in prop::collection::btree_map("[A-Za-z0-9_]{1,8}", value(), 0..8),
            order in any::<u64>(),
        ) {
            let sorted: Vec<(String, Value)> = members.into_iter().collect();
            // A deterministic shuffle, nested inside an array and an in-order object.
            let mut shuffled = sorted.clone();
            let n = shuffled.len();
            for i in (1..n).rev() {
                let j = ((order >> (i % 32)) as usize ^ i.wrapping_mul(2654435761)) % (i + 1);
                shuffled.swap(i, j);
            }
            let ours = to_vec(&vec![InOrder(vec![("z".into(), json!(0)), ("b".into(), json!([1]))]), InOrder(shuffled)]).unwrap();
            let reference_value = json!([{"z": 0, "b": [1]}, Value::Object(sorted.into_iter().collect())]);
            let reference = serde_json_canonicalizer::to_vec(&reference_value).unwrap();
            prop_assert_eq!(String::from_utf8(ours).unwrap(), String::from_utf8(reference).unwrap());
        }

        #[test]
        fn matches_the_reference_canonicalizer(v in value()) {
            let ours = to_vec(&v).unwrap();
            let reference = serde_json_canonicalizer::to_vec(&v).unwrap();
            prop_assert_eq!(String::from_utf8(ours).unwrap(), String::from_utf8(reference).unwrap());
        }
    }
}
