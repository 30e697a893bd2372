//! `toPorts` (ports, protocols, L7 rules) and `icmps` of a Cilium rule.

use super::rule::RuleKind;
use crate::diag::{codes, did_you_mean};
use crate::front::decode::{index, join, Ctx, Fields, PortValue};
use crate::front::spans::start;
use crate::front::yaml::{Node, Pos, Value};
use policyc_ir::policy::{Action, L7Rules, PortMatch, PortSpec};
use policyc_ir::protocol::{Direction, PortRange, Protocol};

/// One decoded `toPorts` entry.
pub(super) struct PortEntry {
    /// Index in `toPorts`.
    pub index: usize,
    /// Where the entry is written.
    pub pos: Pos,
    /// The ports it names.
    pub matches: Vec<PortMatch>,
    /// Its L7 rules, if any.
    pub l7: Option<L7Rules>,
}

const PORT_RULE_FIELDS: &[&str] = &["ports", "rules", "serverNames", "listener", "terminatingTLS", "originatingTLS"];
/// Deny rules take ports only (Cilium's `PortDenyRule`); `rules` is known
/// here so that it gets a precise error rather than an unknown-field warning.
const PORT_DENY_RULE_FIELDS: &[&str] = &["ports", "rules"];
const PROXY_FIELDS: &[&str] = &["serverNames", "listener", "terminatingTLS", "originatingTLS"];

/// Decodes `toPorts` of a rule of `kind`; `host` is set in host policies.
pub(super) fn to_ports(ctx: &mut Ctx, node: &Node, path: &str, kind: RuleKind, host: bool) -> Vec<PortEntry> {
    let action = kind.action;
    let ingress = kind.direction == Direction::Ingress;
    let known = if action == Action::Deny { PORT_DENY_RULE_FIELDS } else { PORT_RULE_FIELDS };
    let mut out = Vec::new();
    for (i, item) in ctx.list(node, path).iter().enumerate() {
        let entry_path = index(path, i);
        let Some(fields) = ctx.fields(item, &entry_path, known) else { continue };
        for f in PROXY_FIELDS.iter().filter(|f| known.contains(f)) {
            if let Some(n) = fields.get(f) {
                if *f == "listener" && ingress {
                    ctx.report(
                        codes::CILIUM_REJECTED_RULE,
                        Some(n),
                        &join(&entry_path, f),
                        "`listener` is not allowed in an ingress rule",
                        Some("Cilium accepts custom Envoy listeners on egress only".into()),
                    );
                    continue;
                }
                ctx.report(
                    codes::UNSUPPORTED_FIELD,
                    Some(n),
                    &join(&entry_path, f),
                    format!("allowed without it: `{f}` is not enforced by policyc, so the ports of this entry are allowed at L4"),
                    Some("the bundle does not filter by TLS server name or proxy listener".into()),
                );
            }
        }
        let ports_path = join(&entry_path, "ports");
        let listed = fields.get("ports").map(|p| ctx.list(p, &ports_path)).unwrap_or(&[]);
        let matches = if listed.is_empty() {
            // A port rule without ports covers every port of TCP, UDP and SCTP.
            vec![PortMatch { protocol: None, ports: PortSpec::All }]
        } else {
            listed
                .iter()
                .enumerate()
                .filter_map(|(j, p)| port_protocol(ctx, p, &index(&ports_path, j), action))
                .collect()
        };
        let rules_path = join(&entry_path, "rules");
        let l7 = match fields.get("rules") {
            Some(r) if action == Action::Deny => {
                ctx.report(
                    codes::L7_IN_DENY,
                    Some(r),
                    &rules_path,
                    "a deny rule cannot have L7 `rules`",
                    Some("deny rules match peers and ports only; put the L7 rules in an allow rule".into()),
                );
                None
            }
            Some(r) => l7_rules(ctx, r, &rules_path)
                .filter(|l7| l7_allowed_here(ctx, r, &rules_path, l7, &matches, listed.is_empty(), ingress, host)),
            None => None,
        };
        if let (Some(l7), Some(r)) = (&l7, fields.get("rules")) {
            ctx.report(
                codes::L7_NEEDS_PROXY,
                Some(r),
                &rules_path,
                format!("`{}` rules send this traffic through an L7 proxy, which the bundle only describes", l7.parser),
                Some(
                    "the datapath allows these ports and marks them for the proxy; it does not filter requests itself"
                        .into(),
                ),
            );
        }
        out.push(PortEntry { index: i, pos: start(item), matches, l7 });
    }
    out
}

