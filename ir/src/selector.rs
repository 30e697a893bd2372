//! Kubernetes label selectors (`matchLabels` + `matchExpressions`).

use crate::labels::Labels;
use std::fmt;

/// A `matchExpressions` operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub enum Operator {
    /// The label is present and its value is one of the values.
    In,
    /// The label is absent, or its value is none of the values.
    NotIn,
    /// The label is present.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

/// One requirement of a selector: `key op values`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Requirement {
    /// Label key (without a Cilium source prefix).
    pub key: String,
    /// How the key's value is tested.
    pub operator: Operator,
    /// Values for `In` / `NotIn`; empty otherwise.
    pub values: Vec<String>,
}

impl Requirement {
    /// `key = value`, as `matchLabels` writes it.
    pub fn equals(key: impl Into<String>, value: impl Into<String>) -> Self {
        Requirement { key: key.into(), operator: Operator::In, values: vec![value.into()] }
    }

    /// Whether `labels` satisfy this requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            Operator::NotIn => value.is_none_or(|v| !self.values.iter().any(|x| x == v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

/// A label selector: the conjunction of its requirements. The empty
/// selector matches every label set.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct LabelSelector {
    /// Requirements, all of which must hold.
    pub requirements: Vec<Requirement>,
}

impl LabelSelector {
    /// The selector that matches everything.
    pub fn everything() -> Self {
        Self::default()
    }

    /// Whether the selector has no requirement (and so matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether some requirement constrains `key`.
    pub fn mentions(&self, key: &str) -> bool {
        self.requirements.iter().any(|r| r.key == key)
    }

    /// Adds a requirement (builder style).
    pub fn with(mut self, requirement: Requirement) -> Self {
        self.requirements.push(requirement);
        self
    }
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.requirements.is_empty() {
            return f.write_str("{}");
        }
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match (r.operator, r.values.as_slice()) {
                (Operator::In, [v]) => write!(f, "{}={v}", r.key)?,
                (Operator::In, vs) => write!(f, "{} in ({})", r.key, vs.join(","))?,
                // A query's value list holds no empty value, `k!=` does.
                (Operator::NotIn, [v]) if v.is_empty() => write!(f, "{}!=", r.key)?,
                (Operator::NotIn, vs) => write!(f, "{} notin ({})", r.key, vs.join(","))?,
                (Operator::Exists, _) => write!(f, "{}", r.key)?,
                (Operator::DoesNotExist, _) => write!(f, "!{}", r.key)?,
            }
        }
        Ok(())
    }
}
