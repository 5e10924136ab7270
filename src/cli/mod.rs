//! Commands of the `bizra-risk` binary that live in files of their own.

pub mod captures;
pub mod dashboard;
pub mod demo;
pub mod replay;
pub mod run;
pub mod verify;
pub mod witness;
