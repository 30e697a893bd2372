//! The phases of an apply driven through the in-memory kernel (no root):
//! what each writes and when, and that a refusal at any call leaves the
//! previous generation in force.

use super::*;
use crate::bundle::Bundle;
use crate::kernel::memory::{Call, Change, MemoryKernel};
use crate::maps::Generation;
use policyc::emit::{emit, BundleOptions};
use policyc_ebpf::abi::POLICY_KEY_EXACT_BITS;
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

/// A directory removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Scratch {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("policyc-apply-unit-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pod(name: &str, role: &str, ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: demo\n  labels:\n    role: {role}\n\
         spec:\n  nodeName: node-a\n  containers:\n    - name: main\n      image: demo\n\
         status:\n  podIP: {ip}\n  podIPs:\n    - ip: {ip}\n---\n"
    )
}

/// `pods` (name, role, last address byte) on one node, and a policy
/// admitting role `client` to the server on port 80, plus `extra` rules.
fn cluster(pods: &[(&str, &str, u8)], extra: &str) -> String {
    let mut out = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n---\n\
         apiVersion: v1\nkind: Node\nmetadata:\n  name: node-a\nstatus:\n  addresses:\n    - type: InternalIP\n      address: 10.200.255.1\n---\n",
    );
    for (name, role, ip) in pods {
        out += &pod(name, role, &format!("10.200.50.{ip}"));
    }
    out += "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: server\n  namespace: demo\n\
            spec:\n  endpointSelector:\n    matchLabels:\n      role: server\n  ingress:\n    - fromEndpoints:\n\
            \x20       - matchLabels:\n            role: client\n      toPorts:\n        - ports:\n\
            \x20           - port: \"80\"\n              protocol: TCP\n";
    out + extra
}

/// Compiles `text` into the bundle directory `out/name`.
fn compile(out: &Path, name: &str, text: &str) -> PathBuf {
    let input = out.join(format!("{name}-input"));
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("cluster.yaml"), text).unwrap();
    let loaded = policyc::pipeline::load(&[input]);
    assert!(!loaded.has_errors(), "the test cluster compiles");
    let cluster = &loaded.lowered.cluster;
    let resolved = policyc_ir::resolve::resolve(cluster);
    let mut bundles = emit(cluster, &resolved, None, &BundleOptions::default()).expect("emit");
    assert_eq!(bundles.len(), 1, "one node");
    let dir = out.join(name);
    bundles.remove(0).write_to(&dir).unwrap();
    dir
}

/// Two bundles of one node: `a`, and `b`, where the server gains a port
/// open to every peer (a lookup its programs skip: prepared before the
/// switch), `other` leaves (detached after it) and `newcomer` arrives
/// (attached after it).
struct Fixture {
    dir: Scratch,
    a: PathBuf,
    b: PathBuf,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = Scratch::new("bundles");
        let a =
            compile(&dir.0, "a", &cluster(&[("server", "server", 2), ("client", "client", 3), ("other", "z", 4)], ""));
        let open = "    - toPorts:\n        - ports:\n            - port: \"8443\"\n              protocol: TCP\n";
        let b = compile(
            &dir.0,
            "b",
            &cluster(&[("server", "server", 2), ("client", "client", 3), ("newcomer", "client", 5)], open),
        );
        Fixture { dir, a, b }
    }
}

/// Where an apply's desired state comes from.
#[derive(Clone, Copy, Debug)]
enum Source {
    /// A bundle directory: planned from the changed pieces.
    Directory,
    /// Memory: planned against the live maps (their reads can fail too).
    Memory,
}

const PODS: [&str; 4] = ["server", "client", "other", "newcomer"];

fn options() -> ApplyOptions {
    let interfaces = PODS.iter().map(|p| (format!("demo/{p}"), format!("veth-{p}"))).collect();
    ApplyOptions { interfaces, ..ApplyOptions::default() }
}

/// A node: an empty in-memory kernel with the pods' interfaces, and a
/// state directory of its own.
struct Node {
    _state: Scratch,
    paths: Paths,
    kernel: MemoryKernel,
}

impl Node {
    fn new() -> Node {
        let state = Scratch::new("node");
        let paths = Paths::new(&state.0.join("bpffs"), "policyc", &state.0.join("state"));
        let interfaces: Vec<String> = PODS.iter().map(|p| format!("veth-{p}")).collect();
        let kernel = MemoryKernel::new(&paths, &interfaces.iter().map(String::as_str).collect::<Vec<_>>());
        Node { _state: state, paths, kernel }
    }

    fn apply(&self, bundle: &Path) -> Result<ApplyReport, LoaderError> {
        self.apply_as(bundle, Source::Directory)
    }

    /// Applies `bundle` as a directory, or read whole into memory.
    fn apply_as(&self, bundle: &Path, from: Source) -> Result<ApplyReport, LoaderError> {
        let desired = match from {
            Source::Directory => DesiredState::from_directory(bundle)?,
            Source::Memory => DesiredState::Memory(Bundle::read(bundle)?),
        };
        self.apply_with(&desired, &options())
    }

    fn apply_with(&self, desired: &DesiredState, options: &ApplyOptions) -> Result<ApplyReport, LoaderError> {
        apply_desired(&self.kernel, &self.paths, desired, options, Instant::now())
    }

