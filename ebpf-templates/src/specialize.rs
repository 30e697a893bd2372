//! Specialization: a copy of an object with its `.rodata` settings
//! overwritten, for a body (its lookups) or an endpoint's stub (its id and
//! lookups). Only the bytes of the `config_*` symbols change; the loader
//! then loads the copy as is, and the verifier sees the settings as
//! constants and prunes the branches they rule out.

use crate::config::EndpointConfig;
use object::{Object, ObjectSection, ObjectSymbol};
use std::fmt;

/// Why a template cannot be specialized (a template built without the
/// expected settings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SpecializeError {
    /// The bytes are not an ELF object.
    Parse(String),
    /// A setting's symbol is missing.
    MissingSymbol(&'static str),
    /// A setting's symbol is not in `.rodata` or has the wrong size.
    BadSymbol {
        /// The symbol.
        symbol: &'static str,
        /// What is wrong.
        reason: String,
    },
}

impl fmt::Display for SpecializeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecializeError::Parse(e) => write!(f, "template is not a valid ELF object: {e}"),
            SpecializeError::MissingSymbol(s) => write!(f, "template has no setting `{s}`"),
            SpecializeError::BadSymbol { symbol, reason } => write!(f, "template setting `{symbol}`: {reason}"),
        }
    }
}

impl std::error::Error for SpecializeError {}

/// Where each of `settings` (`(symbol, bytes)`) is in the file:
/// `(symbol, file offset, size)`, in the same order.
fn setting_offsets(
    object: &[u8],
    settings: &[(&'static str, Vec<u8>)],
) -> Result<Vec<(&'static str, usize, usize)>, SpecializeError> {
    let file = object::File::parse(object).map_err(|e| SpecializeError::Parse(e.to_string()))?;
    let first = settings.first().map_or("", |(s, _)| s);
    let rodata = file.section_by_name(".rodata").ok_or(SpecializeError::MissingSymbol(first))?;
    let (section_offset, section_size) = rodata.file_range().ok_or_else(|| SpecializeError::BadSymbol {
        symbol: first,
        reason: "`.rodata` has no bytes in the file".into(),
    })?;
    settings
        .iter()
        .map(|&(symbol, ref bytes)| {
            let sym = file.symbol_by_name(symbol).ok_or(SpecializeError::MissingSymbol(symbol))?;
            let bad = |reason: String| SpecializeError::BadSymbol { symbol, reason };
            if sym.section_index() != Some(rodata.index()) {
                return Err(bad("not in `.rodata` (declare it `volatile const`)".into()));
            }
            if sym.size() != bytes.len() as u64 {
                return Err(bad(format!("{} bytes, expected {}", sym.size(), bytes.len())));
            }
            // In a relocatable object a symbol's address is its offset in
            // its section.
            let offset = sym.address();
            if offset + sym.size() > section_size {
                return Err(bad("lies outside `.rodata`".into()));
            }
            Ok((symbol, (section_offset + offset) as usize, bytes.len()))
        })
        .collect()
}

/// A copy of `object` with `settings` (`(symbol, bytes)`) written in.
fn specialize(object: &[u8], settings: &[(&'static str, Vec<u8>)]) -> Result<Vec<u8>, SpecializeError> {
    let offsets = setting_offsets(object, settings)?;
    let mut out = object.to_vec();
    for ((_, offset, size), (_, bytes)) in offsets.into_iter().zip(settings) {
        out[offset..offset + size].copy_from_slice(bytes);
    }
    Ok(out)
}

/// A copy of body `template` making the lookups of `config`.
pub fn specialize_body(template: &[u8], config: &EndpointConfig) -> Result<Vec<u8>, SpecializeError> {
    specialize(template, &config.body_values())
}

/// A copy of the stub `endpoint.o` (`stub`) for the endpoint of `config`.
pub fn specialize_stub(stub: &[u8], config: &EndpointConfig) -> Result<Vec<u8>, SpecializeError> {
    specialize(stub, &config.stub_values())
}

/// The bytes of each of `settings`' symbols in `object`.
fn read_settings(object: &[u8], settings: &[(&'static str, Vec<u8>)]) -> Result<Vec<Vec<u8>>, SpecializeError> {
    Ok(setting_offsets(object, settings)?.into_iter().map(|(_, at, size)| object[at..at + size].to_vec()).collect())
}

/// Reads the lookups back from a specialized body.
pub fn read_body_config(object: &[u8]) -> Result<EndpointConfig, SpecializeError> {
    let flags = read_settings(object, &EndpointConfig::default().body_values())?;
    let lookups = flags.iter().enumerate().fold(0, |bits, (i, b)| bits | u8::from(b[0] != 0) << i);
    Ok(EndpointConfig::of_lookups(lookups))
}

/// Reads the endpoint id and lookups back from a specialized stub.
pub fn read_stub_config(object: &[u8]) -> Result<EndpointConfig, SpecializeError> {
    let values = read_settings(object, &EndpointConfig::default().stub_values())?;
    let mut id = [0u8; 4];
    id.copy_from_slice(&values[0]);
    Ok(EndpointConfig { endpoint_id: u32::from_ne_bytes(id), ..EndpointConfig::of_lookups(values[1][0]) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Template, ENDPOINT_STUB};

    const CONFIG: EndpointConfig = EndpointConfig {
        endpoint_id: 0x1234,
        ingress_by_peer: true,
        ingress_any_peer: false,
        egress_by_peer: false,
        egress_any_peer: true,
    };

    /// The bytes of `b` that differ from `a` (same length).
    fn changed(a: &[u8], b: &[u8]) -> usize {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).filter(|(x, y)| x != y).count()
    }

    #[test]
    fn round_trips_the_lookups_of_both_bodies() {
        for template in Template::ALL {
            let out = specialize_body(template.bytes(), &CONFIG).unwrap();
            assert_eq!(read_body_config(&out).unwrap(), EndpointConfig { endpoint_id: 0, ..CONFIG });
            assert_eq!(read_body_config(template.bytes()).unwrap(), EndpointConfig::default());
            assert!(changed(template.bytes(), &out) <= 4);
        }
        for lookups in 0..16 {
            assert_eq!(EndpointConfig::of_lookups(lookups).lookups(), lookups);
        }
    }

    #[test]
    fn round_trips_the_stub_settings() {
        let out = specialize_stub(ENDPOINT_STUB, &CONFIG).unwrap();
        assert_eq!(read_stub_config(&out).unwrap(), CONFIG);
        assert_eq!(read_stub_config(ENDPOINT_STUB).unwrap(), EndpointConfig::default());
        assert!(changed(ENDPOINT_STUB, &out) <= 5);
    }

    #[test]
    fn refuses_an_object_without_settings() {
        assert_eq!(
            specialize_stub(crate::EMPTY_PROGRAM, &CONFIG),
            Err(SpecializeError::MissingSymbol("config_endpoint_id"))
        );
        assert_eq!(
            specialize_body(ENDPOINT_STUB, &CONFIG),
            Err(SpecializeError::MissingSymbol("config_ingress_by_peer"))
        );
        assert!(matches!(specialize_body(b"not elf", &CONFIG), Err(SpecializeError::Parse(_))));
    }
}
