//! `services.txt`: one line per frontend and scope, by frontend and scope:
//!
//! ```text
//! <address:port/protocol> <scope> <kind> <ns>/<name> <revnat id> <action> [affinity:<seconds>] [sources:<cidr>,...]
//! ```
//!
//! - scope `ext` is what every source gets; an `int` line follows where
//!   traffic from inside the cluster gets other backends (an external
//!   frontend of a Service with `externalTrafficPolicy: Local`: "traffic
//!   sent to an External IP or LoadBalancer IP from within the cluster
//!   will always get Cluster semantics"), as Cilium's two service scopes;
//! - kind `ClusterIP`, `NodePort`, `LoadBalancer` or `ExternalIP`;
//! - action `backends:<id>,<id>,...` (in `backends.txt`, in this order),
//!   `reject` (no endpoints: ICMP port unreachable) or `drop` (`Local`
//!   traffic policy and no endpoint on this node);
//! - `affinity:<seconds>` for `ClientIP` session affinity;
//! - `sources:` the `loadBalancerSourceRanges` of a load-balancer
//!   frontend.
//!
//! [`check_references`] checks the three files of a node against each
//! other: every backend and reverse-NAT id a services line names is listed,
//! and a reverse-NAT entry names its line's frontend.

use crate::backends::BackendLine;
use crate::error::LineError;
use crate::l3n4::L3n4;
use crate::revnat::RevNatLine;
use crate::text::{parse_lines, push_number, Fields};
use policyc_ir::cidr::Cidr;
use policyc_ir::service::model::FrontendKind;
use std::collections::BTreeMap;

/// Which sources a line applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Every source (sources outside the cluster where an `int` line
    /// exists).
    Ext,
    /// Sources inside the cluster.
    Int,
}

/// What a frontend does with a new connection.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Pick one of these backends (ids, in order).
    Backends(Vec<u32>),
    /// Refuse: ICMP port unreachable.
    Reject,
    /// Drop.
    Drop,
}

/// One line of `services.txt`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceLine<'a> {
    /// The frontend.
    pub frontend: L3n4,
    /// The sources it applies to.
    pub scope: Scope,
    /// How traffic reaches it.
    pub kind: FrontendKind,
    /// `<ns>/<name>` of the Service.
    pub service: &'a str,
    /// The reverse-NAT id of the frontend.
    pub rev_nat: u16,
    /// What happens to a new connection.
    pub action: Action,
    /// `ClientIP` affinity timeout in seconds.
    pub affinity: Option<u32>,
    /// Allowed source ranges (empty: all).
    pub sources: Vec<Cidr>,
}

const KINDS: [FrontendKind; 4] =
    [FrontendKind::ClusterIp, FrontendKind::NodePort, FrontendKind::LoadBalancer, FrontendKind::ExternalIp];

