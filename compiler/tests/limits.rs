//! Untrusted input can never crash, hang or exhaust policyc: each finding
//! of the black-box fuzzing of issue 17 (its "Why", items 1 to 8), as the
//! command line meets it. Every run is bounded in time (killed after
//! [`TIMEOUT`]) and in memory (`ulimit -v`), so a regression fails the test
//! rather than the machine.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Longer than any of these runs takes on a loaded machine in a debug
/// build, far shorter than the hangs they reproduce.
const TIMEOUT: Duration = Duration::from_secs(60);

/// Address space of one run, in KiB: far above what these inputs need,
/// far below what the expansions they reproduce would take.
const MEMORY_KIB: u64 = 4 << 20;

/// A scratch directory, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let dir = std::env::temp_dir().join(format!("policyc-limits-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    fn write(&self, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What one run of policyc did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs policyc with `args` in `cwd`, bounded in time and memory; panics
/// if it does not finish in time or is killed by a signal (a crash).
fn policyc(cwd: &Path, args: &[&str]) -> Run {
    let out = cwd.join(".stdout");
    let err = cwd.join(".stderr");
    let start = Instant::now();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -v {MEMORY_KIB} && exec \"$0\" \"$@\""))
        .arg(env!("CARGO_BIN_EXE_policyc"))
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out).unwrap())
        .stderr(std::fs::File::create(&err).unwrap())
        .spawn()
        .unwrap();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`policyc {}` did not finish in {TIMEOUT:?}", args.join(" "));
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = start.elapsed();
    let stdout = String::from_utf8_lossy(&std::fs::read(&out).unwrap()).into_owned();
    let stderr = String::from_utf8_lossy(&std::fs::read(&err).unwrap()).into_owned();
    let _ = std::fs::remove_file(out);
    let _ = std::fs::remove_file(err);
    let Some(code) = status.code() else {
        panic!("`policyc {}` was killed ({status}); stderr:\n{}", args.join(" "), tail(&stderr));
    };
    assert_ne!(code, 101, "`policyc {}` panicked:\n{}", args.join(" "), tail(&stderr));
    Run { code, stdout, stderr, took }
}

fn tail(text: &str) -> &str {
    &text[text.len().saturating_sub(2000)..]
}

/// Asserts that `run` failed on input errors with a diagnostic `code` (in
/// the human format on stderr, or in SARIF on stdout).
fn refused(run: &Run, code: &str) {
    assert_eq!(run.code, 1, "stderr:\n{}", tail(&run.stderr));
    let found = run.stderr.contains(&format!("[{code}]")) || run.stdout.contains(&format!("\"ruleId\": \"{code}\""));
    assert!(found, "no {code} in:\n{}", tail(&run.stderr));
}

const POLICY: &str = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: deny
  namespace: demo
spec:
  podSelector: {}
";

