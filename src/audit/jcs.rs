//! RFC 8785 (JSON Canonicalization Scheme) encoding of serde values, in one pass.
//!
//! A serde `Serializer` of its own writes straight into one buffer and remembers where
//! each member of every open object starts. Members that arrive in canonical order (struct
//! fields declared in key order, sorted maps) stay where they are; an object whose keys
//! arrive out of order is put in order when it closes: a first member alone out of place
//! (an internally tagged enum writes its tag first) is moved to its place, shifting only
//! the members it passes, and any other disorder sorts the members. Numbers are written as
//! ECMAScript's `Number.prototype.toString`: shortest round-trip digits (zmij), laid out by
//! ECMAScript's rules. Strings get JSON's minimal escapes.
//!
//! Keys are compared as raw bytes, which equals RFC 8785's UTF-16 order for keys made of
//! ASCII letters, digits and `_` (all keys of the signed format); other keys are rejected
//! so the encoder can never silently produce a non-canonical order. Map keys are checked
//! as they are written; struct field names, fixed when the program is built, are checked
//! in debug builds (they are Rust identifiers: the signed format renames no field).

use std::cmp::Ordering;
use std::ops::Range;

use serde::ser::{self, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum JcsError {
    #[error("cannot encode: {0}")]
    Encode(String),
}

impl ser::Error for JcsError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        JcsError::Encode(msg.to_string())
    }
}

fn fail<T>(why: &str) -> Result<T, JcsError> {
    Err(JcsError::Encode(why.to_string()))
}

thread_local! {
    /// Buffers reused across calls on this thread (bounded by the deepest and largest
    /// value encoded so far).
    static ENCODER: std::cell::RefCell<Encoder> = std::cell::RefCell::default();
}

/// The newtype name under which a value hands this encoder its canonical bytes, already
/// made (`serialize_encoded`). Any other serializer sees a plain newtype.
const HANDED_TOKEN: &str = "$bizra::jcs::handed";

thread_local! {
    static HANDED: std::cell::Cell<Option<std::sync::Arc<[u8]>>> =
        const { std::cell::Cell::new(None) };
}

/// Serialize `value`, whose canonical bytes are `canonical`: this encoder copies them in
/// place of encoding it again; other serializers serialize `value`. `canonical` must be
/// `to_vec(value)`.
pub fn serialize_encoded<T: Serialize + ?Sized, S: ser::Serializer>(
    canonical: &std::sync::Arc<[u8]>,
    value: &T,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    HANDED.with(|h| h.set(Some(canonical.clone())));
    let done = serializer.serialize_newtype_struct(HANDED_TOKEN, value);
    // Not taken by another serializer: never left for the next value.
    HANDED.with(|h| h.take());
    done
}

/// Canonical bytes of `value`.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, JcsError> {
    ENCODER.with(|cell| {
        let mut fresh = Encoder::default();
        let mut borrowed = cell.try_borrow_mut();
        // Re-entrant use (a Serialize impl that encodes) gets its own buffers.
        let encoder = match borrowed.as_deref_mut() {
            Ok(e) => e,
            Err(_) => &mut fresh,
        };
        encoder.open.clear();
        encoder.out.clear();
        let done = value.serialize(&mut *encoder);
        // The bytes leave in a vector of their own size; the buffer stays for the next
        // value (its capacity trimmed back should one value have been unusually large).
        let out = encoder.out.as_slice().to_vec();
        encoder.out.shrink_to(KEPT_BUFFER_BYTES);
        done.map(|_| out)
    })
}

/// The encoding buffer kept between values: a signed decision is ~2.5 KB.
const KEPT_BUFFER_BYTES: usize = 64 * 1024;

/// One open object: where its members start and where each member's key and value lie.
#[derive(Default)]
struct Frame {
    /// Just after the `{`.
    start: usize,
    members: Vec<(Range<usize>, Range<usize>)>,
    /// Every key so far came after the one before it.
    in_order: bool,
    /// The only key out of order so far was the second (the first member is then the one
    /// out of place, as when an internally tagged enum writes its tag first).
    only_first_misplaced: bool,
    /// The member being written: its quoted key, and where its value starts.
    key: Range<usize>,
    value_start: usize,
}

