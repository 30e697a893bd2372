//! The two attach mechanisms on the real kernel (root): legacy tc filters
//! (`cls_bpf` on `clsact`, the default) and tcx links.
//!
//! - a tc filter is created once per hook, replaced in place afterwards
//!   (one program per hook at every moment), outlives the process that
//!   attached it, is found again by a later apply, and goes with
//!   `uninstall`;
//! - an endpoint keeps the mechanism it was attached with; endpoints
//!   attached afresh get the one the apply asks for;
//! - a filter of another tool in the loader's slot is refused, with
//!   nothing of the apply left behind;
//! - a pod re-created under another name on the same interface keeps its
//!   new filter when the old endpoint is detached (a filter is deleted
//!   only while it runs the program pinned for it);
//! - filters are listed in the caller's network namespace (the loader
//!   runs under `nsenter --net` in `bench apply`), not sysfs's.
//!
//! Interfaces are `at<tag><pid>x<i>` veths, removed on drop; each test has
//! its own bpffs root, uninstalled on drop.

mod support;

use aya::programs::tc::{NlOptions, TcAttachOptions, TcHandle};
use aya::programs::{SchedClassifier, TcAttachType};
use aya::EbpfLoader;
use policyc_ebpf::Template;
use policyc_loader::apply::{apply, ApplyOptions, ApplyReport};
use policyc_loader::attach::Attachment;
use policyc_loader::kernel::aya::{tc, AyaKernel};
use policyc_loader::kernel::{tc_filters, Kernel, Mechanism};
use policyc_loader::paths::Paths;
use policyc_loader::uninstall::uninstall;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::{require_root, scratch_paths, turn, TempDir};

/// Host-side veths standing for pods; deleted on drop.
struct Veths(Vec<String>);

impl Veths {
    fn new(tag: &str, count: usize) -> Veths {
        let names: Vec<String> = (0..count).map(|i| format!("at{tag}{}x{i}", std::process::id() % 100_000)).collect();
        let veths = Veths(names.clone());
        for name in &names {
            let ok = Command::new("ip")
                .args(["link", "add", name, "type", "veth", "peer", "name", &format!("{name}p")])
                .status()
                .expect("`ip` (iproute2) is needed")
                .success();
            assert!(ok, "cannot create veth {name}");
            assert!(Command::new("ip").args(["link", "set", name, "up"]).status().unwrap().success());
        }
        veths
    }
}

impl Drop for Veths {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = Command::new("ip").args(["link", "del", name]).status();
        }
    }
}

/// Uninstalls the root when dropped, even after a failed assertion.
struct Installed(Paths);

impl Drop for Installed {
    fn drop(&mut self) {
        if let Err(e) = uninstall(&self.0) {
            eprintln!("cleanup: uninstall of {} failed: {e}", self.0.root.display());
        }
    }
}

fn pod(name: &str, role: &str, ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: demo\n  labels:\n    role: {role}\n\
         spec:\n  nodeName: node-a\n  containers:\n    - name: main\n      image: demo\n\
         status:\n  podIP: {ip}\n  podIPs:\n    - ip: {ip}\n---\n"
    )
}

/// `pods` (`name`, `role`) in `10.200.61.0/24`, and a policy: `server`
/// admits role `client` on TCP 80, and also any peer on 8443 if `open`.
fn manifests(pods: &[(&str, &str)], open: bool) -> String {
    let mut out = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n---\n\
         apiVersion: v1\nkind: Node\nmetadata:\n  name: node-a\nstatus:\n  addresses:\n    - type: InternalIP\n      address: 10.200.255.1\n---\n",
    );
    for (i, (name, role)) in pods.iter().enumerate() {
        out += &pod(name, role, &format!("10.200.61.{}", i + 2));
    }
    out += "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: server\n  namespace: demo\n\
            spec:\n  endpointSelector:\n    matchLabels:\n      role: server\n  ingress:\n    - fromEndpoints:\n\
            \x20       - matchLabels:\n            role: client\n      toPorts:\n        - ports:\n\
            \x20           - port: \"80\"\n              protocol: TCP\n";
    if open {
        out += "    - toPorts:\n        - ports:\n            - port: \"8443\"\n              protocol: TCP\n";
    }
    out
}