/// Checks what Cilium's validator demands of a port rule with L7 rules;
/// reports the first violation.
#[allow(clippy::too_many_arguments)]
fn l7_allowed_here(
    ctx: &mut Ctx,
    node: &Node,
    path: &str,
    l7: &L7Rules,
    matches: &[PortMatch],
    no_ports: bool,
    ingress: bool,
    host: bool,
) -> bool {
    let dns = l7.parser == "dns";
    let parser = &l7.parser;
    let problem: Option<(String, String)> = if dns && ingress {
        Some((
            "DNS rules are not allowed on ingress".into(),
            "DNS rules filter the lookups a pod makes: put them in an `egress` rule".into(),
        ))
    } else if host && (ingress || !dns) {
        Some((
            format!("`{parser}` rules are not supported in host policies"),
            "host policies (`nodeSelector`) filter at L3 and L4 only".into(),
        ))
    } else if dns && no_ports {
        Some(("DNS rules need `ports`".into(), "name port 53 (UDP, TCP or ANY)".into()))
    } else if matches.iter().any(|m| m.ports == PortSpec::All) {
        Some((
            "L7 rules cannot be used with port 0".into(),
            "name the ports whose traffic goes through the proxy".into(),
        ))
    } else if !dns && matches.iter().any(|m| m.protocol != Some(Protocol::Tcp)) {
        Some((
            format!("`{parser}` rules need `protocol: TCP` on every port"),
            "Cilium applies L7 rules other than DNS to TCP only; an omitted protocol means ANY".into(),
        ))
    } else if dns && matches.iter().any(|m| matches!(m.ports, PortSpec::Range(r) if r.lo != r.hi)) {
        Some(("DNS rules do not support port ranges".into(), "name port 53 without `endPort`".into()))
    } else {
        None
    };
    match problem {
        Some((message, help)) => {
            ctx.report(codes::CILIUM_REJECTED_RULE, Some(node), path, message, Some(help));
            false
        }
        None => true,
    }
}

/// IP protocols without ports that Cilium accepts in `toPorts` (with
/// `--enable-extended-ip-protocols`; host policies use them, e.g. VRRP
/// between load balancers), with their IP protocol numbers.
const EXTENDED_PROTOCOLS: &[(&str, u8)] = &[("VRRP", 112), ("IGMP", 2)];

