//! Selector queries on the command line: `trace --from/--to SELECTOR`
//! and `connectivity --select SELECTOR` on the example cluster, and the
//! caret that points at the column of a malformed query.

use std::path::{Path, PathBuf};
use std::process::Command;

fn example() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/policies")
}

fn policyc(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_policyc")).args(args).arg(example()).output().unwrap();
    (out.status.code().unwrap(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

#[test]
fn trace_takes_selectors_and_traces_every_pair() {
    let (code, out, err) = policyc(&[
        "trace",
        "--from",
        "ns=monitoring",
        "--to",
        "ns=shop,tier in (data),!legacy",
        "--port",
        "9109",
        "--exit-code",
    ]);
    assert_eq!(code, 1, "the pprof port is denied: {err}");
    let heads: Vec<&str> = out.lines().filter(|l| l.contains(" -> ")).collect();
    assert_eq!(
        heads,
        [
            "monitoring/prometheus-0 -> shop/cache-84c9d6f7b-q8wnr TCP/9109: DENIED",
            "monitoring/prometheus-0 -> shop/db-0 TCP/9109: DENIED",
        ]
    );
    // `app==api` and `app!=...`: one pair, allowed, JSON as a single object
    // because each side names exactly one endpoint.
    let (code, out, _) = policyc(&[
        "trace",
        "--from",
        "app==frontend",
        "--to",
        "app=api,tier!=data",
        "--port",
        "8080",
        "--output",
        "json",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["allowed"], true);
    assert_eq!(v["dst"], "shop/api-5b7c4d9f8-m4vzt");
    // Several pairs: a JSON array, the endpoint with itself left out.
    let (_, out, _) = policyc(&["trace", "--from", "ns=shop", "--to", "ns=shop", "--port", "5432", "--output", "json"]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 5 * 4);
}

#[test]
fn connectivity_filters_by_selector() {
    let (code, all, _) = policyc(&["connectivity"]);
    assert_eq!(code, 0);
    let (code, out, _) = policyc(&["connectivity", "--select", "app=db"]);
    assert_eq!(code, 0);
    // Column widths follow the rows shown: compare the words.
    let words = |l: &str| l.split_whitespace().collect::<Vec<_>>().join(" ");
    let expected: Vec<String> = all.lines().skip(1).filter(|l| l.contains("shop/db-0")).map(words).collect();
    let got: Vec<String> = out.lines().skip(1).map(words).collect();
    assert_eq!(got, expected);
    // api and prometheus reach db, and so does db's own node (the
    // built-in allow-localhost); the rows to Services follow.
    assert_eq!(got.iter().filter(|l| !l.contains(" -> svc:")).count(), 4, "{got:#?}");
    assert!(got.iter().any(|l| l.starts_with("node:node-a -> shop/db-0")), "{got:#?}");
}

#[test]
fn bad_selectors_point_at_their_column() {
    let (code, _, err) = policyc(&["connectivity", "--select", "app=web,tier in data"]);
    assert_eq!(code, 2);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines[0], "error: --select: invalid selector: expected a list of values `(a,b)` at column 17");
    assert_eq!(lines[1], "  app=web,tier in data");
    assert_eq!(lines[2], format!("  {}^", " ".repeat(16)));
    let (code, _, err) = policyc(&["trace", "--from", "app=zzz", "--to", "app=db", "--port", "1"]);
    assert_eq!(code, 2);
    assert!(err.contains("matches no endpoint"), "{err}");
    let (code, _, err) = policyc(&["trace", "--from", "shop/fronted-6d8f9c7b5-x2kqp", "--to", "app=db", "--port", "1"]);
    assert_eq!(code, 2);
    assert!(err.contains("did you mean `shop/frontend-6d8f9c7b5-x2kqp`"), "{err}");
}