/// Compiles `text` into a bundle directory under `out`.
fn bundle(out: &Path, name: &str, text: &str) -> PathBuf {
    let input = out.join(format!("{name}-input"));
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("cluster.yaml"), text).unwrap();
    let scratch = TempDir(out.join(format!("{name}-scratch")));
    let (_, bundles) = support::compile(&input, &scratch).expect("input compiles");
    let node = bundles.keys().next().unwrap();
    let dir = out.join(format!("{name}-bundle"));
    std::fs::rename(scratch.0.join(node), &dir).unwrap();
    dir
}

fn options(interfaces: &[&String], pods: &[&str], attach: Mechanism) -> ApplyOptions {
    let interfaces = pods.iter().zip(interfaces).map(|(p, i)| (format!("demo/{p}"), (*i).clone())).collect();
    ApplyOptions { interfaces, attach, ..ApplyOptions::default() }
}

/// What runs at `template`'s hook of `interface`: (tcx program ids, the
/// loader's tc filter's program id).
fn hook(interface: &str, template: Template) -> (Vec<u32>, Option<u32>) {
    let attach_type = match template {
        Template::FromContainer => TcAttachType::Ingress,
        Template::ToContainer => TcAttachType::Egress,
    };
    let (_, tcx) = SchedClassifier::query_tcx(interface, attach_type).expect("query tcx");
    let filters = tc_filters::list(interface, tc::hook(template)).expect("list tc filters");
    assert!(filters.len() <= 1, "one filter at most on `{interface}`: {filters:?}");
    let filter = filters.first().map(|f| {
        assert_eq!((f.priority, f.handle), (tc::PRIORITY, tc::HANDLE), "{f:?}");
        assert_eq!(f.name.as_deref(), Some(template.program_name()));
        f.program_id
    });
    (tcx.iter().map(|p| p.id()).collect(), filter)
}

/// The program id pinned for endpoint `pod`'s hook `template`, if a
/// program (not a link) is pinned there.
fn pinned_program(paths: &Paths, pod: &str, template: Template) -> Option<u32> {
    tc::pinned_program(&paths.link(&format!("demo.{pod}"), template.suffix()))
}

/// Asserts that `pod` on `interface` runs exactly one program per hook,
/// through a tc filter that runs the pinned program.
fn assert_filtered(paths: &Paths, pod: &str, interface: &str) {
    for t in Template::ALL {
        let (tcx, filter) = hook(interface, t);
        assert!(tcx.is_empty(), "no tcx program on `{interface}`: {tcx:?}");
        assert!(filter.is_some(), "a filter on `{interface}` at {}", t.program_name());
        assert_eq!(filter, pinned_program(paths, pod, t), "the filter runs the pinned program");
        assert_eq!(AyaKernel::new(paths).attached(interface, t).unwrap(), [filter.unwrap()]);
    }
}

/// Asserts that `pod` on `interface` runs exactly one program per hook,
/// through a pinned tcx link.
fn assert_linked(paths: &Paths, pod: &str, interface: &str) {
    for t in Template::ALL {
        let (tcx, filter) = hook(interface, t);
        assert_eq!((tcx.len(), filter), (1, None), "one tcx program and no filter on `{interface}`");
        assert_eq!(pinned_program(paths, pod, t), None, "a link is pinned, not a program");
        assert!(paths.link(&format!("demo.{pod}"), t.suffix()).exists());
    }
}

fn hows(report: &ApplyReport, pod: &str) -> Vec<Attachment> {
    let name = format!("demo/{pod}");
    report.programs.iter().filter(|(e, ..)| *e == name).filter_map(|(.., how)| *how).collect()
}

const THREE: [(&str, &str); 3] = [("server", "server"), ("client", "client"), ("other", "z")];

