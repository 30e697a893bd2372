//! **Check**: everything an apply reads before it decides, and nothing
//! written.

use super::*;

/// The host-side interface of each endpoint that has addresses.
fn interfaces(
    kernel: &impl Kernel,
    endpoints: &[BundleEndpoint],
    options: &ApplyOptions,
) -> Result<BTreeMap<String, String>, LoaderError> {
    // The route tables are read only if an endpoint needs them.
    let routed = endpoints.iter().any(|e| !e.addresses.is_empty() && !options.interfaces.contains_key(&e.name));
    let routes = if routed { kernel.host_routes()? } else { Vec::new() };
    let present = kernel.host_interfaces()?;
    let mut out = BTreeMap::new();
    for e in endpoints.iter().filter(|e| !e.addresses.is_empty()) {
        let interface = match options.interfaces.get(&e.name) {
            Some(name) => name.clone(),
            None => {
                let ip = e.addresses[0];
                let reason = |covering: Option<&route::Route>| match covering {
                    Some(r) => format!(
                        "no host route to {ip}, only `{}/{}` via `{}`, which names no pod's interface",
                        r.dest, r.prefix_len, r.interface
                    ),
                    None => format!("no host route to {ip}"),
                };
                route::interface_for(&routes, ip)
                    .map_err(|covering| LoaderError::Interface { endpoint: e.name.clone(), reason: reason(covering) })?
                    .to_string()
            }
        };
        if !present.contains(&interface) {
            return Err(LoaderError::Interface {
                endpoint: e.name.clone(),
                reason: format!("interface `{interface}` does not exist"),
            });
        }
        out.insert(e.name.clone(), interface);
    }
    Ok(out)
}

/// What the check found, for the phases that follow.
pub(super) struct Ready<'a> {
    pub(super) record: Record,
    /// The datapath maps pinned before this apply.
    pub(super) existed: Vec<&'static str>,
    /// Whether the record describes the maps (its serial is the slot's).
    pub(super) trusted: bool,
    /// The generation this apply writes.
    pub(super) target: u8,
    pub(super) plans: Vec<EndpointPlan<'a>>,
    pub(super) departed: Vec<(String, RecordedEndpoint)>,
}

pub(super) enum Checked<'a> {
    /// The desired state is in force already: nothing to do.
    InForce(ApplyReport),
    Go(Ready<'a>),
}

impl<'a, K: Kernel> Run<'a, K> {
    /// **Check** (no writes): the record, the pinned maps, each local
    /// endpoint's interface; what each endpoint's programs need.
    pub(super) fn check(&mut self) -> Result<Checked<'a>, LoaderError> {
        let (kernel, paths, options) = (self.kernel, self.paths, self.options);
        let manifest = self.desired.manifest();
        let record = match Record::read(paths) {
            Ok(r) => r.unwrap_or_default(),
            Err(_) if options.reconcile => Record::default(),
            Err(e) => return Err(e),
        };
        let existed = kernel.existing_maps()?;
        let state = if existed.contains(&"state") { kernel.read_state()? } else { StateValue::default() };
        let trusted = record.serial == state.serial && existed.len() == policyc_ebpf::abi::MAPS.len();
        let interfaces = interfaces(kernel, self.desired.endpoints(), options)?;
        let active = (state.generation & 1) as u8;
        let known = options.known.as_ref().filter(|_| !options.reconcile);
        let listed = || listed_ids(kernel, &record, trusted, active, &existed, known);
        let plans = plan_programs(kernel, self.desired, &interfaces, &record, paths, listed)?;
        let departed: Vec<(String, RecordedEndpoint)> = record
            .endpoints
            .iter()
            .filter(|(name, _)| !interfaces.contains_key(*name))
            .map(|(n, r)| (n.clone(), r.clone()))
            .collect();
        let in_force = trusted
            && !options.reconcile
            && record.bundle_hash == manifest.hash
            && record.generations[usize::from(record.generation)].as_deref() == Some(manifest.hash.as_str())
            && u32::from(record.generation) == state.generation
            && plans.is_empty()
            && departed.is_empty()
            && record.unfinished.is_empty();
        if in_force {
            return Ok(Checked::InForce(ApplyReport {
                bundle_hash: manifest.hash.clone(),
                unchanged: true,
                generation: record.generation,
                ..Default::default()
            }));
        }
        self.phases.mark("check");
        let target = 1 - (state.generation & 1) as u8;
        Ok(Checked::Go(Ready { record, existed, trusted, target, plans, departed }))
    }
}
