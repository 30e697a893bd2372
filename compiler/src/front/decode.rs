//! Typed reading of YAML nodes with diagnostics: every reader reports what
//! is wrong (with the field path and position) and returns `None` instead
//! of stopping, so that all faults of an input are collected in one run.

use crate::diag::{codes, did_you_mean, Code, Diagnostic, Location};
use crate::front::yaml::{Node, Pos, Value};
use policyc_ir::cidr::{Cidr, CidrError};
use policyc_ir::labels::Labels;
use policyc_ir::selector::{LabelSelector, Operator, Requirement};

/// The document being decoded, and the diagnostics found so far.
pub struct Ctx<'a> {
    /// Where diagnostics go.
    pub diags: &'a mut Vec<Diagnostic>,
    /// File name as given.
    pub file: String,
    /// Document index in the file.
    pub document: usize,
    /// `Kind namespace/name`, once known.
    pub object: Option<String>,
}

/// The entries of a mapping whose keys were checked against a schema.
pub struct Fields<'n> {
    entries: &'n [(Node, Node)],
}

impl<'n> Fields<'n> {
    /// The value of `key`; `null` counts as absent.
    pub fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries.iter().find(|(k, _)| k.as_str() == Some(key)).map(|(_, v)| v).filter(|v| v.value != Value::Null)
    }

    /// Whether `key` is present, even as `null` or an empty collection.
    pub fn has(&self, key: &str) -> bool {
        self.entries.iter().any(|(k, _)| k.as_str() == Some(key))
    }
}

/// A port as written: a number or a name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PortValue {
    /// A port number (1-65535, or 0 where the schema allows "any").
    Number(u16),
    /// A named port.
    Name(String),
}

impl<'a> Ctx<'a> {
    /// A location at `pos` and `path` in the current object.
    pub fn location(&self, path: &str, pos: Option<Pos>) -> Location {
        Location {
            file: Some(self.file.clone()),
            document: Some(self.document),
            object: self.object.clone(),
            path: (!path.is_empty()).then(|| path.to_string()),
            pos,
        }
    }

    /// Reports a diagnostic at `node` (or the object, without one).
    pub fn report(
        &mut self,
        code: Code,
        node: Option<&Node>,
        path: &str,
        message: impl Into<String>,
        help: Option<String>,
    ) {
        let mut d = Diagnostic::new(code, self.location(path, node.map(|n| n.pos)), message);
        d.help = help;
        self.diags.push(d);
    }

    /// Reports that `node` at `path` is not of the `expected` type.
    pub fn wrong_type(&mut self, node: &Node, path: &str, expected: &str) {
        let found = node.type_name();
        self.report(codes::WRONG_TYPE, Some(node), path, format!("expected {expected}, found {found}"), None);
    }