    /// The generation the state slot puts in force (none: no maps).
    fn active(&self) -> Option<u8> {
        let memory = self.kernel.memory();
        let state = memory.maps.get("state")?;
        let bytes: [u8; 8] = state.get(&Vec::new()).map_or([0; 8], |v| v[..].try_into().unwrap());
        Some(StateValue::from_bytes(&bytes).generation as u8)
    }

    /// Whether `bundle` is in force: the active generation holds exactly
    /// its entries, and each of its endpoints runs a program at both hooks
    /// on its interface.
    fn in_force(&self, bundle: &Path) -> Result<(), String> {
        self.maps_in_force(bundle)?;
        let bundle = Bundle::read(bundle).unwrap();
        let running = self.running();
        match bundle.endpoints.iter().find(|e| !running.contains(&e.name)) {
            Some(e) => Err(format!("`{}` does not run a program at both hooks", e.name)),
            None => Ok(()),
        }
    }

    /// Whether the active generation holds exactly `bundle`'s entries.
    fn maps_in_force(&self, bundle: &Path) -> Result<(), String> {
        let bundle = Bundle::read(bundle).unwrap();
        let active = self.active().ok_or("no maps")?;
        let live = Generation::read_live(&self.kernel, active).map_err(|e| e.to_string())?;
        if live != Generation::of_bundle(&bundle, active) {
            return Err(format!("generation {active} does not hold the bundle's entries"));
        }
        Ok(())
    }

    /// The pods that run one program at each hook of their interface,
    /// through their pinned links.
    fn running(&self) -> BTreeSet<String> {
        let memory = self.kernel.memory();
        PODS.iter()
            .filter(|pod| {
                Template::ALL.iter().all(|t| {
                    let attached = self.kernel.attached(&format!("veth-{pod}"), *t).unwrap();
                    let pin = self.paths.link(&format!("demo.{pod}"), t.suffix());
                    attached.len() == 1 && memory.links.get(&pin).is_some_and(|l| l.program == attached[0])
                })
            })
            .map(|pod| format!("demo/{pod}"))
            .collect()
    }
}

/// The calls an apply of `to` after `from` makes, per call.
fn calls_of(from: Option<&Path>, to: &Path, how: Source) -> Vec<(Call, usize)> {
    let node = Node::new();
    if let Some(from) = from {
        node.apply(from).unwrap();
    }
    let before: Vec<usize> = Call::ALL.iter().map(|c| node.kernel.calls(*c)).collect();
    node.apply_as(to, how).unwrap();
    Call::ALL.iter().zip(before).map(|(c, b)| (*c, node.kernel.calls(*c) - b)).collect()
}

#[test]
fn the_flip_is_the_one_commit_point() {
    let fixture = Fixture::new();
    let node = Node::new();
    node.apply(&fixture.a).unwrap();
    node.in_force(&fixture.a).unwrap();
    let journal_before = node.kernel.memory().journal.len();
    let report = node.apply(&fixture.b).unwrap();
    node.in_force(&fixture.b).unwrap();
    let journal = node.kernel.memory().journal.split_off(journal_before);

    let switches: Vec<usize> =
        journal.iter().enumerate().filter(|(_, c)| matches!(c, Change::Switch(_))).map(|(i, _)| i).collect();
    assert_eq!(switches.len(), 1, "one write of the state slot: {journal:?}");
    let (before, after) = journal.split_at(switches[0]);
    assert!(
        after.iter().all(|c| !matches!(c, Change::Write(_) | Change::Delete(_) | Change::CreateMap(_))),
        "no map entry changes after the switch: {after:?}"
    );
    assert!(before.iter().any(|c| matches!(c, Change::Write(_))), "the sync writes before the switch");
    // Before the switch: programs with the lookups of both bundles replace
    // the server's, judging either generation exactly, and the newcomer's
    // links are created with every lookup on. Every link is created before
    // it; after it, links are only updated or detached.
    let bundle = Bundle::read(&fixture.b).unwrap();
    let pins_of = |name: &str| -> Vec<PathBuf> {
        let e = bundle.endpoints.iter().find(|e| e.name == name).unwrap();
        Template::ALL.iter().map(|t| node.paths.link(&e.stem, t.suffix())).collect()
    };
    let (server_pins, newcomer_pins) = (pins_of("demo/server"), pins_of("demo/newcomer"));
    let prepared: Vec<&Change> = before.iter().filter(|c| matches!(c, Change::Attach { .. })).collect();
    assert_eq!(prepared.len(), 4, "{before:?}");
    assert!(prepared
        .iter()
        .all(|c| matches!(c, Change::Attach { pin, .. } if server_pins.contains(pin) || newcomer_pins.contains(pin))));
    assert!(report.programs.iter().any(|(e, _, step, _)| e == "demo/server" && *step == ProgramStep::Prepare));
    assert!(report.programs.iter().any(|(e, _, step, how)| e == "demo/newcomer"
        && *step == ProgramStep::Prepare
        && *how == Some(Attachment::Created)));
    assert!(report
        .programs
        .iter()
        .all(|(_, _, step, how)| *step == ProgramStep::Prepare || *how == Some(Attachment::Replaced)));
    // After it: `other` detached.
    assert!(after.iter().any(|c| matches!(c, Change::Detach(_))), "{after:?}");
    assert_eq!(report.detached, ["demo/other"]);

    // Applying it again changes nothing.
    let again = node.apply(&fixture.b).unwrap();
    assert!(again.unchanged);
}