/// One `ports[j]` entry: `port`, `endPort`, `protocol`.
fn port_protocol(ctx: &mut Ctx, node: &Node, path: &str, action: Action) -> Option<PortMatch> {
    let fields = ctx.fields(node, path, &["port", "endPort", "protocol"])?;
    if let Some(p) = fields.get("protocol") {
        let extended = p.as_str().and_then(|t| EXTENDED_PROTOCOLS.iter().find(|(n, _)| n.eq_ignore_ascii_case(t)));
        if let Some(&(name, number)) = extended {
            extended_protocol(ctx, &fields, p, path, name, number, action);
            return None;
        }
    }
    let protocol = match fields.get("protocol") {
        Some(p) => protocol(ctx, p, &join(path, "protocol"))?,
        None => None,
    };
    let port = match fields.get("port") {
        // Cilium lowercases a port name (`PortProtocol.Validate` in
        // `pkg/policy/api/rule_validation.go`: "Normalize for case
        // insensitive comparison"), so `HTTP` names the port `http`.
        Some(p) => Some((ctx.port(&lowercased_name(p), &join(path, "port"), 0)?, p)),
        None => {
            ctx.report(
                codes::MISSING_FIELD,
                Some(node),
                path,
                "missing field `port`",
                Some("Cilium requires a port; write `port: \"0\"` to match every port".into()),
            );
            return None;
        }
    };
    let end_path = join(path, "endPort");
    let end = match fields.get("endPort") {
        Some(e) => {
            let v = ctx.int(e, &end_path)?;
            if !(0..=65535).contains(&v) {
                ctx.report(
                    codes::PORT_OUT_OF_RANGE,
                    Some(e),
                    &end_path,
                    format!("port `{v}` is out of range"),
                    Some("ports are 0-65535".into()),
                );
                return None;
            }
            // Cilium reads `endPort: 0` as "no range".
            (v != 0).then_some((v as u16, e))
        }
        None => None,
    };
    let ports = match (port, end) {
        (None | Some((PortValue::Number(0), _)), None) => PortSpec::All,
        (Some((PortValue::Number(p), _)), None) => PortSpec::Range(PortRange::single(p)),
        (Some((PortValue::Name(name), _)), None) => PortSpec::Named(name),
        (Some((PortValue::Number(p), _)), Some((e, _))) if p != 0 && e >= p => {
            PortSpec::Range(PortRange { lo: p, hi: e })
        }
        (Some((PortValue::Number(p), _)), Some((e, e_node))) if p != 0 => {
            ctx.report(
                codes::END_PORT_BEFORE_PORT,
                Some(e_node),
                &end_path,
                format!("`endPort` {e} is smaller than `port` {p}"),
                Some("`endPort` is the last port of the range and must be at least `port`".into()),
            );
            return None;
        }
        // Cilium's `PortProtocol`: "EndPort is ignored if Port is a named
        // port" (`pkg/policy/api/l4.go`).
        (Some((PortValue::Name(name), _)), Some((_, e_node))) => {
            ctx.report(
                codes::END_PORT_IGNORED,
                Some(e_node),
                &end_path,
                format!("`endPort` is ignored: `port` is the named port `{name}`"),
                Some("Cilium matches the named port alone; remove `endPort`, or give `port` as a number".into()),
            );
            PortSpec::Named(name)
        }
        (_, Some((_, e_node))) => {
            ctx.report(
                codes::END_PORT_WITH_NAMED_PORT,
                Some(e_node),
                &end_path,
                "`endPort` needs a non-zero `port`",
                Some("set `port` to the first port of the range".into()),
            );
            return None;
        }
    };
    Some(PortMatch { protocol, ports })
}

/// A port value as Cilium reads it: a port name lowercased, anything else
/// as written.
fn lowercased_name(node: &Node) -> Node {
    match &node.value {
        Value::Str(s) if s.bytes().any(|b| b.is_ascii_uppercase()) => {
            Node { value: Value::Str(s.to_ascii_lowercase()), ..node.clone() }
        }
        _ => node.clone(),
    }
}

/// Checks an entry of an extended protocol (no ports: `port` absent or 0,
/// as Cilium demands) and reports what policyc does with it: its datapath
/// matches TCP, UDP, SCTP and ICMP only, so the entry matches nothing. An
/// allow rule then allows none of that traffic (denied where the endpoint
/// is default-deny), a deny rule drops none of it.
fn extended_protocol(ctx: &mut Ctx, fields: &Fields, p: &Node, path: &str, name: &str, number: u8, action: Action) {
    let zero =
        |n: &Node| matches!(&n.value, Value::Int(0)) || matches!(&n.value, Value::Str(s) if s == "0" || s.is_empty());
    if let Some(port) = fields.get("port").filter(|n| !zero(n)) {
        ctx.report(
            codes::CILIUM_REJECTED_RULE,
            Some(port),
            &join(path, "port"),
            format!("`{name}` has no ports: `port` must be empty or 0"),
            Some("remove `port`".into()),
        );
        return;
    }
    let message = if action == Action::Deny {
        format!("not dropped: policyc's datapath does not match `{name}` (IP protocol {number}), so this deny rule drops none of it")
    } else {
        format!(
            "denied: policyc's datapath does not match `{name}` (IP protocol {number}), so this rule allows none of it"
        )
    };
    ctx.report(
        codes::EXTENDED_PROTOCOL_NOT_MATCHED,
        Some(p),
        &join(path, "protocol"),
        message,
        Some("the other ports of the rule are compiled as written".into()),
    );
}

