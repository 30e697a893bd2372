//! The incremental plan (only the changed pieces of a bundle read and
//! diffed) equals the plan of the whole bundles diffed, and reads little:
//! no kernel needed, the loader's store lives in a scratch directory.

mod support;

use policyc_loader::bundle::{Bundle, BundleError};
use policyc_loader::incremental;
use policyc_loader::manifest::Manifest;
use policyc_loader::maps::{Generation, SyncPlan};
use policyc_loader::paths::Paths;
use policyc_loader::store;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use support::TempDir;

/// A node with three pods; `server` admits `cidrs` /32s on `ports` ports
/// (so its policy file is long enough to be cut in pieces), `client`
/// admits role `allowed` on port 80.
fn manifests(cidrs: usize, ports: usize, allowed: &str, extra_pod: bool) -> String {
    let mut out = String::from(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: demo\n---\n\
         apiVersion: v1\nkind: Node\nmetadata:\n  name: node-a\n---\n",
    );
    let mut pods =
        vec![("server", "server", "10.200.70.2"), ("client", "client", "10.200.70.3"), ("other", "x", "10.200.70.4")];
    if extra_pod {
        pods.push(("late", "x", "10.200.70.5"));
    }
    for (name, role, ip) in pods {
        let _ = write!(
            out,
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: demo\n  labels:\n    role: {role}\n\
             spec:\n  nodeName: node-a\n  containers:\n    - name: main\n      image: demo\n\
             status:\n  podIP: {ip}\n  podIPs:\n    - ip: {ip}\n---\n"
        );
    }
    out += "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: server\n  namespace: demo\n\
            spec:\n  endpointSelector:\n    matchLabels:\n      role: server\n  ingress:\n    - fromCIDR:\n";
    for i in 0..cidrs {
        let _ = writeln!(out, "        - 198.18.{}.{}/32", i / 250, i % 250 + 1);
    }
    out += "      toPorts:\n        - ports:\n";
    for p in 0..ports {
        // Every other port: no two make a range, each is an entry.
        let _ = writeln!(out, "            - port: \"{}\"\n              protocol: TCP", 1000 + 2 * p);
    }
    let _ = write!(
        out,
        "---\napiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata:\n  name: client\n  namespace: demo\n\
         spec:\n  endpointSelector:\n    matchLabels:\n      role: client\n  ingress:\n    - fromEndpoints:\n\
         \x20       - matchLabels:\n            role: {allowed}\n      toPorts:\n        - ports:\n            - port: \"80\"\n"
    );
    out
}

fn bundle(out: &Path, name: &str, text: &str) -> PathBuf {
    let input = out.join(format!("{name}-input"));
    std::fs::create_dir_all(&input).unwrap();
    std::fs::write(input.join("cluster.yaml"), text).unwrap();
    let scratch = TempDir(out.join(format!("{name}-scratch")));
    support::compile(&input, &scratch).expect("input compiles");
    let dir = out.join(name);
    std::fs::rename(scratch.0.join("node-a"), &dir).unwrap();
    dir
}

/// The loader's store holding `dir`'s bundle as generation 1, as an apply
/// leaves it.
fn stored(out: &Path, dir: &Path) -> (Paths, Manifest) {
    let paths = Paths::new(Path::new("/nonexistent-bpffs"), "policyc", &out.join("state"));
    let m = Manifest::read(dir).unwrap();
    store::save_bundle(&paths, &m).unwrap();
    store::save_manifest(&paths, 1, &m).unwrap();
    store::save_references(&paths, 1, &m.hash, &Bundle::read(dir).unwrap().references()).unwrap();
    let kept = store::read_manifest(&paths, 1, &m.hash).expect("the kept manifest reads back");
    (paths, kept)
}

/// The plan of the whole bundles, diffed.
fn whole(old: &Path, new: &Path) -> SyncPlan {
    let (old, new) = (Bundle::read(old).unwrap(), Bundle::read(new).unwrap());
    SyncPlan::new(&Generation::of_bundle(&old, 1), &Generation::of_bundle(&new, 1))
}

/// The policy file of endpoint `name` (`demo/server`) in the bundle `dir`.
fn policy_file(dir: &Path, name: &str) -> String {
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let endpoint = json["endpoints"].as_array().unwrap().iter().find(|e| e["name"] == name).unwrap();
    endpoint["policy_file"].as_str().unwrap().to_string()
}

fn pieces(m: &Manifest) -> usize {
    store::diffed_files(m).iter().map(|f| m.digest(f).unwrap().pieces().len()).sum()
}

