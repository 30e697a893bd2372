//! Analyses over the cluster model, answered with the reference evaluator:
//! the connectivity table and packet traces.

pub mod connectivity;
pub mod diff;
pub mod engine;
pub mod explain;
pub mod fast_hash;
pub mod graph;
pub mod reason;
pub mod services;
pub mod table;
pub mod trace;