    /// Reads a mapping, warning about keys not in `known` (with "did you mean").
    pub fn fields<'n>(&mut self, node: &'n Node, path: &str, known: &[&str]) -> Option<Fields<'n>> {
        let Value::Map(entries) = &node.value else {
            self.wrong_type(node, path, "a mapping");
            return None;
        };
        for (key, _) in entries {
            let Some(name) = key.scalar_text() else {
                self.wrong_type(key, path, "a string key");
                continue;
            };
            if !known.contains(&name.as_str()) {
                let help = did_you_mean(&name, known.iter().copied()).map(|s| format!("did you mean `{s}`?"));
                let field = join(path, &name);
                self.report(codes::UNKNOWN_FIELD, Some(key), &field, format!("unknown field `{name}`"), help);
            }
        }
        Some(Fields { entries })
    }

    /// Reads a required field, reporting its absence.
    pub fn required<'n>(&mut self, fields: &Fields<'n>, key: &str, parent: &Node, path: &str) -> Option<&'n Node> {
        let v = fields.get(key);
        if v.is_none() {
            self.report(codes::MISSING_FIELD, Some(parent), path, format!("missing field `{key}`"), None);
        }
        v
    }

    /// Reads a string.
    pub fn string<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n str> {
        match &node.value {
            Value::Str(s) => Some(s),
            _ => {
                self.wrong_type(node, path, "a string");
                None
            }
        }
    }

    /// Reads a scalar as text (numbers and booleans as written): for fields
    /// such as label values that users often leave unquoted.
    pub fn text(&mut self, node: &Node, path: &str) -> Option<String> {
        let t = node.scalar_text();
        if t.is_none() {
            self.wrong_type(node, path, "a string");
        }
        t
    }

    /// Reads an integer.
    pub fn int(&mut self, node: &Node, path: &str) -> Option<i64> {
        match node.value {
            Value::Int(i) => Some(i),
            _ => {
                self.wrong_type(node, path, "an integer");
                None
            }
        }
    }

    /// Reads a boolean.
    pub fn boolean(&mut self, node: &Node, path: &str) -> Option<bool> {
        match node.value {
            Value::Bool(b) => Some(b),
            _ => {
                self.wrong_type(node, path, "a boolean");
                None
            }
        }
    }

    /// Reads a list; `null` is an empty list.
    pub fn list<'n>(&mut self, node: &'n Node, path: &str) -> &'n [Node] {
        match &node.value {
            Value::Seq(items) => items,
            Value::Null => &[],
            _ => {
                self.wrong_type(node, path, "a list");
                &[]
            }
        }
    }

    /// Reads a list of strings.
    pub fn strings(&mut self, node: &Node, path: &str) -> Vec<(String, Pos)> {
        let mut out = Vec::new();
        for (i, item) in self.list(node, path).iter().enumerate() {
            if let Some(s) = self.text(item, &index(path, i)) {
                out.push((s, item.pos));
            }
        }
        out
    }

    /// Reads a label map (`metadata.labels`, `matchLabels`), checking keys
    /// and values. `normalize_key` strips source prefixes (Cilium's `k8s:`).
    pub fn labels(&mut self, node: &Node, path: &str, normalize_key: fn(&str) -> String) -> Labels {
        let mut labels = Labels::new();
        let Some(fields) = self.map_entries(node, path) else { return labels };
        for (k, v) in fields {
            let Some(key) = k.scalar_text() else {
                self.wrong_type(k, path, "a string key");
                continue;
            };
            let field = join(path, &key);
            let value = if v.value == Value::Null { Some(String::new()) } else { self.text(v, &field) };
            let Some(value) = value else { continue };
            let key = normalize_key(&key);
            if let Err(why) = check_label_key(&key) {
                self.report(
                    codes::INVALID_LABEL_KEY,
                    Some(k),
                    &field,
                    format!("invalid label key `{key}`: {why}"),
                    None,
                );
            }
            if let Err(why) = check_label_value(&value) {
                self.report(
                    codes::INVALID_LABEL_VALUE,
                    Some(v),
                    &field,
                    format!("invalid label value `{value}`: {why}"),
                    None,
                );
            }
            labels.insert(key, value);
        }
        labels
    }

    fn map_entries<'n>(&mut self, node: &'n Node, path: &str) -> Option<&'n [(Node, Node)]> {
        match &node.value {
            Value::Map(entries) => Some(entries),
            Value::Null => Some(&[]),
            _ => {
                self.wrong_type(node, path, "a mapping");
                None
            }
        }
    }

    /// Reads a `LabelSelector` (`matchLabels`, `matchExpressions`).
    /// `normalize_key` strips source prefixes (Cilium's `k8s:`, `any:`).
    pub fn selector(&mut self, node: &Node, path: &str, normalize_key: fn(&str) -> String) -> Option<LabelSelector> {
        let fields = self.fields(node, path, &["matchLabels", "matchExpressions"])?;
        let mut selector = LabelSelector::everything();
        if let Some(ml) = fields.get("matchLabels") {
            for (k, v) in self.labels(ml, &join(path, "matchLabels"), normalize_key).iter() {
                selector.requirements.push(Requirement::equals(k, v));
            }
        }
        if let Some(me) = fields.get("matchExpressions") {
            let me_path = join(path, "matchExpressions");
            for (i, expr) in self.list(me, &me_path).iter().enumerate() {
                if let Some(r) = self.requirement(expr, &index(&me_path, i), normalize_key) {
                    selector.requirements.push(r);
                }
            }
        }
        Some(selector)
    }

    fn requirement(&mut self, node: &Node, path: &str, normalize_key: fn(&str) -> String) -> Option<Requirement> {
        let fields = self.fields(node, path, &["key", "operator", "values"])?;
        let key_node = self.required(&fields, "key", node, path);
        let op_node = self.required(&fields, "operator", node, path);
        let key = key_node.and_then(|k| self.text(k, &join(path, "key"))).map(|k| normalize_key(&k));
        if let (Some(key), Some(k)) = (&key, key_node) {
            if let Err(why) = check_label_key(key) {
                self.report(
                    codes::INVALID_LABEL_KEY,
                    Some(k),
                    &join(path, "key"),
                    format!("invalid label key `{key}`: {why}"),
                    None,
                );
            }
        }
        let operator = op_node.and_then(|o| {
            let text = self.string(o, &join(path, "operator"))?;
            let op = match text {
                "In" => Operator::In,
                "NotIn" => Operator::NotIn,
                "Exists" => Operator::Exists,
                "DoesNotExist" => Operator::DoesNotExist,
                other => {
                    let help = did_you_mean(other, ["In", "NotIn", "Exists", "DoesNotExist"])
                        .map(|s| format!("did you mean `{s}`?"));
                    let help = help.or(Some("operators are `In`, `NotIn`, `Exists` and `DoesNotExist`".into()));
                    self.report(
                        codes::UNKNOWN_OPERATOR,
                        Some(o),
                        &join(path, "operator"),
                        format!("unknown operator `{other}`"),
                        help,
                    );
                    return None;
                }
            };
            Some(op)
        });
        let values: Vec<String> = match fields.get("values") {
            Some(v) => self.strings(v, &join(path, "values")).into_iter().map(|(s, _)| s).collect(),
            None => Vec::new(),
        };
        let operator = operator?;
        match operator {
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                let name = if operator == Operator::Exists { "Exists" } else { "DoesNotExist" };
                self.report(
                    codes::OPERATOR_VALUES,
                    fields.get("values"),
                    &join(path, "values"),
                    format!("operator `{name}` takes no values"),
                    Some("remove `values`, or use `In`/`NotIn`".into()),
                );
                return None;
            }
            Operator::In | Operator::NotIn if values.is_empty() => {
                let name = if operator == Operator::In { "In" } else { "NotIn" };
                self.report(
                    codes::OPERATOR_VALUES,
                    op_node,
                    &join(path, "values"),
                    format!("operator `{name}` needs at least one value"),
                    Some("add `values`, or use `Exists`/`DoesNotExist`".into()),
                );
                return None;
            }
            _ => {}
        }
        Some(Requirement { key: key?, operator, values })
    }

    /// Reads a port: a number in `min..=65535` or an IANA service name.
    /// Strings of digits count as numbers (Cilium writes ports as strings).
    pub fn port(&mut self, node: &Node, path: &str, min: u16) -> Option<PortValue> {
        let number = match &node.value {
            Value::Int(i) => Some(*i),
            Value::Str(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                s.parse::<i64>().ok().or(Some(i64::MAX))
            }
            Value::Str(s) => {
                if let Err(why) = check_port_name(s) {
                    self.report(
                        codes::INVALID_PORT_NAME,
                        Some(node),
                        path,
                        format!("invalid port name `{s}`: {why}"),
                        None,
                    );
                    return None;
                }
                return Some(PortValue::Name(s.clone()));
            }
            _ => {
                self.wrong_type(node, path, "a port number or name");
                return None;
            }
        }?;
        if number < i64::from(min) || number > 65535 {
            self.report(
                codes::PORT_OUT_OF_RANGE,
                Some(node),
                path,
                format!("port `{number}` is out of range"),
                Some(format!("ports are {min}-65535")),
            );
            return None;
        }
        Some(PortValue::Number(number as u16))
    }

    /// Reads a CIDR (`10.0.0.0/8`); Cilium and Kubernetes both reject host
    /// bits, so they are an error here too.
    pub fn cidr(&mut self, node: &Node, path: &str) -> Option<Cidr> {
        let text = self.string(node, path)?;
        match Cidr::parse_strict(text) {
            Ok(c) => Some(c),
            Err(e) => {
                let (msg, help) = match e {
                    CidrError::Syntax => (
                        format!("invalid CIDR `{text}`"),
                        "write an address and a prefix length, like `10.0.0.0/8`".to_string(),
                    ),
                    CidrError::PrefixTooLong(n) => (
                        format!("invalid CIDR `{text}`: prefix length {n} is too long"),
                        "IPv4 prefixes are at most /32, IPv6 at most /128".into(),
                    ),
                    CidrError::HostBitsSet(net) => {
                        (format!("invalid CIDR `{text}`: host bits are set"), format!("did you mean `{net}`?"))
                    }
                };
                self.report(codes::INVALID_CIDR, Some(node), path, msg, Some(help));
                None
            }
        }
    }
}

