//! The library compile API ([`policyc::compile`]) gives what `policyc
//! compile` writes: the example cluster compiled in memory from texts is
//! byte for byte the bundle the command writes from files.

use policyc::compile::{compile, CompileError, CompileOptions, Inputs, Output};
use policyc::front::Input;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policies")
}

/// The example's manifests as in-memory sources, named by file name.
fn example_input() -> Input {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let mut input = Input::default();
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        input.add_source(&name, std::fs::read_to_string(&f).unwrap());
    }
    input
}

/// Every file under `dir`, by path relative to it.
fn files_under(dir: &Path, prefix: &str, out: &mut BTreeMap<String, Vec<u8>>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = format!("{prefix}{}", path.file_name().unwrap().to_string_lossy());
        if path.is_dir() {
            files_under(&path, &format!("{name}/"), out);
        } else {
            out.insert(name, std::fs::read(&path).unwrap());
        }
    }
}

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn in_memory_compile_gives_the_bundles_the_command_writes() {
    let scratch = Scratch(std::env::temp_dir().join(format!("policyc-compile-api-{}", std::process::id())));
    let status = Command::new(env!("CARGO_BIN_EXE_policyc"))
        .arg("compile")
        .arg(examples())
        .arg("--out")
        .arg(&scratch.0)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));

    let options = CompileOptions { output: Output::Memory, ..CompileOptions::default() };
    let report = compile(Inputs::Read(example_input()), &options).expect("the example compiles");
    assert!(report.written.is_empty());
    let nodes: Vec<&str> = report.built.bundles.iter().map(|b| b.node.as_str()).collect();
    assert!(nodes.len() >= 2, "{nodes:?}");
    for bundle in &report.built.bundles {
        let mut on_disk = BTreeMap::new();
        files_under(&scratch.0.join(&bundle.node), "", &mut on_disk);
        let in_memory: BTreeMap<String, Vec<u8>> = bundle
            .files
            .iter()
            .map(|(path, text)| (path.clone(), text.as_bytes().to_vec()))
            .chain(bundle.programs.iter().map(|(path, bytes)| (path.clone(), bytes.to_vec())))
            .collect();
        assert_eq!(
            in_memory.keys().collect::<Vec<_>>(),
            on_disk.keys().collect::<Vec<_>>(),
            "files of node {}",
            bundle.node
        );
        for (path, bytes) in &in_memory {
            assert!(on_disk[path] == *bytes, "{}/{path} differs from the command's", bundle.node);
        }
    }
}

#[test]
fn input_errors_reject_the_compile_with_their_diagnostics() {
    let mut input = example_input();
    input.add_source(
        "99-broken.yaml",
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bad, namespace: shop}\nspec:\n  podSelector: {}\n  ingress:\n  - ports:\n    - port: 70000\n"
            .to_string(),
    );
    match compile(Inputs::Read(input), &CompileOptions::default()) {
        Err(CompileError::Rejected(e)) => {
            assert!(!e.diagnostics.is_empty());
            assert!(e.diagnostics.iter().all(|d| d.is_error()), "{:?}", e.diagnostics);
            assert!(e.diagnostics.iter().any(|d| d.location.file.as_deref() == Some("99-broken.yaml")));
        }
        other => panic!("expected a rejection, got {:?}", other.map(|r| r.built.nodes)),
    }
}

#[test]
fn an_unknown_node_is_a_diagnostic_with_a_suggestion() {
    let options = CompileOptions { node: Some("node-x".to_string()), ..CompileOptions::default() };
    match compile(Inputs::Read(example_input()), &options) {
        Err(CompileError::Emit(failure)) => {
            let d = failure.diagnostic.expect("an unknown node is about the input");
            assert_eq!(d.message, "no node `node-x` in the input");
            assert!(d.help.is_some());
        }
        other => panic!("expected an emission failure, got {:?}", other.map(|r| r.built.nodes)),
    }
}

/// Admin tiers compile; an admin `networks` peer that holds one of two
/// pods of one label set splits their identity, so that compile succeeds
/// with one identity each; a `nodes` peer that selects one of two remote
/// nodes cannot be enforced (the programs know a node by its node
/// identity), so that compile fails closed, naming the rule (E0350),
/// through the library and the command (exit 1), and writes nothing.
#[test]
fn admin_tiers_compile_and_a_node_identity_split_is_refused() {
    let case = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/anp-tiers-first-match/input");
    let options = CompileOptions { output: Output::Memory, ..CompileOptions::default() };
    let built = compile(Inputs::Paths(vec![case]), &options).expect("admin tiers compile");
    assert!(!built.built.nodes.is_empty());

    let dir = std::env::temp_dir().join(format!("policyc-tr-split-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pod = |name: &str, ip: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: app, labels: {{app: web}}}}\n\
             spec: {{nodeName: n1, containers: [{{name: main, image: x}}]}}\nstatus: {{podIP: {ip}}}\n---\n"
        )
    };
    let node = |name: &str, zone: &str, ip: &str| {
        format!(
            "apiVersion: v1\nkind: Node\nmetadata: {{name: {name}, labels: {{zone: {zone}}}}}\n\
             status: {{addresses: [{{type: InternalIP, address: {ip}}}]}}\n---\n"
        )
    };
    let admin = |peer: &str| {
        format!(
            "apiVersion: policy.networking.k8s.io/v1alpha1\nkind: AdminNetworkPolicy\nmetadata: {{name: half}}\n\
             spec:\n  priority: 1\n  subject: {{namespaces: {{}}}}\n  egress:\n  - action: Deny\n    to: [{peer}]\n"
        )
    };
    let pods = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata: {{name: app}}\n---\n{}{}",
        pod("web-1", "10.200.1.10"),
        pod("web-2", "10.200.2.10")
    );
    let nodes =
        format!("{}{}{}", node("n1", "a", "10.100.0.1"), node("n2", "b", "10.100.0.2"), node("n3", "c", "10.100.0.3"));
    std::fs::write(dir.join("in.yaml"), format!("{nodes}{pods}{}", admin("{networks: [10.200.1.0/24]}"))).unwrap();
    let built = compile(Inputs::Paths(vec![dir.clone()]), &options).expect("a split pod identity compiles");
    let resolved = &built.built.resolved;
    let identity = |name: &str| resolved.endpoints.iter().find(|e| e.name == name).and_then(|e| e.identity);
    assert_ne!(identity("app/web-1"), identity("app/web-2"));
    assert!(identity("app/web-1").is_some() && identity("app/web-2").is_some());

    std::fs::write(dir.join("in.yaml"), format!("{nodes}{pods}{}", admin("{nodes: {matchLabels: {zone: b}}}")))
        .unwrap();
    let Err(CompileError::Rejected(rejected)) = compile(Inputs::Paths(vec![dir.clone()]), &options) else {
        panic!("a split node identity must be refused");
    };
    let codes: Vec<&str> = rejected.diagnostics.iter().map(|d| d.code.id).collect();
    assert_eq!(codes, ["E0350"], "{:?}", rejected.diagnostics);
    assert!(rejected.diagnostics[0].message.contains("node n2 but not node n3"), "{}", rejected.diagnostics[0].message);
    let out_dir = dir.join("out");
    let human = Command::new(env!("CARGO_BIN_EXE_policyc"))
        .args(["compile", "--out"])
        .arg(&out_dir)
        .arg(dir.join("in.yaml"))
        .output()
        .unwrap();
    assert_eq!(human.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&human.stderr).contains("error[E0350]"));
    assert!(!out_dir.exists(), "nothing is written");
    std::fs::remove_dir_all(&dir).unwrap();
}