/// A `protocol`: `Some(None)` for `ANY`, `None` when invalid.
fn protocol(ctx: &mut Ctx, node: &Node, path: &str) -> Option<Option<Protocol>> {
    let text = ctx.string(node, path)?;
    if text.eq_ignore_ascii_case("ANY") || text.is_empty() {
        return Some(None);
    }
    match Protocol::parse(text) {
        Some(p) if Protocol::WITH_PORTS.contains(&p) => Some(Some(p)),
        Some(p) => {
            ctx.report(
                codes::UNKNOWN_PROTOCOL,
                Some(node),
                path,
                format!("protocol `{text}` cannot be used in `toPorts`"),
                Some(format!("match {} types with `icmps`", p.name())),
            );
            None
        }
        None => {
            let names = ["TCP", "UDP", "SCTP", "ANY"];
            let help = did_you_mean(text, names)
                .map(|s| format!("did you mean `{s}`?"))
                .unwrap_or_else(|| "protocols are `TCP`, `UDP`, `SCTP` and `ANY`".into());
            ctx.report(codes::UNKNOWN_PROTOCOL, Some(node), path, format!("unknown protocol `{text}`"), Some(help));
            None
        }
    }
}

/// Parsers named in a port rule's `rules`, in the order Cilium lists them.
const L7_PARSERS: &[&str] = &["http", "kafka", "dns", "l7proto"];

/// A port rule's L7 `rules`; `None` when empty (no L7 filtering) or invalid.
fn l7_rules(ctx: &mut Ctx, node: &Node, path: &str) -> Option<L7Rules> {
    let fields = ctx.fields(node, path, &["http", "kafka", "dns", "l7proto", "l7"])?;
    let entry_fields: [(&str, &[&str]); 3] = [
        ("http", &["method", "path", "host", "headers", "headerMatches"]),
        ("kafka", &["role", "apiKey", "apiVersion", "clientID", "topic"]),
        ("dns", &["matchName", "matchPattern"]),
    ];
    let mut parsers: Vec<String> = Vec::new();
    for (parser, known) in entry_fields {
        let Some(list) = fields.get(parser) else { continue };
        let list_path = join(path, parser);
        let items = ctx.list(list, &list_path);
        for (i, item) in items.iter().enumerate() {
            ctx.fields(item, &index(&list_path, i), known);
        }
        if !items.is_empty() {
            parsers.push(parser.to_string());
        }
    }
    let l7 = fields.get("l7");
    match fields.get("l7proto") {
        Some(p) => {
            let name = ctx.string(p, &join(path, "l7proto"))?;
            // An empty parser would reach the maps as a redirect to no
            // proxy, which the validator refuses (found by `fuzz/` `ir`).
            if name.is_empty() {
                ctx.report(codes::INVALID_L7, Some(p), &join(path, "l7proto"), "`l7proto` is empty", None);
                return None;
            }
            parsers.push(name.to_string());
        }
        None if l7.is_some() => {
            ctx.report(
                codes::INVALID_L7,
                l7,
                &join(path, "l7"),
                "`l7` rules need `l7proto`",
                Some("name the proxy's parser with `l7proto`".into()),
            );
            return None;
        }
        None => {}
    }
    if let Some(l7) = l7 {
        let l7_path = join(path, "l7");
        for (i, item) in ctx.list(l7, &l7_path).iter().enumerate() {
            // Key-value rules for the named parser: only their shape is checked.
            let item_path = index(&l7_path, i);
            match &item.value {
                Value::Map(entries) => {
                    for (k, v) in entries {
                        if v.scalar_text().is_none() {
                            let key = k.scalar_text().unwrap_or_default();
                            ctx.wrong_type(v, &join(&item_path, &key), "a string");
                        }
                    }
                }
                _ => ctx.wrong_type(item, &item_path, "a mapping"),
            }
        }
    }
    match parsers.as_slice() {
        [] => None,
        [parser] => Some(L7Rules { parser: parser.clone(), rules: canonical_json(node) }),
        [..] => {
            let names: Vec<String> = parsers.iter().map(|p| format!("`{p}`")).collect();
            ctx.report(
                codes::INVALID_L7,
                Some(node),
                path,
                format!("L7 `rules` name more than one parser: {}", names.join(", ")),
                Some(format!(
                    "a port rule takes one of {}; split it into one `toPorts` entry per parser",
                    L7_PARSERS.join(", ")
                )),
            );
            None
        }
    }
}

