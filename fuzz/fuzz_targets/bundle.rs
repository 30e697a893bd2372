//! The bundle's parsers (`policyc-bundle`) on any text, as the loader
//! meets a bundle: every line kind and the manifest either parse or are
//! refused with an error, never a panic, and a line the parser accepts is
//! exactly what the writer makes of it (the format has one spelling per
//! entry, so two texts can never be the same kernel key).
#![no_main]

use libfuzzer_sys::fuzz_target;
use policyc_bundle::endpoints::EndpointLine;
use policyc_bundle::identities::IdentityLine;
use policyc_bundle::ipcache::IpcacheLine;
use policyc_bundle::manifest::Manifest;
use policyc_bundle::policy::PolicyLine;
use policyc_bundle::rules::RuleLine;
use std::fmt::Display;

/// Each accepted line, printed, gives back its text.
fn same_text<L: Display>(text: &str, lines: Result<Vec<L>, impl Display>) {
    if let Ok(lines) = lines {
        let printed: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let expected: String = text.split_terminator('\n').map(|l| format!("{l}\n")).collect();
        assert_eq!(printed, expected, "accepted lines print differently");
    }
}

fuzz_target!(|input: (u8, &str)| {
    let (kind, text) = input;
    match kind % 6 {
        0 => same_text(text, IpcacheLine::parse_all("ipcache.txt", 1, text)),
        1 => same_text(text, EndpointLine::parse_all("endpoints.txt", 1, text)),
        2 => same_text(text, PolicyLine::parse_all("policy/256.txt", 1, text)),
        3 => same_text(text, RuleLine::parse_all("rules.txt", 1, text)),
        4 => same_text(text, IdentityLine::parse_all("identities.txt", text)),
        _ => {
            let _ = Manifest::from_json(text).map_err(|e| e.to_string());
        }
    }
});