/// Issue 17, 1: 350 bytes of nested aliases would expand past 4 GiB.
#[test]
fn billion_laughs_is_excessive_aliasing() {
    let dir = Scratch::new("laughs");
    let mut text = String::from("a: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n");
    for (name, previous) in
        ["b", "c", "d", "e", "f", "g", "h", "i"].iter().zip(["a", "b", "c", "d", "e", "f", "g", "h"])
    {
        let _ = writeln!(text, "{name}: &{name} [*{previous},*{previous},*{previous},*{previous},*{previous},*{previous},*{previous},*{previous},*{previous}]");
    }
    text.push_str("kind: Pod\n");
    dir.write("laughs.yaml", &text);
    refused(&policyc(&dir.0, &["lint", "laughs.yaml"]), "E0010");
    // A few aliases in proportion to the document are fine.
    let aliased = POLICY.replace("  namespace: demo\n", "  namespace: demo\n  labels: &labels {app: x}\n");
    dir.write("ok.yaml", aliased.replace("podSelector: {}", "podSelector:\n    matchLabels: *labels"));
    let run = policyc(&dir.0, &["lint", "ok.yaml"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// Issue 17, 2: a block sequence nested 31 000 levels deep on one line
/// overflowed the stack of every command.
#[test]
fn deep_nesting_is_refused_by_every_command() {
    let dir = Scratch::new("deep");
    dir.write("block.yaml", "- ".repeat(31_000) + "x\n");
    dir.write("flow.json", "[".repeat(31_000) + &"]".repeat(31_000) + "\n");
    dir.write("map.yaml", (0..300).map(|i| format!("{}k:\n", "  ".repeat(i))).collect::<String>());
    for file in ["block.yaml", "flow.json", "map.yaml"] {
        refused(&policyc(&dir.0, &["lint", file]), "E0011");
        refused(&policyc(&dir.0, &["lint", "--format", "sarif", file]), "E0011");
        refused(&policyc(&dir.0, &["compile", "--dry-run", file]), "E0011");
        refused(&policyc(&dir.0, &["connectivity", file]), "E0011");
        refused(&policyc(&dir.0, &["trace", file, "--from", "demo/a", "--to", "demo/b", "--port", "80"]), "E0011");
    }
    // Aliases of deep anchors nest no deeper.
    let chained: String = (0..40)
        .map(|i| {
            let alias = if i == 0 { "x".to_string() } else { format!("*a{}", i - 1) };
            format!("a{i}: &a{i} {}{alias}{}\n", "[".repeat(100), "]".repeat(100))
        })
        .collect();
    dir.write("chained.yaml", chained);
    refused(&policyc(&dir.0, &["lint", "chained.yaml"]), "E0011");
    // 200 levels are read.
    dir.write("deep-ok.yaml", "- ".repeat(199) + "x\n");
    let run = policyc(&dir.0, &["lint", "deep-ok.yaml"]);
    assert!(!run.stderr.contains("E0011"), "{}", tail(&run.stderr));
}

/// Issue 17, 3: a 65 536-character name made `connectivity` panic on a
/// format width, and `lint` only warned although the API server refuses it.
#[test]
fn overlong_names_are_errors_and_nothing_panics() {
    let dir = Scratch::new("names");
    let long = "a".repeat(65_536);
    let pod = |name: &str, namespace: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  labels:\n    app: x\nstatus:\n  podIP: 10.0.0.1\n")
    };
    dir.write("name.yaml", pod(&long, "demo"));
    dir.write("namespace.yaml", pod("p", &long));
    dir.write("name254.yaml", pod(&"a".repeat(254), "demo"));
    dir.write("namespace64.yaml", pod("p", &"a".repeat(64)));
    for file in ["name.yaml", "namespace.yaml", "name254.yaml", "namespace64.yaml"] {
        refused(&policyc(&dir.0, &["lint", file]), "E0014");
        refused(&policyc(&dir.0, &["connectivity", file]), "E0014");
        refused(&policyc(&dir.0, &["connectivity", "--output", "json", file]), "E0014");
    }
    // The longest names Kubernetes accepts are fine.
    dir.write("longest.yaml", pod(&"a".repeat(253), &"b".repeat(63)));
    let run = policyc(&dir.0, &["connectivity", "longest.yaml"]);
    assert_eq!(run.code, 0, "{}", tail(&run.stderr));
    assert!(run.stdout.contains(&"a".repeat(253)));
}

/// Issue 17, 4: two links to their own directory made the walk endless;
/// one made every file "defined twice".
#[test]
fn directory_loops_are_read_once() {
    let dir = Scratch::new("loops");
    let tree = dir.0.join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("policy.yaml"), POLICY).unwrap();
    std::os::unix::fs::symlink(".", tree.join("a")).unwrap();
    std::os::unix::fs::symlink(".", tree.join("b")).unwrap();
    std::fs::create_dir(tree.join("sub")).unwrap();
    std::os::unix::fs::symlink("..", tree.join("sub/up")).unwrap();
    let run = policyc(&dir.0, &["lint", "tree", "tree/policy.yaml", "tree"]);
    assert_eq!(run.code, 0, "{}", tail(&run.stderr));
    assert!(!run.stderr.contains("E0007"), "{}", tail(&run.stderr));
    assert_eq!(run.stderr.matches("[W0016]").count(), 3, "{}", tail(&run.stderr));
    assert!(run.stderr.contains("in 1 file(s)"), "{}", tail(&run.stderr));
}

/// Issue 17, 5 and 6: a FIFO named `*.yaml` blocked the walk forever; a
/// link to `/dev/zero` was read until the kernel killed policyc.
#[test]
fn fifos_and_devices_are_skipped_and_unbounded_files_refused() {
    let dir = Scratch::new("special");
    let tree = dir.0.join("tree");
    std::fs::create_dir(&tree).unwrap();
    std::fs::write(tree.join("policy.yaml"), POLICY).unwrap();
    let fifo = tree.join("fifo.yaml");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    std::os::unix::fs::symlink("/dev/zero", tree.join("u.yaml")).unwrap();
    let run = policyc(&dir.0, &["lint", "tree"]);
    assert_eq!(run.code, 0, "{}", tail(&run.stderr));
    assert_eq!(run.stderr.matches("[W0015]").count(), 2, "{}", tail(&run.stderr));
    // Named explicitly, a device is read only up to the limit.
    let run = policyc(&dir.0, &["lint", "--max-file-size", "1M", "tree/u.yaml"]);
    refused(&run, "E0012");
    assert!(run.took < Duration::from_secs(30));
}

/// Files larger than the limits are refused by their size, before they
/// are read; the flags raise the limits.
#[test]
fn file_and_input_sizes_are_limited() {
    let dir = Scratch::new("sizes");
    dir.write("a.yaml", POLICY);
    dir.write("b.yaml", POLICY.replace("deny", "other"));
    refused(&policyc(&dir.0, &["lint", "--max-file-size", "100", "a.yaml"]), "E0012");
    refused(&policyc(&dir.0, &["compile", "--dry-run", "--max-input-size", "200", "a.yaml", "b.yaml"]), "E0013");
    let run = policyc(&dir.0, &["lint", "--max-input-size", "1K", "a.yaml", "b.yaml"]);
    assert_eq!(run.code, 0, "{}", tail(&run.stderr));
    let run = policyc(&dir.0, &["lint", "--max-file-size", "lots", "a.yaml"]);
    assert_eq!(run.code, 2);
}

/// Issue 17, 7: 20 000 warnings took 30 s in the human format.
#[test]
fn twenty_thousand_warnings_render_fast() {
    let dir = Scratch::new("warnings");
    let text: String = (0..20_000)
        .map(|i| format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns{i}\n  bogus: 1\n---\n"))
        .collect();
    dir.write("many.yaml", text);
    let human = policyc(&dir.0, &["lint", "many.yaml"]);
    assert_eq!(human.code, 0, "{}", tail(&human.stderr));
    assert_eq!(human.stderr.matches("[W0006]").count(), 20_000);
    let json = policyc(&dir.0, &["lint", "--format", "json", "many.yaml"]);
    // Linear: about as fast as JSON (the quadratic rendering was 150 times slower).
    assert!(human.took < json.took * 4 + Duration::from_secs(2), "human {:?}, json {:?}", human.took, json.took);
}

/// Issue 17, 8: duplicate keys, tags, `%YAML 9.9`, a file named twice and
/// invalid UTF-8.
#[test]
fn yaml_that_kubernetes_refuses_is_reported() {
    let dir = Scratch::new("strict");
    dir.write("keys.yaml", format!("{POLICY}  podSelector:\n    matchLabels:\n      app: a\n      app: b\n"));
    let run = policyc(&dir.0, &["lint", "keys.yaml"]);
    refused(&run, "E0009");
    assert_eq!(run.stderr.matches("[E0009]").count(), 2, "{}", tail(&run.stderr));
    assert!(run.stderr.contains("keys.yaml:8:3"), "{}", tail(&run.stderr));

    let port = "  ingress:\n  - ports:\n    - port: !!int \"http\"\n";
    refused(
        &policyc(&dir.0, &["lint", &dir.write("tag.yaml", format!("{POLICY}{port}")).display().to_string()]),
        "E0018",
    );
    let run = policyc(
        &dir.0,
        &["lint", &dir.write("local.yaml", format!("{POLICY}  policyTypes: !mine [Ingress]\n")).display().to_string()],
    );
    assert_eq!(run.code, 0, "{}", tail(&run.stderr));
    assert!(run.stderr.contains("[W0017]"), "{}", tail(&run.stderr));
    let typed = "  ingress:\n  - ports:\n    - port: !!int \"80\"\n      protocol: !!str TCP\n";
    let run = policyc(&dir.0, &["lint", &dir.write("typed.yaml", format!("{POLICY}{typed}")).display().to_string()]);
    assert_eq!(run.code, 0, "{}", tail(&run.stderr));

    dir.write("version.yaml", format!("%YAML 9.9\n---\n{POLICY}"));
    refused(&policyc(&dir.0, &["lint", "version.yaml"]), "E0019");
    dir.write("version12.yaml", format!("%YAML 1.2\n---\n{POLICY}"));
    assert_eq!(policyc(&dir.0, &["lint", "version12.yaml"]).code, 0);

    dir.write("twice.yaml", POLICY);
    let run = policyc(&dir.0, &["lint", "twice.yaml", "twice.yaml", "./twice.yaml"]);
    assert_eq!(run.code, 0, "{}", tail(&run.stderr));

    dir.write("latin1.yaml", b"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: caf\xe9\n");
    let run = policyc(&dir.0, &["lint", "latin1.yaml"]);
    refused(&run, "E0002");
    assert!(run.stderr.contains("latin1.yaml:4:12") && run.stderr.contains("byte 52 (0xe9)"), "{}", tail(&run.stderr));
}
