//! The pest parser of selector queries and its errors.

use super::NAMESPACE_SHORTHAND;
use pest::error::{ErrorVariant, InputLocation};
use pest::Parser;
use pest_derive::Parser;
use policyc_ir::labels::NAMESPACE_LABEL;
use policyc_ir::selector::{LabelSelector, Operator, Requirement};
use std::fmt;

#[derive(Parser)]
#[grammar = "select/selector.pest"]
struct SelectorParser;

/// A query that does not parse: where and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SelectorError {
    /// The query as given.
    pub input: String,
    /// Column of the fault, from 1 (in characters).
    pub column: usize,
    /// What was expected there.
    pub message: String,
}

impl fmt::Display for SelectorError {
    /// `message at column N`, the query, and a caret under the column.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "invalid selector: {} at column {}", self.message, self.column)?;
        writeln!(f, "  {}", self.input)?;
        write!(f, "  {}^", " ".repeat(self.column.saturating_sub(1)))
    }
}

impl std::error::Error for SelectorError {}

fn rule_name(rule: &Rule) -> &'static str {
    match rule {
        Rule::selector | Rule::EOI => "the end of the selector",
        Rule::requirement | Rule::set_req | Rule::eq_req | Rule::not_exists | Rule::exists => "a requirement",
        Rule::set_op => "`in` or `notin`",
        Rule::value_list => "a list of values `(a,b)`",
        Rule::eq_op => "`=`, `==` or `!=`",
        Rule::key => "a label key",
        Rule::value => "a label value",
        Rule::WHITESPACE => "a space",
    }
}

fn expected(positives: &[Rule]) -> String {
    let mut names: Vec<&str> = positives.iter().map(rule_name).collect();
    names.sort();
    names.dedup();
    match names.as_slice() {
        [] => "unexpected text".to_string(),
        [one] => format!("expected {one}"),
        [init @ .., last] => format!("expected {} or {last}", init.join(", ")),
    }
}

/// Parses a selector query into a label selector over identity labels.
pub fn parse_selector(input: &str) -> Result<LabelSelector, SelectorError> {
    let pairs = SelectorParser::parse(Rule::selector, input).map_err(|e| {
        let offset = match e.location {
            InputLocation::Pos(p) => p,
            InputLocation::Span((p, _)) => p,
        };
        let message = match &e.variant {
            ErrorVariant::ParsingError { positives, .. } => expected(positives),
            ErrorVariant::CustomError { message } => message.clone(),
        };
        let column = input.get(..offset).map_or(offset, |s| s.chars().count()) + 1;
        SelectorError { input: input.to_string(), column, message }
    })?;
    let mut selector = LabelSelector::everything();
    let selector_pair = pairs.into_iter().next().expect("a successful parse yields the selector rule");
    for req in selector_pair.into_inner() {
        let rule = req.as_rule();
        if rule == Rule::EOI {
            continue;
        }
        let mut parts = req.into_inner();
        let key = parts.next().map(|k| canonical_key(k.as_str())).unwrap_or_default();
        let requirement = match rule {
            Rule::exists => Requirement { key, operator: Operator::Exists, values: Vec::new() },
            Rule::not_exists => Requirement { key, operator: Operator::DoesNotExist, values: Vec::new() },
            Rule::eq_req => {
                let op = parts.next().map(|p| p.as_str()).unwrap_or("=");
                let value = parts.next().map(|v| v.as_str().to_string()).unwrap_or_default();
                let operator = if op == "!=" { Operator::NotIn } else { Operator::In };
                Requirement { key, operator, values: vec![value] }
            }
            Rule::set_req => {
                let op = parts.next().map(|p| p.as_str().to_ascii_lowercase()).unwrap_or_default();
                let values =
                    parts.next().map(|l| l.into_inner().map(|v| v.as_str().to_string()).collect()).unwrap_or_default();
                let operator = if op == "notin" { Operator::NotIn } else { Operator::In };
                Requirement { key, operator, values }
            }
            _ => unreachable!("the grammar yields only requirements and EOI under `selector`"),
        };
        selector = selector.with(requirement);
    }
    Ok(selector)
}

fn canonical_key(key: &str) -> String {
    if key == NAMESPACE_SHORTHAND {
        NAMESPACE_LABEL.to_string()
    } else {
        key.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use policyc_ir::labels::Labels;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    #[test]
    fn parses_every_form() {
        let s = parse_selector("app=web, tier in (a,b),!legacy,env!=dev,ns==prod,canary,zone notin (x)").unwrap();
        assert_eq!(
            s.to_string(),
            "app=web,tier in (a,b),!legacy,env notin (dev),io.kubernetes.pod.namespace=prod,canary,zone notin (x)"
        );
        let pod = labels(&[
            ("app", "web"),
            ("tier", "b"),
            ("io.kubernetes.pod.namespace", "prod"),
            ("canary", ""),
            ("env", "prod"),
        ]);
        assert!(s.matches(&pod));
        let mut legacy = pod.clone();
        legacy.insert("legacy", "true");
        assert!(!s.matches(&legacy));
        assert!(parse_selector("TIER IN (a)").is_ok(), "operators are case-insensitive");
    }

    #[test]
    fn errors_point_at_the_column() {
        let e = parse_selector("app=web,tier in a").unwrap_err();
        assert_eq!(e.column, 17, "{e}");
        assert!(e.message.contains("`(a,b)`") || e.message.contains("expected"), "{e}");
        assert_eq!(e.to_string().lines().nth(2), Some(&*format!("  {}^", " ".repeat(16))));
        let e = parse_selector("app=web,,x").unwrap_err();
        assert_eq!(e.column, 9, "{e}");
        let e = parse_selector("tier in ()").unwrap_err();
        assert_eq!(e.column, 10, "{e}");
        assert!(parse_selector("").is_err());
        assert!(parse_selector("app=we b").is_err());
    }
}