#[derive(Default)]
pub struct Encoder {
    out: Vec<u8>,
    open: Vec<Frame>,
    /// Finished frames kept for their allocations.
    spare: Vec<Frame>,
    /// Scratch copy of an object being put in order.
    reorder: Vec<u8>,
}

/// Byte order of two short keys (a plain loop beats a `memcmp` call at these lengths).
fn short_cmp(a: &[u8], b: &[u8]) -> Ordering {
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

/// Bytes allowed in keys: ASCII letters, digits and `_`.
const KEY_BYTE: [bool; 256] = {
    let mut table = [false; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        table[b] = c.is_ascii_alphanumeric() || c == b'_';
        b += 1;
    }
    table
};

fn key_ok(key: &[u8]) -> bool {
    // No early exit: keys are short and a straight pass is cheaper than a branch per byte.
    !key.is_empty()
        && key
            .iter()
            .fold(true, |ok, &b| ok & KEY_BYTE[usize::from(b)])
}

impl Encoder {
    fn begin_object(&mut self) {
        self.out.push(b'{');
        let mut frame = self.spare.pop().unwrap_or_default();
        frame.members.clear();
        frame.start = self.out.len();
        frame.in_order = true;
        frame.only_first_misplaced = false;
        self.open.push(frame);
    }

    /// Start a member under a key that is not a struct's field name: the key is checked.
    fn key(&mut self, key: &str) -> Result<(), JcsError> {
        if !key_ok(key.as_bytes()) {
            return fail("object keys must be [A-Za-z0-9_]");
        }
        self.field_key(key)
    }

    /// Start a member: its key (compared with the one before) and the colon. Struct field
    /// names are fixed when the program is built, so only debug builds check them (every
    /// record type is encoded by the tests).
    fn field_key(&mut self, key: &str) -> Result<(), JcsError> {
        debug_assert!(
            key_ok(key.as_bytes()),
            "field name {key:?} is not a JCS key"
        );
        let Some(frame) = self.open.last_mut() else {
            return fail("key outside an object");
        };
        if !frame.members.is_empty() {
            self.out.push(b',');
        }
        let start = self.out.len();
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.push(b'"');
        let end = self.out.len();
        if let Some((previous, _)) = frame.members.last() {
            match short_cmp(&self.out[previous.clone()], &self.out[start..end]) {
                Ordering::Less => {}
                Ordering::Equal => return fail("duplicate key"),
                Ordering::Greater => {
                    frame.only_first_misplaced = frame.in_order && frame.members.len() == 1;
                    frame.in_order = false;
                }
            }
        }
        self.out.push(b':');
        frame.key = start..end;
        frame.value_start = self.out.len();
        Ok(())
    }

    /// The value of the member started by `key` is written.
    fn end_member(&mut self) {
        if let Some(f) = self.open.last_mut() {
            let member = (f.key.clone(), f.value_start..self.out.len());
            f.members.push(member);
        }
    }

    fn end_object(&mut self) -> Result<(), JcsError> {
        let Some(mut frame) = self.open.pop() else {
            return fail("unbalanced object");
        };
        let result = if frame.in_order {
            Ok(())
        } else if frame.only_first_misplaced {
            self.move_first_in_place(&frame)
        } else {
            self.put_in_order(&mut frame)
        };
        self.spare.push(frame);
        self.out.push(b'}');
        result
    }

    /// Members 1.. are in order and member 0 ranks after member 1 (a tag written first):
    /// move member 0 to its place, shifting only the members it passes.
    fn move_first_in_place(&mut self, frame: &Frame) -> Result<(), JcsError> {
        let members = &frame.members;
        let out = &self.out;
        let first = &out[members[0].0.clone()];
        // Members 1.. are sorted, so those ranking below member 0 come first.
        let passes =
            members[1..].partition_point(|(k, _)| short_cmp(&out[k.clone()], first).is_lt());
        if members
            .get(1 + passes)
            .is_some_and(|(k, _)| out[k.clone()] == *first)
        {
            return fail("duplicate key");
        }
        // [m0 "," m1 "," … mk]  becomes  [m1 "," … mk "," m0]
        let m0 = members[0].0.start..members[0].1.end;
        let rest = members[1].0.start..members[passes].1.end;
        self.reorder.clear();
        self.reorder.extend_from_slice(&self.out[m0.clone()]);
        self.out.copy_within(rest.clone(), m0.start);
        let comma = m0.start + rest.len();
        self.out[comma] = b',';
        self.out[comma + 1..rest.end].copy_from_slice(&self.reorder);
        Ok(())
    }

    /// Sort the members of the object that starts at `frame.start` by key, in place.
    fn put_in_order(&mut self, frame: &mut Frame) -> Result<(), JcsError> {
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
            return fail("duplicate key");
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

    fn string(&mut self, s: &str) {
        let bytes = s.as_bytes();
        self.out.reserve(bytes.len() + 2);
        self.out.push(b'"');
        // Most strings (hashes, IDs, codes) need no escape; this check vectorises.
        let needs_escape = bytes.iter().fold(false, |any, &b| {
            any | (b < 0x20) | (b == b'"') | (b == b'\\')
        });
        if !needs_escape {
            self.out.extend_from_slice(bytes);
            self.out.push(b'"');
            return;
        }
        let mut clean_from = 0;
        for (i, &b) in bytes.iter().enumerate() {
            let mut hex = *b"\\u0000";
            let escape: &[u8] = match b {
                b'"' => b"\\\"",
                b'\\' => b"\\\\",
                0x08 => b"\\b",
                0x0c => b"\\f",
                b'\n' => b"\\n",
                b'\r' => b"\\r",
                b'\t' => b"\\t",
                0..=0x1f => {
                    const DIGITS: &[u8; 16] = b"0123456789abcdef";
                    hex[4] = DIGITS[usize::from(b >> 4)];
                    hex[5] = DIGITS[usize::from(b & 0xf)];
                    &hex
                }
                _ => continue,
            };
            self.out.extend_from_slice(&bytes[clean_from..i]);
            self.out.extend_from_slice(escape);
            clean_from = i + 1;
        }
        self.out.extend_from_slice(&bytes[clean_from..]);
        self.out.push(b'"');
    }

    /// JSON numbers are IEEE doubles in RFC 8785.
    fn number(&mut self, v: f64) -> Result<(), JcsError> {
        if !v.is_finite() {
            return fail("RFC 8785 has no NaN or infinity");
        }
        write_ecmascript(&mut self.out, v);
        Ok(())
    }

    fn integer(&mut self, v: i128) -> Result<(), JcsError> {
        match i64::try_from(v) {
            Ok(small) if small.unsigned_abs() < 1 << 53 => {
                let mut buf = itoa::Buffer::new();
                self.out.extend_from_slice(buf.format(small).as_bytes());
                Ok(())
            }
            _ => self.number(v as f64),
        }
    }
}

/// `Number.prototype.toString` of a finite double. zmij gives the shortest digits that
/// round-trip (the same digits ECMAScript asks for); only the layout differs: ECMAScript
/// writes plain decimals for decimal exponents from -7 to 20 and no `.0` on whole numbers.
fn write_ecmascript(out: &mut Vec<u8>, v: f64) {
    // Whole numbers below 2^53 are their integer digits (and -0 is 0). The cast round
    // trip tests wholeness without a call to `trunc`.
    let whole = v as i64;
    if whole as f64 == v && v.abs() < 9_007_199_254_740_992.0 {
        let mut buf = itoa::Buffer::new();
        out.extend_from_slice(buf.format(whole).as_bytes());
        return;
    }
    let mut buf = zmij::Buffer::new();
    let text = buf.format_finite(v).as_bytes();
    // In this range zmij already writes plain decimals, as ECMAScript does.
    if (1e-5..1e15).contains(&v.abs()) {
        out.extend_from_slice(text);
        return;
    }
    let Some(e) = text.iter().position(|&b| b == b'e') else {
        out.extend_from_slice(text.strip_suffix(b".0").unwrap_or(text));
        return;
    };
    let (mantissa, exponent) = (&text[..e], &text[e + 1..]);
    let (negative_exponent, exponent_digits) = match exponent.split_first() {
        Some((b'-', rest)) => (true, rest),
        Some((b'+', rest)) => (false, rest),
        _ => (false, exponent),
    };
    let magnitude = exponent_digits
        .iter()
        .fold(0i32, |acc, d| acc * 10 + i32::from(d - b'0'));
    // The decimal point sits after `point` digits (before them when negative).
    let point = if negative_exponent {
        1 - magnitude
    } else {
        1 + magnitude
    };
    if !(-5..=21).contains(&point) {
        // ECMAScript's exponential form is zmij's: d[.ddd]e±n.
        out.extend_from_slice(text);
        return;
    }
    let (negative, mantissa) = match mantissa.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, mantissa),
    };
    if negative {
        out.push(b'-');
    }
    let mut digits = [0u8; 24];
    let mut count = 0;
    for &d in mantissa.iter().filter(|d| **d != b'.').take(digits.len()) {
        digits[count] = d;
        count += 1;
    }
    let digits = &digits[..count];
    let count = count as i32;
    if point >= count {
        out.extend_from_slice(digits);
        out.resize(out.len() + (point - count) as usize, b'0');
    } else if point > 0 {
        let (whole, fraction) = digits.split_at(point as usize);
        out.extend_from_slice(whole);
        out.push(b'.');
        out.extend_from_slice(fraction);
    } else {
        out.extend_from_slice(b"0.");
        out.resize(out.len() + (-point) as usize, b'0');
        out.extend_from_slice(digits);
    }
}

