//! The README's GitOps walk-through and the example CI workflow
//! (`examples/ci/policies.yaml`) name only commands that exist, with
//! flags they take: each `policyc` and `policyc-loader` command line is
//! run by the binary a user runs (the same words and `--help`: clap checks
//! every word before it prints the help; `policyc` built with its default
//! features, as `cargo install` builds it, which the loader's library
//! dependency on it does not have). The workflow's structure is
//! checked as GitHub reads it (jobs with `runs-on` and `steps`, each step
//! one `uses` or one `run`, `needs` naming jobs).

use policyc::front::yaml::{self, Node, Value};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

fn repository() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// `${{ expression }}` (a GitHub Actions expression) as one word.
fn without_expressions(line: &str) -> String {
    let mut out = String::new();
    let mut rest = line;
    while let Some(start) = rest.find("${{") {
        out.push_str(&rest[..start]);
        match rest[start..].find("}}") {
            Some(end) => {
                out.push_str("EXPR");
                rest = &rest[start + end + 2..];
            }
            None => panic!("an unclosed `${{{{` in `{line}`"),
        }
    }
    out + rest
}

/// The `policyc` and `policyc-loader` commands of shell text `script`:
/// continuation lines joined, comments, redirections and quotes left out,
/// each command of a `;`, `&&`, `||` or `|` list on its own, and a command
/// run through `kubectl exec ... --` or a `for` loop found inside it.
fn commands(script: &str) -> Vec<Vec<String>> {
    let joined = script.replace("\\\n", " ");
    let mut found = Vec::new();
    for line in joined.lines() {
        let line = without_expressions(line);
        let line = match line.find(" #") {
            Some(at) => &line[..at],
            None if line.trim_start().starts_with('#') => "",
            None => &line,
        };
        for segment in line.split([';', '|']).flat_map(|s| s.split("&&")) {
            let segment = segment.split('>').next().unwrap_or_default();
            let words: Vec<String> = segment.split_whitespace().map(|w| w.replace('"', "")).collect();
            // The program in a command's place: first, or what `kubectl
            // exec ... --` or a loop's `do` runs (not `cargo install policyc`).
            let program = |(i, w): &(usize, &String)| {
                (*w == "policyc" || *w == "policyc-loader")
                    && (*i == 0 || ["--", "do", "then"].contains(&words[i - 1].as_str()))
            };
            if let Some((at, _)) = words.iter().enumerate().find(program) {
                found.push(words[at..].to_vec());
            }
        }
    }
    found
}

/// The `policyc` binary of the test profile with its default features.
/// `cargo test --workspace` (CI) builds it beside this package's binaries
/// before any test runs, with the workspace's features; only where it is
/// missing or lacks `publish` (this package's tests run alone) is it built
/// here, once: building `-p policyc` alone resolves other dependency
/// features and rebuilds much of the tree.
fn policyc() -> &'static Path {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| {
        let sibling = Path::new(env!("CARGO_BIN_EXE_policyc-loader")).with_file_name("policyc");
        let has_publish =
            || Command::new(&sibling).args(["publish", "--help"]).output().is_ok_and(|o| o.status.success());
        if !has_publish() {
            let manifest = repository().join("Cargo.toml");
            let out = Command::new(env!("CARGO"))
                .args([
                    "build",
                    "-q",
                    "--manifest-path",
                    manifest.to_str().unwrap(),
                    "-p",
                    "policyc",
                    "--bin",
                    "policyc",
                ])
                .output()
                .unwrap();
            assert!(out.status.success(), "cargo build -p policyc: {}", String::from_utf8_lossy(&out.stderr));
        }
        sibling
    })
}

