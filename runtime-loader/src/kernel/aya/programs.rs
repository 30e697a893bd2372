//! Loading programs through the verifier, against the pinned maps (created
//! and pinned by name on first use).
//!
//! What an endpoint's hooks run is its stub (`endpoint.c`, a handful of
//! instructions with the endpoint's id and lookups), which tail-calls a
//! body from the `bodies` program array of the bundle's templates. Bodies
//! are loaded once per (template, lookups) and kept in the array and pinned
//! beside it ([`crate::paths::Paths::bodies_of`]), so an apply verifies
//! only the bodies no earlier apply filled and one stub per changed
//! endpoint.

use crate::error::{kernel, LoaderError, Operation};
use crate::manifest::Templates;
use crate::paths::Paths;
use aya::maps::{Map, MapData, ProgramArray};
use aya::programs::{ProgramError, SchedClassifier};
use aya::{Ebpf, EbpfLoader};
use policyc_ebpf::config::EndpointConfig;
use policyc_ebpf::specialize::specialize_stub;
use policyc_ebpf::{Template, ENDPOINT_STUB};
use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// One endpoint's stub, loaded and verified, not attached: both of its
/// programs (`from_container`, `to_container`).
#[derive(Debug)]
pub struct LoadedEndpoint {
    /// The endpoint's name.
    pub name: String,
    /// The stub object.
    pub stub: Ebpf,
}

impl LoadedEndpoint {
    /// The loaded stub program of `template`.
    pub fn program(&mut self, template: Template) -> Result<&mut SchedClassifier, LoaderError> {
        program_of(&mut self.stub, template.program_name())
    }
}

fn program_of<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut SchedClassifier, LoaderError> {
    let program =
        ebpf.program_mut(name).ok_or_else(|| LoaderError::Object(format!("`{name}` is not in the object")))?;
    program.try_into().map_err(|e: ProgramError| kernel(Operation::LoadProgram, name, name, e))
}

thread_local! {
    /// One aya loader per thread, reused: `EbpfLoader::new` parses the
    /// kernel's BTF (`/sys/kernel/btf/vmlinux`, megabytes), which cost about
    /// 10 ms per program when every load made its own.
    static LOADER: RefCell<EbpfLoader<'static>> = RefCell::new(EbpfLoader::new());
}

/// Loads `object` and verifies its programs `names` (`what` in errors);
/// maps come from (or are pinned into) the loader's maps directory, and
/// the stub's `bodies` from `bodies` when given.
fn load(paths: &Paths, what: &str, object: &[u8], names: &[&str], bodies: Option<&Path>) -> Result<Ebpf, LoaderError> {
    std::fs::create_dir_all(paths.maps()).map_err(|e| {
        kernel(
            Operation::CreateDirectory,
            paths.maps().display(),
            format!("cannot create `{}`", paths.maps().display()),
            e,
        )
    })?;
    let mut ebpf = LOADER
        .with_borrow_mut(|loader| {
            loader.default_map_pin_directory(paths.maps());
            if let Some(array) = bodies {
                loader.map_pin_path(policyc_ebpf::abi::BODIES.name, array.to_path_buf());
            }
            loader.load(object)
        })
        .map_err(|e| kernel(Operation::LoadObject, what, format!("cannot load the objects of {what}"), e))?;
    for name in names {
        program_of(&mut ebpf, name)?.load().map_err(|e| match e {
            ProgramError::LoadError { io_error, verifier_log } => LoaderError::Verifier {
                of: what.to_string(),
                program: name.to_string(),
                error: io_error.to_string(),
                errno: io_error.raw_os_error(),
                log: verifier_log.to_string(),
            },
            other => kernel(Operation::LoadProgram, what, format!("cannot load `{name}` of {what}"), other),
        })?;
    }
    Ok(ebpf)
}

/// Loads each item on every core, the first alone: it creates and pins
/// the maps that do not exist yet, which the others then open.
fn load_each<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> Result<R, LoaderError> + Sync,
) -> Result<Vec<R>, LoaderError> {
    let Some((first, rest)) = items.split_first() else { return Ok(Vec::new()) };
    let first = f(first)?;
    let rest = policyc_ir::parallel::try_map(rest, f)?;
    Ok(std::iter::once(first).chain(rest).collect())
}

/// The pin of a body's program in its array's directory.
fn body_pin(dir: &Path, slot: u32) -> PathBuf {
    dir.join(slot.to_string())
}

/// The pin of the program array in a bodies directory.
fn array_pin(dir: &Path) -> PathBuf {
    dir.join("array")
}

