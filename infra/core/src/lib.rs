//! The infra engine: typed model -> dependency graph -> diff against live AWS -> plan (a
//! value) -> apply. See ARCHITECTURE.md at the workspace root for the code map.

pub mod apply;
pub mod aws;
pub mod caller;
pub mod cloudformation;
pub mod cloudformation_engine;
pub mod compliance;
pub mod drift;
pub mod eventual;
pub mod graph;
pub mod kinds;
pub mod model;
pub mod package;
pub mod plan;
pub mod rate_limit;
pub mod render;
pub mod schedule;
pub mod sql;
pub mod state;