#[test]
fn nothing_is_written_before_every_check_passed() {
    let fixture = Fixture::new();
    let node = Node::new();
    node.apply(&fixture.a).unwrap();
    let journal = node.kernel.memory().journal.len();

    // A missing interface, a corrupt map file, a failing check call: each
    // refuses the apply with nothing changed.
    let mut missing = options();
    missing.interfaces.insert("demo/newcomer".into(), "nowhere".into());
    let desired = DesiredState::from_directory(&fixture.b).unwrap();
    let err = node.apply_with(&desired, &missing).unwrap_err();
    assert!(err.to_string().contains("interface `nowhere` does not exist"), "{err}");

    let text = std::fs::read_to_string(fixture.dir.0.join("b-input/cluster.yaml")).unwrap();
    let corrupt = compile(&fixture.dir.0, "corrupt", &text);
    let ipcache = corrupt.join(crate::manifest::IPCACHE_FILE);
    let text = std::fs::read_to_string(&ipcache).unwrap();
    std::fs::write(&ipcache, text.replacen("10.200", "10.201", 1)).unwrap();
    let err = node.apply(&corrupt).unwrap_err();
    assert!(matches!(err, LoaderError::Bundle(_)), "{err}");

    for call in [Call::ExistingMaps, Call::ReadState, Call::HostInterfaces] {
        node.kernel.fail(call, 1, 5);
        let err = node.apply(&fixture.b).unwrap_err();
        assert_eq!(err.errno(), Some(5), "{call:?}: {err}");
    }
    // A dry run loads nothing and writes nothing: it checks its programs
    // through the verifier in a scratch root, and refuses what that
    // refuses.
    let dry = ApplyOptions { dry_run: true, ..options() };
    let loads = node.kernel.calls(Call::Load);
    let checks = node.kernel.calls(Call::CheckLoad);
    let report = node.apply_with(&DesiredState::from_directory(&fixture.b).unwrap(), &dry).unwrap();
    assert!(report.dry_run && report.maps.values().any(|o| o.added > 0));
    assert_eq!(node.kernel.calls(Call::Load), loads);
    assert!(node.kernel.calls(Call::CheckLoad) > checks);
    node.kernel.fail(Call::CheckLoad, 1, 22);
    let err = node.apply_with(&DesiredState::from_directory(&fixture.b).unwrap(), &dry).unwrap_err();
    assert_eq!(err.errno(), Some(22), "{err}");

    assert_eq!(node.kernel.memory().journal.len(), journal, "{:?}", node.kernel.memory().journal);
    node.in_force(&fixture.a).unwrap();
}

/// Fails each call an apply makes, one at a time (every kind of call ×
/// every index), and checks what is in force afterwards: the previous
/// bundle if the switch did not happen, else the new one; and that
/// applying again converges.
fn fail_each_call(from: Option<&Path>, to: &Path, how: Source) {
    const EIO: i32 = 5;
    let mut cases = 0;
    for (call, count) in calls_of(from, to, how) {
        for nth in 1..=count {
            let node = Node::new();
            if let Some(from) = from {
                node.apply(from).unwrap();
            }
            let (switches, running) = (node.kernel.calls(Call::Switch), node.running());
            node.kernel.fail(call, nth, EIO);
            let err = node.apply_as(to, how).expect_err("an injected failure refuses the apply");
            assert_eq!(err.errno(), Some(EIO), "{call:?} #{nth}: {err}");
            let switched = node.kernel.calls(Call::Switch) > switches && call != Call::Switch;
            assert_eq!(matches!(err, LoaderError::Unfinished { .. }), switched, "{call:?} #{nth}: {err}");
            let after = match (switched, from) {
                // After the switch the new generation is in force, and
                // every endpoint of it runs a program (made before the
                // switch); the record says what finishing did not do (put
                // in exact programs, detach a departed endpoint), which
                // the next apply does.
                (true, _) => node.in_force(to).and_then(|()| match Record::read(&node.paths) {
                    Ok(Some(r)) if !r.unfinished.is_empty() => Ok(()),
                    r => Err(format!("the record does not say what is unfinished: {r:?}")),
                }),
                // Before it, the old bundle is in force, and the links of
                // endpoints it does not have are detached again.
                (false, Some(from)) => node.in_force(from).and_then(|()| {
                    let endpoints = Bundle::read(from).unwrap().endpoints;
                    let pins: BTreeSet<PathBuf> = endpoints
                        .iter()
                        .flat_map(|e| Template::ALL.map(|t| node.paths.link(&e.stem, t.suffix())))
                        .collect();
                    match node.kernel.memory().links.keys().find(|pin| !pins.contains(*pin)) {
                        Some(pin) => Err(format!("link `{}` of an endpoint the old bundle lacks", pin.display())),
                        None => Ok(()),
                    }
                }),
                (false, None) if node.kernel.memory().links.is_empty() => Ok(()),
                (false, None) => Err("links attached before the first switch".into()),
            };
            after.unwrap_or_else(|e| panic!("{call:?} #{nth} failed, then: {e}"));
            let now = node.running();
            let lost: Vec<&String> = running.difference(&now).collect();
            let kept = Bundle::read(to).unwrap().endpoints.iter().all(|e| !lost.contains(&&e.name));
            assert!(kept, "{call:?} #{nth}: endpoints left without a program: {lost:?}");
            node.apply_as(to, how).unwrap_or_else(|e| panic!("{call:?} #{nth}: the rerun: {e}"));
            node.in_force(to).unwrap_or_else(|e| panic!("{call:?} #{nth}: after the rerun: {e}"));
            cases += 1;
        }
    }
    assert!(cases > 10, "{cases} cases");
}

