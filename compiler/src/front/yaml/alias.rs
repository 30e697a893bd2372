//! How far aliases may expand a document: the rule of Go's YAML library
//! (`gopkg.in/yaml.v3`, "document contains excessive aliasing"), which
//! kubectl and the API server apply, so that policyc refuses what they
//! refuse. A few hundred bytes of nested aliases ("billion laughs") would
//! otherwise expand to gigabytes.

/// Below this many nodes, aliases may make up to 99% of a document.
const RATIO_RANGE_LOW: u64 = 400_000;
/// Above this many nodes, aliases may make up only 10% of it.
const RATIO_RANGE_HIGH: u64 = 4_000_000;

/// Nodes built so far in a document, and how many of them aliases built.
#[derive(Default)]
pub(super) struct AliasBudget {
    nodes: u64,
    aliased: u64,
}

impl AliasBudget {
    /// Counts `n` nodes read from the text itself.
    pub(super) fn count(&mut self, n: u64) {
        self.nodes += n;
    }

    /// Counts an alias that expands to `size` nodes; `false` if that makes
    /// aliases too large a part of the document.
    pub(super) fn allows(&mut self, size: u64) -> bool {
        self.nodes = self.nodes.saturating_add(size);
        self.aliased = self.aliased.saturating_add(size);
        // Go checks after decoding; checking before copying the alias is
        // what keeps the memory bounded.
        !(self.aliased > 100
            && self.nodes > 1000
            && self.aliased as f64 / self.nodes as f64 > allowed_ratio(self.nodes))
    }
}

/// The part of a document's nodes that aliases may build.
fn allowed_ratio(nodes: u64) -> f64 {
    if nodes <= RATIO_RANGE_LOW {
        0.99
    } else if nodes >= RATIO_RANGE_HIGH {
        0.10
    } else {
        0.99 - 0.89 * ((nodes - RATIO_RANGE_LOW) as f64 / (RATIO_RANGE_HIGH - RATIO_RANGE_LOW) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allows_aliases_in_proportion_and_refuses_an_explosion() {
        let mut budget = AliasBudget::default();
        budget.count(50);
        // A few aliases of a small anchor are fine.
        assert!((0..10).all(|_| budget.allows(5)));
        // Nine of nine: each alias copies the whole document so far.
        let mut budget = AliasBudget::default();
        budget.count(20);
        let mut size = 10;
        let refused = (0..9).any(|_| {
            size *= 9;
            !budget.allows(size)
        });
        assert!(refused);
        assert_eq!(allowed_ratio(RATIO_RANGE_HIGH * 2), 0.10);
    }
}
