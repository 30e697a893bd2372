//! Each crash the fuzz targets (`fuzz/`, `cargo xtask fuzz`) found, as the
//! smallest input that reproduced it, so that it stays fixed.

use policyc::emit::{emit, BundleOptions, EmitError};
use policyc::select::parse_selector;
use policyc_ir::cluster::Cluster;
use policyc_ir::ids::EndpointId;
use policyc_ir::resolve::{resolve, IpcacheSource};
use policyc_ir::validate::{validate, ValidationError};

/// `selector`: `M!=` (a key not equal to the empty value) printed as
/// `M notin ()`, which does not parse (a value list holds no empty
/// value); it now prints as `M!=`.
#[test]
fn a_selector_with_an_empty_value_prints_as_a_query_that_parses_back() {
    for query in ["M!=", "M=", "M!=,tier notin (a)", "tier notin (a,b)"] {
        let selector = parse_selector(query).unwrap();
        let printed = selector.to_string();
        assert_eq!(parse_selector(&printed), Ok(selector), "{query:?} printed as {printed:?}");
    }
    assert_eq!(parse_selector("M!=").unwrap().to_string(), "M!=");
}

/// `ir`: an ipcache entry owned by an endpoint that does not exist passed
/// the validator, then made emission index out of bounds. The validator
/// now refuses it, and emission fails with an error.
#[test]
fn an_ipcache_entry_of_a_missing_endpoint_is_invalid_and_emission_fails() {
    let cluster = Cluster::default();
    let mut resolved = resolve(&cluster);
    resolved.ipcache[0].source = IpcacheSource::Endpoint(EndpointId::new(0));
    let errors = validate(&resolved).unwrap_err();
    assert!(
        errors.iter().any(|e| matches!(e, ValidationError::EndpointMismatch { endpoint, .. } if endpoint == "#0")),
        "{errors:?}"
    );
    let emitted = emit(&cluster, &resolved, None, &BundleOptions::default());
    assert!(matches!(emitted, Err(EmitError::Invalid(_))), "{emitted:?}");
}

/// `ir`: an L7 rule with an empty parser (`l7proto: ""`) became a
/// redirect to no proxy, which the validator refused, so `compile` ended
/// in an internal error; the front end now reports it.
#[test]
fn an_empty_l7proto_is_an_input_error() {
    let text = r#"apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: p, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: a}}
  ingress:
  - toPorts:
    - ports: [{port: "80", protocol: TCP}]
      rules: {l7proto: "", l7: [{a: b}]}
"#;
    let mut input = policyc::front::Input::default();
    input.add_source("p.yaml", text.to_string());
    let loaded = policyc::pipeline::load_input(input);
    let found = loaded.diagnostics.iter().find(|d| d.message == "`l7proto` is empty");
    assert!(found.is_some_and(|d| d.code == policyc::diag::codes::INVALID_L7), "{:?}", loaded.diagnostics);
}
