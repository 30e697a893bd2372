//! Typed indices into a [`crate::cluster::Cluster`]: an endpoint, a policy,
//! a rule of a policy. They are handles, as naga's are into its arenas: a
//! policy index cannot be passed where an endpoint's is expected, and a
//! rule is named by its policy and position together.

use std::fmt;

/// An endpoint: its position in `Cluster::endpoints`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct EndpointId(u32);

/// A policy: its position in `Cluster::policies`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct PolicyId(u32);

/// A rule: `cluster.policies[policy].rules[rule]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct RuleRef {
    /// The policy.
    pub policy: PolicyId,
    /// Position of the rule in the policy.
    pub rule: u32,
}

/// Narrows a position to a handle's width. Input limits keep a cluster far
/// below 2^32 endpoints, policies or rules per policy.
const fn narrow(index: usize) -> u32 {
    assert!(index <= u32::MAX as usize, "a cluster holds fewer than 2^32 endpoints, policies and rules per policy");
    index as u32
}

impl EndpointId {
    /// The endpoint at position `index`.
    pub const fn new(index: usize) -> EndpointId {
        EndpointId(narrow(index))
    }

    /// Its position in `Cluster::endpoints`.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl PolicyId {
    /// The policy at position `index`.
    pub const fn new(index: usize) -> PolicyId {
        PolicyId(narrow(index))
    }

    /// Its position in `Cluster::policies`.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

impl RuleRef {
    /// Rule `rule` of `policy`.
    pub const fn new(policy: PolicyId, rule: usize) -> RuleRef {
        RuleRef { policy, rule: narrow(rule) }
    }

    /// Its position in its policy's rules.
    pub fn rule_index(self) -> usize {
        self.rule as usize
    }
}

impl fmt::Display for EndpointId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl fmt::Display for PolicyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_keep_their_position_and_order() {
        assert_eq!(EndpointId::new(7).index(), 7);
        assert_eq!(PolicyId::new(3).to_string(), "3");
        let (a, b) = (RuleRef::new(PolicyId::new(0), 5), RuleRef::new(PolicyId::new(1), 0));
        assert!(a < b, "rules sort by policy, then position");
        assert_eq!(a.rule_index(), 5);
    }
}
