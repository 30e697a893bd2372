//! Services: what kube-proxy (or Cilium's kube-proxy replacement) does with
//! a connection to a Service address, as data.
//!
//! - [`model`]: Services with their frontends' inputs (cluster IPs, node
//!   ports, external and load-balancer IPs) and their backends per port,
//!   with the EndpointSlice conditions;
//! - [`select`]: which backends a node uses for a frontend, under the
//!   traffic policies;
//! - [`ids`]: backend and reverse-NAT ids that stay stable across compiles;
//! - [`connect`]: the reference answer to "what happens to a connection to
//!   this address and port", composed with policy after translation.
//!
//! Sources: Kubernetes "Service" and "Virtual IPs and Service Proxies"
//! (<https://kubernetes.io/docs/reference/networking/virtual-ips/>), the
//! `ServiceSpec` API reference, and KEP-1669 (proxying terminating
//! endpoints).

pub mod connect;
pub mod ids;
pub mod model;
pub mod select;

pub use model::{Backend, Conditions, Service, ServicePort, ServiceType, TrafficPolicy};