/// Elements of an array; `in_variant` closes the `{"Variant":` around it too.
pub struct Seq<'a> {
    enc: &'a mut Encoder,
    first: bool,
    in_variant: bool,
}

impl Seq<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JcsError> {
        if !self.first {
            self.enc.out.push(b',');
        }
        self.first = false;
        value.serialize(&mut *self.enc)
    }

    fn close(self) -> Result<(), JcsError> {
        self.enc.out.push(b']');
        if self.in_variant {
            self.enc.end_member();
            self.enc.end_object()?;
        }
        Ok(())
    }
}

/// Members of an object; `in_variant` closes the `{"Variant":` around it too.
pub struct Obj<'a> {
    enc: &'a mut Encoder,
    in_variant: bool,
}

impl Obj<'_> {
    fn member<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), JcsError> {
        self.enc.key(key)?;
        value.serialize(&mut *self.enc)?;
        self.enc.end_member();
        Ok(())
    }

    fn close(self) -> Result<(), JcsError> {
        self.enc.end_object()?;
        if self.in_variant {
            self.enc.end_member();
            self.enc.end_object()?;
        }
        Ok(())
    }
}

/// Integer types that fit an i128 all print through `Encoder::integer`.
macro_rules! integers {
    ($($method:ident: $ty:ty),*) => {$(
        fn $method(self, v: $ty) -> Result<(), JcsError> {
            self.integer(v.into())
        }
    )*};
}

