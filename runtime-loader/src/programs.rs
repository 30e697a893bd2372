//! Loading an endpoint's programs through the verifier, against the pinned
//! maps (created and pinned by name on first use).

use crate::error::{kernel, LoaderError};
use crate::manifest::Templates;
use crate::paths::Paths;
use aya::programs::{ProgramError, SchedClassifier};
use aya::{Ebpf, EbpfLoader};
use policyc_ebpf::config::EndpointConfig;
use policyc_ebpf::Template;

/// One endpoint's programs, loaded and verified, not attached.
#[derive(Debug)]
pub struct LoadedEndpoint {
    /// The endpoint's name.
    pub name: String,
    /// `from_container`.
    pub from: Ebpf,
    /// `to_container`.
    pub to: Ebpf,
}

impl LoadedEndpoint {
    /// The loaded program of `template`.
    pub fn program(&mut self, template: Template) -> Result<&mut SchedClassifier, LoaderError> {
        let ebpf = match template {
            Template::FromContainer => &mut self.from,
            Template::ToContainer => &mut self.to,
        };
        let name = template.program_name();
        let program =
            ebpf.program_mut(name).ok_or_else(|| LoaderError::Kernel(format!("`{name}` is not in the object")))?;
        program.try_into().map_err(|e: ProgramError| kernel(name, e))
    }
}

/// Loads `object` (program `template`) for `endpoint`; maps come from (or
/// are pinned into) the loader's maps directory.
pub fn load(paths: &Paths, endpoint: &str, template: Template, object: &[u8]) -> Result<Ebpf, LoaderError> {
    std::fs::create_dir_all(paths.maps())
        .map_err(|e| kernel(format!("cannot create `{}`", paths.maps().display()), e))?;
    let mut ebpf = EbpfLoader::new()
        .default_map_pin_directory(paths.maps())
        .load(object)
        .map_err(|e| kernel(format!("cannot load the objects of `{endpoint}`"), e))?;
    let name = template.program_name();
    let program: &mut SchedClassifier = ebpf
        .program_mut(name)
        .ok_or_else(|| LoaderError::Kernel(format!("`{name}` is not in the object")))?
        .try_into()
        .map_err(|e: ProgramError| kernel(name, e))?;
    program.load().map_err(|e| match e {
        ProgramError::LoadError { io_error, verifier_log } => LoaderError::Verifier {
            endpoint: endpoint.to_string(),
            program: name.to_string(),
            error: io_error.to_string(),
            log: verifier_log.to_string(),
        },
        other => kernel(format!("cannot load `{name}` of `{endpoint}`"), other),
    })?;
    Ok(ebpf)
}

/// Loads both programs of endpoint `name`: `templates` with `config`
/// written in.
pub fn load_endpoint(
    paths: &Paths,
    name: &str,
    templates: &Templates,
    config: &EndpointConfig,
) -> Result<LoadedEndpoint, LoaderError> {
    Ok(LoadedEndpoint {
        name: name.to_string(),
        from: load(paths, name, Template::FromContainer, &templates.program(Template::FromContainer, config)?)?,
        to: load(paths, name, Template::ToContainer, &templates.program(Template::ToContainer, config)?)?,
    })
}
