//! Every line kind: writing then parsing gives the line back, parsing then
//! writing gives the text back, and a text the writer would not produce
//! (a doubled space, a leading zero, a key listed twice) is refused with
//! the number of the line at fault.

use policyc_bundle::endpoints::{EndpointLine, Enforced};
use policyc_bundle::identities::IdentityLine;
use policyc_bundle::ipcache::{IpcacheLine, Source};
use policyc_bundle::policy::{Direction, PolicyKey, PolicyLine, Tier, Verdict};
use policyc_bundle::rules::RuleLine;
use proptest::prelude::*;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

fn name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9./:\\[\\]-]{0,20}"
}

fn prefix() -> impl Strategy<Value = (IpAddr, u8)> {
    prop_oneof![
        (any::<u32>(), 0u8..=32).prop_map(|(a, len)| {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            (IpAddr::V4(Ipv4Addr::from(a & mask)), len)
        }),
        (any::<u128>(), 0u8..=128).prop_map(|(a, len)| {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            (IpAddr::V6(Ipv6Addr::from(a & mask)), len)
        }),
    ]
}

fn address() -> impl Strategy<Value = IpAddr> {
    prop_oneof![any::<u32>().prop_map(|a| IpAddr::V4(a.into())), any::<u128>().prop_map(|a| IpAddr::V6(a.into()))]
}

fn policy_key() -> impl Strategy<Value = PolicyKey> {
    (any::<bool>(), any::<u32>(), any::<u8>(), any::<u16>(), 0u8..=24).prop_map(
        |(ingress, peer, protocol, port, len)| {
            let bits = (u32::from(protocol) << 16 | u32::from(port)) & !(u32::MAX >> len >> 8);
            PolicyKey {
                direction: if ingress { Direction::Ingress } else { Direction::Egress },
                peer,
                protocol: (bits >> 16) as u8,
                port: bits as u16,
                prefix_len: len,
            }
        },
    )
}

/// Breaks a written line the way a hand edit would, keeping it parseable
/// by a lenient reader: a doubled space, a trailing space, or a leading
/// zero before a field that starts with a digit.
fn break_line(line: &str, how: usize) -> Option<String> {
    let spaces: Vec<usize> = line.match_indices(' ').map(|(i, _)| i).collect();
    match how % 3 {
        0 => spaces.first().map(|&i| format!("{}  {}", &line[..i], &line[i + 1..])),
        1 => Some(format!("{line} ")),
        _ => {
            let i = spaces.iter().find(|&&i| line[i + 1..].starts_with(|c: char| c.is_ascii_digit()))?;
            Some(format!("{} 0{}", &line[..*i], &line[*i + 1..]))
        }
    }
}

/// `lines` as a file whose line `at` is `broken`: the parse fails there.
fn refused_at(
    lines: &[String],
    at: usize,
    broken: &str,
    parse: impl Fn(&str) -> Result<(), policyc_bundle::LineError>,
) -> Result<(), TestCaseError> {
    let mut text: Vec<&str> = lines.iter().map(String::as_str).collect();
    text[at] = broken;
    let text = policyc_bundle::join(&text.iter().map(|l| l.to_string()).collect::<Vec<_>>());
    match parse(&text) {
        Err(e) => prop_assert_eq!(e.line, at + 1, "{}", e),
        Ok(_) => prop_assert!(false, "`{}` was accepted", broken),
    }
    Ok(())
}