#[test]
fn tc_filters_are_replaced_in_place_outlive_the_applier_and_go_with_uninstall() {
    require_root();
    let _turn = turn();
    let out = TempDir::new("at-tc");
    let a = bundle(&out.0, "a", &manifests(&THREE, false));
    let c = bundle(&out.0, "c", &manifests(&THREE, true));
    let veths = Veths::new("t", 3);
    let paths = scratch_paths("at-tc", &out);
    let installed = Installed(paths.clone());
    let opts = options(&veths.0.iter().collect::<Vec<_>>(), &["server", "client", "other"], Mechanism::Tc);

    let first = apply(&paths, &a, &opts).unwrap();
    // Created before the switch (every lookup on), replaced after it.
    assert_eq!(hows(&first, "server")[..2], [Attachment::Created, Attachment::Created]);
    assert!(hows(&first, "server")[2..].iter().all(|h| *h == Attachment::Replaced), "{:?}", first.programs);
    // The apply's process handles are dropped: the filters stay.
    for (pod, interface) in ["server", "client", "other"].iter().zip(&veths.0) {
        assert_filtered(&paths, pod, interface);
    }
    let before = hook(&veths.0[0], Template::ToContainer).1;

    // A later apply (nothing of the first kept in memory) finds the filters
    // in their slot and replaces the server's program in place.
    let to_c = apply(&paths, &c, &opts).unwrap();
    assert!(!hows(&to_c, "server").is_empty());
    assert!(hows(&to_c, "server").iter().all(|h| *h == Attachment::Replaced), "{:?}", to_c.programs);
    assert!(hows(&to_c, "client").is_empty(), "unchanged endpoints are left alone");
    assert_filtered(&paths, "server", &veths.0[0]);
    assert_ne!(hook(&veths.0[0], Template::ToContainer).1, before, "the server runs its new program");

    // And back: replaced again, never a second filter.
    let back = apply(&paths, &a, &opts).unwrap();
    assert!(hows(&back, "server").iter().all(|h| *h == Attachment::Replaced));
    assert_filtered(&paths, "server", &veths.0[0]);

    drop(installed);
    for interface in &veths.0 {
        for t in Template::ALL {
            assert_eq!(hook(interface, t), (vec![], None), "uninstall deletes the filters of `{interface}`");
        }
    }
    assert!(!paths.root.exists(), "uninstall removes the root");
}

#[test]
fn an_endpoint_keeps_its_mechanism_and_new_ones_get_the_one_asked_for() {
    require_root();
    let _turn = turn();
    let out = TempDir::new("at-mixed");
    let mut four = THREE.to_vec();
    four.push(("late", "server"));
    let a = bundle(&out.0, "a", &manifests(&THREE, false));
    let c = bundle(&out.0, "c", &manifests(&four, true));
    let d = bundle(&out.0, "d", &manifests(&four, false));
    let veths = Veths::new("m", 4);
    let paths = scratch_paths("at-mixed", &out);
    let _installed = Installed(paths.clone());
    let names = ["server", "client", "other", "late"];
    let interfaces: Vec<&String> = veths.0.iter().collect();

    apply(&paths, &a, &options(&interfaces[..3], &names[..3], Mechanism::Tcx)).unwrap();
    for (pod, interface) in names.iter().zip(&veths.0).take(3) {
        assert_linked(&paths, pod, interface);
    }
    // The server's programs change and `late` is new, under `--attach tc`.
    let to_c = apply(&paths, &c, &options(&interfaces, &names, Mechanism::Tc)).unwrap();
    assert!(hows(&to_c, "server").iter().all(|h| *h == Attachment::Replaced), "{:?}", to_c.programs);
    assert_linked(&paths, "server", &veths.0[0]);
    assert_linked(&paths, "client", &veths.0[1]);
    assert_filtered(&paths, "late", &veths.0[3]);
    // Both servers' programs change under `--attach tcx`: the filter is
    // replaced as a filter, the link as a link.
    let to_d = apply(&paths, &d, &options(&interfaces, &names, Mechanism::Tcx)).unwrap();
    for pod in ["server", "late"] {
        assert!(!hows(&to_d, pod).is_empty(), "{pod}: {:?}", to_d.programs);
        assert!(hows(&to_d, pod).iter().all(|h| *h == Attachment::Replaced), "{:?}", to_d.programs);
    }
    assert_filtered(&paths, "late", &veths.0[3]);
    assert_linked(&paths, "server", &veths.0[0]);
}

