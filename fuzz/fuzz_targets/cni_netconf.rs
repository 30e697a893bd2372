//! `policyc-cni`'s reading of what a runtime hands it on stdin (the network
//! configuration with the network plugin's `prevResult`), on any bytes.
//!
//! Contract: the bounded read, the parse and the host-side lookup either
//! refuse with a CNI error object (a code of the spec, a message, valid
//! JSON) or yield what the plugin sends the agent: a supported version, a
//! positive timeout, a Linux interface name and at least one address, as a
//! request that reads back as itself. Never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policyc_cni::error::CniError;
use policyc_cni::netconf::{read_netconf, NetConf, MAX_INTERFACE_NAME, SUPPORTED_VERSIONS};
use policyc_cni::protocol::{Request, Sandbox};

/// The codes the plugin's reading may refuse with (CNI spec, "Error").
const READ_CODES: [u32; 4] = [1, 5, 6, 7];

fn refused(e: &CniError) {
    assert!(READ_CODES.contains(&e.code), "code {} for {e}", e.code);
    assert!(!e.msg.is_empty());
    let json: serde_json::Value = serde_json::from_str(&e.to_json()).expect("the error object is JSON");
    assert_eq!(json["code"], e.code);
}

fuzz_target!(|bytes: &[u8]| {
    let conf = match read_netconf(bytes).and_then(|text| NetConf::parse(&text)) {
        Ok(conf) => conf,
        Err(e) => return refused(&e),
    };
    assert!(SUPPORTED_VERSIONS.contains(&conf.cni_version.as_str()));
    assert!(!conf.timeout.is_zero());
    let (interface, addresses) = match conf.host_side() {
        Ok(found) => found,
        Err(e) => return refused(&e),
    };
    assert!(!interface.is_empty() && interface.len() <= MAX_INTERFACE_NAME && !interface.contains('/'));
    assert!(!addresses.is_empty());
    let request = Request::Add(Sandbox {
        container_id: "c".into(),
        namespace: "ns".into(),
        pod: "pod".into(),
        netns: "/var/run/netns/p".into(),
        interface,
        addresses,
    });
    let line = serde_json::to_string(&request).expect("a request serializes");
    assert_eq!(serde_json::from_str::<Request>(&line).expect("a request reads back"), request);
});
