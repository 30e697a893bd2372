//! Every program a node can run, through the running kernel's verifier:
//! both bodies with each of the 16 combinations of lookups (the settings
//! prune different branches, so each combination is a different program to
//! the verifier), and the stub with each lookups value, whose `bodies`
//! array then takes every body at the slot `Template::body_slot` names, as
//! the loader fills it. Needs root (CAP_BPF) and fails, saying so,
//! without it.
//!
//! The maps are pinned by name in a directory of this test's own under
//! `/sys/fs/bpf`, so that the 33 objects share one set of maps as a node's
//! do, and removed at the end.

use aya::maps::ProgramArray;
use aya::programs::{ProgramError, SchedClassifier};
use aya::{Ebpf, EbpfLoader};
use policyc_ebpf::abi::BODIES;
use policyc_ebpf::config::EndpointConfig;
use policyc_ebpf::specialize::{specialize_body, specialize_stub};
use policyc_ebpf::{Template, ENDPOINT_STUB};
use std::path::{Path, PathBuf};
use std::process::Command;

const BPFFS: &str = "/sys/fs/bpf";

/// Fails the test, loudly, where it cannot run; mounts bpffs if the
/// machine has not.
fn require_root_and_bpffs() {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let uid = status.lines().find_map(|l| l.strip_prefix("Uid:")).and_then(|l| l.split_whitespace().nth(1));
    assert_eq!(uid, Some("0"), "the verifier test needs root (CAP_BPF); run it as root, as .ci/run does");
    let mounted =
        |mounts: &str| mounts.lines().any(|l| l.split_whitespace().nth(1) == Some(BPFFS) && l.contains(" bpf "));
    if !mounted(&std::fs::read_to_string("/proc/mounts").expect("/proc/mounts")) {
        let ok = Command::new("mount").args(["-t", "bpf", "bpf", BPFFS]).status().is_ok_and(|s| s.success());
        assert!(ok, "bpffs is not mounted at `{BPFFS}` and `mount -t bpf bpf {BPFFS}` failed");
    }
}

/// This test's pin directory, removed (with everything pinned in it) when
/// dropped.
struct PinDir(PathBuf);

impl PinDir {
    fn new() -> PinDir {
        let dir = Path::new(BPFFS).join(format!("policyc-verifier-load-{}", std::process::id()));
        // A leftover of a killed run with the same pid holds stale maps.
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create `{}`: {e}", dir.display()));
        PinDir(dir)
    }
}

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Loads `object` with its maps pinned in `pins`, and each of its
/// programs `names` through the verifier; panics with the verifier's log
/// on a rejection.
fn load(loader: &mut EbpfLoader, pins: &Path, what: &str, object: &[u8], names: &[&str]) -> Ebpf {
    let mut ebpf = loader
        .default_map_pin_directory(pins)
        .load(object)
        .unwrap_or_else(|e| panic!("{what}: cannot load the object: {e}"));
    for name in names {
        let program: &mut SchedClassifier = ebpf
            .program_mut(name)
            .unwrap_or_else(|| panic!("{what}: no program `{name}`"))
            .try_into()
            .unwrap_or_else(|e| panic!("{what}: `{name}` is not a tc program: {e}"));
        match program.load() {
            Ok(()) => {}
            Err(ProgramError::LoadError { io_error, verifier_log }) => {
                panic!("{what}: the verifier rejects `{name}`: {io_error}\n{verifier_log}")
            }
            Err(e) => panic!("{what}: cannot load `{name}`: {e}"),
        }
    }
    ebpf
}

#[test]
fn every_body_variant_and_the_stub_pass_the_verifier() {
    require_root_and_bpffs();
    let pins = PinDir::new();
    let mut loader = EbpfLoader::new();
    let stub_programs = Template::ALL.map(Template::program_name);
    let mut stubs = Vec::new();
    for lookups in 0..16 {
        let config = EndpointConfig { endpoint_id: 1 + u32::from(lookups), ..EndpointConfig::of_lookups(lookups) };
        let object = specialize_stub(ENDPOINT_STUB, &config).expect("the stub has its settings");
        stubs.push(load(&mut loader, &pins.0, &format!("stub, lookups {lookups:#06b}"), &object, &stub_programs));
    }
    // The stubs share one `bodies` array, pinned by name by the first.
    let mut array = ProgramArray::try_from(stubs[0].map_mut(BODIES.name).expect("the stub has `bodies`"))
        .expect("`bodies` is a program array");
    let mut bodies = Vec::new();
    let mut filled = Vec::new();
    for template in Template::ALL {
        for lookups in 0..16 {
            let what = format!("{} body, lookups {lookups:#06b}", template.program_name());
            let object = specialize_body(template.bytes(), &EndpointConfig::of_lookups(lookups))
                .expect("the body has its settings");
            let mut body = load(&mut loader, &pins.0, &what, &object, &[template.program_name()]);
            let program: &mut SchedClassifier =
                body.program_mut(template.program_name()).expect("loaded above").try_into().expect("checked above");
            let slot = template.body_slot(lookups);
            array
                .set(slot, program.fd().expect("loaded"), 0)
                .unwrap_or_else(|e| panic!("{what}: the kernel refuses it at slot {slot} of `bodies`: {e}"));
            filled.push(slot);
            // Kept loaded until the end, as a node keeps its bodies.
            bodies.push(body);
        }
    }
    filled.sort_unstable();
    assert_eq!(filled, (0..BODIES.max_entries).collect::<Vec<_>>(), "the bodies fill every slot once");
}