#[test]
fn a_failure_at_any_call_of_a_change_leaves_old_or_new_in_force() {
    let fixture = Fixture::new();
    fail_each_call(Some(&fixture.a), &fixture.b, Source::Directory);
}

#[test]
fn a_failure_at_any_call_of_a_change_in_memory_leaves_old_or_new_in_force() {
    let fixture = Fixture::new();
    let calls = calls_of(Some(&fixture.a), &fixture.b, Source::Memory);
    // The check reads the active generation's endpoints once (`newcomer`
    // goes in a new place), the plan the seven generation maps (policy and
    // services).
    assert!(calls.contains(&(Call::Entries, 8)), "the plan reads the live maps: {calls:?}");
    fail_each_call(Some(&fixture.a), &fixture.b, Source::Memory);
}

#[test]
fn a_failure_at_any_call_of_a_first_apply_leaves_nothing_attached() {
    let fixture = Fixture::new();
    fail_each_call(None, &fixture.a, Source::Directory);
}

#[test]
fn a_desired_state_in_memory_is_applied_like_its_directory() {
    let fixture = Fixture::new();
    let node = Node::new();
    node.apply_with(&DesiredState::Memory(Bundle::read(&fixture.a).unwrap()), &options()).unwrap();
    node.in_force(&fixture.a).unwrap();
    let report = node.apply_with(&DesiredState::Memory(Bundle::read(&fixture.b).unwrap()), &options()).unwrap();
    assert_eq!(report.diffed_against, "live maps");
    node.in_force(&fixture.b).unwrap();
    // A directory after it is diffed against the live maps too: the store
    // does not hold what an in-memory state put there.
    let report = node.apply(&fixture.a).unwrap();
    assert_eq!(report.diffed_against, "live maps");
    node.in_force(&fixture.a).unwrap();
}

#[test]
fn an_applier_that_keeps_what_it_wrote_plans_without_reading_the_maps_while_the_record_agrees() {
    let fixture = Fixture::new();
    let node = Node::new();
    let known = KnownGenerations::default();
    let opts = ApplyOptions { known: Some(known.clone()), ..options() };
    let memory = |bundle: &Path| DesiredState::Memory(Bundle::read(bundle).unwrap());
    // Nothing known yet: no maps, then the other generation is read; from
    // then on what the earlier applies wrote comes from memory, with no
    // entry read from the kernel.
    assert_eq!(node.apply_with(&memory(&fixture.a), &opts).unwrap().diffed_against, "empty maps");
    assert_eq!(node.apply_with(&memory(&fixture.b), &opts).unwrap().diffed_against, "live maps");
    for (bundle, other) in [(&fixture.a, &fixture.b), (&fixture.b, &fixture.a), (&fixture.a, &fixture.b)] {
        let reads = node.kernel.calls(Call::Entries);
        let report = node.apply_with(&memory(bundle), &opts).unwrap();
        assert_eq!(report.diffed_against, "memory");
        assert_eq!(node.kernel.calls(Call::Entries), reads, "no map read");
        node.in_force(bundle).unwrap();
        assert_ne!(bundle, other);
    }
    // Another applier flips in between (a directory apply of this node):
    // it wrote the other generation, and the record still names what this
    // one wrote into the target (a hash names exactly one content).
    node.apply(&fixture.a).unwrap();
    let report = node.apply_with(&memory(&fixture.b), &opts).unwrap();
    assert_eq!(report.diffed_against, "memory");
    node.in_force(&fixture.b).unwrap();
    // `--reconcile` reads the live maps, whatever is known.
    let report = node.apply_with(&memory(&fixture.a), &ApplyOptions { reconcile: true, ..opts.clone() }).unwrap();
    assert_eq!(report.diffed_against, "live maps");
    node.in_force(&fixture.a).unwrap();
    // A refused switch leaves the target unknown in the record (the sync
    // marked it so): read again.
    node.kernel.fail(Call::Switch, 1, 5);
    node.apply_with(&memory(&fixture.b), &opts).unwrap_err();
    node.in_force(&fixture.a).unwrap();
    let report = node.apply_with(&memory(&fixture.b), &opts).unwrap();
    assert_eq!(report.diffed_against, "live maps");
    node.in_force(&fixture.b).unwrap();
}

#[test]
fn an_endpoint_the_active_generation_does_not_list_gets_its_exact_programs_once() {
    let fixture = Fixture::new();
    let node = Node::new();
    let steps = |report: &ApplyReport, pod: &str| -> Vec<ProgramStep> {
        report.programs.iter().filter(|(e, ..)| e == pod).map(|(_, _, step, _)| *step).collect()
    };
    // From scratch: no generation lists anyone, so every endpoint gets its
    // exact programs before the switch and nothing after it.
    let first = node.apply(&fixture.a).unwrap();
    for pod in ["demo/server", "demo/client", "demo/other"] {
        assert_eq!(steps(&first, pod), [ProgramStep::Prepare, ProgramStep::Prepare], "{pod}");
    }
    assert_eq!(first.programs.len(), 6, "three endpoints, two hooks, once");
    node.in_force(&fixture.a).unwrap();
    let record = Record::read(&node.paths).unwrap().unwrap();
    for e in &Bundle::read(&fixture.a).unwrap().endpoints {
        assert_eq!(record.endpoints[&e.name].config, e.config, "{} runs its exact settings", e.name);
    }
    // `newcomer` is new to the active generation too.
    let to_b = node.apply(&fixture.b).unwrap();
    assert_eq!(steps(&to_b, "demo/newcomer"), [ProgramStep::Prepare, ProgramStep::Prepare]);
    node.in_force(&fixture.b).unwrap();
}