impl<'a> ServiceLine<'a> {
    /// Appends the line, without its newline.
    pub fn write(&self, out: &mut String) {
        out.push_str(&self.frontend.to_string());
        out.push_str(match self.scope {
            Scope::Ext => " ext ",
            Scope::Int => " int ",
        });
        out.push_str(self.kind.name());
        out.push(' ');
        out.push_str(self.service);
        out.push(' ');
        push_number(out, self.rev_nat);
        out.push(' ');
        match &self.action {
            Action::Backends(ids) => {
                out.push_str("backends:");
                for (i, &id) in ids.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    push_number(out, id);
                }
            }
            Action::Reject => out.push_str("reject"),
            Action::Drop => out.push_str("drop"),
        }
        if let Some(seconds) = self.affinity {
            out.push_str(" affinity:");
            push_number(out, seconds);
        }
        if !self.sources.is_empty() {
            out.push_str(" sources:");
            let texts: Vec<String> = self.sources.iter().map(ToString::to_string).collect();
            out.push_str(&texts.join(","));
        }
    }

    /// Parses `text`, line `line` of `file`.
    pub fn parse(file: &str, line: usize, text: &'a str) -> Result<Self, LineError> {
        let mut f = Fields::new(file, line, text);
        let frontend = f.next("frontend")?;
        let frontend = L3n4::parse(&f, frontend)?;
        let scope = match f.next("scope")? {
            "ext" => Scope::Ext,
            "int" => Scope::Int,
            other => return Err(f.error(format!("`{other}` is not a scope (`ext` or `int`)"))),
        };
        let kind = f.next("kind")?;
        let kind = KINDS
            .into_iter()
            .find(|k| k.name() == kind)
            .ok_or_else(|| f.error(format!("`{kind}` is not a frontend kind")))?;
        let service = f.next_name("service")?;
        if service.split('/').count() != 2 || service.split('/').any(str::is_empty) {
            return Err(f.error(format!("`{service}` is not `namespace/name`")));
        }
        let rev_nat = match f.next_number("reverse-NAT id")? {
            0 => return Err(f.error("reverse-NAT id 0 is no entry".into())),
            id => id,
        };
        let action = match f.next("action")? {
            "reject" => Action::Reject,
            "drop" => Action::Drop,
            other => {
                let list = other
                    .strip_prefix("backends:")
                    .ok_or_else(|| f.error(format!("`{other}` is not `backends:...`, `reject` or `drop`")))?;
                let mut ids = Vec::new();
                for id in list.split(',') {
                    match f.number("backend id", id)? {
                        0 => return Err(f.error("backend id 0 is no backend".into())),
                        id if ids.contains(&id) => return Err(f.error(format!("backend {id} is listed twice"))),
                        id => ids.push(id),
                    }
                }
                Action::Backends(ids)
            }
        };
        let mut affinity = None;
        let mut sources = Vec::new();
        while !f.at_end() {
            let field = f.next("option")?;
            if let (Some(seconds), None, true) = (field.strip_prefix("affinity:"), affinity, sources.is_empty()) {
                affinity = Some(f.number("affinity timeout", seconds)?);
            } else if let (Some(list), true) = (field.strip_prefix("sources:"), sources.is_empty()) {
                for c in list.split(',') {
                    let cidr = Cidr::parse_strict(c).map_err(|_| f.error(format!("`{c}` is not a canonical CIDR")))?;
                    sources.push(cidr);
                }
            } else {
                return Err(f.error(format!("unexpected `{field}`")));
            }
        }
        Ok(ServiceLine { frontend, scope, kind, service, rev_nat, action, affinity, sources })
    }

    /// Parses every line of `text`; a frontend and scope listed twice is
    /// refused.
    pub fn parse_all(file: &str, first: usize, text: &'a str) -> Result<Vec<Self>, LineError> {
        parse_lines(file, first, text, Self::parse, |l: &ServiceLine| (l.frontend, l.scope))
    }
}

impl std::fmt::Display for ServiceLine<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut out = String::new();
        self.write(&mut out);
        f.write_str(&out)
    }
}

