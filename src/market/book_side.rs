//! One side of a local order book: quantities by price key (the price's IEEE bits), in key
//! order. Every diff-depth update touches tens of levels of books that hold thousands, and
//! at many symbols the books do not fit in the caches: a B-tree's search then waits on
//! memory at each of its four or five nodes. Here the keys sit in pages of at most
//! `PAGE_MAX`, found by a binary search over one contiguous array of the pages' first keys,
//! so a search touches two arrays.

/// Keys per page at most; a fuller page is split in two.
const PAGE_MAX: usize = 64;
/// A page left with fewer keys than this is merged with the next when they fit in one.
const PAGE_MIN: usize = PAGE_MAX / 4;

#[derive(Debug, Clone, Default)]
pub struct BookSide {
    /// The first key of each page, ascending.
    firsts: Vec<u64>,
    /// Never empty; every key of page `p` is at least `firsts[p]` and below `firsts[p + 1]`.
    pages: Vec<Page>,
    len: usize,
}

#[derive(Debug, Clone, Default)]
struct Page {
    keys: Vec<u64>,
    qtys: Vec<f64>,
}

impl BookSide {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn clear(&mut self) {
        self.firsts.clear();
        self.pages.clear();
        self.len = 0;
    }

    /// The page that holds `key`, or would.
    fn page_of(&self, key: u64) -> usize {
        match self.firsts.binary_search(&key) {
            Ok(p) => p,
            Err(p) => p.saturating_sub(1),
        }
    }

    pub fn insert(&mut self, key: u64, qty: f64) {
        if self.pages.is_empty() {
            self.firsts.push(key);
            self.pages.push(Page {
                keys: vec![key],
                qtys: vec![qty],
            });
            self.len = 1;
            return;
        }
        let p = self.page_of(key);
        let page = &mut self.pages[p];
        match page.keys.binary_search(&key) {
            Ok(i) => page.qtys[i] = qty,
            Err(i) => {
                page.keys.insert(i, key);
                page.qtys.insert(i, qty);
                self.len += 1;
                if i == 0 {
                    // Only below every key of the side (page 0).
                    self.firsts[p] = key;
                }
                if page.keys.len() > PAGE_MAX {
                    let half = page.keys.len() / 2;
                    let upper = Page {
                        keys: page.keys.split_off(half),
                        qtys: page.qtys.split_off(half),
                    };
                    self.firsts.insert(p + 1, upper.keys[0]);
                    self.pages.insert(p + 1, upper);
                }
            }
        }
    }

    pub fn remove(&mut self, key: u64) -> Option<f64> {
        if self.pages.is_empty() {
            return None;
        }
        let p = self.page_of(key);
        let page = &mut self.pages[p];
        let i = page.keys.binary_search(&key).ok()?;
        page.keys.remove(i);
        let qty = page.qtys.remove(i);
        self.len -= 1;
        if page.keys.is_empty() {
            self.pages.remove(p);
            self.firsts.remove(p);
            return Some(qty);
        }
        if i == 0 {
            self.firsts[p] = page.keys[0];
        }
        let left = page.keys.len();
        if left < PAGE_MIN && p + 1 < self.pages.len() {
            let fits = left + self.pages[p + 1].keys.len() <= PAGE_MAX;
            if fits {
                let next = self.pages.remove(p + 1);
                self.firsts.remove(p + 1);
                let page = &mut self.pages[p];
                page.keys.extend(next.keys);
                page.qtys.extend(next.qtys);
            }
        }
        Some(qty)
    }

    /// The lowest key and its quantity.
    pub fn first(&self) -> Option<(u64, f64)> {
        let page = self.pages.first()?;
        Some((*page.keys.first()?, *page.qtys.first()?))
    }

    /// The highest key and its quantity.
    pub fn last(&self) -> Option<(u64, f64)> {
        let page = self.pages.last()?;
        Some((*page.keys.last()?, *page.qtys.last()?))
    }

    pub fn pop_first(&mut self) -> Option<(u64, f64)> {
        let (key, _) = self.first()?;
        self.remove(key).map(|qty| (key, qty))
    }

    pub fn pop_last(&mut self) -> Option<(u64, f64)> {
        let (key, _) = self.last()?;
        self.remove(key).map(|qty| (key, qty))
    }

    /// Every level in key order.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = (u64, f64)> + '_ {
        self.pages
            .iter()
            .flat_map(|p| p.keys.iter().copied().zip(p.qtys.iter().copied()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u64, u32),
        Remove(u64),
        PopFirst,
        PopLast,
        Clear,
    }

    fn op() -> impl Strategy<Value = Op> {
        // Keys from a narrow range, so that inserts hit existing levels and removes find them.
        prop_oneof![
            6 => (0u64..400, any::<u32>()).prop_map(|(k, q)| Op::Insert(k, q)),
            4 => (0u64..400).prop_map(Op::Remove),
            1 => Just(Op::PopFirst),
            1 => Just(Op::PopLast),
            1 => Just(Op::Clear),
        ]
    }

    proptest! {
        #[test]
        fn behaves_as_an_ordered_map(ops in proptest::collection::vec(op(), 0..3000)) {
            let mut side = BookSide::default();
            let mut model = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, q) => {
                        side.insert(k, f64::from(q));
                        model.insert(k, f64::from(q));
                    }
                    Op::Remove(k) => prop_assert_eq!(side.remove(k), model.remove(&k)),
                    Op::PopFirst => prop_assert_eq!(side.pop_first(), model.pop_first()),
                    Op::PopLast => prop_assert_eq!(side.pop_last(), model.pop_last()),
                    Op::Clear => {
                        side.clear();
                        model.clear();
                    }
                }
                prop_assert_eq!(side.len(), model.len());
                prop_assert_eq!(side.first(), model.first_key_value().map(|(k, q)| (*k, *q)));
                prop_assert_eq!(side.last(), model.last_key_value().map(|(k, q)| (*k, *q)));
                prop_assert!(side.pages.iter().all(|p| !p.keys.is_empty() && p.keys.len() <= PAGE_MAX));
                prop_assert!(side.pages.iter().zip(&side.firsts).all(|(p, f)| p.keys[0] == *f));
            }
            let all: Vec<(u64, f64)> = side.iter().collect();
            let expected: Vec<(u64, f64)> = model.into_iter().collect();
            prop_assert_eq!(all, expected);
        }
    }
}