/// Fails unless `words` (a command line starting with the program) parses.
fn check(words: &[String], whence: &str) {
    let program = match words[0].as_str() {
        "policyc" => policyc(),
        "policyc-loader" => Path::new(env!("CARGO_BIN_EXE_policyc-loader")),
        other => panic!("{whence}: `{other}`"),
    };
    let out = Command::new(program).args(&words[1..]).arg("--help").env_remove("NODE_NAME").output().unwrap();
    assert!(
        out.status.success(),
        "{whence}: `{}` does not parse:\n{}",
        words.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The shell blocks of the README's walk-through section.
fn walkthrough() -> String {
    let readme = std::fs::read_to_string(repository().join("README.md")).unwrap();
    let heading = "#### GitOps: from a pull request to every node";
    let start = readme.find(heading).expect("the README has the GitOps walk-through");
    let section = &readme[start + heading.len()..];
    let section = &section[..section.find("\n### ").or(section.find("\n#### ")).unwrap_or(section.len())];
    let mut blocks = String::new();
    let mut inside = false;
    for line in section.lines() {
        match (inside, line.trim_start()) {
            (false, "```sh") => inside = true,
            (true, "```") => inside = false,
            (true, _) => {
                blocks.push_str(line);
                blocks.push('\n');
            }
            _ => {}
        }
    }
    blocks
}

#[test]
fn every_command_of_the_walkthrough_exists_with_its_flags() {
    let commands = commands(&walkthrough());
    let names: Vec<String> = commands.iter().map(|c| format!("{} {}", c[0], c[1])).collect();
    // The path the walk-through promises, in its order.
    for step in [
        "policyc lint",
        "policyc diff",
        "policyc compile",
        "policyc publish",
        "policyc-loader run",
        "policyc-loader status",
    ] {
        assert!(names.iter().any(|n| n == step), "the walk-through has no `{step}`: {names:?}");
    }
    for command in &commands {
        check(command, "README walk-through");
    }
}

#[test]
fn the_shell_reading_finds_the_commands() {
    let script =
        "for p in $(kubectl get pods -o name); do\n  kubectl exec \"$p\" -- policyc-loader status --json\ndone\n\
                  policyc diff git:${{ github.sha }}:a b --format markdown > d.md # review\n\
                  echo x | policyc lint \\\n  a/ && policyc compile a/ --out o/\n# policyc nothing\ncargo install --git x policyc\n";
    let found: Vec<String> = commands(script).iter().map(|c| c.join(" ")).collect();
    assert_eq!(
        found,
        [
            "policyc-loader status --json",
            "policyc diff git:EXPR:a b --format markdown",
            "policyc lint a/",
            "policyc compile a/ --out o/"
        ]
    );
}

fn text<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.get(key).and_then(Node::as_str)
}

fn entries(node: &Node) -> &[(Node, Node)] {
    match &node.value {
        Value::Map(entries) => entries,
        _ => panic!("a mapping expected at {:?}", node.pos),
    }
}

#[test]
fn the_ci_example_is_a_workflow_whose_commands_exist() {
    let file = repository().join("examples/ci/policies.yaml");
    let parsed = yaml::parse(&std::fs::read_to_string(&file).unwrap());
    assert!(parsed.error.is_none() && parsed.findings.is_empty(), "{:?} {:?}", parsed.error, parsed.findings);
    assert_eq!(parsed.documents.len(), 1);
    let workflow = &parsed.documents[0].root;
    assert!(text(workflow, "name").is_some());
    let on = workflow.get("on").expect("`on` (a string key, as GitHub reads YAML)");
    assert!(on.get("pull_request").is_some() && on.get("push").is_some());
    let jobs = workflow.get("jobs").expect("`jobs`");
    let job_names: Vec<&str> = entries(jobs).iter().map(|(k, _)| k.as_str().unwrap()).collect();
    let mut seen = Vec::new();
    for (name, job) in entries(jobs) {
        let name = name.as_str().unwrap();
        assert!(text(job, "runs-on").is_some(), "job `{name}` has no `runs-on`");
        if let Some(need) = job.get("needs").and_then(Node::as_str) {
            assert!(job_names.contains(&need), "job `{name}` needs `{need}`, no job");
        }
        let Some(Node { value: Value::Seq(steps), .. }) = job.get("steps") else { panic!("job `{name}` has no steps") };
        for (i, step) in steps.iter().enumerate() {
            for (key, _) in entries(step) {
                let key = key.as_str().unwrap();
                assert!(
                    ["name", "uses", "run", "with", "env", "if", "id"].contains(&key),
                    "job `{name}` step {i}: `{key}` is no step key"
                );
            }
            match (text(step, "uses"), text(step, "run")) {
                (Some(action), None) => {
                    assert!(action.contains('@'), "step {i}: `{action}` is not pinned to a version")
                }
                (None, Some(run)) => {
                    for command in commands(run) {
                        seen.push(format!("{} {}", command[0], command[1]));
                        check(&command, &format!("{} job `{name}` step {i}", file.display()));
                    }
                }
                _ => panic!("job `{name}` step {i}: one of `uses` and `run`"),
            }
        }
    }
    for step in ["policyc lint", "policyc diff", "policyc compile", "policyc publish"] {
        assert!(seen.iter().any(|s| s == step), "the workflow runs no `{step}`");
    }
}