#[test]
fn the_changed_pieces_plan_what_the_whole_bundles_do() {
    let out = TempDir::new("incremental");
    let base = bundle(&out.0, "base", &manifests(12, 500, "client", false));
    let changes = [
        ("one more cidr", manifests(13, 500, "client", false)),
        ("one port less", manifests(12, 499, "client", false)),
        ("one more pod", manifests(12, 500, "client", true)),
        ("a peer changes", manifests(12, 500, "x", false)),
        ("all cidrs but one go", manifests(1, 500, "client", false)),
    ];
    for (what, text) in changes {
        let changed = bundle(&out.0, &what.replace(' ', "-"), &text);
        let state = TempDir(out.0.join("state"));
        let (paths, old) = stored(&out.0, &base);
        let new = Manifest::read(&changed).unwrap();
        let server = old.digest(&policy_file(&base, "demo/server")).unwrap().pieces().len();
        assert!(server > 2, "{what}: the server's policy file is in pieces ({server})");
        let done = incremental::plan(&paths, &old, &new, 1).unwrap().expect("the store has the old side");
        assert_eq!(done.plan, whole(&base, &changed), "{what}");
        let syscalls = done.plan.syscalls();
        assert!(syscalls > 0, "{what}: the plan writes something");
        eprintln!("{what}: {syscalls} map operations, {} of {} pieces read", done.read.len(), pieces(&new));
        // A new peer's entries are neighbours in the sorted file: they fall
        // in a piece or two; ports and cidrs removed are spread over all.
        if !["one port less", "all cidrs but one go"].contains(&what) {
            assert!(done.read.len() <= 4, "{what}: {} pieces read", done.read.len());
        }
        drop(state);
    }
}

#[test]
fn endpoints_sharing_a_policy_file_are_planned_from_it_once() {
    let out = TempDir::new("incremental-shared");
    let base = bundle(&out.0, "base", &manifests(12, 500, "client", false));
    let changed = bundle(&out.0, "changed", &manifests(13, 500, "client", false));
    // `other` takes the server's policy file, in both bundles: its entries
    // are the server's entries under its own id.
    let server = policy_file(&base, "demo/server");
    assert_eq!(server, policy_file(&changed, "demo/server"), "the server's identity stays");
    for dir in [&base, &changed] {
        let path = dir.join("manifest.json");
        let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        for e in json["endpoints"].as_array_mut().unwrap() {
            if e["name"] == "demo/other" {
                e["policy_file"] = server.as_str().into();
            }
        }
        std::fs::write(&path, serde_json::to_string_pretty(&json).unwrap()).unwrap();
    }
    let (paths, old) = stored(&out.0, &base);
    let new = Manifest::read(&changed).unwrap();
    let done = incremental::plan(&paths, &old, &new, 1).unwrap().unwrap();
    let plan = whole(&base, &changed);
    assert_eq!(done.plan, plan);
    assert_eq!(plan.ops["policy"].added, 1000, "500 new entries for each of the two endpoints: {:?}", plan.ops);
    let mut digests: Vec<&String> = done.read.iter().map(|(d, _)| d).collect();
    let read = digests.len();
    digests.dedup();
    assert_eq!(digests.len(), read, "a shared piece is read once");
}

#[test]
fn a_changed_piece_that_does_not_match_its_digest_is_refused() {
    let out = TempDir::new("incremental-corrupt");
    let base = bundle(&out.0, "base", &manifests(12, 500, "client", false));
    let changed = bundle(&out.0, "changed", &manifests(13, 500, "client", false));
    let (paths, old) = stored(&out.0, &base);
    let new = Manifest::read(&changed).unwrap();
    // Every piece of the server's policy file changes, the one with the new
    // rule among them; its length does not.
    let server = policy_file(&changed, "demo/server");
    let file = changed.join(&server);
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replace("allow", "deny ")).unwrap();
    match incremental::plan(&paths, &old, &new, 1) {
        Err(BundleError::Digest(e)) => assert!(e.contains(&server), "{e}"),
        Err(e) => panic!("refused for another reason: {e}"),
        Ok(_) => panic!("a corrupt piece was planned from"),
    }
}

#[test]
fn a_piece_missing_from_the_store_sends_the_plan_to_the_live_maps() {
    let out = TempDir::new("incremental-missing");
    let base = bundle(&out.0, "base", &manifests(12, 500, "client", false));
    let changed = bundle(&out.0, "changed", &manifests(13, 500, "client", false));
    let (paths, old) = stored(&out.0, &base);
    std::fs::remove_dir_all(paths.pieces()).unwrap();
    let new = Manifest::read(&changed).unwrap();
    assert!(incremental::plan(&paths, &old, &new, 1).unwrap().is_none());
}

#[test]
fn a_missing_reference_index_sends_the_plan_to_the_live_maps() {
    let out = TempDir::new("incremental-no-index");
    let base = bundle(&out.0, "base", &manifests(12, 500, "client", false));
    let changed = bundle(&out.0, "changed", &manifests(13, 500, "client", false));
    let (paths, old) = stored(&out.0, &base);
    std::fs::remove_file(paths.state.join("generation-1.references")).unwrap();
    let new = Manifest::read(&changed).unwrap();
    assert!(incremental::plan(&paths, &old, &new, 1).unwrap().is_none());
}

