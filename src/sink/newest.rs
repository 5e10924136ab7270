//! The newest event and checkpoint of each chain found in a scan (topics, the spool), from
//! which a restart continues every chain and its checkpoint links.

use std::collections::HashMap;

use super::spool::TopicKind;
use crate::audit::{checkpoint_head, head_after, ChainHead};

#[derive(Debug, Default)]
pub struct NewestRecords {
    events: HashMap<String, (u64, Vec<u8>)>,
    checkpoints: HashMap<String, (u64, Vec<u8>)>,
}

fn keep_newest(map: &mut HashMap<String, (u64, Vec<u8>)>, chain: &str, seq: u64, line: &[u8]) {
    match map.get_mut(chain) {
        Some(slot) if seq < slot.0 => {}
        Some(slot) => *slot = (seq, line.to_vec()),
        None => {
            map.insert(chain.to_string(), (seq, line.to_vec()));
        }
    }
}

impl NewestRecords {
    /// An event record of `chain` at `seq`.
    pub fn event(&mut self, chain: &str, seq: u64, line: &[u8]) {
        keep_newest(&mut self.events, chain, seq, line);
    }

    /// A checkpoint record of `chain` ending at `last_seq`.
    pub fn checkpoint(&mut self, chain: &str, last_seq: u64, line: &[u8]) {
        keep_newest(&mut self.checkpoints, chain, last_seq, line);
    }

    /// Take in what `other` found (the newer record of each chain wins).
    pub fn absorb(&mut self, other: &NewestRecords) {
        for (chain, (seq, line)) in &other.events {
            self.event(chain, *seq, line);
        }
        for (chain, (seq, line)) in &other.checkpoints {
            self.checkpoint(chain, *seq, line);
        }
    }

    /// The newest sequence number of each chain, per topic.
    pub fn seqs(&self) -> HashMap<(TopicKind, String), u64> {
        let events = self
            .events
            .iter()
            .map(|(c, (s, _))| ((TopicKind::Decisions, c.clone()), *s));
        let checkpoints = self
            .checkpoints
            .iter()
            .map(|(c, (s, _))| ((TopicKind::Checkpoints, c.clone()), *s));
        events.chain(checkpoints).collect()
    }

    /// The newest event of each chain: its sequence number and bytes.
    pub fn events(&self) -> impl Iterator<Item = (&str, u64, &[u8])> {
        self.events
            .iter()
            .map(|(c, (s, line))| (c.as_str(), *s, line.as_slice()))
    }

    /// `chain`'s newest checkpoint: its last sequence number and bytes.
    pub fn newest_checkpoint(&self, chain: &str) -> Option<(u64, &[u8])> {
        self.checkpoints.get(chain).map(|(s, l)| (*s, l.as_slice()))
    }

    /// Where each chain with events continues, with its last checkpoint's link.
    pub fn heads(&self) -> Result<HashMap<String, ChainHead>, String> {
        let mut heads = HashMap::new();
        for (chain, (_, line)) in &self.events {
            let mut head = head_after(line)?;
            if let Some((_, cp)) = self.checkpoints.get(chain) {
                head.checkpoint = Some(checkpoint_head(cp)?.1);
            }
            heads.insert(chain.clone(), head);
        }
        Ok(heads)
    }
}
