//! The validator: checks the invariants the emitter relies on. Its `Ok` is
//! a contract: emission of a validated [`Resolved`] may fail with an error
//! (I/O, capacity), never panic.

use crate::cidr::{max_len, Cidr};
use crate::identity::Identity;
use crate::labels::Labels;
use crate::policy_map::{PolicyKey, PolicyMap, PORT_SPACE_BITS};
use crate::protocol::Direction;
use crate::resolve::{IdentityKind, IpcacheSource, Resolved};
use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

/// A broken invariant of a [`Resolved`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ValidationError {
    /// More distinct endpoint label sets than cluster-local identities.
    IdentitySpaceExhausted {
        /// The label sets left without an identity.
        labels: Vec<Labels>,
    },
    /// An identity is registered under another number, or its number is
    /// outside the range of its kind.
    IdentityOutOfRange {
        /// The identity.
        identity: Identity,
        /// What it stands for.
        kind: IdentityKind,
    },
    /// Something refers to an identity that is not registered.
    UnknownIdentity {
        /// Where the reference is (`ipcache 10.0.0.1/32`).
        at: String,
        /// The identity.
        identity: Identity,
    },
    /// The ipcache lacks `0.0.0.0/0` → world-ipv4 or `::/0` → world-ipv6.
    MissingWorldPrefix {
        /// The missing prefix.
        prefix: Cidr,
    },
    /// Two ipcache entries for one prefix, or entries out of order.
    IpcacheOrder {
        /// The prefix that is repeated or out of order.
        prefix: Cidr,
    },
    /// An ipcache prefix is not in canonical form.
    BadPrefix {
        /// The prefix.
        prefix: Cidr,
    },
    /// An endpoint has no identity.
    EndpointWithoutIdentity {
        /// Endpoint display name.
        endpoint: String,
    },
    /// The endpoint list does not line up with the cluster's endpoints, or
    /// an IP's owner does not hold that IP in the ipcache.
    EndpointMismatch {
        /// Endpoint display name (or index).
        endpoint: String,
        /// What does not line up.
        detail: String,
    },
    /// A policy key's prefix length exceeds 24, or host bits are set.
    BadKey {
        /// Endpoint display name.
        endpoint: String,
        /// The key.
        key: PolicyKey,
    },
    /// Policy keys out of order, repeated, or overlapping for one peer and
    /// direction (an LPM lookup must hit at most one).
    KeyOrder {
        /// Endpoint display name.
        endpoint: String,
        /// The key that repeats, overlaps or is out of order.
        key: PolicyKey,
    },
    /// A policy entry has no contributing rule, or a redirect no parser.
    BadEntry {
        /// Endpoint display name.
        endpoint: String,
        /// The key.
        key: PolicyKey,
    },
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ValidationError::IdentitySpaceExhausted { labels } => write!(
                f,
                "{} label sets found no cluster-local identity (at most 65280 distinct label sets fit)",
                labels.len()
            ),
            ValidationError::IdentityOutOfRange { identity, kind } => {
                write!(f, "identity `{identity}` ({kind:?}) is outside the range of its kind")
            }
            ValidationError::UnknownIdentity { at, identity } => {
                write!(f, "{at} refers to unknown identity `{identity}`")
            }
            ValidationError::MissingWorldPrefix { prefix } => {
                write!(f, "the ipcache has no world entry for `{prefix}`")
            }
            ValidationError::IpcacheOrder { prefix } => {
                write!(f, "ipcache prefix `{prefix}` is repeated or out of order")
            }
            ValidationError::BadPrefix { prefix } => write!(f, "ipcache prefix `{prefix}` is not canonical"),
            ValidationError::EndpointWithoutIdentity { endpoint } => write!(f, "endpoint `{endpoint}` has no identity"),
            ValidationError::EndpointMismatch { endpoint, detail } => write!(f, "endpoint `{endpoint}`: {detail}"),
            ValidationError::BadKey { endpoint, key } => {
                write!(f, "policy key `{key}` of `{endpoint}` has a bad prefix length or host bits set")
            }
            ValidationError::KeyOrder { endpoint, key } => {
                write!(f, "policy key `{key}` of `{endpoint}` is repeated, overlapping or out of order")
            }
            ValidationError::BadEntry { endpoint, key } => {
                write!(f, "policy entry `{key}` of `{endpoint}` has no rule or an empty redirect parser")
            }
        }
    }
}