#[test]
fn a_filter_of_another_tool_in_the_slot_is_refused_with_nothing_left_behind() {
    require_root();
    let _turn = turn();
    let out = TempDir::new("at-foreign");
    let a = bundle(&out.0, "a", &manifests(&THREE, false));
    let veths = Veths::new("f", 3);
    let paths = scratch_paths("at-foreign", &out);
    let _installed = Installed(paths.clone());
    // Another tool's filter, at the loader's priority and handle on the
    // client's egress hook; kept attached while `foreign` lives.
    aya::programs::tc::qdisc_add_clsact(&veths.0[1]).unwrap();
    let mut foreign = EbpfLoader::new().load(policyc_ebpf::EMPTY_PROGRAM).unwrap();
    let program: &mut SchedClassifier = foreign.program_mut("empty").unwrap().try_into().unwrap();
    program.load().unwrap();
    let slot = NlOptions { priority: tc::PRIORITY, handle: TcHandle::from(tc::HANDLE), ..NlOptions::default() };
    program.attach_with_options(&veths.0[1], TcAttachType::Egress, TcAttachOptions::Netlink(slot)).unwrap();
    let foreign_id = program.info().unwrap().id();

    let opts = options(&veths.0.iter().collect::<Vec<_>>(), &["server", "client", "other"], Mechanism::Tc);
    let refused = apply(&paths, &a, &opts).unwrap_err().to_string();
    assert!(refused.contains(&veths.0[1]) && refused.contains("did not attach"), "{refused}");
    assert!(refused.contains("`empty`"), "the message names the filter found: {refused}");
    // Nothing of the apply stays attached; the other tool's filter is intact.
    for interface in [&veths.0[0], &veths.0[2]] {
        for t in Template::ALL {
            assert_eq!(AyaKernel::new(&paths).attached(interface, t).unwrap(), Vec::<u32>::new(), "{interface}");
        }
    }
    let filters = tc_filters::list(&veths.0[1], tc_filters::Hook::Egress).unwrap();
    assert_eq!(filters.iter().map(|f| f.program_id).collect::<Vec<_>>(), [foreign_id]);
}

#[test]
fn a_pod_renamed_on_the_same_interface_keeps_its_new_filter() {
    require_root();
    let _turn = turn();
    let out = TempDir::new("at-rename");
    let a = bundle(&out.0, "a", &manifests(&THREE, false));
    let renamed = [("server2", "server"), ("client", "client"), ("other", "z")];
    let b = bundle(&out.0, "b", &manifests(&renamed, false));
    let veths = Veths::new("r", 3);
    let paths = scratch_paths("at-rename", &out);
    let _installed = Installed(paths.clone());
    let interfaces: Vec<&String> = veths.0.iter().collect();

    apply(&paths, &a, &options(&interfaces, &["server", "client", "other"], Mechanism::Tc)).unwrap();
    // `server2` takes the slot of `server`'s interface (a replace: the
    // slot was never empty); `server` departs after the switch, and its
    // detach must not delete the filter that now runs `server2`'s program.
    let report = apply(&paths, &b, &options(&interfaces, &["server2", "client", "other"], Mechanism::Tc)).unwrap();
    assert_eq!(report.detached, ["demo/server"]);
    assert!(hows(&report, "server2").iter().all(|h| *h == Attachment::Replaced), "{:?}", report.programs);
    assert_filtered(&paths, "server2", &veths.0[0]);
    assert!(!paths.link("demo.server", "to").exists(), "the departed endpoint's pins go");
}

/// A network namespace of this test with one veth inside; deleted on drop.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn filters_are_found_in_the_callers_network_namespace() {
    require_root();
    let ns = Netns(format!("at-ns-{}", std::process::id()));
    let _ = Command::new("ip").args(["netns", "del", &ns.0]).status();
    assert!(Command::new("ip").args(["netns", "add", &ns.0]).status().unwrap().success());
    let add = ["-n", &ns.0, "link", "add", "atinner", "type", "veth", "peer", "name", "atinnerp"];
    assert!(Command::new("ip").args(add).status().unwrap().success());
    // `atinner` exists only in the namespace: a thread that entered it (as
    // `nsenter --net` does, sysfs still the host's) finds its hooks; the
    // host does not find the interface at all.
    let inside = support::netns::in_netns(&ns.0, || tc_filters::list("atinner", tc_filters::Hook::Ingress));
    assert_eq!(inside.expect("the hook of an interface of the caller's namespace"), []);
    let outside = tc_filters::list("atinner", tc_filters::Hook::Ingress).unwrap_err();
    assert_eq!(outside.kind(), std::io::ErrorKind::NotFound, "{outside}");
}