impl<'a> ser::Serializer for &'a mut Encoder {
    type Ok = ();
    type Error = JcsError;
    type SerializeSeq = Seq<'a>;
    type SerializeTuple = Seq<'a>;
    type SerializeTupleStruct = Seq<'a>;
    type SerializeTupleVariant = Seq<'a>;
    type SerializeMap = Obj<'a>;
    type SerializeStruct = Obj<'a>;
    type SerializeStructVariant = Obj<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), JcsError> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }

    integers!(
        serialize_i8: i8,
        serialize_i16: i16,
        serialize_i32: i32,
        serialize_i64: i64,
        serialize_i128: i128,
        serialize_u8: u8,
        serialize_u16: u16,
        serialize_u32: u32,
        serialize_u64: u64
    );

    fn serialize_u128(self, v: u128) -> Result<(), JcsError> {
        match i128::try_from(v) {
            Ok(v) => self.integer(v),
            Err(_) => self.number(v as f64),
        }
    }

    fn serialize_f32(self, v: f32) -> Result<(), JcsError> {
        self.number(v.into())
    }

    fn serialize_f64(self, v: f64) -> Result<(), JcsError> {
        self.number(v)
    }

    fn serialize_char(self, v: char) -> Result<(), JcsError> {
        self.string(v.encode_utf8(&mut [0u8; 4]));
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Result<(), JcsError> {
        self.string(v);
        Ok(())
    }

    /// As serde_json does: an array of the byte values.
    fn serialize_bytes(self, v: &[u8]) -> Result<(), JcsError> {
        use ser::SerializeSeq;
        let mut seq = self.serialize_seq(Some(v.len()))?;
        for b in v {
            seq.serialize_element(b)?;
        }
        seq.end()
    }

    fn serialize_none(self) -> Result<(), JcsError> {
        self.serialize_unit()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), JcsError> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), JcsError> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn serialize_unit_struct(self, _: &'static str) -> Result<(), JcsError> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), JcsError> {
        self.serialize_str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), JcsError> {
        if name == HANDED_TOKEN {
            if let Some(bytes) = HANDED.with(|h| h.take()) {
                self.out.extend_from_slice(&bytes);
                return Ok(());
            }
        }
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), JcsError> {
        self.begin_object();
        let mut obj = Obj {
            enc: self,
            in_variant: false,
        };
        obj.member(variant, value)?;
        obj.close()
    }

    fn serialize_seq(self, _: Option<usize>) -> Result<Seq<'a>, JcsError> {
        self.out.push(b'[');
        Ok(Seq {
            enc: self,
            first: true,
            in_variant: false,
        })
    }

    fn serialize_tuple(self, len: usize) -> Result<Seq<'a>, JcsError> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Seq<'a>, JcsError> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Seq<'a>, JcsError> {
        self.begin_object();
        self.key(variant)?;
        self.out.push(b'[');
        Ok(Seq {
            enc: self,
            first: true,
            in_variant: true,
        })
    }

    fn serialize_map(self, _: Option<usize>) -> Result<Obj<'a>, JcsError> {
        self.begin_object();
        Ok(Obj {
            enc: self,
            in_variant: false,
        })
    }

    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Obj<'a>, JcsError> {
        self.serialize_map(None)
    }

    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Obj<'a>, JcsError> {
        self.begin_object();
        self.key(variant)?;
        self.begin_object();
        Ok(Obj {
            enc: self,
            in_variant: true,
        })
    }
}

