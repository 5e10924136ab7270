//! A record with its canonical bytes, made once where the record is made and shared by
//! every payload that carries it: the signing path copies the bytes instead of encoding
//! the record again.

use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// `T` with its RFC 8785 bytes (`of`). Reads and writes as the `T` it holds; changing the
/// record drops the bytes, and a record read back or made with `from` has none (it is
/// encoded with the payload, the same bytes).
#[derive(Debug, Clone)]
pub struct Encoded<T>(Arc<Inner<T>>);

#[derive(Debug, Clone)]
struct Inner<T> {
    record: T,
    canonical: Option<Arc<[u8]>>,
}

impl<T: Serialize> Encoded<T> {
    /// `record`, encoded now (if it cannot be, encoding the payload fails the same way
    /// later).
    pub fn of(record: T) -> Self {
        let canonical = super::jcs::to_vec(&record).ok().map(Into::into);
        Self(Arc::new(Inner { record, canonical }))
    }
}

impl<T> From<T> for Encoded<T> {
    fn from(record: T) -> Self {
        Self(Arc::new(Inner {
            record,
            canonical: None,
        }))
    }
}

impl<T> std::ops::Deref for Encoded<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0.record
    }
}

impl<T: Clone> std::ops::DerefMut for Encoded<T> {
    fn deref_mut(&mut self) -> &mut T {
        let inner = Arc::make_mut(&mut self.0);
        inner.canonical = None;
        &mut inner.record
    }
}

impl<T: PartialEq> PartialEq for Encoded<T> {
    fn eq(&self, other: &Self) -> bool {
        self.0.record == other.0.record
    }
}

impl<T: Serialize> Serialize for Encoded<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0.canonical {
            Some(bytes) => super::jcs::serialize_encoded(bytes, &self.0.record, s),
            None => self.0.record.serialize(s),
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Encoded<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encoded_or_not_the_bytes_are_the_same_and_a_change_drops_them() {
        let value = json!({"b": [1.5, "x"], "a": {"d": null, "c": true}});
        let plain = super::super::jcs::to_vec(&value).unwrap();
        let mut encoded = Encoded::of(value.clone());
        let wrapped = json!({"z": 0});
        assert_eq!(super::super::jcs::to_vec(&encoded).unwrap(), plain);
        assert_eq!(
            super::super::jcs::to_vec(&Encoded::from(value)).unwrap(),
            plain
        );
        // Other serializers see the record itself.
        assert_eq!(
            serde_json::to_value(&encoded).unwrap(),
            serde_json::from_slice::<serde_json::Value>(&plain).unwrap()
        );
        *encoded = wrapped.clone();
        assert_eq!(
            super::super::jcs::to_vec(&encoded).unwrap(),
            super::super::jcs::to_vec(&wrapped).unwrap()
        );
    }
}
