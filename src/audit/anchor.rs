//! Anchors an auditor holds apart from the trail: `CHAIN:SEQ:HASH` heads and witness files
//! of checkpoint records (the newest checkpoint of each chain pins its length).

use std::collections::BTreeMap;

use super::wire;

/// Event `seq` of `chain` must be in the trail with event hash `hash`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedHead {
    pub chain: String,
    pub seq: u64,
    pub hash: [u8; 32],
    /// Where the auditor got it (shown with a failure).
    pub source: String,
}

/// `CHAIN:SEQ:HASH` (the chain ID may itself hold no colon).
pub fn parse_expected_head(text: &str) -> Result<ExpectedHead, String> {
    let mut parts = text.rsplitn(3, ':');
    let (hash, seq, chain) = match (parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(s), Some(c)) if !c.is_empty() => (h, s, c),
        _ => return Err(format!("{text}: expected CHAIN:SEQ:HASH")),
    };
    let seq = seq
        .parse()
        .map_err(|_| format!("{text}: SEQ is not a sequence number"))?;
    let mut h = [0u8; 32];
    hex::decode_to_slice(hash, &mut h).map_err(|_| format!("{text}: HASH is not 64 hex digits"))?;
    Ok(ExpectedHead {
        chain: chain.to_string(),
        seq,
        hash: h,
        source: format!("--expect-head {text}"),
    })
}

/// For each chain, the head pinned by its newest checkpoint in a witness file.
pub fn heads_from_witness(name: &str, bytes: &[u8]) -> Result<Vec<ExpectedHead>, String> {
    let mut newest: BTreeMap<String, ExpectedHead> = BTreeMap::new();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        let position = format!("{name}:{}", i + 1);
        let cp = wire::parse_checkpoint(line)
            .map_err(|e| format!("{position}: not a checkpoint record ({e:?})"))?
            .checkpoint;
        let mut hash = [0u8; 32];
        hex::decode_to_slice(&cp.last_event_sha256, &mut hash)
            .map_err(|_| format!("{position}: last_event_sha256 is not 64 hex digits"))?;
        if newest.get(&cp.chain).is_none_or(|h| cp.last_seq > h.seq) {
            newest.insert(
                cp.chain.clone(),
                ExpectedHead {
                    chain: cp.chain,
                    seq: cp.last_seq,
                    hash,
                    source: position,
                },
            );
        }
    }
    Ok(newest.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expected_heads_parse_and_bad_ones_are_refused() {
        let h = parse_expected_head(&format!("bizra.BTCUSDT:42:{}", "ab".repeat(32))).unwrap();
        assert_eq!(
            (h.chain.as_str(), h.seq, h.hash),
            ("bizra.BTCUSDT", 42, [0xab; 32])
        );
        for bad in [
            "x:1",
            ":1:00",
            &format!("c:x:{}", "ab".repeat(32)),
            "c:1:zz",
        ] {
            assert!(parse_expected_head(bad).is_err(), "{bad}");
        }
    }
}