/// The four array-like serde traits all add an element and close the array.
macro_rules! array_like {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Seq<'_> {
            type Ok = ();
            type Error = JcsError;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JcsError> {
                self.element(value)
            }

            fn end(self) -> Result<(), JcsError> {
                self.close()
            }
        }
    )*};
}

array_like!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

impl ser::SerializeMap for Obj<'_> {
    type Ok = ();
    type Error = JcsError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), JcsError> {
        key.serialize(KeySerializer(&mut *self.enc))
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), JcsError> {
        value.serialize(&mut *self.enc)?;
        self.enc.end_member();
        Ok(())
    }

    fn end(self) -> Result<(), JcsError> {
        self.close()
    }
}

/// Structs and struct variants both add a member under a field name and close.
macro_rules! struct_like {
    ($($trait:ident),*) => {$(
        impl ser::$trait for Obj<'_> {
            type Ok = ();
            type Error = JcsError;

            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), JcsError> {
                self.enc.field_key(key)?;
                value.serialize(&mut *self.enc)?;
                self.enc.end_member();
                Ok(())
            }

            fn end(self) -> Result<(), JcsError> {
                self.close()
            }
        }
    )*};
}

struct_like!(SerializeStruct, SerializeStructVariant);

/// Scalars that cannot be object keys.
macro_rules! refuse_scalars {
    ($($method:ident: $ty:ty),*) => {$(
        fn $method(self, _: $ty) -> Result<(), JcsError> {
            not_a_key()
        }
    )*};
}

/// Map keys: strings only (the format's keys are all `[A-Za-z0-9_]`).
struct KeySerializer<'a>(&'a mut Encoder);

fn not_a_key<T>() -> Result<T, JcsError> {
    fail("object keys must be strings")
}

