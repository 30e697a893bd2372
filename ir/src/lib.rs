//! policyc's intermediate representation, with no I/O.
//!
//! The front end lowers manifests into a [`cluster::Cluster`]: namespaces,
//! endpoints (pods, and workloads standing for their pods) with their
//! identity-relevant labels, and [`policy::Policy`] values in which
//! Kubernetes `NetworkPolicy` and Cilium rules share one vocabulary
//! (subject selector, per-direction default deny, allow/deny rules over
//! peers and ports).
//!
//! Two independent readings of that model live here:
//! - [`eval`], the reference semantics: a direct evaluator of "may A reach
//!   B on this protocol and port", written from the Kubernetes and Cilium
//!   documentation. It is slow and obvious on purpose: it is the oracle.
//! - identity resolution: every identity-relevant label set gets a stable
//!   numeric identity (Cilium's numbering), every CIDR a CIDR identity in an
//!   LPM trie, and every rule becomes per-endpoint map entries keyed by
//!   (peer identity, direction, protocol, port prefix).
//!
//! The back end emits the second reading; tests check it against the first.
//!
//! Services ([`service`]) are the third part: what kube-proxy does with a
//! connection to a Service address (which backends on which node, refused
//! or dropped), with [`service::connect::connect`] composing it with
//! policy judged on the backend after translation.
#![deny(missing_docs)]

pub mod cidr;
pub mod cidr_trie;
pub mod cluster;
pub mod dump;
pub mod eval;
pub mod identity;
pub mod identity_split;
pub mod ids;
pub mod labels;
pub mod localhost;
pub mod lookup;
pub mod normalized;
pub mod parallel;
pub mod policy;
pub mod policy_map;
pub mod protocol;
pub mod reserved;
pub mod resolve;
pub mod selector;
pub mod selector_index;
pub mod service;
pub mod tier;
pub mod validate;
