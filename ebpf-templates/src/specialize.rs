//! Per-endpoint specialization: a copy of a template object with its
//! `.rodata` settings overwritten. Only the bytes of the `config_*` symbols
//! change; the loader then loads the file as is, and the verifier sees the
//! settings as constants and prunes the branches they rule out.

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

/// Where each setting's bytes are in the file: `(symbol, file offset, size)`.
pub fn setting_offsets(template: &[u8]) -> Result<Vec<(&'static str, usize, usize)>, SpecializeError> {
    let file = object::File::parse(template).map_err(|e| SpecializeError::Parse(e.to_string()))?;
    let rodata = file.section_by_name(".rodata").ok_or(SpecializeError::MissingSymbol("config_endpoint_id"))?;
    let (section_offset, section_size) = rodata.file_range().ok_or_else(|| SpecializeError::BadSymbol {
        symbol: "config_endpoint_id",
        reason: "`.rodata` has no bytes in the file".into(),
    })?;
    EndpointConfig::default()
        .values()
        .into_iter()
        .map(|(symbol, bytes)| {
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

/// A copy of `template` with `config`'s values in its settings.
pub fn specialize(template: &[u8], config: &EndpointConfig) -> Result<Vec<u8>, SpecializeError> {
    let offsets = setting_offsets(template)?;
    let mut out = template.to_vec();
    for ((_, offset, size), (_, bytes)) in offsets.into_iter().zip(config.values()) {
        out[offset..offset + size].copy_from_slice(&bytes);
    }
    Ok(out)
}

/// Reads the settings back from a specialized object.
pub fn read_config(object: &[u8]) -> Result<EndpointConfig, SpecializeError> {
    let offsets = setting_offsets(object)?;
    let byte = |i: usize| object[offsets[i].1] != 0;
    let (_, id_offset, _) = offsets[0];
    let mut id = [0u8; 4];
    id.copy_from_slice(&object[id_offset..id_offset + 4]);
    Ok(EndpointConfig {
        endpoint_id: u32::from_ne_bytes(id),
        ingress_by_peer: byte(1),
        ingress_any_peer: byte(2),
        egress_by_peer: byte(3),
        egress_any_peer: byte(4),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Template;

    #[test]
    fn round_trips_every_setting_in_both_templates() {
        let config = EndpointConfig {
            endpoint_id: 0x1234,
            ingress_by_peer: true,
            ingress_any_peer: false,
            egress_by_peer: false,
            egress_any_peer: true,
        };
        for template in Template::ALL {
            let out = specialize(template.bytes(), &config).unwrap();
            assert_eq!(read_config(&out).unwrap(), config);
            assert_eq!(read_config(template.bytes()).unwrap(), EndpointConfig::default());
            // Only the settings' bytes differ.
            let changed = out.iter().zip(template.bytes()).filter(|(a, b)| a != b).count();
            assert!(changed <= 6, "{changed} bytes changed");
            assert_eq!(out.len(), template.bytes().len());
        }
    }

    #[test]
    fn refuses_an_object_without_settings() {
        assert_eq!(
            specialize(crate::EMPTY_PROGRAM, &EndpointConfig::default()),
            Err(SpecializeError::MissingSymbol("config_endpoint_id"))
        );
        assert!(matches!(specialize(b"not elf", &EndpointConfig::default()), Err(SpecializeError::Parse(_))));
    }
}