impl ser::Serializer for KeySerializer<'_> {
    type Ok = ();
    type Error = JcsError;
    type SerializeSeq = ser::Impossible<(), JcsError>;
    type SerializeTuple = ser::Impossible<(), JcsError>;
    type SerializeTupleStruct = ser::Impossible<(), JcsError>;
    type SerializeTupleVariant = ser::Impossible<(), JcsError>;
    type SerializeMap = ser::Impossible<(), JcsError>;
    type SerializeStruct = ser::Impossible<(), JcsError>;
    type SerializeStructVariant = ser::Impossible<(), JcsError>;

    fn serialize_str(self, v: &str) -> Result<(), JcsError> {
        self.0.key(v)
    }

    fn serialize_char(self, v: char) -> Result<(), JcsError> {
        self.0.key(v.encode_utf8(&mut [0u8; 4]))
    }

    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), JcsError> {
        self.0.key(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), JcsError> {
        value.serialize(self)
    }

    refuse_scalars!(
        serialize_bool: bool,
        serialize_i8: i8,
        serialize_i16: i16,
        serialize_i32: i32,
        serialize_i64: i64,
        serialize_u8: u8,
        serialize_u16: u16,
        serialize_u32: u32,
        serialize_u64: u64,
        serialize_f32: f32,
        serialize_f64: f64
    );
    fn serialize_bytes(self, _: &[u8]) -> Result<(), JcsError> {
        not_a_key()
    }
    fn serialize_none(self) -> Result<(), JcsError> {
        not_a_key()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), JcsError> {
        not_a_key()
    }
    fn serialize_unit(self) -> Result<(), JcsError> {
        not_a_key()
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), JcsError> {
        not_a_key()
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), JcsError> {
        not_a_key()
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, JcsError> {
        not_a_key()
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, JcsError> {
        not_a_key()
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, JcsError> {
        not_a_key()
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, JcsError> {
        not_a_key()
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, JcsError> {
        not_a_key()
    }
    fn serialize_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStruct, JcsError> {
        not_a_key()
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, JcsError> {
        not_a_key()
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

    fn ecmascript(v: f64) -> String {
        let mut out = Vec::new();
        write_ecmascript(&mut out, v);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn numbers_print_as_ecmascript_does_across_every_exponent() {
        let mut reference = ryu_js::Buffer::new();
        let mut check = |v: f64| assert_eq!(ecmascript(v), reference.format_finite(v), "{v:e}");
        for e in -324..=308 {
            for m in [
                "1",
                "1.5",
                "9.999999999999999",
                "5",
                "2.2250738585072014",
                "4.9",
            ] {
                if let Ok(v) = format!("{m}e{e}").parse::<f64>() {
                    check(v);
                    check(-v);
                }
            }
        }
        for v in [
            f64::MAX,
            f64::MIN_POSITIVE,
            5e-324,
            9007199254740992.0,
            9007199254740993.0,
            1e21,
            123e18,
            1e-6,
            1e-7,
            0.1 + 0.2,
            -0.0,
        ] {
            check(v);
            check(-v);
        }
        // Random bit patterns, and the same mantissas moved to exponents near the switch
        // between plain and exponential layouts.
        let mut state = 0x1234_5678_9abc_def0u64;
        for _ in 0..200_000 {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let v = f64::from_bits(state);
            if v.is_finite() {
                check(v);
            }
            check(f64::from_bits(
                (state & 0x800F_FFFF_FFFF_FFFF) | ((1023 - 40 + (state >> 52) % 120) << 52),
            ));
        }
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

        /// One member written first, the rest in order: how an internally tagged enum
        /// writes its tag.
        #[test]
        fn a_first_member_out_of_place_moves_to_its_place(
            members in prop::collection::btree_map("[A-Za-z0-9_]{1,8}", value(), 1..10),
            pick in any::<prop::sample::Index>(),
            duplicate in any::<bool>(),
        ) {
            let sorted: Vec<(String, Value)> = members.into_iter().collect();
            let mut written = sorted.clone();
            let first = written.remove(pick.index(sorted.len()));
            written.insert(0, first.clone());
            let ours = to_vec(&InOrder(written.clone()));
            let reference = serde_json_canonicalizer::to_vec(&Value::Object(sorted.into_iter().collect())).unwrap();
            prop_assert_eq!(String::from_utf8(ours.unwrap()).unwrap(), String::from_utf8(reference).unwrap());
            if duplicate {
                written.push(first);
                written[1..].sort_by(|a, b| a.0.cmp(&b.0));
                prop_assert!(to_vec(&InOrder(written)).is_err());
            }
        }

        #[test]
        fn matches_the_reference_canonicalizer(v in value()) {
            let ours = to_vec(&v).unwrap();
            let reference = serde_json_canonicalizer::to_vec(&v).unwrap();
            prop_assert_eq!(String::from_utf8(ours).unwrap(), String::from_utf8(reference).unwrap());
        }
    }
}