/// Gives every text file `dir`'s manifest lists its true digest and pieces.
fn redigest(dir: &Path) {
    let path = dir.join("manifest.json");
    let mut json = policyc_bundle::manifest::Manifest::from_json(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for (file, digest) in json.files.iter_mut() {
        if digest.lines.is_some() {
            let text = std::fs::read_to_string(dir.join(file)).unwrap();
            *digest = policyc_bundle::digest::text_digest(&text, policyc_bundle::digest::Digests::Sha256);
        }
    }
    std::fs::write(&path, json.to_json()).unwrap();
}

/// Edits file `file` of bundle `dir` by `change` and redigests the bundle.
fn edited(dir: &Path, file: &str, change: impl FnOnce(Vec<String>) -> Vec<String>) {
    let path = dir.join(file);
    let lines = std::fs::read_to_string(&path).unwrap().lines().map(str::to_string).collect();
    std::fs::write(&path, change(lines).iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    redigest(dir);
}

/// Each inconsistency a whole read refuses, placed where an incremental
/// plan reads only part of it (a changed piece against an unchanged one,
/// a changed policy line against the rule table, a changed `endpoints.txt`
/// against the manifest), is refused by the plan too, with the message
/// naming the file (and line) at fault.
#[test]
fn an_incremental_plan_refuses_what_a_whole_read_refuses() {
    let out = TempDir::new("incremental-refuses");
    let base = bundle(&out.0, "base", &manifests(12, 500, "client", false));
    let text = manifests(13, 500, "client", false);
    let server = policy_file(&base, "demo/server");
    let client = policy_file(&base, "demo/client");
    let rules_of = |dir: &Path, file: &str| -> Vec<String> {
        let text = std::fs::read_to_string(dir.join(file)).unwrap();
        text.lines().map(|l| l.split(' ').nth(4).unwrap().to_string()).collect()
    };
    let client_cookie = rules_of(&base, &client)[0].clone();
    type Case<'a> = (&'a str, Box<dyn Fn(&Path) + 'a>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "a key of a changed piece repeats the last key of the unchanged piece before it",
            Box::new(|dir: &Path| {
                let new = Manifest::read(dir).unwrap();
                let old = Manifest::read(&base).unwrap();
                let (old_pieces, new_pieces) =
                    (old.digest(&server).unwrap().pieces(), new.digest(&server).unwrap().pieces());
                let known: Vec<&String> = old_pieces.iter().map(|p| &p.sha256).collect();
                // The first changed piece after an unchanged one.
                let at = (1..new_pieces.len())
                    .find(|&i| !known.contains(&&new_pieces[i].sha256) && known.contains(&&new_pieces[i - 1].sha256))
                    .expect("a changed piece after an unchanged one");
                let line: usize = new_pieces[..at].iter().map(|p| p.lines).sum();
                edited(dir, &server, |mut lines| {
                    let twin = lines[line - 1].replacen(" allow ", " deny ", 1);
                    lines.insert(line, twin);
                    lines
                });
            }),
            "this key is already listed on an earlier line",
        ),
        (
            "a changed policy line names a cookie rules.txt does not list",
            Box::new(|dir: &Path| {
                edited(dir, &server, |mut lines| {
                    let mut fields: Vec<String> = lines[0].split(' ').map(str::to_string).collect();
                    fields[4] = "1".into();
                    lines[0] = fields.join(" ");
                    lines
                })
            }),
            "which `maps/rules.txt` does not list",
        ),
        (
            "rules.txt drops a rule that an unchanged policy file names",
            Box::new(|dir: &Path| {
                let cookie = client_cookie.clone();
                edited(dir, "maps/rules.txt", move |lines| {
                    lines.into_iter().filter(|l| !l.starts_with(&format!("{cookie} "))).collect()
                })
            }),
            "does not list rule cookie",
        ),
        (
            "identities.txt drops an identity that an unchanged ipcache entry names",
            Box::new(|dir: &Path| {
                edited(dir, "maps/identities.txt", |lines| lines.into_iter().filter(|l| !l.starts_with("9 ")).collect())
            }),
            "is not listed in `maps/identities.txt`",
        ),
        (
            "endpoints.txt loses the line of an endpoint of the manifest",
            Box::new(|dir: &Path| edited(dir, "maps/endpoints.txt", |lines| lines[1..].to_vec())),
            "has no entry in map `endpoints`",
        ),
    ];
    for (i, (what, corrupt, message)) in cases.into_iter().enumerate() {
        let dir = bundle(&out.0, &format!("case-{i}"), &text);
        corrupt(&dir);
        let state = TempDir(out.0.join("state"));
        let (paths, old) = stored(&out.0, &base);
        let new = Manifest::read(&dir).unwrap_or_else(|e| panic!("{what}: the manifest reads ({e})"));
        let whole = Bundle::read(&dir).map(drop).expect_err(what).to_string();
        let err = match incremental::plan(&paths, &old, &new, 1) {
            Err(e) => e.to_string(),
            Ok(Some(_)) => panic!("{what}: planned (a whole read refuses it: {whole})"),
            Ok(None) => panic!("{what}: sent to a whole read"),
        };
        assert!(err.contains(message), "{what}: {err}");
        assert!(whole.contains(message) || what.contains("rules.txt drops"), "{what}: whole read: {whole}");
        drop(state);
    }
}
