//! Loader faults on a real kernel: each refused apply goes through the
//! `policyc-loader` binary, must exit non-zero with a clear error, and must
//! leave the node exactly as it was: the same record, active generation and
//! serial, the same entries in every policy-bearing map (both
//! generations), the same pins, and the same programs on every tcx hook of
//! the pods' interfaces.
//!
//! Each test is a "node" of its own: a bpffs root, a state directory and
//! veth interfaces for the two pods of `tests/faults/cluster/` (given to
//! the loader with `--interface`), with the cluster's bundle applied. The
//! refused bundles are made from the bundle of `cluster/` plus
//! `change/`, so each one, had it been applied, would have changed maps
//! and programs; where a test ends by applying the good version, the
//! snapshot is checked to change, so the comparison can see a change.

mod support;

use aya::maps::lpm_trie::LpmTrie;
use aya::maps::{Array, HashMap, Map, MapData};
use policyc::emit::{emit, BundleOptions};
use policyc::pipeline::load;
use policyc_ebpf::abi::{EndpointKey, IPCACHE_KEY_DATA, POLICY_KEY_DATA, POLICY_VALUE};
use policyc_ebpf::Template;
use policyc_loader::kernel::aya::AyaKernel;
use policyc_loader::kernel::Kernel;
use policyc_loader::manifest::Manifest;
use policyc_loader::paths::Paths;
use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use support::{require_root, TempDir};

const ENDPOINT_KEY: usize = std::mem::size_of::<EndpointKey>();

fn data(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/faults").join(relative)
}

/// Compiles `inputs` into `out` and returns the node's bundle directory.
fn compile(inputs: &[PathBuf], out: &Path) -> PathBuf {
    let loaded = load(inputs);
    assert!(!loaded.has_errors(), "fault test input has errors: {:?}", loaded.diagnostics);
    let cluster = &loaded.lowered.cluster;
    let resolved = policyc_ir::resolve::resolve(cluster);
    let bundles = emit(cluster, &resolved, None, &BundleOptions::default()).expect("emit");
    assert_eq!(bundles.len(), 1, "one node");
    let dir = out.join(&bundles[0].node);
    bundles[0].write_to(&dir).unwrap();
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().unwrap_or_else(|e| panic!("cannot run `ip` (iproute2): {e}"));
    assert!(out.status.success(), "`ip {}`: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
}

/// A map entry's key and value bytes.
type Entry = (Vec<u8>, Vec<u8>);

/// What a refused apply must not change.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    record: Option<String>,
    state: Vec<u8>,
    maps: BTreeMap<&'static str, Vec<Entry>>,
    pins: Vec<PathBuf>,
    /// Program ids per (interface, hook).
    hooks: Vec<(String, &'static str, Vec<u32>)>,
}

fn pins(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            pins(&path, out);
        }
        out.push(path);
    }
}

fn open(paths: &Paths, name: &str) -> Map {
    Map::from_map_data(MapData::from_pin(paths.map(name)).unwrap_or_else(|e| panic!("{name}: {e}"))).unwrap()
}

/// One test's node: bpffs root, state directory, interfaces, and
/// the bundles.
struct Node {
    root: String,
    state: TempDir,
    paths: Paths,
    interfaces: Vec<String>,
    /// The bundle in force after `Node::new`.
    old: PathBuf,
    /// `old` plus `change/`: what the refused applies would have done.
    new: PathBuf,
    work: TempDir,
}

impl Node {
    fn new(tag: &str) -> Node {
        require_root();
        let pid = std::process::id();
        let work = TempDir::new(&format!("faults-{tag}"));
        let state = TempDir::new(&format!("faults-{tag}-state"));
        let root = format!("policyc-test-faults-{tag}-{pid}");
        let paths = Paths::new(Path::new("/sys/fs/bpf"), &root, &state.0.join(&root));
        let mut node = Node {
            root,
            state,
            paths,
            interfaces: Vec::new(),
            old: compile(&[data("cluster")], &work.0.join("old")),
            new: compile(&[data("cluster"), data("change")], &work.0.join("new")),
            work,
        };
        for i in 0..2 {
            let name = format!("pcf{}{tag}{i}", pid % 100_000);
            // veth, since this kernel may lack the dummy driver; the peer
            // goes with it.
            ip(&["link", "add", &name, "type", "veth", "peer", "name", &format!("{name}p")]);
            node.interfaces.push(name.clone());
            ip(&["link", "set", &name, "up"]);
        }
        let out = node.apply(&node.old);
        assert!(out.status.success(), "the first apply: {}", String::from_utf8_lossy(&out.stderr));
        node
    }

    fn loader(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_policyc-loader"))
            .args(["--bpffs", "/sys/fs/bpf", "--root", &self.root, "--state"])
            .arg(&self.state.0)
            .args(args)
            .output()
            .unwrap()
    }

    fn apply_args(&self, bundle: &Path) -> Vec<String> {
        let client = format!("demo/client={}", self.interfaces[0]);
        let server = format!("demo/server={}", self.interfaces[1]);
        ["apply", bundle.to_str().unwrap(), "--interface", &client, "--interface", &server].map(String::from).to_vec()
    }

