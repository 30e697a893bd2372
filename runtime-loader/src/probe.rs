//! Probing a bundle's programs with `BPF_PROG_TEST_RUN`: the bundle is
//! loaded into a scratch root of its own (its own pinned maps, nothing
//! attached, the node's policy untouched), and crafted packets are run
//! through the real programs in the kernel. `policyc-loader probe` uses it
//! to show what the datapath does with a packet; the tests use it to check
//! the programs against `ir::eval`, and the benchmark to time them.

use crate::bundle::Bundle;
use crate::error::{kernel, LoaderError, Operation};
use crate::kernel::aya::AyaKernel;
use crate::kernel::Kernel;
use crate::maps;
use crate::packet::ProbePacket;
use crate::paths::Paths;
use crate::programs::{self, LoadedEndpoint};
use aya::maps::{HashMap, Map, MapData};
use aya::programs::{TestRun, TestRunOptions};
use policyc_ebpf::abi::{Ct4Key, CtKey, CtValue, StateValue};
use policyc_ebpf::Template;
use std::mem::size_of;
use std::net::IpAddr;
use std::time::Duration;

/// `TC_ACT_SHOT`: the program dropped the packet.
pub const TC_ACT_SHOT: u32 = 2;

/// One hook's outcome.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct HookVerdict {
    /// The endpoint whose program ran.
    pub endpoint: String,
    /// The program.
    pub program: &'static str,
    /// Its return value.
    pub return_value: u32,
}

impl HookVerdict {
    /// Whether the packet passed the hook.
    pub fn passed(&self) -> bool {
        self.return_value != TC_ACT_SHOT
    }
}

/// Both hooks' outcomes for a packet on this bundle's node: the source's
/// `from_container` if the source is a local endpoint, the destination's
/// `to_container` if the destination is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ProbeVerdict {
    /// Egress of the source.
    pub egress: Option<HookVerdict>,
    /// Ingress of the destination.
    pub ingress: Option<HookVerdict>,
}

struct ProbeEndpoint {
    addresses: Vec<IpAddr>,
    loaded: LoadedEndpoint,
}

/// A bundle loaded into a scratch root. Dropping it unpins its maps.
pub struct Probe {
    paths: Paths,
    endpoints: Vec<ProbeEndpoint>,
}

impl Probe {
    /// Loads every endpoint's programs of `bundle` and its entries into the
    /// maps pinned under `paths.root`, which must not exist yet.
    pub fn load(paths: Paths, bundle: &Bundle) -> Result<Probe, LoaderError> {
        if paths.root.exists() {
            return Err(LoaderError::Probe(format!("probe root `{}` exists already", paths.root.display())));
        }
        // From here on, Drop cleans up whatever was pinned.
        let mut probe = Probe { paths, endpoints: Vec::new() };
        for e in &bundle.endpoints {
            let loaded = programs::load_endpoint(&probe.paths, &e.name, &bundle.templates, &e.config)?;
            probe.endpoints.push(ProbeEndpoint { addresses: e.addresses.clone(), loaded });
        }
        if probe.endpoints.is_empty() {
            return Err(LoaderError::Probe("the bundle has no endpoint to probe".into()));
        }
        let kernel = AyaKernel::new(&probe.paths);
        maps::write_generation(&kernel, bundle, 1)?;
        kernel.switch(StateValue { generation: 1, serial: 1 })?;
        Ok(probe)
    }

    fn endpoint_of(&self, ip: IpAddr) -> Option<&ProbeEndpoint> {
        self.endpoints.iter().find(|e| e.addresses.contains(&ip))
    }

    /// The endpoint holding address `ip`, for running its programs.
    fn endpoint_holding(&mut self, ip: IpAddr) -> Result<&mut ProbeEndpoint, LoaderError> {
        self.endpoints
            .iter_mut()
            .find(|e| e.addresses.contains(&ip))
            .ok_or_else(|| LoaderError::Probe(format!("no endpoint of the bundle has address {ip}")))
    }