/// `node` as compact JSON with sorted mapping keys: the canonical form in
/// which L7 rules travel to the bundle, independent of YAML layout.
pub(super) fn canonical_json(node: &Node) -> String {
    let mut out = String::new();
    write_json(node, &mut out);
    out
}

fn write_json(node: &Node, out: &mut String) {
    match &node.value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Int(i) => out.push_str(&i.to_string()),
        Value::Float(f) => match serde_json::Number::from_f64(*f) {
            Some(n) => out.push_str(&n.to_string()),
            None => out.push_str("null"),
        },
        Value::Str(s) => out.push_str(&serde_json::Value::String(s.clone()).to_string()),
        Value::Seq(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Value::Map(entries) => {
            let mut sorted: Vec<(String, &Node)> =
                entries.iter().map(|(k, v)| (k.scalar_text().unwrap_or_default(), v)).collect();
            sorted.sort_by(|a, b| a.0.cmp(&b.0));
            out.push('{');
            for (i, (k, v)) in sorted.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&serde_json::Value::String(k.clone()).to_string());
                out.push(':');
                write_json(v, out);
            }
            out.push('}');
        }
    }
}

/// ICMPv4 type names Cilium accepts (IANA numbers).
const ICMPV4_TYPES: &[(&str, u8)] = &[
    ("EchoReply", 0),
    ("DestinationUnreachable", 3),
    ("Redirect", 5),
    ("Echo", 8),
    ("EchoRequest", 8),
    ("RouterAdvertisement", 9),
    ("RouterSelection", 10),
    ("TimeExceeded", 11),
    ("ParameterProblem", 12),
    ("Timestamp", 13),
    ("TimestampReply", 14),
    ("Photuris", 40),
    ("ExtendedEchoRequest", 42),
    ("ExtendedEchoReply", 43),
];

/// ICMPv6 type names Cilium accepts (IANA numbers).
const ICMPV6_TYPES: &[(&str, u8)] = &[
    ("DestinationUnreachable", 1),
    ("PacketTooBig", 2),
    ("TimeExceeded", 3),
    ("ParameterProblem", 4),
    ("EchoRequest", 128),
    ("EchoReply", 129),
    ("MulticastListenerQuery", 130),
    ("MulticastListenerReport", 131),
    ("MulticastListenerDone", 132),
    ("RouterSolicitation", 133),
    ("RouterAdvertisement", 134),
    ("NeighborSolicitation", 135),
    ("NeighborAdvertisement", 136),
    ("RedirectMessage", 137),
    ("RouterRenumbering", 138),
    ("ICMPNodeInformationQuery", 139),
    ("ICMPNodeInformationResponse", 140),
    ("InverseNeighborDiscoverySolicitation", 141),
    ("InverseNeighborDiscoveryAdvertisement", 142),
    ("HomeAgentAddressDiscoveryRequest", 144),
    ("HomeAgentAddressDiscoveryReply", 145),
    ("MobilePrefixSolicitation", 146),
    ("MobilePrefixAdvertisement", 147),
    ("DuplicateAddressRequestCodeSuffix", 157),
    ("DuplicateAddressConfirmationCodeSuffix", 158),
    ("ExtendedEchoRequest", 160),
    ("ExtendedEchoReply", 161),
];

