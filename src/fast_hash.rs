//! Maps and sets looked up on the per-event and per-decision paths hash with foldhash
//! rather than SipHash: their keys are the engine's own symbols, action IDs and price
//! keys, not chosen by a client, and the per-process seed still spreads them.

pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
pub type FastSet<T> = std::collections::HashSet<T, foldhash::fast::RandomState>;