    /// Runs `frame` through `template`'s program of the endpoint holding
    /// address `ip`, `repeat` times; the return value and the kernel's mean
    /// time per run.
    pub fn run(
        &mut self,
        ip: IpAddr,
        template: Template,
        frame: &[u8],
        repeat: u32,
    ) -> Result<(u32, Duration), LoaderError> {
        let program = self.endpoint_holding(ip)?.loaded.program(template)?;
        let opts = TestRunOptions { data_in: Some(frame), repeat, ..TestRunOptions::default() };
        let result = program
            .test_run(opts)
            .map_err(|e| kernel(Operation::TestRun, "BPF_PROG_TEST_RUN", "BPF_PROG_TEST_RUN", e))?;
        Ok((result.return_value, result.duration))
    }

    /// Runs `frame` once through `template`'s program of the endpoint
    /// holding address `ip`: the return value and the frame as the program
    /// left it (for the service translation's rewrites).
    pub fn run_frame(&mut self, ip: IpAddr, template: Template, frame: &[u8]) -> Result<(u32, Vec<u8>), LoaderError> {
        let program = self.endpoint_holding(ip)?.loaded.program(template)?;
        // Room for a frame the program grows (an ICMP error is at most 70 bytes).
        let mut out = vec![0u8; frame.len().max(128) + 64];
        let opts = TestRunOptions { data_in: Some(frame), data_out: Some(&mut out), ..TestRunOptions::default() };
        let result = program
            .test_run(opts)
            .map_err(|e| kernel(Operation::TestRun, "BPF_PROG_TEST_RUN", "BPF_PROG_TEST_RUN", e))?;
        out.truncate(result.data_size_out as usize);
        Ok((result.return_value, out))
    }

    /// What the programs do with the first packet of `packet`'s connection.
    pub fn judge(&mut self, packet: &ProbePacket) -> Result<ProbeVerdict, LoaderError> {
        let frame = packet.to_bytes();
        let mut hook = |ip: IpAddr, template: Template| -> Result<Option<HookVerdict>, LoaderError> {
            let Some(endpoint) = self.endpoint_of(ip).map(|e| e.loaded.name.clone()) else { return Ok(None) };
            let (return_value, _) = self.run(ip, template, &frame, 1)?;
            Ok(Some(HookVerdict { endpoint, program: template.program_name(), return_value }))
        };
        let egress = hook(packet.src, Template::FromContainer)?;
        let ingress = hook(packet.dst, Template::ToContainer)?;
        Ok(ProbeVerdict { egress, ingress })
    }

    /// Forgets every tracked connection, so the next packet of any flow is
    /// judged by policy again.
    pub fn clear_conntrack(&self) -> Result<(), LoaderError> {
        clear::<{ size_of::<Ct4Key>() }>(&self.paths, "conntrack4")?;
        clear::<{ size_of::<CtKey>() }>(&self.paths, "conntrack6")?;
        Ok(())
    }
}

/// Removes every entry of the pinned hash map `name` (keys of `K` bytes).
fn clear<const K: usize>(paths: &Paths, name: &str) -> Result<(), LoaderError> {
    let path = paths.map(name);
    let data = MapData::from_pin(&path).map_err(|e| kernel(Operation::OpenMap, name, name, e))?;
    let map = Map::from_map_data(data).map_err(|e| kernel(Operation::OpenMap, name, name, e))?;
    let mut ct: HashMap<MapData, [u8; K], [u8; size_of::<CtValue>()]> =
        HashMap::try_from(map).map_err(|e| kernel(Operation::OpenMap, name, name, e))?;
    let keys: Vec<_> = ct.keys().filter_map(Result::ok).collect();
    for k in keys {
        ct.remove(&k).map_err(|e| kernel(Operation::DeleteEntry, name, name, e))?;
    }
    Ok(())
}

impl Drop for Probe {
    fn drop(&mut self) {
        // Best effort: pins of a scratch root; programs unload with their fds.
        for layout in policyc_ebpf::abi::MAPS {
            let _ = std::fs::remove_file(self.paths.map(layout.name));
        }
        let _ = std::fs::remove_dir(self.paths.maps());
        let _ = std::fs::remove_dir_all(self.paths.bodies());
        let _ = std::fs::remove_dir(&self.paths.root);
    }
}
