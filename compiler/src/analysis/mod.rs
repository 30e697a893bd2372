//! Analyses over the cluster model, answered with the reference evaluator:
//! the connectivity table and packet traces.

pub mod connectivity;
pub mod diff;
pub mod explain;
pub mod graph;
pub mod reason;
pub mod services;
pub mod trace;