#[test]
fn an_endpoint_keeps_the_mechanism_it_was_attached_with() {
    use crate::kernel::Mechanism;
    let fixture = Fixture::new();
    let node = Node::new();
    node.apply_with(
        &DesiredState::from_directory(&fixture.a).unwrap(),
        &ApplyOptions { attach: Mechanism::Tcx, ..options() },
    )
    .unwrap();
    node.apply_with(
        &DesiredState::from_directory(&fixture.b).unwrap(),
        &ApplyOptions { attach: Mechanism::Tc, ..options() },
    )
    .unwrap();
    node.in_force(&fixture.b).unwrap();
    let memory = node.kernel.memory();
    let mechanism = |pod: &str| memory.links[&node.paths.link(&format!("demo.{pod}"), "to")].mechanism;
    assert_eq!(mechanism("server"), Mechanism::Tcx, "replaced in place, as a link");
    assert_eq!(mechanism("newcomer"), Mechanism::Tc, "attached afresh as asked");
}

#[test]
fn a_pod_with_the_longest_legal_name_is_pinned_under_a_hashed_stem() {
    let dir = Scratch::new("long");
    let long = "p".repeat(253);
    let bundle = compile(&dir.0, "long", &cluster(&[(&long, "server", 2), ("client", "client", 3)], ""));
    let node = Node::new();
    let mut options = options();
    options.interfaces.insert(format!("demo/{long}"), "veth-server".into());
    node.apply_with(&DesiredState::from_directory(&bundle).unwrap(), &options).unwrap();
    let stem = &Bundle::read(&bundle).unwrap().endpoints.iter().find(|e| e.name.len() > 200).unwrap().stem.clone();
    assert!(stem.starts_with("demo.ppp") && stem.len() <= policyc_bundle::stem::MAX_STEM_BYTES, "{stem}");
    let memory = node.kernel.memory();
    for t in Template::ALL {
        let pin = node.paths.link(stem, t.suffix());
        assert!(pin.file_name().unwrap().len() <= 255);
        let attached = node.kernel.attached("veth-server", t).unwrap();
        assert!(memory.links.get(&pin).is_some_and(|l| attached == [l.program]), "{t:?}");
    }
}

#[test]
fn an_unpinnable_stem_is_refused_before_anything_is_written() {
    let fixture = Fixture::new();
    let node = Node::new();
    node.apply(&fixture.a).unwrap();
    let journal = node.kernel.memory().journal.len();
    for stem in ["demo.".to_string() + &"s".repeat(251), "demo.a b".into(), "demo.a\nb".into(), "demo.*".into()] {
        let mut bundle = Bundle::read(&fixture.b).unwrap();
        bundle.endpoints.iter_mut().find(|e| e.name == "demo/server").unwrap().stem = stem.clone();
        for dry_run in [false, true] {
            let err = node.apply_with(&DesiredState::Memory(bundle.clone()), &ApplyOptions { dry_run, ..options() });
            let err = err.unwrap_err().to_string();
            assert!(err.contains("endpoint `demo/server`: stem"), "{stem:?}: {err}");
        }
    }
    assert_eq!(node.kernel.memory().journal.len(), journal);
    node.in_force(&fixture.a).unwrap();
}

#[test]
fn a_map_file_that_is_not_a_regular_file_is_refused_before_the_lock() {
    let fixture = Fixture::new();
    let text = std::fs::read_to_string(fixture.dir.0.join("b-input/cluster.yaml")).unwrap();
    let bundle = compile(&fixture.dir.0, "fifo", &text);
    let ipcache = bundle.join(crate::manifest::IPCACHE_FILE);
    std::fs::remove_file(&ipcache).unwrap();
    assert!(std::process::Command::new("mkfifo").arg(&ipcache).status().unwrap().success());
    let err = DesiredState::from_directory(&bundle).unwrap_err().to_string();
    assert!(err.contains("ipcache.txt` is not a regular file"), "{err}");
    std::fs::remove_file(&ipcache).unwrap();
    std::os::unix::fs::symlink("/dev/zero", &ipcache).unwrap();
    let err = DesiredState::from_directory(&bundle).unwrap_err().to_string();
    assert!(err.contains("ipcache.txt` is not a regular file"), "{err}");
}

