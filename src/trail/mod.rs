//! Reading signed trails wherever they are: record files and directories (`files`) and
//! Kafka topics (`topic`). Verification itself is `audit::verify`; these only find and
//! read the records.

pub mod files;
pub mod topic;

pub use files::{record_files, RecordFile};
pub use topic::{KafkaSource, StartAt};
