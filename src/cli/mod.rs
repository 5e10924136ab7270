//! Commands of the `bizra-risk` binary that live in files of their own.

pub mod verify;
pub mod witness;