#[test]
fn identities_txt_is_checked_against_its_digest() {
    let fixture = Fixture::new();
    let text = std::fs::read_to_string(fixture.dir.0.join("b-input/cluster.yaml")).unwrap();
    let corrupt = compile(&fixture.dir.0, "identities", &text);
    let identities = corrupt.join(crate::manifest::IDENTITIES_FILE);
    let text = std::fs::read_to_string(&identities).unwrap();
    let changed = text.replacen("role=", "role=x", 1);
    assert_ne!(changed, text);
    std::fs::write(&identities, changed).unwrap();
    // Read whole (a first apply) and by changed pieces (the target
    // generation holds `a`, recorded).
    let node = Node::new();
    let err = node.apply(&corrupt).unwrap_err().to_string();
    assert!(err.contains("identities.txt") && err.contains("digest"), "{err}");
    assert!(node.kernel.memory().journal.is_empty());
    let c = compile(&fixture.dir.0, "c", &cluster(&[("server", "server", 2), ("client", "client", 3)], ""));
    node.apply(&fixture.a).unwrap();
    node.apply(&c).unwrap();
    let journal = node.kernel.memory().journal.len();
    let err = node.apply(&corrupt).unwrap_err().to_string();
    assert!(err.contains("identities.txt") && err.contains("digest"), "{err}");
    assert_eq!(node.kernel.memory().journal.len(), journal);
    node.maps_in_force(&c).unwrap();
    // That apply was planned from the record: so is the intact one.
    let report = node.apply(&fixture.b).unwrap();
    assert_eq!(report.diffed_against, "record");
}

#[test]
fn an_inconsistent_desired_state_is_refused_before_anything_is_written() {
    let fixture = Fixture::new();
    let node = Node::new();
    node.apply(&fixture.a).unwrap();
    let journal = node.kernel.memory().journal.len();
    let good = Bundle::read(&fixture.b).unwrap();
    let endpoint = |b: &mut Bundle, name: &str| -> usize { b.endpoints.iter().position(|e| e.name == name).unwrap() };
    type Mutation = fn(&mut Bundle, &dyn Fn(&mut Bundle, &str) -> usize);
    let cases: &[(&str, Mutation, &str)] = &[
        (
            "same id",
            |b, at| {
                let (s, c) = (at(b, "demo/server"), at(b, "demo/client"));
                b.endpoints[c].id = b.endpoints[s].id;
            },
            "have one id",
        ),
        (
            "same name",
            |b, at| {
                let c = at(b, "demo/client");
                b.endpoints[c].name = "demo/server".into();
            },
            "have one name `demo/server`",
        ),
        (
            "same stem",
            |b, at| {
                let c = at(b, "demo/client");
                b.endpoints[c].stem = "demo.server".into();
            },
            "have one stem `demo.server`",
        ),
        (
            "same address",
            |b, at| {
                let (s, c) = (at(b, "demo/server"), at(b, "demo/client"));
                b.endpoints[c].addresses = b.endpoints[s].addresses.clone();
            },
            "have one address",
        ),
        ("stem with a newline", |b, _| b.endpoints[0].stem = "demo.a\nb".into(), "stem `demo.a\\nb`"),
        ("stem with a space", |b, _| b.endpoints[0].stem = "demo.a b".into(), "stem `demo.a b`"),
        ("stem with a star", |b, _| b.endpoints[0].stem = "demo.*".into(), "stem `demo.*`"),
        ("identity 0 in the ipcache", |b, _| b.ipcache[0].1.identity = 0, "map `ipcache` has identity 0"),
        (
            "one prefix with two identities",
            |b, _| {
                let mut twin = b.ipcache[0];
                twin.1.identity += 1;
                b.ipcache.push(twin);
            },
            "map `ipcache` repeats the key",
        ),
        (
            "one prefix with two identities, the second with host bits set",
            |b, _| {
                let mut twin = *b.ipcache.iter().find(|(k, _)| k.prefixlen < 32 + 32 && k.family == 4).unwrap();
                twin.0.addr[3] |= 9;
                twin.1.identity += 1;
                b.ipcache.push(twin);
            },
            "has bits set past its prefix",
        ),
        (
            "an ipcache prefix longer than its family",
            |b, _| b.ipcache[0].0.prefixlen = 32 + 129,
            "map `ipcache` has key prefix length 161",
        ),
        (
            "an endpoints entry of no endpoint",
            |b, _| {
                let mut extra = b.endpoint_entries[0];
                extra.0.addr[3] = 250;
                b.endpoint_entries.push(extra);
            },
            "is no address of an endpoint of the manifest",
        ),
        (
            "an endpoint without an endpoints entry",
            |b, _| {
                b.endpoint_entries.pop();
            },
            "has no entry in map `endpoints`",
        ),
        (
            "an endpoints entry under another id",
            |b, _| b.endpoint_entries[0].1.endpoint_id ^= 1,
            "the manifest endpoint",
        ),
        (
            "a policy entry of no endpoint",
            |b, _| {
                let unused = (1..=u16::MAX).find(|id| b.endpoints.iter().all(|e| e.id != *id)).unwrap();
                b.policy[0].0.endpoint_id = unused;
            },
            "which no endpoint of the manifest has",
        ),
        (
            "a policy key with port bits past its prefix",
            |b, _| {
                let exact = b.policy.iter().position(|(k, _)| k.prefixlen == POLICY_KEY_EXACT_BITS + 24).unwrap();
                b.policy[exact].0.prefixlen = POLICY_KEY_EXACT_BITS + 8;
            },
            "has bits set past its prefix length",
        ),
    ];
    for (case, mutate, needle) in cases {
        let mut bundle = good.clone();
        mutate(&mut bundle, &endpoint);
        for dry_run in [false, true] {
            let err = node.apply_with(&DesiredState::Memory(bundle.clone()), &ApplyOptions { dry_run, ..options() });
            let err = err.expect_err(case).to_string();
            assert!(err.contains(needle), "{case} (dry run: {dry_run}): {err}");
        }
    }
    let mut zero = good.clone();
    zero.endpoint_entries[0].1.identity = 0;
    let err = node.apply_with(&DesiredState::Memory(zero), &options()).unwrap_err().to_string();
    assert!(err.contains("map `endpoints` has identity 0"), "{err}");
    assert_eq!(node.kernel.memory().journal.len(), journal);
    node.in_force(&fixture.a).unwrap();
}

