//! The recorded network configurations in `tests/data/netconf/` (the
//! reference `ptp` plugin's results with `host-local` IPAM, as a runtime
//! hands them to the next plugin; they also seed the `cni_netconf` fuzz
//! target): what `policyc-cni` reads from each.

use policyc_cni::netconf::{read_netconf, NetConf, MAX_NETCONF};
use std::net::IpAddr;
use std::path::Path;

fn read(name: &str) -> NetConf {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/netconf").join(name);
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    NetConf::parse(&read_netconf(file).unwrap()).unwrap()
}

fn addresses(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|a| a.parse().unwrap()).collect()
}

#[test]
fn each_recorded_configuration_gives_its_host_side_and_addresses() {
    let dual = addresses(&["10.200.250.2", "fd00:200:250::2"]);
    let conf = read("ptp-dual-stack-1.0.0.json");
    assert_eq!(conf.host_side().unwrap(), ("veth0a5d3ea0".to_string(), dual));
    assert_eq!(conf.timeout, std::time::Duration::from_secs(5));
    let conf = read("ptp-dual-stack-0.4.0.json");
    assert_eq!(
        conf.host_side().unwrap(),
        ("veth226e9b93".to_string(), addresses(&["10.200.250.3", "fd00:200:250::3"]))
    );
    let conf = read("ptp-0.3.1.json");
    assert_eq!(conf.agent_socket, Path::new(policyc_cni::protocol::DEFAULT_SOCKET));
    assert_eq!(conf.host_side().unwrap(), ("veth5f2a91c0".to_string(), addresses(&["10.200.7.9"])));
    let conf = read("del-without-prev-result.json");
    assert_eq!(conf.prev_result, None);
    assert_eq!(conf.host_side().unwrap_err().code, policyc_cni::error::INVALID_NETWORK_CONFIG);
}

#[test]
fn stdin_is_read_up_to_its_bound_and_no_further() {
    let conf = r#"{"cniVersion":"1.0.0"}"#;
    let at_bound = format!("{conf}{}", " ".repeat(MAX_NETCONF - conf.len()));
    assert_eq!(read_netconf(at_bound.as_bytes()).unwrap().len(), MAX_NETCONF);
    // An endless stdin (a runtime bug, or /dev/zero) ends at the bound.
    let e = read_netconf(std::io::repeat(b' ')).unwrap_err();
    assert_eq!(e.code, policyc_cni::error::INVALID_NETWORK_CONFIG);
    assert_eq!(e.msg, format!("the network configuration on stdin is longer than {MAX_NETCONF} bytes"));
    let e = read_netconf(&b"{\"cniVersion\":\"1.0.0\xff\"}"[..]).unwrap_err();
    assert_eq!(
        (e.code, e.msg.as_str()),
        (policyc_cni::error::DECODING_FAILURE, "the network configuration is not UTF-8")
    );
}
