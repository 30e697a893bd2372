//! The `--select` grammar on any text: a query parses or is an error that
//! points inside it, and a parsed query prints as a query that parses to
//! the same selector.
#![no_main]

use libfuzzer_sys::fuzz_target;
use policyc::select::parse_selector;

fuzz_target!(|text: &str| {
    match parse_selector(text) {
        Ok(selector) if selector.requirements.is_empty() => {}
        Ok(selector) => {
            let printed = selector.to_string();
            let again = parse_selector(&printed).unwrap_or_else(|e| panic!("{text:?} printed as {printed:?}: {e}"));
            assert_eq!(again, selector, "{text:?} printed as {printed:?}");
        }
        Err(e) => {
            assert!(e.column >= 1 && e.column <= text.chars().count() + 1, "column {} of {text:?}", e.column);
            let _ = e.to_string();
        }
    }
});