#[test]
fn a_policy_entry_naming_a_rule_the_rule_table_lacks_is_refused() {
    let fixture = Fixture::new();
    let text = std::fs::read_to_string(fixture.dir.0.join("b-input/cluster.yaml")).unwrap();
    let bundle = compile(&fixture.dir.0, "rules", &text);
    let rules = bundle.join(crate::manifest::RULES_FILE);
    let text = std::fs::read_to_string(&rules).unwrap();
    let (first, rest) = text.split_once('\n').unwrap();
    std::fs::write(&rules, rest).unwrap();
    // Listed with its new digest: only the cross-reference is wrong.
    let manifest = bundle.join("manifest.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    json["files"][crate::manifest::RULES_FILE] = serde_json::json!({
        "sha256": policyc_bundle::digest::sha256_hex(rest.as_bytes()),
        "lines": rest.lines().count(),
    });
    std::fs::write(&manifest, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    let cookie = first.split(' ').next().unwrap();
    let node = Node::new();
    let err = node.apply(&bundle).unwrap_err().to_string();
    assert!(err.contains(&format!("names rule cookie {cookie}, which `maps/rules.txt` does not list")), "{err}");
    assert!(node.kernel.memory().journal.is_empty());
}

/// One edit of one text file of a bundle, as the mutation property draws
/// them.
#[derive(Clone, Debug)]
enum Edit {
    Delete(usize),
    Repeat(usize),
    Replace(usize, String),
    /// Adds `by` to the `nth` digit of a line.
    Digit(usize, usize, u8),
    Truncate(usize),
}

fn edit_strategy() -> impl proptest::strategy::Strategy<Value = Edit> {
    use proptest::prelude::*;
    prop_oneof![
        any::<usize>().prop_map(Edit::Delete),
        any::<usize>().prop_map(Edit::Repeat),
        (any::<usize>(), "[ -~]{0,60}").prop_map(|(l, t)| Edit::Replace(l, t)),
        (any::<usize>(), any::<usize>(), 1..10u8).prop_map(|(l, n, by)| Edit::Digit(l, n, by)),
        any::<usize>().prop_map(Edit::Truncate),
    ]
}

fn edit(text: &str, edit: &Edit) -> String {
    let mut lines: Vec<String> = text.split_terminator('\n').map(str::to_string).collect();
    if let Edit::Truncate(at) = edit {
        let mut cut = at % (text.len() + 1);
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        return text[..cut].to_string();
    }
    if lines.is_empty() {
        return text.to_string();
    }
    let n = lines.len();
    match edit {
        Edit::Delete(l) => drop(lines.remove(l % n)),
        Edit::Repeat(l) => lines.insert(l % n, lines[l % n].clone()),
        Edit::Replace(l, t) => lines[l % n] = t.clone(),
        Edit::Digit(l, nth, by) => {
            let line = &mut lines[l % n];
            let digits: Vec<usize> = line.char_indices().filter(|(_, c)| c.is_ascii_digit()).map(|(i, _)| i).collect();
            if !digits.is_empty() {
                let i = digits[nth % digits.len()];
                let d = (line.as_bytes()[i] - b'0' + by) % 10;
                line.replace_range(i..=i, &d.to_string());
            }
        }
        Edit::Truncate(_) => unreachable!("handled above"),
    }
    lines.iter().map(|l| format!("{l}\n")).collect()
}

/// The text files of the bundle in `dir` (the manifest first), by path.
fn text_files(dir: &Path) -> Vec<String> {
    let manifest = Manifest::read(dir).unwrap();
    let mut out = vec!["manifest.json".to_string()];
    out.extend(manifest.files.iter().filter(|(_, d)| d.lines.is_some()).map(|(p, _)| p.clone()));
    out
}