impl std::error::Error for ValidationError {}

/// Checks every invariant of `resolved` and returns every broken one.
pub fn validate(resolved: &Resolved) -> Result<(), Vec<ValidationError>> {
    let mut errors = Vec::new();
    if !resolved.exhausted.is_empty() {
        errors.push(ValidationError::IdentitySpaceExhausted { labels: resolved.exhausted.clone() });
    }
    check_identities(resolved, &mut errors);
    check_ipcache(resolved, &mut errors);
    check_endpoints(resolved, &mut errors);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

fn check_identities(resolved: &Resolved, errors: &mut Vec<ValidationError>) {
    for (&id, info) in &resolved.identities {
        let in_range = info.identity == id
            && match &info.kind {
                IdentityKind::Reserved => id.is_reserved(),
                IdentityKind::Endpoint => id.is_cluster_local() && resolved.table.get(&info.labels) == Some(id),
                IdentityKind::Cidr(prefix) => id.is_cidr() && resolved.cidr_identities.get(prefix) == Some(&id),
            };
        if !in_range {
            errors.push(ValidationError::IdentityOutOfRange { identity: id, kind: info.kind.clone() });
        }
    }
    for id in Identity::RESERVED {
        if !resolved.identities.contains_key(&id) {
            errors.push(ValidationError::UnknownIdentity { at: "the reserved identities".into(), identity: id });
        }
    }
    for (labels, id) in resolved.table.iter() {
        if resolved.identities.get(&id).is_none_or(|info| &info.labels != labels) {
            errors.push(ValidationError::UnknownIdentity { at: format!("label set `{labels}`"), identity: id });
        }
    }
    for (prefix, &id) in &resolved.cidr_identities {
        if !resolved.identities.contains_key(&id) {
            errors.push(ValidationError::UnknownIdentity { at: format!("prefix `{prefix}`"), identity: id });
        }
    }
}

fn check_ipcache(resolved: &Resolved, errors: &mut Vec<ValidationError>) {
    let mut previous: Option<Cidr> = None;
    for entry in &resolved.ipcache {
        let prefix = entry.prefix;
        if prefix.prefix_len() > max_len(prefix.addr()) || Cidr::new(prefix.addr(), prefix.prefix_len()) != prefix {
            errors.push(ValidationError::BadPrefix { prefix });
        }
        if previous.is_some_and(|p| p >= prefix) {
            errors.push(ValidationError::IpcacheOrder { prefix });
        }
        previous = Some(prefix);
        if entry.identity.is_any() || !resolved.identities.contains_key(&entry.identity) {
            errors
                .push(ValidationError::UnknownIdentity { at: format!("ipcache `{prefix}`"), identity: entry.identity });
        }
        // The emitter names an endpoint's entries after the endpoint.
        if let IpcacheSource::Endpoint(index) = entry.source {
            if index.index() >= resolved.endpoints.len() {
                errors.push(ValidationError::EndpointMismatch {
                    endpoint: format!("#{index}"),
                    detail: format!("owner of ipcache `{prefix}` does not exist"),
                });
            }
        }
    }
    for (ipv6, identity) in [(false, Identity::WORLD_IPV4), (true, Identity::WORLD_IPV6)] {
        let prefix = Cidr::all(ipv6);
        if !resolved.ipcache.iter().any(|e| e.prefix == prefix && e.identity == identity) {
            errors.push(ValidationError::MissingWorldPrefix { prefix });
        }
    }
}

/// The broken invariants of `map`, the policy map of endpoint `name`.
fn check_map(resolved: &Resolved, name: &str, map: &PolicyMap) -> Vec<ValidationError> {
    let mut errors = Vec::new();
    let mut previous: Option<&PolicyKey> = None;
    let mut previous_end: Option<(Identity, Direction, u32)> = None;
    for entry in &map.entries {
        let key = &entry.key;
        if !key.identity.is_any() && !resolved.identities.contains_key(&key.identity) {
            errors.push(ValidationError::UnknownIdentity {
                at: format!("policy key `{key}` of `{name}`"),
                identity: key.identity,
            });
        }
        if key.prefix_len > PORT_SPACE_BITS || !key.is_aligned() {
            errors.push(ValidationError::BadKey { endpoint: name.to_string(), key: key.clone() });
            continue;
        }
        let Some((lo, hi)) = key.block() else { continue };
        let overlaps =
            previous_end.is_some_and(|(id, dir, end)| id == key.identity && dir == key.direction && lo <= end);
        if previous.is_some_and(|p| p >= key) || overlaps {
            errors.push(ValidationError::KeyOrder { endpoint: name.to_string(), key: key.clone() });
        }
        previous = Some(key);
        previous_end = Some((key.identity, key.direction, hi));
        let empty_parser = matches!(&entry.verdict, crate::policy_map::MapVerdict::Redirect(p) if p.is_empty());
        if entry.rule_count == 0 || empty_parser {
            errors.push(ValidationError::BadEntry { endpoint: name.to_string(), key: key.clone() });
        }
    }
    errors
}

fn check_endpoints(resolved: &Resolved, errors: &mut Vec<ValidationError>) {
    // Endpoints of one identity and named ports share one map; it is
    // checked once, under the first endpoint's name. The maps hold most of
    // what is checked, and are checked on every core.
    let mut checked_maps: HashSet<*const PolicyMap> = HashSet::new();
    let mut first_users = Vec::new();
    let mut before_map = Vec::new();
    for (i, endpoint) in resolved.endpoints.iter().enumerate() {
        let mut found = Vec::new();
        let name = &endpoint.name;
        if endpoint.index.index() != i {
            found.push(ValidationError::EndpointMismatch { endpoint: name.clone(), detail: format!("listed at {i}") });
        }
        match endpoint.identity {
            None => found.push(ValidationError::EndpointWithoutIdentity { endpoint: name.clone() }),
            Some(id) if !resolved.identities.contains_key(&id) => {
                found.push(ValidationError::UnknownIdentity { at: format!("endpoint `{name}`"), identity: id });
            }
            Some(_) => {}
        }
        if checked_maps.insert(Arc::as_ptr(&endpoint.policy)) {
            first_users.push((i, endpoint));
        }
        before_map.push(found);
    }
    let map_errors = crate::parallel::map(&first_users, |(_, e)| check_map(resolved, &e.name, &e.policy));
    let mut map_errors = first_users.iter().map(|(i, _)| *i).zip(map_errors).peekable();
    for (i, found) in before_map.into_iter().enumerate() {
        errors.extend(found);
        if let Some((_, found)) = map_errors.next_if(|(index, _)| *index == i) {
            errors.extend(found);
        }
    }
    let ipcache: BTreeSet<(Cidr, Identity)> = resolved.ipcache.iter().map(|e| (e.prefix, e.identity)).collect();
    for (&ip, &index) in &resolved.endpoint_ips {
        let Some(endpoint) = resolved.endpoints.get(index.index()) else {
            errors.push(ValidationError::EndpointMismatch {
                endpoint: format!("#{index}"),
                detail: format!("owner of `{ip}` does not exist"),
            });
            continue;
        };
        let holds = |ip: IpAddr| endpoint.ips.contains(&ip);
        let in_ipcache = endpoint.identity.is_some_and(|id| ipcache.contains(&(Cidr::host(ip), id)));
        if !holds(ip) || !in_ipcache {
            errors.push(ValidationError::EndpointMismatch {
                endpoint: endpoint.name.clone(),
                detail: format!("`{ip}` is not its address in the ipcache"),
            });
        }
    }
}