/// `path.key` (or `key` at the root).
pub fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// `path[i]`.
pub fn index(path: &str, i: usize) -> String {
    format!("{path}[{i}]")
}

/// Leaves a label key as it is (Kubernetes objects have no source prefix).
pub fn plain_key(key: &str) -> String {
    key.to_string()
}

/// Checks a label key: an optional DNS-subdomain prefix and `/`, then a
/// name of at most 63 characters (alphanumerics, `-`, `_`, `.`; starting
/// and ending alphanumeric).
pub fn check_label_key(key: &str) -> Result<(), String> {
    // Cilium selectors may name reserved identities (`reserved:host`).
    if let Some(name) = key.strip_prefix(policyc_ir::labels::RESERVED_PREFIX) {
        return check_name_part(name);
    }
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        if p.is_empty() || p.len() > 253 {
            return Err("the prefix must be a DNS subdomain of 1-253 characters".into());
        }
        let ok = p.split('.').all(|part| {
            !part.is_empty()
                && part.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        });
        // Cilium source prefixes (`k8s:`, `reserved:`) reach here already
        // stripped; a colon in the prefix is reported like any bad character.
        if !ok {
            return Err("the prefix must be a lower-case DNS subdomain".into());
        }
    }
    check_name_part(name)
}

/// Checks a label value: empty, or a name part of at most 63 characters.
pub fn check_label_value(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Ok(());
    }
    check_name_part(value)
}