/// Gives every text file `dir`'s manifest lists its true digest (a
/// manifest that no longer parses is left as it is).
fn redigest_all(dir: &Path) {
    let path = dir.join("manifest.json");
    let Ok(mut json) = policyc_bundle::manifest::Manifest::from_json(&std::fs::read_to_string(&path).unwrap()) else {
        return;
    };
    for (file, digest) in json.files.iter_mut() {
        if let (Some(_), Ok(text)) = (digest.lines, std::fs::read_to_string(dir.join(file))) {
            *digest = policyc_bundle::digest::text_digest(&text, policyc_bundle::digest::Digests::Sha256);
        }
    }
    std::fs::write(&path, json.to_json()).unwrap();
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

    /// A valid bundle a few edits away (every text file redigested, so the
    /// content is what is checked): `apply` either refuses it with the node
    /// unchanged or puts exactly it in force, and `--dry-run` agrees.
    #[test]
    fn a_mutated_bundle_is_refused_with_the_node_unchanged_or_applied_exactly(
        edits in proptest::collection::vec((proptest::prelude::any::<usize>(), edit_strategy()), 1..4)
    ) {
        static FIXTURE: std::sync::OnceLock<(Scratch, PathBuf, PathBuf)> = std::sync::OnceLock::new();
        let (_, a, b) = FIXTURE.get_or_init(|| { let f = Fixture::new(); (f.dir, f.a, f.b) });
        let work = Scratch::new("mutated");
        let mutated = work.0.join("bundle");
        copy_tree(b, &mutated);
        let files = text_files(&mutated);
        for (which, e) in &edits {
            let file = mutated.join(&files[which % files.len()]);
            let text = std::fs::read_to_string(&file).unwrap();
            std::fs::write(&file, edit(&text, e)).unwrap();
        }
        redigest_all(&mutated);

        let node = Node::new();
        node.apply(a).unwrap();
        let journal = node.kernel.memory().journal.len();
        let dry = DesiredState::from_directory(&mutated)
            .map_err(LoaderError::from)
            .and_then(|d| node.apply_with(&d, &ApplyOptions { dry_run: true, ..options() }));
        proptest::prop_assert_eq!(node.kernel.memory().journal.len(), journal, "a dry run wrote");
        let applied = node.apply(&mutated);
        proptest::prop_assert_eq!(dry.is_ok(), applied.is_ok(), "dry run {:?}, apply {:?}", dry.err(), applied.as_ref().err());
        match applied {
            Ok(_) => node.in_force(&mutated).map_err(proptest::test_runner::TestCaseError::fail)?,
            Err(e) => {
                proptest::prop_assert_eq!(node.kernel.memory().journal.len(), journal, "refused ({}) after a write", e);
                node.in_force(a).map_err(proptest::test_runner::TestCaseError::fail)?;
            }
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 64, ..Default::default() })]

    /// The same mutations applied onto a generation whose record and store
    /// hold the valid bundle they came from, so that the plan reads only
    /// the pieces they changed: whatever a whole read refuses, the
    /// incremental apply refuses too, with the node unchanged, and what it
    /// accepts is exactly in force.
    #[test]
    fn an_incremental_apply_of_a_mutated_bundle_refuses_what_a_whole_read_refuses(
        edits in proptest::collection::vec((proptest::prelude::any::<usize>(), edit_strategy()), 1..4)
    ) {
        static FIXTURE: std::sync::OnceLock<(Scratch, PathBuf, PathBuf)> = std::sync::OnceLock::new();
        let (_, a, b) = FIXTURE.get_or_init(|| { let f = Fixture::new(); (f.dir, f.a, f.b) });
        let work = Scratch::new("mutated-incremental");
        let mutated = work.0.join("bundle");
        copy_tree(b, &mutated);
        let files = text_files(&mutated);
        for (which, e) in &edits {
            let file = mutated.join(&files[which % files.len()]);
            let text = std::fs::read_to_string(&file).unwrap();
            std::fs::write(&file, edit(&text, e)).unwrap();
        }
        redigest_all(&mutated);
        let whole = Bundle::read(&mutated).and_then(|b| validate::desired(&DesiredState::Memory(b)));

        // Generation 0 holds `b` and generation 1 `a`, which is in force:
        // the next apply writes generation 0, planned from its record.
        let node = Node::new();
        for bundle in [a, b, a] {
            node.apply(bundle).unwrap();
        }
        let journal = node.kernel.memory().journal.len();
        let dry = DesiredState::from_directory(&mutated)
            .map_err(LoaderError::from)
            .and_then(|d| node.apply_with(&d, &ApplyOptions { dry_run: true, ..options() }));
        let applied = node.apply(&mutated);
        proptest::prop_assert_eq!(dry.is_ok(), applied.is_ok(), "dry run {:?}, apply {:?}", dry.err(), applied.as_ref().err());
        if let Err(e) = &whole {
            proptest::prop_assert!(applied.is_err(), "a whole read refuses it ({}), the incremental apply did not", e);
        }
        match applied {
            Ok(report) => {
                proptest::prop_assert_ne!(report.diffed_against.as_str(), "live maps", "the plan was not incremental");
                node.in_force(&mutated).map_err(proptest::test_runner::TestCaseError::fail)?
            }
            Err(e) => {
                proptest::prop_assert_eq!(node.kernel.memory().journal.len(), journal, "refused ({}) after a write", e);
                node.in_force(a).map_err(proptest::test_runner::TestCaseError::fail)?;
            }
        }
    }
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to.join(entry.file_name()));
        } else {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

#[test]
fn piece_byte_counts_that_overflow_are_refused_without_a_panic() {
    let fixture = Fixture::new();
    let text = std::fs::read_to_string(fixture.dir.0.join("b-input/cluster.yaml")).unwrap();
    let bundle = compile(&fixture.dir.0, "pieces", &text);
    let manifest = bundle.join("manifest.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    let file = crate::manifest::IPCACHE_FILE;
    let sha = json["files"][file]["sha256"].clone();
    json["files"][file]["pieces"] = serde_json::json!([
        { "lines": 1, "bytes": usize::MAX, "sha256": sha },
        { "lines": 1, "bytes": 2, "sha256": sha },
    ]);
    std::fs::write(&manifest, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    let read = Manifest::read(&bundle).unwrap();
    let err = read.read_piece(file, 1).unwrap_err().to_string();
    assert!(err.contains("the byte counts of its pieces in manifest.json overflow"), "{err}");
    let err = read.read_text(file).unwrap_err().to_string();
    assert!(err.contains("shorter than its pieces"), "{err}");
    let node = Node::new();
    assert!(node.apply(&bundle).is_err());
    assert!(node.kernel.memory().journal.is_empty());
}
