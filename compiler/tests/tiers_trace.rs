//! `trace` and `explain` name the tier, the policy (with its priority) and
//! the rule that decided, and every `Pass` on the way, on the golden case
//! `anp-tiers-first-match`.

use policyc::analysis::reason::{reason_json, reason_text, Citations};
use policyc::analysis::trace::{render_human, render_json};
use policyc::pipeline::load;
use policyc_ir::eval::{eval, Party, Query};
use policyc_ir::protocol::Protocol;
use std::path::Path;

fn case() -> policyc::pipeline::Loaded {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/anp-tiers-first-match/input");
    let loaded = load(&[dir]);
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    loaded
}

fn query(loaded: &policyc::pipeline::Loaded, src: &str, dst: &str, port: u16) -> Query {
    let c = &loaded.lowered.cluster;
    let at = |n: &str| Party::Endpoint(c.endpoint_by_name(n).unwrap_or_else(|| panic!("{n}")));
    Query { src: at(src), dst: at(dst), protocol: Protocol::Tcp, port }
}

#[test]
fn a_pass_then_the_baseline_is_shown_rule_by_rule() {
    let loaded = case();
    let citations = Citations::new(&loaded);
    let q = query(&loaded, "monitoring/prom", "shop/db", 80);
    let verdict = eval(&loaded.lowered.cluster, &q);
    assert!(!verdict.allowed());
    let text = render_human(&citations, &q, &verdict);
    let want = "  ingress of shop/db: denied by\n    \
                - passed by AdminNetworkPolicy guardrails (admin tier, priority 20) spec.ingress[1] \"pass-monitoring\" (Pass) (";
    assert!(text.contains(want), "{text}");
    assert!(
        text.contains("    - BaselineAdminNetworkPolicy default (baseline tier, priority 0) spec.ingress[0] \"deny-monitoring\" (Deny) ("),
        "{text}"
    );
    assert!(text.contains("10-policies.yaml:20)"), "the Pass rule's own line: {text}");

    let json = render_json(&citations, &q, &verdict);
    let ingress = &json["ingress"];
    assert_eq!(ingress["verdict"], "deny");
    assert_eq!(ingress["reason"], "baseline-rule");
    assert_eq!(ingress["rules"][0]["kind"], "BaselineAdminNetworkPolicy");
    assert_eq!(ingress["rules"][0]["tier"], "baseline");
    assert_eq!(ingress["passed"][0]["name"], "guardrails");
    assert_eq!(ingress["passed"][0]["action"], "Pass");
    assert_eq!(ingress["passed"][0]["priority"], 20);

    // The reason `explain` and `diff` print.
    let reason = citations.reason(verdict.ingress.as_ref().unwrap());
    let said = reason_text(&reason);
    assert!(said.starts_with("passed by AdminNetworkPolicy guardrails (admin tier, priority 20)"), "{said}");
    assert!(said.contains(", then denied by BaselineAdminNetworkPolicy default"), "{said}");
    assert_eq!(reason_json(&reason)["passed"][0]["rule"], "spec.ingress[1] \"pass-monitoring\" (Pass)");
}

#[test]
fn the_first_matching_admin_rule_is_cited() {
    let loaded = case();
    let citations = Citations::new(&loaded);
    let q = query(&loaded, "monitoring/prom", "shop/db", 9100);
    let verdict = eval(&loaded.lowered.cluster, &q);
    assert!(verdict.allowed());
    let text = render_human(&citations, &q, &verdict);
    assert!(
        text.contains("allowed by\n    - AdminNetworkPolicy monitoring-scrape (admin tier, priority 10) spec.ingress[0] \"allow-scrape\" (Allow)"),
        "{text}"
    );
    let json = render_json(&citations, &q, &verdict);
    assert_eq!(json["ingress"]["reason"], "admin-rule");
    assert!(json["ingress"].get("passed").is_none());
    // A reason without a Pass has no `passed` in JSON, as before tiers.
    assert!(reason_json(&citations.reason(verdict.ingress.as_ref().unwrap())).get("passed").is_none());
}

#[test]
fn explain_lists_the_admin_policies_that_select_the_endpoint() {
    let loaded = case();
    let cluster = &loaded.lowered.cluster;
    let resolved = policyc_ir::resolve::resolve(cluster);
    let db = cluster.endpoint_by_name("shop/db").unwrap();
    let x = policyc::analysis::explain::explain(&loaded, &resolved, db);
    let text = policyc::analysis::explain::render_human(&x);
    assert!(
        text.contains("  AdminNetworkPolicy guardrails (admin tier, priority 20) (")
            && text.contains("    isolates: -; rules: 1 ingress Deny, 1 ingress Pass\n"),
        "{text}"
    );
    assert!(text.contains("  BaselineAdminNetworkPolicy default (baseline tier, priority 0) ("), "{text}");
    assert!(
        text.contains("ingress: allowed by AdminNetworkPolicy monitoring-scrape (admin tier, priority 10)"),
        "{text}"
    );
    // Admin and baseline rules decide its ingress: not "not isolated",
    // and the tiers named in the order they are asked.
    assert!(
        text.contains(
            "  ingress: no NetworkPolicy isolates it; the admin tier decides what its rules match first \
             (AdminNetworkPolicy monitoring-scrape (admin tier, priority 10), AdminNetworkPolicy guardrails \
             (admin tier, priority 20)); then the baseline tier decides what its rules match \
             (BaselineAdminNetworkPolicy default (baseline tier, priority 0)); what no rule matches is allowed\n"
        ),
        "{text}"
    );
    assert!(text.contains("  egress: not isolated (everything is allowed unless a deny rule drops it)\n"), "{text}");
    let json = policyc::analysis::explain::render_json(&x);
    assert_eq!(json["tiers"]["ingress"][0]["tier"], "admin");
    assert_eq!(json["tiers"]["ingress"][2]["policy"], "BaselineAdminNetworkPolicy default (baseline tier, priority 0)");
    assert_eq!(json["tiers"]["egress"], serde_json::json!([]));
}