/// Puts the bodies of `templates` that the stubs of `jobs` call in their
/// array in `dir`, loading those no earlier apply put there (a slot is
/// filled before its body is pinned, so a pinned body is a filled slot).
fn fill_bodies(
    paths: &Paths,
    templates: &Templates,
    jobs: &[(&str, EndpointConfig)],
    dir: &Path,
) -> Result<(), LoaderError> {
    // Each missing slot, with the first endpoint that calls it (for errors).
    let mut needed: BTreeMap<u32, (Template, u8, &str)> = BTreeMap::new();
    for (name, config) in jobs {
        for t in Template::ALL {
            let slot = t.body_slot(config.lookups());
            if !body_pin(dir, slot).exists() {
                needed.entry(slot).or_insert((t, config.lookups(), name));
            }
        }
    }
    if needed.is_empty() {
        return Ok(());
    }
    let needed: Vec<(u32, (Template, u8, &str))> = needed.into_iter().collect();
    let mut loaded = load_each(&needed, |&(slot, (template, lookups, endpoint))| {
        let object = templates.body(template, lookups)?;
        let what = format!("the body (slot {slot}) that endpoint `{endpoint}` calls");
        load(paths, &what, &object, &[template.program_name()], None)
    })?;
    let pin = array_pin(dir);
    let what = || format!("cannot use `{}`", pin.display());
    let data = MapData::from_pin(&pin).map_err(|e| kernel(Operation::FillBody, pin.display(), what(), e))?;
    let mut array = ProgramArray::try_from(Map::ProgramArray(data))
        .map_err(|e| kernel(Operation::FillBody, pin.display(), what(), e))?;
    for ((slot, (template, _, _)), ebpf) in needed.iter().zip(&mut loaded) {
        let body = program_of(ebpf, template.program_name())?;
        let fd = body.fd().map_err(|e| kernel(Operation::FillBody, slot, format!("body {slot}"), e))?;
        array
            .set(*slot, fd, 0)
            .map_err(|e| kernel(Operation::FillBody, slot, format!("cannot fill slot {slot} of the bodies"), e))?;
        body.pin(body_pin(dir, *slot))
            .map_err(|e| kernel(Operation::FillBody, slot, format!("cannot pin body {slot}"), e))?;
    }
    Ok(())
}

/// Loads the stubs of each `(endpoint, settings)` in `jobs`, in order,
/// verifying on every core, and puts the bodies they call in place. On
/// failure, a bodies directory this call made is removed again.
pub fn load_endpoints(
    paths: &Paths,
    templates: &Templates,
    jobs: &[(&str, EndpointConfig)],
) -> Result<Vec<LoadedEndpoint>, LoaderError> {
    if jobs.is_empty() {
        return Ok(Vec::new());
    }
    let dir = paths.bodies_of(templates.digest());
    let created = !dir.exists();
    let loaded = load_stubs_and_bodies(paths, templates, jobs, &dir);
    if loaded.is_err() && created {
        // Best effort: the load is failing already, with its own error.
        let _ = std::fs::remove_dir_all(&dir);
    }
    loaded
}

fn load_stubs_and_bodies(
    paths: &Paths,
    templates: &Templates,
    jobs: &[(&str, EndpointConfig)],
    dir: &Path,
) -> Result<Vec<LoadedEndpoint>, LoaderError> {
    std::fs::create_dir_all(dir).map_err(|e| {
        kernel(Operation::CreateDirectory, dir.display(), format!("cannot create `{}`", dir.display()), e)
    })?;
    let array = array_pin(dir);
    let names = Template::ALL.map(Template::program_name);
    // The first stub creates and pins the array the bodies go in.
    let stubs = load_each(jobs, |(name, config)| {
        let object = specialize_stub(ENDPOINT_STUB, config)
            .map_err(|e| LoaderError::Object(format!("the endpoint stub: {e}")))?;
        let stub = load(paths, &format!("endpoint `{name}`"), &object, &names, Some(&array))?;
        Ok(LoadedEndpoint { name: name.to_string(), stub })
    })?;
    fill_bodies(paths, templates, jobs, dir)?;
    Ok(stubs)
}

/// Loads the stub of endpoint `name` with `config`, and its bodies.
pub fn load_endpoint(
    paths: &Paths,
    name: &str,
    templates: &Templates,
    config: &EndpointConfig,
) -> Result<LoadedEndpoint, LoaderError> {
    let mut loaded = load_endpoints(paths, templates, &[(name, *config)])?;
    loaded.pop().ok_or_else(|| LoaderError::Object(format!("`{name}`: nothing loaded")))
}

/// Unpins the bodies of every pair of templates but `keep` (their arrays
/// and programs), once no attached stub calls them.
pub fn remove_bodies_except(paths: &Paths, keep: &BTreeSet<String>) -> Result<(), LoaderError> {
    let kept: BTreeSet<PathBuf> = keep.iter().map(|d| paths.bodies_of(d)).collect();
    let Ok(dirs) = std::fs::read_dir(paths.bodies()) else { return Ok(()) };
    for dir in dirs.filter_map(|d| d.ok()).map(|d| d.path()) {
        if !kept.contains(&dir) {
            std::fs::remove_dir_all(&dir)
                .map_err(|e| kernel(Operation::Unpin, dir.display(), format!("cannot unpin `{}`", dir.display()), e))?;
        }
    }
    Ok(())
}
