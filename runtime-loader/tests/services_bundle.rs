//! The service tables of a bundle (`services.txt`, `backends.txt`,
//! `revnat.txt`) are read and checked with the rest of it: what policyc
//! writes is accepted, a bad line, a dangling backend or reverse-NAT id,
//! or a missing table refuses the bundle with an error naming the file.
//! No kernel is touched (the tables are not loaded into maps yet).

mod support;

use policyc_loader::bundle::Bundle;
use std::path::Path;
use support::{compile, redigest, TempDir};

/// The golden case with node ports, traffic policies and source ranges,
/// compiled; the directory of node-a's bundle.
fn bundle(out: &TempDir) -> std::path::PathBuf {
    let input = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/svc-node-ports-and-policies/input");
    let (_, bundles) = compile(&input, out).expect("the case compiles");
    assert_eq!(bundles.len(), 2);
    out.0.join("node-a")
}

/// `dir`'s bundle with `file` changed by `change` and redigested, read.
fn read_changed(dir: &Path, file: &str, change: impl FnOnce(String) -> String) -> String {
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, change(text.clone())).unwrap();
    redigest(dir, file);
    let result = Bundle::read(dir);
    std::fs::write(&path, text).unwrap();
    redigest(dir, file);
    match result {
        Ok(_) => panic!("a bundle with a changed `{file}` was accepted"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn policyc_service_tables_are_read_and_bad_ones_refused() {
    let out = TempDir::new("sv-bundle");
    let dir = bundle(&out);
    Bundle::read(&dir).expect("the loader reads what policyc writes");
    let services = std::fs::read_to_string(dir.join("maps/services.txt")).unwrap();
    assert!(services.lines().count() >= 8, "{services}");

    // A line that does not parse names its file and line.
    let err = read_changed(&dir, "maps/services.txt", |t| t.replacen(" ext ", " both ", 1));
    assert!(err.starts_with("maps/services.txt:1: `both` is not a scope"), "{err}");
    // A backend id `backends.txt` does not list.
    let err = read_changed(&dir, "maps/backends.txt", |t| t.lines().skip(1).map(|l| format!("{l}\n")).collect());
    assert!(err.contains("is not in maps/backends.txt"), "{err}");
    // A reverse-NAT entry naming another frontend.
    let err = read_changed(&dir, "maps/revnat.txt", |t| t.replacen(":80/TCP", ":81/TCP", 1));
    assert!(err.contains("reverse-NAT id"), "{err}");
    // Lines out of order.
    let err = read_changed(&dir, "maps/revnat.txt", |t| {
        let mut lines: Vec<&str> = t.lines().collect();
        lines.reverse();
        lines.iter().map(|l| format!("{l}\n")).collect()
    });
    assert!(err.contains("maps/revnat.txt:2: this line is out of order"), "{err}");
    Bundle::read(&dir).expect("restored");

    // Two tables without the third.
    let manifest = dir.join("manifest.json");
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    json["files"].as_object_mut().unwrap().remove("maps/revnat.txt");
    std::fs::write(&manifest, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    let err = Bundle::read(&dir).expect_err("a missing table").to_string();
    assert!(err.contains("has service tables but not `maps/revnat.txt`"), "{err}");
}
