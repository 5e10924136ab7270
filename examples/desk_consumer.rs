//! A trading desk's consumer of the signed risk decisions.
//!
//! Joins a consumer group on the decisions topic, verifies every record (signature,
//! payload hash, chain link) before acting on it, drops the duplicates a producer restart
//! can leave (by chain and sequence number), and prints the actions a desk must act on.
//! Offsets are committed only after a record has been handled.
//!
//! ```sh
//! cargo run --example desk_consumer -- 127.0.0.1:9092 bizra.risk.decisions out/keys/signing.key.pub
//! ```

use std::collections::HashMap;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::Message;

use bizra_risk::audit::{keys, Verifier, VerifyOptions};
use bizra_risk::tail;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, brokers, topic, key_file] = args.as_slice() else {
        anyhow::bail!("usage: desk_consumer BROKERS TOPIC VERIFYING_KEY_FILE");
    };
    let key = keys::parse_verifying_key(&std::fs::read_to_string(key_file)?)
        .map_err(anyhow::Error::msg)?;
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "risk-desk-example")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()?;
    consumer.subscribe(&[topic])?;
    // A group may resume mid-chain: anchor each chain at the first record it sees.
    let options = VerifyOptions {
        strict: false,
        from_genesis: false,
        allow_duplicates: false,
    };
    let mut verifier = Verifier::with_options(&[key], options);
    let mut next_seq: HashMap<String, u64> = HashMap::new();
    loop {
        let Some(msg) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let msg = msg?;
        let payload = msg.payload().unwrap_or_default();
        let position = format!("{}/{}@{}", msg.topic(), msg.partition(), msg.offset());
        // Duplicates (same chain and sequence number) were already handled: skip them.
        let chain = header(&msg, "chain");
        let seq = header(&msg, "seq").and_then(|s| s.parse::<u64>().ok());
        if let (Some(chain), Some(seq)) = (&chain, seq) {
            if next_seq.get(chain).is_some_and(|n| seq < *n) {
                consumer.commit_message(&msg, CommitMode::Async)?;
                continue;
            }
            next_seq.insert(chain.clone(), seq + 1);
        }
        let item = tail::decode(&mut verifier, &position, payload);
        if !item.verified {
            eprintln!("REJECTED (not acting on it): {}", tail::render(&item));
        } else if item.verdict.is_some_and(|v| v.as_str() != "PASS") || item.new_key_id.is_some() {
            println!("{}", tail::render(&item));
        }
        consumer.commit_message(&msg, CommitMode::Async)?;
    }
}

fn header(msg: &rdkafka::message::BorrowedMessage<'_>, name: &str) -> Option<String> {
    use rdkafka::message::Headers;
    let headers = msg.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}
