//! What `policyc lint` does with a text: read, decode and check every
//! object, lower them to the cluster model, run the lint rules, and render
//! the diagnostics in every format.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policyc::diag::render::{render, Format};
use policyc::front::Input;
use policyc::lint::LintOptions;
use policyc::pipeline::load_input;

fuzz_target!(|text: &str| {
    let mut input = Input::default();
    input.add_source("fuzz.yaml", text.to_string());
    let mut loaded = load_input(input);
    let options = LintOptions::default();
    policyc::lint::run(&mut loaded, &options);
    let _ = policyc::lint::fails(&loaded, &options);
    for format in [Format::Human, Format::Json, Format::Sarif, Format::Github] {
        let _ = render(&loaded.diagnostics, format, &loaded.input.sources);
    }
});