proptest! {
    #[test]
    fn policy_lines(lines in proptest::collection::btree_map(policy_key(), (0u8..3, "[a-z]{1,6}", any::<u32>(), name(), 0u32..5, (0u8..4, any::<u32>())), 1..20), how in any::<usize>(), at in any::<usize>()) {
        let mut lines: Vec<PolicyLine> = lines.iter().map(|(key, (verdict, parser, cookie, rule, others, (tier, order)))| PolicyLine {
            key: *key,
            verdict: match verdict { 0 => Verdict::Allow, 1 => Verdict::Deny, _ => Verdict::Redirect(parser) },
            cookie: *cookie,
            rule,
            others: *others,
            tier: match tier { 0 => Tier::NetworkPolicy, 1 => Tier::Admin(*order), 2 => Tier::Passed(*order), _ => Tier::Baseline(*order) },
        }).collect();
        // Written in the files' order.
        lines.sort_by_key(PolicyLine::sort_key);
        let written: Vec<String> = lines.iter().map(ToString::to_string).collect();
        let text = policyc_bundle::join(&written);
        let parsed = PolicyLine::parse_all("p.txt", 1, &text).unwrap();
        prop_assert_eq!(&parsed, &lines);
        let at = at % written.len();
        if let Some(broken) = break_line(&written[at], how) {
            refused_at(&written, at, &broken, |t| PolicyLine::parse_all("p.txt", 1, t).map(|_| ()))?;
        }
        // The same key twice is ambiguous.
        let mut twice = written.clone();
        twice.push(written[at].replace(" allow ", " deny "));
        let text = policyc_bundle::join(&twice);
        prop_assert_eq!(PolicyLine::parse_all("p.txt", 1, &text).unwrap_err().line, twice.len());
    }

    #[test]
    fn ipcache_lines(lines in proptest::collection::btree_map(prefix(), (1u32.., 0u8..5, name()), 1..20), how in any::<usize>(), at in any::<usize>()) {
        let lines: Vec<IpcacheLine> = lines.iter().map(|((addr, len), (identity, source, name))| IpcacheLine {
            addr: *addr,
            prefix_len: *len,
            identity: *identity,
            source: match source {
                0 => Source::World,
                1 => Source::Cidr,
                2 => Source::Host,
                3 => Source::Node(name),
                _ => Source::Endpoint(name),
            },
        }).collect();
        let written: Vec<String> = lines.iter().map(ToString::to_string).collect();
        let text = policyc_bundle::join(&written);
        let parsed = IpcacheLine::parse_all("ipcache.txt", 1, &text).unwrap();
        prop_assert_eq!(&parsed, &lines);
        let at = at % written.len();
        if let Some(broken) = break_line(&written[at], how) {
            refused_at(&written, at, &broken, |t| IpcacheLine::parse_all("ipcache.txt", 1, t).map(|_| ()))?;
        }
    }

    #[test]
    fn endpoint_lines(lines in proptest::collection::btree_map(address(), (any::<u16>(), 1u32.., any::<(bool, bool)>(), name()), 1..20), how in any::<usize>(), at in any::<usize>()) {
        let lines: Vec<EndpointLine> = lines.iter().map(|(ip, (id, identity, (ingress, egress), name))| EndpointLine {
            ip: *ip,
            id: *id,
            identity: *identity,
            enforced: Enforced { ingress: *ingress, egress: *egress },
            name,
        }).collect();
        let written: Vec<String> = lines.iter().map(ToString::to_string).collect();
        let text = policyc_bundle::join(&written);
        let parsed = EndpointLine::parse_all("endpoints.txt", 1, &text).unwrap();
        prop_assert_eq!(&parsed, &lines);
        let at = at % written.len();
        if let Some(broken) = break_line(&written[at], how) {
            refused_at(&written, at, &broken, |t| EndpointLine::parse_all("endpoints.txt", 1, t).map(|_| ()))?;
        }
    }

    #[test]
    fn rule_lines(lines in proptest::collection::btree_map(any::<u32>(), name(), 1..20), how in any::<usize>(), at in any::<usize>()) {
        let lines: Vec<RuleLine> = lines.iter().map(|(cookie, rule)| RuleLine { cookie: *cookie, rule }).collect();
        let written: Vec<String> = lines.iter().map(ToString::to_string).collect();
        let text = policyc_bundle::join(&written);
        let parsed = RuleLine::parse_all("rules.txt", 1, &text).unwrap();
        prop_assert_eq!(&parsed, &lines);
        let at = at % written.len();
        if let Some(broken) = break_line(&written[at], how) {
            refused_at(&written, at, &broken, |t| RuleLine::parse_all("rules.txt", 1, t).map(|_| ()))?;
        }
    }

    #[test]
    fn identity_lines(lines in proptest::collection::btree_map(1u32.., (0usize..3, proptest::collection::vec(("[a-z.:]{1,8}", "[a-z0-9]{0,4}"), 0..4)), 1..20)) {
        let lines: Vec<IdentityLine> = lines.iter().map(|(identity, (kind, labels))| {
            let kind = ["reserved", "endpoint", "cidr"][*kind];
            IdentityLine::new(*identity, kind, labels.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        }).collect();
        let written: Vec<String> = lines.iter().map(ToString::to_string).collect();
        let text = policyc_bundle::join(&written);
        let parsed = IdentityLine::parse_all("identities.txt", &text).unwrap();
        prop_assert_eq!(&parsed, &lines);
    }
}

/// Every map file of every golden bundle parses: the goldens are what
/// the compiler writes (`tests/golden/<case>/expected.snap`, one
/// `## <node>/<path>` section per file).
#[test]
fn golden_map_files_parse() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden");
    let mut files = 0;
    for case in std::fs::read_dir(&root).unwrap() {
        let snap = case.unwrap().path().join("expected.snap");
        let Ok(text) = std::fs::read_to_string(&snap) else { continue };
        for section in text.split("\n## ").skip(1) {
            let (path, body) = section.split_once('\n').unwrap_or((section, ""));
            let body = body.split("\n## ").next().unwrap_or_default();
            let body = if body.is_empty() { String::new() } else { format!("{}\n", body.trim_end_matches('\n')) };
            let shown = format!("{}: {path}", snap.display());
            let parsed = match path.rsplit('/').next() {
                Some("ipcache.txt") => IpcacheLine::parse_all(&shown, 1, &body).map(|_| ()),
                Some("endpoints.txt") => EndpointLine::parse_all(&shown, 1, &body).map(|_| ()),
                Some("rules.txt") => RuleLine::parse_all(&shown, 1, &body).map(|_| ()),
                Some("identities.txt") => IdentityLine::parse_all(&shown, &body).map(|_| ()),
                Some("services.txt") => policyc_bundle::services::ServiceLine::parse_all(&shown, 1, &body).map(|_| ()),
                Some("backends.txt") => policyc_bundle::backends::BackendLine::parse_all(&shown, 1, &body).map(|_| ()),
                Some("revnat.txt") => policyc_bundle::revnat::RevNatLine::parse_all(&shown, 1, &body).map(|_| ()),
                Some(_) if path.contains("/maps/policy/") => PolicyLine::parse_all(&shown, 1, &body).map(|_| ()),
                _ => continue,
            };
            parsed.unwrap();
            files += 1;
        }
    }
    assert!(files > 100, "only {files} golden map files");
}
