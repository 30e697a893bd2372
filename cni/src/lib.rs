//! `policyc-cni`: a chained CNI plugin that closes the window between a
//! pod's network coming up and its policy being in force.
//!
//! A container runtime runs the plugins of a conflist in order
//! ([CNI specification 1.0](https://github.com/containernetworking/cni/blob/main/SPEC.md)):
//! the network plugin (`ptp`, `bridge`, ...) makes the pod's interface and
//! addresses and returns them as its result; the runtime hands that result
//! to the next plugin as `prevResult` in its network configuration on
//! stdin. `policyc-cni` comes after the network plugin: on `ADD` it tells
//! policyc's node agent (`policyc-loader run`) over a unix socket the pod's
//! container id, namespace and name (`CNI_ARGS`), network namespace, the
//! host side of its interface (the result's interface without `sandbox`)
//! and its addresses, and waits until the agent answers that the pod's
//! programs are attached and its entries are in force. Only then does it
//! print `prevResult` unchanged, so the runtime starts the pod's
//! containers with its policy already enforced. `DEL` asks the agent to
//! drop the sandbox's registration (keyed by container id, so a late
//! `DEL` of an old sandbox leaves a pod re-created under the same name
//! alone), `CHECK` asks whether it is in force, `VERSION` lists the spec
//! versions this plugin speaks.
//!
//! The plugin is a thin binary ([`plugin::run`] does the work, given the
//! environment and stdin as values); the agent side of the socket reads the
//! same [`protocol`] types.
//!
//! The same binary sets a node up, from the DaemonSet's init containers
//! (the image has no shell): [`bpffs`] mounts bpffs where the node lacks
//! it, [`install`] copies the plugin into the runtime's plugin directory
//! and chains it after the network plugin; [`command`] reads which.
#![deny(missing_docs)]

pub mod bpffs;
pub mod command;
pub mod connect;
pub mod error;
pub mod install;
pub mod netconf;
pub mod plugin;
pub mod protocol;
