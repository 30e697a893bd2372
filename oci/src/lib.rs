//! Bundles through an OCI registry: `policyc publish` pushes the bundles of
//! `policyc compile --out` as one OCI artifact, and the node agent pulls
//! its node's bundle from it.
//!
//! The artifact ([`artifact`]) is an OCI image manifest of artifact type
//! [`artifact::ARTIFACT_TYPE`]. Its layers are content-addressed pieces:
//! every file of every node's bundle, and every piece of a long map file as
//! the bundle's `manifest.json` cuts it (`policyc_bundle::digest`), one
//! blob per distinct content. Its config blob is a small index mapping each
//! node's files to their pieces in order. Files that several nodes share
//! (the compiler hard-links them) are one blob, and a change to one policy
//! moves the pieces that changed and the index, nothing else: a registry
//! already holding a blob is not sent it again ([`push`]), and a node that
//! already holds a blob in its cache does not fetch it again ([`pull`]).
//!
//! The same bundles give the same manifest bytes, so the same digest: the
//! index and the manifest are serialized from sorted maps, with no time
//! stamp or annotation that would vary.
//!
//! Everything the registry sends is checked by digest before it is used
//! (the manifest against the digest it was resolved to, every blob against
//! its descriptor) and bounded in size by what refers to it (the manifest,
//! which nothing refers to, by 4 MiB before it is read). The OCI client
//! is async (`oci-client`, over reqwest); this crate runs it on its own
//! current-thread runtime and offers blocking calls, so that its callers
//! need no runtime of their own.

#![deny(missing_docs)]

pub mod artifact;
pub mod auth;
pub mod cache;
mod client;
pub mod cred_helper;
pub mod error;
mod manifest_fetch;
pub mod pull;
pub mod push;
pub mod reference;

pub use client::ClientOptions;
pub use error::OciError;
pub use pull::{Pulled, Puller};
pub use push::{publish, Published};
pub use reference::ArtifactRef;
