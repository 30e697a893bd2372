//! `policyc compile`.

use super::{report, CompileArgs, EXIT_ERRORS, EXIT_OK};
use crate::pipeline::load;

/// Runs `compile`: checks the input; bundle emission lands with the emitter.
pub fn run(args: &CompileArgs) -> u8 {
    let loaded = load(&args.paths);
    if report(&loaded, args.format) {
        return EXIT_ERRORS;
    }
    EXIT_OK
}