/// Checks a node's services, backends and reverse-NAT lines against each
/// other; the message names the file and the reason.
pub fn check_references(
    services: &[ServiceLine],
    backends: &[BackendLine],
    revnat: &[RevNatLine],
) -> Result<(), String> {
    let backend_ids: BTreeMap<u32, &BackendLine> = backends.iter().map(|b| (b.id, b)).collect();
    let revnat_ids: BTreeMap<u16, &RevNatLine> = revnat.iter().map(|r| (r.id, r)).collect();
    for s in services {
        match revnat_ids.get(&s.rev_nat) {
            None => {
                return Err(format!("{}: reverse-NAT id {} is not in {}", s.frontend, s.rev_nat, crate::REVNAT_FILE))
            }
            Some(r) if r.frontend != s.frontend => {
                return Err(format!(
                    "{}: reverse-NAT id {} is {} in {}",
                    s.frontend,
                    s.rev_nat,
                    r.frontend,
                    crate::REVNAT_FILE
                ))
            }
            Some(_) => {}
        }
        if let Action::Backends(ids) = &s.action {
            for id in ids {
                let Some(b) = backend_ids.get(id) else {
                    return Err(format!("{}: backend {id} is not in {}", s.frontend, crate::BACKENDS_FILE));
                };
                if b.address.protocol != s.frontend.protocol {
                    return Err(format!("{}: backend {id} ({}) has another protocol", s.frontend, b.address));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SERVICES: &str = "\
10.96.0.10:80/TCP ext ClusterIP shop/web 7 backends:3,1 affinity:10800
10.200.255.1:30080/TCP ext NodePort shop/web 9 drop
10.200.255.1:30080/TCP int NodePort shop/web 9 backends:1,3
192.0.2.20:80/TCP ext LoadBalancer shop/web 8 reject sources:198.51.100.0/24,203.0.113.0/24
[fd00:96::10]:53/UDP ext ClusterIP kube-system/dns 2 backends:5
";

    #[test]
    fn reads_what_it_writes() {
        let lines = ServiceLine::parse_all("services.txt", 1, SERVICES).unwrap();
        assert_eq!(lines.len(), 5);
        assert_eq!(lines.iter().map(|l| format!("{l}\n")).collect::<String>(), SERVICES);
        assert_eq!(lines[0].action, Action::Backends(vec![3, 1]));
        assert_eq!(lines[0].affinity, Some(10800));
        let backends = "1 10.200.0.1:8080/TCP active\n3 10.200.0.3:8080/TCP terminating\n5 [fd00::5]:5353/UDP active\n";
        let b = BackendLine::parse_all("backends.txt", 1, backends).unwrap();
        assert_eq!(b.iter().map(|l| format!("{l}\n")).collect::<String>(), backends);
        let revnat = "2 [fd00:96::10]:53/UDP\n7 10.96.0.10:80/TCP\n8 192.0.2.20:80/TCP\n9 10.200.255.1:30080/TCP\n";
        let r = RevNatLine::parse_all("revnat.txt", 1, revnat).unwrap();
        assert_eq!(r.iter().map(|l| format!("{l}\n")).collect::<String>(), revnat);
        assert_eq!(check_references(&lines, &b, &r), Ok(()));
        // A backend the node's table lacks, a reverse-NAT entry of another frontend.
        assert!(check_references(&lines, &b[..1], &r).unwrap_err().contains("backend 3 is not in maps/backends.txt"));
        let mut wrong = r.clone();
        wrong[1].frontend.port = 81;
        assert!(check_references(&lines, &b, &wrong).unwrap_err().contains("reverse-NAT id 7 is 10.96.0.10:81/TCP"));
    }

    #[test]
    fn refuses_what_it_does_not_write() {
        let bad = [
            "10.96.0.10:80/TCP ext ClusterIP shop/web 7 backends:3,3",
            "10.96.0.10:80/TCP ext ClusterIP shop/web 0 reject",
            "10.96.0.10:80/TCP both ClusterIP shop/web 7 reject",
            "10.96.0.10:80/ICMP ext ClusterIP shop/web 7 reject",
            "10.96.0.10:080/TCP ext ClusterIP shop/web 7 reject",
            "fd00::1:80/TCP ext ClusterIP shop/web 7 reject",
            "10.96.0.10:80/TCP ext Headless shop/web 7 reject",
            "10.96.0.10:80/TCP ext ClusterIP web 7 reject",
            "10.96.0.10:80/TCP ext ClusterIP shop/web 7 reject sources:10.0.0.1/8",
            "10.96.0.10:80/TCP ext ClusterIP shop/web 7 reject sources:10.0.0.0/8 affinity:5",
            "10.96.0.10:80/TCP ext ClusterIP shop/web 7 reject  affinity:5",
        ];
        for line in bad {
            assert!(ServiceLine::parse("services.txt", 1, line).is_err(), "{line}");
        }
        let e = ServiceLine::parse_all(
            "services.txt",
            1,
            "10.96.0.10:80/TCP ext ClusterIP a/b 1 drop\n10.96.0.10:80/TCP ext ClusterIP a/b 1 drop\n",
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "services.txt:2: this key is already listed on an earlier line");
        assert!(BackendLine::parse("backends.txt", 1, "1 10.0.0.1:80/TCP gone").is_err());
        assert!(RevNatLine::parse("revnat.txt", 1, "70000 10.0.0.1:80/TCP").is_err());
    }
}