    fn apply(&self, bundle: &Path) -> Output {
        self.loader(&self.apply_args(bundle).iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// A copy of the new bundle to break.
    fn copy_of_new(&self, tag: &str) -> PathBuf {
        let dir = self.work.0.join(tag);
        copy_dir(&self.new, &dir);
        dir
    }

    fn snapshot(&self) -> Snapshot {
        let paths = &self.paths;
        let state: Array<MapData, [u8; 8]> = Array::try_from(open(paths, "state")).unwrap();
        let mut maps = BTreeMap::new();
        let ipcache: LpmTrie<MapData, [u8; IPCACHE_KEY_DATA], [u8; 8]> =
            LpmTrie::try_from(open(paths, "ipcache")).unwrap();
        let mut v: Vec<_> = ipcache
            .iter()
            .map(|r| r.unwrap())
            .map(|(k, v)| ([&k.prefix_len().to_ne_bytes()[..], &k.data()[..]].concat(), v.to_vec()))
            .collect();
        v.sort();
        maps.insert("ipcache", v);
        let policy: LpmTrie<MapData, [u8; POLICY_KEY_DATA], [u8; POLICY_VALUE]> =
            LpmTrie::try_from(open(paths, "policy")).unwrap();
        let mut v: Vec<_> = policy
            .iter()
            .map(|r| r.unwrap())
            .map(|(k, v)| ([&k.prefix_len().to_ne_bytes()[..], &k.data()[..]].concat(), v.to_vec()))
            .collect();
        v.sort();
        maps.insert("policy", v);
        let endpoints: HashMap<MapData, [u8; ENDPOINT_KEY], [u8; 12]> =
            HashMap::try_from(open(paths, "endpoints")).unwrap();
        let mut v: Vec<_> = endpoints.iter().map(|r| r.unwrap()).map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
        v.sort();
        maps.insert("endpoints", v);
        let mut all = Vec::new();
        pins(&paths.root, &mut all);
        all.sort();
        let mut hooks = Vec::new();
        for interface in &self.interfaces {
            // tcx links and tc filters alike, in the order they run.
            for (hook, t) in [("ingress", Template::FromContainer), ("egress", Template::ToContainer)] {
                let programs = AyaKernel::new(paths).attached(interface, t).expect("query the hook");
                hooks.push((interface.clone(), hook, programs));
            }
        }
        Snapshot {
            record: std::fs::read_to_string(paths.record()).ok(),
            state: state.get(&0, 0).unwrap().to_vec(),
            maps,
            pins: all,
            hooks,
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if self.paths.root.exists() {
            let _ = policyc_loader::uninstall::uninstall(&self.paths);
        }
        for name in &self.interfaces {
            let _ = Command::new("ip").args(["link", "del", name]).output();
        }
    }
}

/// The apply failed through the binary with an error containing each of
/// `needles`; returns its stderr.
fn refused(out: &Output, needles: &[&str]) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "the apply must fail; stdout: {}", String::from_utf8_lossy(&out.stdout));
    assert_ne!(out.status.code(), Some(0));
    for n in needles {
        assert!(stderr.contains(n), "error does not say `{n}`:\n{stderr}");
    }
    stderr
}

/// Offset and size of section `name` of an ELF64 little-endian object.
fn elf_section(elf: &[u8], name: &str) -> (usize, usize) {
    let u16at = |o: usize| usize::from(u16::from_le_bytes([elf[o], elf[o + 1]]));
    let u32at = |o: usize| u32::from_le_bytes(elf[o..o + 4].try_into().unwrap()) as usize;
    let u64at = |o: usize| u64::from_le_bytes(elf[o..o + 8].try_into().unwrap()) as usize;
    assert_eq!(&elf[..6], b"\x7fELF\x02\x01", "an ELF64 little-endian object");
    let (shoff, shentsize, shnum, shstrndx) = (u64at(0x28), u16at(0x3a), u16at(0x3c), u16at(0x3e));
    let header = |i: usize| shoff + i * shentsize;
    let strtab = u64at(header(shstrndx) + 0x18);
    (0..shnum)
        .find(|&i| {
            let start = strtab + u32at(header(i));
            let end = start + elf[start..].iter().position(|b| *b == 0).unwrap();
            &elf[start..end] == name.as_bytes()
        })
        .map(|i| (u64at(header(i) + 0x18), u64at(header(i) + 0x20)))
        .unwrap_or_else(|| panic!("no section `{name}`"))
}

#[test]
fn verifier_rejection_keeps_the_old_bundle() {
    let node = Node::new("v");
    let bad = node.copy_of_new("bad-program");
    // The bundle's one `to_container` template: every body made from it is
    // refused; the error names the first endpoint (in name order) calling
    // the first body loaded.
    let object = bad.join("programs/to_container.o");
    let mut elf = std::fs::read(&object).unwrap();
    let (offset, size) = elf_section(&elf, "classifier");
    assert!(size >= 16);
    // The first instruction becomes `r0 = *(u64 *)(r9 + 0)`: r9 is never
    // written before, so the verifier refuses it. The object still parses
    // and relocates: the instruction replaced is not a map load (`ld_imm64`
    // takes relocations).
    assert_ne!(elf[offset], 0x18, "the first instruction is a map load; pick another");
    elf[offset..offset + 8].copy_from_slice(&[0x79, 0x90, 0, 0, 0, 0, 0, 0]);
    std::fs::write(&object, &elf).unwrap();
    support::redigest(&bad, "programs/to_container.o");

    let before = node.snapshot();
    let stderr = refused(
        &node.apply(&bad),
        &[
            "the verifier refused `to_container` of the body (slot ",
            "that endpoint `demo/",
            "verifier log:",
            "R9 !read_ok",
        ],
    );
    assert_eq!(node.snapshot(), before, "a verifier rejection changed the node:\n{stderr}");

    // The intact bundle goes in, and the snapshot sees it.
    let out = node.apply(&node.new);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_ne!(node.snapshot(), before, "the snapshot cannot see an apply");
}

#[test]
fn wrong_pinned_map_layout_is_refused() {
    let node = Node::new("m");
    // A second node root whose `policy` pin is a map of another layout
    // (the first root's conntrack, pinned there by a hard link).
    let other_root = format!("{}-other", node.root);
    let other = Paths::new(Path::new("/sys/fs/bpf"), &other_root, &node.state.0.join(&other_root));
    std::fs::create_dir_all(other.maps()).unwrap();
    std::fs::hard_link(node.paths.map("conntrack6"), other.map("policy")).unwrap();
    struct Unpin(PathBuf);
    impl Drop for Unpin {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _unpin = Unpin(other.root.clone());

    let before = node.snapshot();
    let out = Command::new(env!("CARGO_BIN_EXE_policyc-loader"))
        .args(["--bpffs", "/sys/fs/bpf", "--root", &other_root, "--state"])
        .arg(&node.state.0)
        .args(["apply", node.new.to_str().unwrap()])
        .args(["--interface", &format!("demo/client={}", node.interfaces[0])])
        .args(["--interface", &format!("demo/server={}", node.interfaces[1])])
        .output()
        .unwrap();
    refused(&out, &[&format!("pinned map `{}` does not match this datapath", other.map("policy").display())]);
    let mut left = Vec::new();
    pins(&other.root, &mut left);
    left.sort();
    assert_eq!(left, [other.maps(), other.map("policy")], "the refused apply pinned something");
    assert!(!other.record().exists(), "the refused apply wrote a record");
    assert_eq!(node.snapshot(), before, "the refused apply touched the interfaces' programs");
}

#[test]
fn unknown_format_version_is_refused() {
    let node = Node::new("f");
    let bad = node.copy_of_new("bad-version");
    let manifest = bad.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    json["format_version"] = 99.into();
    std::fs::write(&manifest, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    let before = node.snapshot();
    refused(&node.apply(&bad), &["bundle format version 99 is not supported"]);
    assert_eq!(node.snapshot(), before);
}

#[test]
fn corrupt_bundle_map_and_corrupt_record_are_refused() {
    let node = Node::new("c");
    // A bundle whose ipcache has a line that does not parse.
    let bad = node.copy_of_new("bad-entry");
    let ipcache = bad.join("maps/ipcache.txt");
    let mut text = std::fs::read_to_string(&ipcache).unwrap();
    let line = text.lines().count() + 1;
    text.push_str("10.200.250.300/32 256 pod\n");
    std::fs::write(&ipcache, text).unwrap();
    support::redigest(&bad, "maps/ipcache.txt");
    let before = node.snapshot();
    refused(&node.apply(&bad), &[&format!("maps/ipcache.txt:{line}:"), "`10.200.250.300` is not a valid address"]);
    assert_eq!(node.snapshot(), before);

    // The loader's own record, corrupted: the apply cannot tell what is
    // attached, so it refuses rather than guess.
    let record = node.paths.record();
    let good = std::fs::read(&record).unwrap();
    std::fs::write(&record, b"{\"bundle_hash\": ").unwrap();
    let before = node.snapshot();
    refused(&node.apply(&node.new), &["record of the last apply", "is corrupt"]);
    assert_eq!(node.snapshot(), before);
    std::fs::write(&record, good).unwrap();
    let out = node.apply(&node.new);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_file_that_does_not_match_its_digest_is_refused() {
    let node = Node::new("d");
    // Both generations hold the old bundle, so the apply reads only what
    // changed: the server's policy file among them.
    let out = node.loader(&[
        "apply",
        node.old.to_str().unwrap(),
        "--reconcile",
        "--interface",
        &format!("demo/client={}", node.interfaces[0]),
        "--interface",
        &format!("demo/server={}", node.interfaces[1]),
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bad = node.copy_of_new("bad-digest");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(bad.join("manifest.json")).unwrap()).unwrap();
    let server = manifest["endpoints"].as_array().unwrap().iter().find(|e| e["name"] == "demo/server").unwrap();
    let policy_file = server["policy_file"].as_str().unwrap();
    let policy = bad.join(policy_file);
    let mut text = std::fs::read_to_string(&policy).unwrap();
    text.push_str("ingress any 6/22/24 allow\n");
    std::fs::write(&policy, text).unwrap();
    let before = node.snapshot();
    let stderr = refused(&node.apply(&bad), &[&format!("`{policy_file}` does not match its digest")]);
    assert_eq!(node.snapshot(), before, "a corrupt bundle changed the node:\n{stderr}");
    let out = node.apply(&node.new);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_ne!(node.snapshot(), before, "the snapshot cannot see an apply");
}

#[test]
fn a_second_applier_waits_for_the_lock_and_then_refuses_naming_the_holder() {
    let node = Node::new("l");
    let lock = File::options().write(true).open(node.paths.lock()).expect("the lock file exists after an apply");
    lock.lock().unwrap();
    let before = node.snapshot();
    let holder = format!("is held by pid {}", std::process::id());
    let started = Instant::now();
    let mut args = vec!["--lock-timeout".to_string(), "0.5".into()];
    args.extend(node.apply_args(&node.new));
    let out = node.loader(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let stderr = refused(&out, &["another apply or uninstall is running", &holder, "still after 0.5 s"]);
    assert!(started.elapsed() >= Duration::from_millis(500), "refused before the timeout");
    assert!(stderr.contains("waiting up to 0.5 s for"), "the applier says it waits:\n{stderr}");
    assert_eq!(node.snapshot(), before);
    refused(&node.loader(&["--lock-timeout", "0.2", "uninstall"]), &["another apply or uninstall is running", &holder]);
    assert_eq!(node.snapshot(), before);
    // Released while an apply waits (default timeout): the apply goes
    // through once it may.
    let out = std::thread::scope(|s| {
        s.spawn(|| {
            std::thread::sleep(Duration::from_millis(300));
            lock.unlock().unwrap();
        });
        node.apply(&node.new)
    });
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("waiting up to 5.0 s for"), "the applier says it waits:\n{stderr}");
    assert_ne!(node.snapshot(), before, "the snapshot cannot see an apply");
}

#[test]
fn a_pod_with_the_longest_legal_names_is_compiled_to_pinnable_links_and_applied() {
    let mut node = Node::new("n");
    let (namespace, pod) = ("n".repeat(63), "p".repeat(253));
    let input = node.work.0.join("long-input");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(
        input.join("20-long.yaml"),
        format!(
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {namespace}\n---\n\
             apiVersion: v1\nkind: Pod\nmetadata:\n  name: {pod}\n  namespace: {namespace}\n  labels:\n    app: long\n\
             spec:\n  nodeName: node-a\n  containers:\n    - name: main\n\
             status:\n  phase: Running\n  podIP: 10.200.250.13\n  podIPs:\n    - ip: 10.200.250.13\n"
        ),
    )
    .unwrap();
    let bundle = compile(&[data("cluster"), input], &node.work.0.join("long"));
    let interface = format!("pcf{}n2", std::process::id() % 100_000);
    ip(&["link", "add", &interface, "type", "veth", "peer", "name", &format!("{interface}p")]);
    node.interfaces.push(interface.clone());
    ip(&["link", "set", &interface, "up"]);

    let mut args = node.apply_args(&bundle);
    args.extend(["--interface".into(), format!("{namespace}/{pod}={interface}")]);
    let out = node.loader(&args.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let links: Vec<String> = std::fs::read_dir(node.paths.links())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|name| name.starts_with(&namespace))
        .collect();
    assert_eq!(links.len(), 2, "{links:?}");
    assert!(links.iter().all(|l| l.len() <= 255 && l.contains('+')), "{links:?}");
    for t in Template::ALL {
        let programs = AyaKernel::new(&node.paths).attached(&interface, t).expect("query the hook");
        assert_eq!(programs.len(), 1, "{t:?}");
    }
}

/// A change to a copy of a bundle (in `dir`).
type Mutation = fn(&Path);

fn rewrite_template(dir: &Path, relative: &str, change: impl FnOnce(&mut Vec<u8>)) {
    let path = dir.join(relative);
    let mut bytes = std::fs::read(&path).unwrap();
    change(&mut bytes);
    std::fs::write(&path, bytes).unwrap();
    support::redigest(dir, relative);
}

#[test]
fn dry_run_refuses_every_bundle_apply_refuses() {
    const TO: &str = "programs/to_container.o";
    const FROM: &str = "programs/from_container.o";
    let cases: [(&str, Mutation, &[&str]); 6] = [
        ("corrupt", |d| rewrite_template(d, TO, |b| b[16..64].fill(0xff)), &["to_container"]),
        ("truncated", |d| rewrite_template(d, TO, |b| b.truncate(b.len() / 2)), &["to_container"]),
        ("empty", |d| rewrite_template(d, TO, Vec::clear), &["to_container"]),
        // A big-endian object (`EI_DATA` 2), as built for s390x.
        ("foreign", |d| rewrite_template(d, TO, |b| b[5] = 2), &["to_container"]),
        (
            "swapped",
            |d| {
                let (from, to) = (std::fs::read(d.join(FROM)).unwrap(), std::fs::read(d.join(TO)).unwrap());
                rewrite_template(d, FROM, |b| *b = to);
                rewrite_template(d, TO, |b| *b = from);
            },
            &["_container"],
        ),
        (
            "unpinnable-stem",
            |d| {
                let manifest = d.join("manifest.json");
                let mut json: serde_json::Value =
                    serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
                let endpoints = json["endpoints"].as_array_mut().unwrap();
                endpoints[0]["stem"] = format!("demo.{}", "s".repeat(300)).into();
                std::fs::write(&manifest, serde_json::to_string_pretty(&json).unwrap()).unwrap();
            },
            &["endpoint `demo/", "is longer than 200 bytes"],
        ),
    ];
    let node = Node::new("r");
    let before = node.snapshot();
    for (tag, mutate, needles) in cases {
        let bad = node.copy_of_new(tag);
        mutate(&bad);
        let mut dry = node.apply_args(&bad);
        dry.push("--dry-run".into());
        let out = node.loader(&dry.iter().map(String::as_str).collect::<Vec<_>>());
        let dry_err = refused(&out, needles);
        assert_eq!(node.snapshot(), before, "{tag}: the dry run changed the node:\n{dry_err}");
        let err = refused(&node.apply(&bad), needles);
        assert_eq!(node.snapshot(), before, "{tag}: the refused apply changed the node:\n{err}");
        let scratch = node.paths.scratch().root;
        let leftovers = std::fs::read_dir("/sys/fs/bpf")
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(&format!("{}-dry-run-", node.root)))
            .count();
        assert_eq!(leftovers, 0, "{tag}: a dry run left a scratch root such as `{}`", scratch.display());
    }
    // The intact bundle passes both.
    let mut dry = node.apply_args(&node.new);
    dry.push("--dry-run".into());
    let out = node.loader(&dry.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(node.snapshot(), before);
    let out = node.apply(&node.new);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_ne!(node.snapshot(), before, "the snapshot cannot see an apply");
}

#[test]
fn a_closed_pipe_ends_the_output_quietly() {
    let node = Node::new("p");
    let closed = |args: &[String]| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_policyc-loader"))
            .args(["--bpffs", "/sys/fs/bpf", "--root", &node.root, "--state"])
            .arg(&node.state.0)
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The reader is gone before the loader writes a byte.
        drop(child.stdout.take());
        child.wait_with_output().unwrap()
    };
    let before = node.snapshot();
    let out = closed(&node.apply_args(&node.new));
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    assert_ne!(node.snapshot(), before, "the apply went in");
    let out = closed(&["status".to_string()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    // A refused apply still says so, in its exit code, with its reader gone.
    let out = closed(&node.apply_args(&node.work.0.join("nowhere")));
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
}

/// A network namespace of this test's own, deleted (with its links) on
/// drop.
struct Netns(String);

impl Netns {
    fn new(name: String) -> Netns {
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        Netns(name)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

#[test]
fn a_pod_reached_only_by_a_default_route_is_refused_naming_it() {
    let node = Node::new("dr");
    let before = node.snapshot();
    // A namespace whose only route is a default route over an interface of
    // its own: the pods' addresses are covered by it, and by no host route.
    let netns = Netns::new(format!("pcf-integrity-route-{}", std::process::id()));
    ip(&["-n", &netns.0, "link", "add", "pcfint0", "type", "veth", "peer", "name", "pcfint1"]);
    ip(&["-n", &netns.0, "link", "set", "pcfint0", "up"]);
    ip(&["-n", &netns.0, "link", "set", "pcfint1", "up"]);
    ip(&["-n", &netns.0, "route", "add", "default", "dev", "pcfint0"]);
    // The loader runs in that network namespace only (nsenter keeps the
    // mount namespace, so it sees this node's bpffs root and state).
    let apply = |args: &[&str]| {
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", netns.0))
            .arg(env!("CARGO_BIN_EXE_policyc-loader"))
            .args(["--bpffs", "/sys/fs/bpf", "--root", &node.root, "--state"])
            .arg(&node.state.0)
            .arg("apply")
            .args(args)
            .arg(&node.new)
            .output()
            .unwrap_or_else(|e| panic!("cannot run nsenter (util-linux): {e}"))
    };
    for args in [&[][..], &["--dry-run"][..]] {
        let needles = ["endpoint `demo/", "no host route to 10.200.250.1", "only `0.0.0.0/0` via `pcfint0`"];
        refused(&apply(args), &needles);
    }
    assert_eq!(node.snapshot(), before);
}

#[test]
fn a_bundle_whose_endpoint_lines_miss_an_endpoint_is_refused_with_the_node_unchanged() {
    let node = Node::new("e");
    let bad = node.copy_of_new("endpoint-lines");
    // Every line well formed, the file listed with its true digest: only
    // the cross-check of endpoint lines and manifest endpoints can see it.
    let lines = bad.join("maps/endpoints.txt");
    let text = std::fs::read_to_string(&lines).unwrap();
    let (_, rest) = text.split_once('\n').unwrap();
    std::fs::write(&lines, rest).unwrap();
    support::redigest(&bad, "maps/endpoints.txt");
    let before = node.snapshot();
    for dry_run in [false, true] {
        let mut args = node.apply_args(&bad);
        if dry_run {
            args.push("--dry-run".into());
        }
        let out = node.loader(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let stderr = refused(&out, &["has no entry in map `endpoints`"]);
        assert_eq!(node.snapshot(), before, "dry run {dry_run}: a refused bundle changed the node:\n{stderr}");
    }
}

/// The bundle of `cluster/` without the pod `client`: applied, the client
/// leaves the node (its links are detached after the switch).
fn without_client(work: &Path) -> PathBuf {
    let text = std::fs::read_to_string(data("cluster").join("00-cluster.yaml")).unwrap();
    let kept: Vec<&str> =
        text.split("\n---\n").filter(|doc| !(doc.contains("kind: Pod") && doc.contains("name: client\n"))).collect();
    let input = work.join("without-client-input");
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("00-cluster.yaml"), kept.join("\n---\n")).unwrap();
    compile(&[input], &work.join("without-client"))
}

fn record(paths: &Paths) -> policyc_loader::record::Record {
    policyc_loader::record::Record::read(paths).unwrap().expect("a record")
}

/// Program ids on the ingress and egress hooks of `interface` (tcx links
/// and tc filters alike).
fn hooks(paths: &Paths, interface: &str) -> [Vec<u32>; 2] {
    [Template::FromContainer, Template::ToContainer]
        .map(|t| AyaKernel::new(paths).attached(interface, t).expect("query the hook"))
}

/// A step after the switch that the kernel refuses (the departed client's
/// link pin is a directory, so it cannot be opened to detach it) leaves
/// the new bundle in force: the active generation holds exactly its
/// entries, the server keeps its programs, the client keeps the programs
/// it had (they drop what the new generation does not list), and the apply
/// says so with exit code 3 and the record's `unfinished`. Once the pin is
/// back to normal, the next apply finishes (exit 0) and detaches the
/// client.
#[test]
fn a_cleanup_the_kernel_refuses_after_the_switch_leaves_the_new_bundle_in_force_and_a_rerun_finishes() {
    use policyc_loader::maps::Generation;
    let node = Node::new("igs");
    let bundle = without_client(&node.work.0);
    let (client_if, server_if) = (node.interfaces[0].clone(), node.interfaces[1].clone());
    let server_hooks = hooks(&node.paths, &server_if);
    let client_hooks = hooks(&node.paths, &client_if);
    assert!(client_hooks.iter().all(|h| h.len() == 1), "the client runs its programs: {client_hooks:?}");

    // The client's `from` pin (a tcx link, or a tc filter's program) moves
    // to a path of the test's, which keeps it alive, and its own path
    // becomes a directory (bpffs has directories; opening one as a pin
    // fails).
    let pin = node.paths.link("demo.client", "from");
    let held = PathBuf::from(format!("/sys/fs/bpf/{}-held-pin", node.root));
    std::fs::rename(&pin, &held).expect("move the client's pin");
    std::fs::create_dir(&pin).unwrap();
    struct Unpin(PathBuf);
    impl Drop for Unpin {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }
    let held = Unpin(held);

    let args = |bundle: &Path| {
        let server = format!("demo/server={server_if}");
        node.loader(&["apply", bundle.to_str().unwrap(), "--interface", &server])
    };
    let out = args(&bundle);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "in force, unfinished: {stderr}");
    assert!(stderr.contains("endpoint `demo/client` left the bundle but keeps its programs"), "{stderr}");

    // In force: the switch happened, the active generation is the bundle.
    let r = record(&node.paths);
    let manifest = policyc_loader::manifest::Manifest::read(&bundle).unwrap();
    assert_eq!(r.bundle_hash, manifest.hash);
    assert_eq!(r.unfinished.len(), 1, "{:?}", r.unfinished);
    let kernel = AyaKernel::new(&node.paths);
    let state = policyc_loader::kernel::Kernel::read_state(&kernel).unwrap();
    assert_eq!((state.generation, state.serial), (u32::from(r.generation), r.serial));
    let whole = policyc_loader::bundle::Bundle::read(&bundle).unwrap();
    let want = Generation::of_bundle(&whole, r.generation);
    assert_eq!(Generation::read_live(&kernel, r.generation).unwrap(), want, "the active generation is the bundle");
    assert_eq!(hooks(&node.paths, &server_if), server_hooks, "the server's programs run on");
    assert_eq!(hooks(&node.paths, &client_if), client_hooks, "the client keeps what it ran");
    let status = node.loader(&["status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(status.contains("demo/client"), "status names what is unfinished:\n{status}");

    // The pin is back to normal: the next apply finishes.
    std::fs::remove_dir(&pin).unwrap();
    std::fs::rename(&held.0, &pin).expect("put the client's pin back");
    let out = args(&bundle);
    assert!(out.status.success(), "the rerun finishes: {}", String::from_utf8_lossy(&out.stderr));
    let r = record(&node.paths);
    assert!(r.unfinished.is_empty() && !r.endpoints.contains_key("demo/client"), "{r:?}");
    let want = Generation::of_bundle(&whole, r.generation);
    assert_eq!(Generation::read_live(&kernel, r.generation).unwrap(), want, "the bundle is in force");
    assert_eq!(hooks(&node.paths, &server_if), server_hooks);
    drop(held);
    // The last reference to a link goes in deferred work: bounded wait.
    let deadline = Instant::now() + Duration::from_secs(5);
    let none: [Vec<u32>; 2] = [vec![], vec![]];
    while hooks(&node.paths, &client_if) != none && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(hooks(&node.paths, &client_if), none, "the client's programs are detached");
}

/// Edits text file `relative` of bundle `dir` line by line and lists it
/// with its true digest, so that only the content is wrong.
fn edit_lines(dir: &Path, relative: &str, change: impl FnOnce(&mut Vec<String>)) {
    let path = dir.join(relative);
    let mut lines: Vec<String> = std::fs::read_to_string(&path).unwrap().lines().map(String::from).collect();
    change(&mut lines);
    std::fs::write(&path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    support::redigest(dir, relative);
}

/// Edits the manifest's JSON of bundle `dir`.
fn edit_manifest(dir: &Path, change: impl FnOnce(&mut serde_json::Value)) {
    let path = dir.join("manifest.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    change(&mut json);
    std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
}

/// The endpoint of the manifest named `name`.
fn endpoint<'a>(json: &'a mut serde_json::Value, name: &str) -> &'a mut serde_json::Value {
    json["endpoints"].as_array_mut().unwrap().iter_mut().find(|e| e["name"] == name).unwrap()
}

type Corruption = fn(&Path);

/// Every inconsistency the loader checks for, made in a bundle directory
/// (each file listed with its true digest): `(case, corruption, what the
/// error says)`.
const CORRUPTIONS: &[(&str, Corruption, &str)] = &[
    (
        "two endpoints with one id",
        |d| {
            edit_manifest(d, |j| {
                let id = endpoint(j, "demo/server")["id"].clone();
                let c = endpoint(j, "demo/client");
                c["id"] = id.clone();
                c["config"]["endpoint_id"] = id;
            })
        },
        "have one id",
    ),
    (
        "two endpoints with one name",
        |d| edit_manifest(d, |j| endpoint(j, "demo/client")["name"] = "demo/server".into()),
        "have one name",
    ),
    (
        "two endpoints with one stem",
        |d| edit_manifest(d, |j| endpoint(j, "demo/client")["stem"] = "demo.server".into()),
        "have one stem",
    ),
    (
        "two endpoints with one address",
        |d| {
            edit_manifest(d, |j| {
                let a = endpoint(j, "demo/server")["addresses"].clone();
                endpoint(j, "demo/client")["addresses"] = a;
            })
        },
        "have one address",
    ),
    (
        "a stem with a newline",
        |d| edit_manifest(d, |j| endpoint(j, "demo/client")["stem"] = "demo.a\nb".into()),
        "stem",
    ),
    (
        "a stem with a star",
        |d| edit_manifest(d, |j| endpoint(j, "demo/client")["stem"] = "demo.*".into()),
        "stem `demo.*`",
    ),
    (
        "identity 0 in the ipcache",
        |d| edit_lines(d, "maps/ipcache.txt", |l| l[0] = l[0].replacen(" 9 ", " 0 ", 1)),
        "identity 0",
    ),
    (
        "one prefix twice, with two identities",
        |d| {
            edit_lines(d, "maps/ipcache.txt", |l| {
                let twin = l[0].replacen(" 9 ", " 10 ", 1);
                l.insert(1, twin);
            })
        },
        "this key is already listed on an earlier line",
    ),
    (
        "an ipcache identity identities.txt does not list",
        |d| edit_lines(d, "maps/ipcache.txt", |l| l[0] = l[0].replacen(" 9 ", " 11 ", 1)),
        "is not listed in `maps/identities.txt`",
    ),
    (
        "a prefix with host bits",
        |d| edit_lines(d, "maps/ipcache.txt", |l| l.insert(0, "0.0.0.9/0 2 world".into())),
        "has host bits set",
    ),
    ("lines out of order", |d| edit_lines(d, "maps/ipcache.txt", |l| l.swap(0, 1)), "out of order"),
    (
        "an endpoints line of no endpoint",
        |d| edit_lines(d, "maps/endpoints.txt", |l| l.push(l[l.len() - 1].replacen("10.200.250.", "10.200.250.2", 1))),
        "is no address of an endpoint of the manifest",
    ),
    (
        "an endpoint without its line",
        |d| edit_lines(d, "maps/endpoints.txt", |l| drop(l.remove(0))),
        "has no entry in map `endpoints`",
    ),
    (
        "a policy entry naming no rule",
        |d| {
            let file = Manifest::read(d)
                .unwrap()
                .endpoints
                .iter()
                .find(|e| e.name == "demo/server")
                .unwrap()
                .policy_file
                .clone();
            edit_lines(d, &file, |l| {
                let mut fields: Vec<&str> = l[0].split(' ').collect();
                fields[4] = "1";
                l[0] = fields.join(" ");
            })
        },
        "names rule cookie 1",
    ),
    (
        "a policy key with port bits past its prefix",
        |d| {
            let file = Manifest::read(d)
                .unwrap()
                .endpoints
                .iter()
                .find(|e| e.name == "demo/server")
                .unwrap()
                .policy_file
                .clone();
            edit_lines(d, &file, |l| {
                let at = l.iter().position(|x| x.contains("/24 ")).unwrap();
                l[at] = l[at].replacen("/24 ", "/16 ", 1);
            })
        },
        "has bits set after its prefix length",
    ),
    (
        "a format version past u32",
        |d| edit_manifest(d, |j| j["format_version"] = 4_294_967_301u64.into()),
        "format version 4294967295 is not supported",
    ),
    (
        "a map file that is a FIFO",
        |d| {
            std::fs::remove_file(d.join("maps/rules.txt")).unwrap();
            assert!(Command::new("mkfifo").arg(d.join("maps/rules.txt")).status().unwrap().success());
        },
        "is not a regular file",
    ),
];

/// The corruption table on the real kernel: each corrupted bundle is
/// refused by `apply --dry-run` and by `apply` with exit code 1 and a
/// message saying what is wrong, and the node (maps of both generations,
/// pins, the programs on every hook, the record) is byte-identical
/// afterwards. Each bundle is refused twice over: onto a generation
/// without a record (the bundle read whole) and onto one whose record and
/// store hold the intact bundle (an incremental plan, which reads only
/// what changed).
#[test]
fn every_corrupted_bundle_is_refused_by_apply_and_dry_run_with_the_kernel_state_unchanged() {
    let node = Node::new("igt");
    let started = Instant::now();
    for round in ["whole", "incremental"] {
        if round == "incremental" {
            // Generation 0 gets the intact new bundle, generation 1 the
            // old one back: the next apply writes generation 0, from its
            // record.
            for bundle in [&node.new, &node.old] {
                let out = node.apply(bundle);
                assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            }
        }
        // Which plan the round makes: the intact bundle, dry run.
        let mut args = vec!["--json".to_string()];
        args.extend(node.apply_args(&node.new));
        args.push("--dry-run".into());
        let out = node.loader(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON report");
        let source = if round == "whole" { "live maps" } else { "record" };
        assert_eq!(report["diffed_against"], source, "{round}: {report}");
        let before = node.snapshot();
        for (case, corrupt, needle) in CORRUPTIONS {
            let bad = node.copy_of_new(&format!("{round}-{}", case.replace(' ', "-")));
            corrupt(&bad);
            for dry_run in [true, false] {
                let mut args = node.apply_args(&bad);
                if dry_run {
                    args.push("--dry-run".into());
                }
                let out = node.loader(&args.iter().map(String::as_str).collect::<Vec<_>>());
                let stderr = refused(&out, &[needle]);
                assert_eq!(out.status.code(), Some(1), "{round} {case}: refused is exit code 1:\n{stderr}");
                assert_eq!(node.snapshot(), before, "{round} {case} (dry run {dry_run}) changed the node:\n{stderr}");
            }
        }
    }
    eprintln!("{} corruptions, twice each, in {:?}", CORRUPTIONS.len(), started.elapsed());
}

/// A bundle whose service tables do not hold together (a backend id
/// `backends.txt` lacks), redigested, is refused by apply, dry run and a
/// reconciling apply (a whole read), with the node unchanged; the tables
/// policyc writes are accepted.
#[test]
fn a_bad_service_table_is_refused_with_the_node_unchanged() {
    let node = Node::new("sv");
    let bad = node.copy_of_new("bad-services");
    let tables = [
        ("maps/services.txt", "10.200.96.10:80/TCP ext ClusterIP demo/web 1 backends:5\n"),
        ("maps/backends.txt", "6 10.200.0.2:8080/TCP active\n"),
        ("maps/revnat.txt", "1 10.200.96.10:80/TCP\n"),
    ];
    for (file, text) in tables {
        std::fs::write(bad.join(file), text).unwrap();
        support::redigest(&bad, file);
    }
    let before = node.snapshot();
    for extra in [None, Some("--dry-run"), Some("--reconcile")] {
        let mut args = node.apply_args(&bad);
        args.extend(extra.map(String::from));
        let out = node.loader(&args.iter().map(String::as_str).collect::<Vec<_>>());
        refused(&out, &["maps/services.txt", "backend 5 is not in maps/backends.txt"]);
        assert_eq!(node.snapshot(), before, "{extra:?}");
    }
    // The same tables, consistent, pass.
    std::fs::write(bad.join("maps/backends.txt"), "5 10.200.0.2:8080/TCP active\n").unwrap();
    support::redigest(&bad, "maps/backends.txt");
    let out = node.apply(&bad);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}