/// Decodes `icmps: [{fields: [{type, family}]}]`.
pub(super) fn icmps(ctx: &mut Ctx, node: &Node, path: &str) -> Vec<PortMatch> {
    let mut out = Vec::new();
    for (i, item) in ctx.list(node, path).iter().enumerate() {
        let item_path = index(path, i);
        let Some(fields) = ctx.fields(item, &item_path, &["fields"]) else { continue };
        let Some(list) = fields.get("fields") else { continue };
        let fields_path = join(&item_path, "fields");
        for (j, field) in ctx.list(list, &fields_path).iter().enumerate() {
            if let Some(m) = icmp_field(ctx, field, &index(&fields_path, j)) {
                out.push(m);
            }
        }
    }
    out
}

fn icmp_field(ctx: &mut Ctx, node: &Node, path: &str) -> Option<PortMatch> {
    let fields = ctx.fields(node, path, &["type", "family"])?;
    let family_path = join(path, "family");
    let protocol = match fields.get("family") {
        None => Protocol::Icmp,
        Some(f) => match ctx.string(f, &family_path)? {
            "IPv4" => Protocol::Icmp,
            "IPv6" => Protocol::Icmpv6,
            other => {
                let help = did_you_mean(other, ["IPv4", "IPv6"])
                    .map(|s| format!("did you mean `{s}`?"))
                    .unwrap_or_else(|| "families are `IPv4` (the default) and `IPv6`".into());
                ctx.report(
                    codes::INVALID_ICMP,
                    Some(f),
                    &family_path,
                    format!("unknown ICMP family `{other}`"),
                    Some(help),
                );
                return None;
            }
        },
    };
    let type_node = ctx.required(&fields, "type", node, path)?;
    let type_path = join(path, "type");
    let names = if protocol == Protocol::Icmp { ICMPV4_TYPES } else { ICMPV6_TYPES };
    let number = match &type_node.value {
        Value::Int(n) => Some(*n),
        Value::Str(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => Some(s.parse().unwrap_or(i64::MAX)),
        Value::Str(s) => match names.iter().find(|(n, _)| n == s) {
            Some((_, t)) => Some(i64::from(*t)),
            None => {
                let family = if protocol == Protocol::Icmp { "IPv4" } else { "IPv6" };
                let help = did_you_mean(s, names.iter().map(|(n, _)| *n))
                    .map(|n| format!("did you mean `{n}`?"))
                    .unwrap_or_else(|| "write the type number (0-255) or a name such as `EchoRequest`".into());
                ctx.report(
                    codes::INVALID_ICMP,
                    Some(type_node),
                    &type_path,
                    format!("unknown {family} ICMP type `{s}`"),
                    Some(help),
                );
                return None;
            }
        },
        _ => {
            ctx.wrong_type(type_node, &type_path, "an ICMP type number or name");
            return None;
        }
    }?;
    let Ok(t) = u8::try_from(number) else {
        ctx.report(
            codes::INVALID_ICMP,
            Some(type_node),
            &type_path,
            format!("ICMP type `{number}` is out of range"),
            Some("ICMP types are 0-255".into()),
        );
        return None;
    };
    Some(PortMatch { protocol: Some(protocol), ports: PortSpec::Range(PortRange::single(u16::from(t))) })
}
