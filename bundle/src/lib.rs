//! The policyc bundle format, defined once: `policyc compile` writes
//! bundles through this crate and `policyc-loader` reads them through it.
//!
//! A bundle is a directory per node:
//!
//! ```text
//! manifest.json                   format version, node, source hash, maps, endpoints, file digests
//! maps/identities.txt             every identity with its labels            (identities)
//! maps/ipcache.txt                prefix → identity                         (ipcache)
//! maps/endpoints.txt              pod IP → endpoint id, identity, enforcement (endpoints)
//! maps/policy/<identity>.txt      the policy entries of one identity's endpoints (policy)
//! maps/rules.txt                  rule cookie → rule, for flow events       (rules)
//! normalized-policy.json          the policy in a form any label set is evaluated against (normalized)
//! maps/services.txt               frontend → backends, reverse NAT          (services; with Services only)
//! maps/backends.txt               backend id → address:port                  (backends; with Services only)
//! maps/revnat.txt                 reverse-NAT id → frontend                  (revnat; with Services only)
//! programs/{from,to}_container.o  program templates
//! ```
//!
//! Every map file is one entry per line, fields separated by one space,
//! sorted, with no header, so a review diff shows exactly the entries that
//! change. Each line kind has one type here with one writer (`write`,
//! also its `Display`) and one parser (`parse`); the parser accepts only
//! what the writer writes (no leading zeros, no extra spaces, no host bits
//! in a prefix, `any` rather than identity 0), so parsing a line and
//! writing it back gives the same text, and a file listing one key twice
//! is refused. Errors name the file and the 1-based line.
//!
//! The manifest ([`manifest`]) carries the SHA-256 of every other file and
//! cuts long text files into content-defined pieces ([`digest`]), so a
//! loader reads only what changed. Ids that must stay put across compiles
//! (endpoint ids on a node, rule cookies across the cluster) are allocated
//! by [`ids`]; endpoint stems, which name pinned links, by [`stem`]. Nothing here does I/O: every function works on text or
//! bytes in memory.
#![deny(missing_docs)]

pub mod backends;
pub mod digest;
pub mod endpoints;
pub mod error;
pub mod identities;
pub mod ids;
pub mod ipcache;
pub mod l3n4;
pub mod manifest;
pub mod normalized;
pub mod policy;
pub mod revnat;
pub mod rules;
pub mod services;
pub mod stem;
mod text;
pub use text::out_of_order;

pub use error::LineError;
pub use text::join;

/// Version of the bundle format; bumped on any incompatible change (7:
/// policy lines may end in their cluster-admin tier, and the policy map's
/// value holds a precedence; 6: policy lines carry their rule's cluster-wide cookie; 5: the program
/// templates are bodies that the loader's endpoint stub tail-calls with the
/// endpoint's id in `cb[0]`).
pub const FORMAT_VERSION: u32 = 7;

/// The manifest, relative to the bundle.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The identity table ([`identities`]).
pub const IDENTITIES_FILE: &str = "maps/identities.txt";
/// The ipcache map ([`ipcache`]).
pub const IPCACHE_FILE: &str = "maps/ipcache.txt";
/// The endpoints map ([`endpoints`]).
pub const ENDPOINTS_FILE: &str = "maps/endpoints.txt";
/// The rule table ([`rules`]).
pub const RULES_FILE: &str = "maps/rules.txt";
/// The service map ([`services`]); in a bundle only when the input has
/// Services, as are [`BACKENDS_FILE`] and [`REVNAT_FILE`].
pub const SERVICES_FILE: &str = "maps/services.txt";
/// The backend map ([`backends`]).
pub const BACKENDS_FILE: &str = "maps/backends.txt";
/// The reverse-NAT map ([`revnat`]).
pub const REVNAT_FILE: &str = "maps/revnat.txt";
