//! The `infra` command line: argument parsing and the commands, on top of the engine
//! (`infra-core`) and the stack (`stacks`). The engine returns typed errors; this crate adds
//! context and prints them for people.

pub mod bench;
pub mod cli;

pub use infra_core as core;
pub use stacks;
