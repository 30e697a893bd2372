//! policyc: an ahead-of-time compiler from Kubernetes and Cilium network
//! policy manifests to eBPF bundles.
//!
//! The pipeline: [`front`] reads and checks manifests into objects (with
//! diagnostics that name file, document, object, field path and position);
//! [`lower`] assembles them into the IR's cluster model (endpoints with
//! identity labels, normalized policies); `policyc_ir` resolves identities
//! and policy maps and holds the reference evaluator; [`emit`] writes a
//! deterministic bundle per node.
//!
//! [`compile::compile`] runs the whole pipeline as one library call; the
//! `policyc` command ([`cli`]) only parses arguments, calls it and renders
//! what it reports.
#![deny(missing_docs)]

pub mod analysis;
pub mod cli;
pub mod compile;
pub mod diag;
pub mod emit;
pub mod front;
pub mod lint;
pub mod lower;
pub mod pipeline;
pub mod select;
pub mod semantics;
