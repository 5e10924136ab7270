//! Reading back what a broker acknowledged: the records at given offsets of given
//! partitions, as digests, so the sink can tell which acknowledged records the topic no
//! longer holds (a broker that lost acknowledged writes) and send them again.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::SinkError;

/// Identifies a record's bytes without keeping them: length and CRC-32C of the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digest {
    pub len: u32,
    pub crc: u32,
}

impl Digest {
    pub fn of(payload: &[u8]) -> Self {
        Self {
            len: payload.len() as u32,
            crc: crc32fast::hash(payload),
        }
    }
}

/// What a partition holds from the first offset asked for.
#[derive(Debug, Default)]
pub struct PartitionView {
    /// The first offset still in the log (records before it were deleted by retention).
    pub log_start: i64,
    pub records: HashMap<i64, Digest>,
}

/// For each (topic, partition), the records from the given offset to the end.
pub fn read_back(
    brokers: &super::KafkaEndpoint,
    from: &BTreeMap<(String, i32), i64>,
    timeout: Duration,
) -> Result<BTreeMap<(String, i32), PartitionView>, SinkError> {
    let kerr = |e: KafkaError| SinkError::Kafka(e.to_string());
    // What the broker acknowledged, committed or not.
    let consumer = crate::trail::topic::reader(brokers, "bizra-risk-readback", "read_uncommitted")?;
    let mut out = BTreeMap::new();
    for ((topic, partition), first) in from {
        let (low, high) = consumer
            .fetch_watermarks(topic, *partition, timeout)
            .map_err(kerr)?;
        let mut view = PartitionView {
            log_start: low,
            records: HashMap::new(),
        };
        let start = (*first).max(low);
        if start < high {
            let mut tpl = TopicPartitionList::new();
            tpl.add_partition_offset(topic, *partition, Offset::Offset(start))
                .map_err(kerr)?;
            consumer.assign(&tpl).map_err(kerr)?;
            let deadline = Instant::now() + timeout;
            loop {
                if Instant::now() > deadline {
                    return Err(SinkError::Kafka(format!(
                        "timed out reading back {topic}/{partition}"
                    )));
                }
                match consumer.poll(Duration::from_millis(100)) {
                    Some(Ok(m)) => {
                        let payload = m.payload().unwrap_or_default();
                        view.records.insert(m.offset(), Digest::of(payload));
                        if m.offset() + 1 >= high {
                            break;
                        }
                    }
                    Some(Err(KafkaError::PartitionEOF(_))) => break,
                    Some(Err(e)) => return Err(kerr(e)),
                    None => {}
                }
            }
        }
        out.insert((topic.clone(), *partition), view);
    }
    Ok(out)
}