fn check_name_part(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 63 {
        return Err("must be 1-63 characters".into());
    }
    let ok_chars = s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
    let ok_ends =
        s.starts_with(|c: char| c.is_ascii_alphanumeric()) && s.ends_with(|c: char| c.is_ascii_alphanumeric());
    if !ok_chars || !ok_ends {
        return Err("must be alphanumerics, `-`, `_` or `.`, starting and ending with an alphanumeric".into());
    }
    Ok(())
}

/// Checks an IANA service name as Kubernetes does for named ports: 1-15
/// lower-case alphanumerics or `-`, at least one letter, no `--`, not
/// starting or ending with `-`.
pub fn check_port_name(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 15 {
        return Err("must be 1-15 characters".into());
    }
    if !s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
        return Err("must be lower-case alphanumerics or `-`".into());
    }
    if !s.bytes().any(|b| b.is_ascii_lowercase()) {
        return Err("must contain a letter".into());
    }
    if s.starts_with('-') || s.ends_with('-') || s.contains("--") {
        return Err("must not start or end with `-` or contain `--`".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_keys() {
        assert!(check_label_key("app").is_ok());
        assert!(check_label_key("app.kubernetes.io/name").is_ok());
        assert!(check_label_key("-app").is_err());
        assert!(check_label_key("Bad_Prefix/x").is_err());
        assert!(check_label_key(&"a".repeat(64)).is_err());
    }

    #[test]
    fn port_names() {
        assert!(check_port_name("http").is_ok());
        assert!(check_port_name("http-alt").is_ok());
        assert!(check_port_name("8080").is_err());
        assert!(check_port_name("HTTP").is_err());
        assert!(check_port_name("a--b").is_err());
    }
}
