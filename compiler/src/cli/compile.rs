//! `policyc compile`: the arguments become [`CompileOptions`], the library
//! ([`crate::compile`]) does the work, and this renders what it reports.

use super::{report, CompileArgs, EXIT_ERRORS, EXIT_OK, EXIT_USAGE};
use crate::compile::{check, Built, CompileError, CompileOptions, Inputs, NodeStats, Output};
use crate::diag::render::{render, Format};
use crate::pipeline::Loaded;
use std::mem::ManuallyDrop;

/// Runs `compile`.
pub fn run(args: &CompileArgs) -> u8 {
    let output = match &args.out {
        Some(out) if !args.dry_run => Output::Directory(out.clone()),
        _ => Output::DryRun,
    };
    let options = CompileOptions {
        lint: args.lint.clone(),
        node: args.node.clone(),
        previous: args.previous.clone(),
        policy_map_capacity: args.policy_map_capacity,
        output,
    };
    // The model is not freed: `policyc compile` exits right after, and
    // freeing a large cluster's millions of small allocations one by one
    // took 6% of its compile time; the system takes the memory back at once.
    let mut checked = ManuallyDrop::new(match check(Inputs::Paths(args.paths.clone()), &options.lint) {
        Ok(checked) => checked,
        Err(e) => return fail(None, e, args.format),
    });
    // Human diagnostics are shown as soon as they are known; a machine
    // format (JSON, SARIF, GitHub) is one document holding every
    // diagnostic, an emission's too, printed once the compile is over.
    let machine = args.format != Format::Human;
    if !machine {
        report(&checked.loaded, args.format);
    }
    let mut built = ManuallyDrop::new(match checked.build(&options) {
        Ok(built) => built,
        Err(e) => return fail(Some(&checked.loaded), e, args.format),
    });
    if machine {
        report(&checked.loaded, args.format);
    }
    eprint!("{}", summary(&checked.loaded, &built));
    if !built.is_staged() {
        eprintln!("dry run: nothing written");
        if args.timings {
            eprint!("{}", checked.timings.line());
        }
        return EXIT_OK;
    }
    match checked.commit(&mut built) {
        Ok(dirs) => {
            for dir in dirs {
                eprintln!("wrote {}", dir.display());
            }
            if args.timings {
                eprint!("{}", checked.timings.line());
            }
            EXIT_OK
        }
        Err(e) => fail(Some(&checked.loaded), e, args.format),
    }
}

/// Reports why no bundle was written (in a machine format, the input's
/// diagnostics with it where there are any); the exit code.
fn fail(loaded: Option<&Loaded>, e: CompileError, format: Format) -> u8 {
    let machine = format != Format::Human;
    match (e, loaded) {
        (CompileError::Rejected(rejected), Some(loaded)) => {
            // What the build itself refused (E0350: admin tiers the
            // datapath does not enforce) is not among the input's
            // diagnostics, which were shown already in human form.
            let extra: Vec<_> = rejected.diagnostics.into_iter().filter(|d| !loaded.diagnostics.contains(d)).collect();
            if machine {
                let mut all = loaded.diagnostics.clone();
                all.extend(extra);
                all.sort();
                print!("{}", render(&all, format, &loaded.input.sources));
            } else if !extra.is_empty() {
                eprint!("{}", render(&extra, format, &loaded.input.sources));
            }
            EXIT_ERRORS
        }
        (CompileError::Emit(failure), Some(loaded)) => match failure.diagnostic {
            Some(d) if machine => {
                let mut all = loaded.diagnostics.clone();
                all.push(d);
                print!("{}", render(&all, format, &loaded.input.sources));
                EXIT_ERRORS
            }
            Some(d) => {
                eprint!("{}", render(&[d], format, &loaded.input.sources));
                EXIT_ERRORS
            }
            None => {
                if machine {
                    report(loaded, format);
                }
                eprintln!("error: {}", failure.error);
                EXIT_ERRORS
            }
        },
        (e @ (CompileError::Options(_) | CompileError::Previous(_)), _) => {
            eprintln!("error: {e}");
            EXIT_USAGE
        }
        (e, _) => {
            eprintln!("error: {e}");
            EXIT_ERRORS
        }
    }
}

/// What a compile produced, per node.
fn summary(loaded: &Loaded, built: &Built) -> String {
    let c = &loaded.lowered.cluster;
    let resolved = &built.resolved;
    let mut out = format!(
        "{} endpoint(s), {} policy spec(s), {} identities ({} cluster-local, {} CIDR), {} ipcache entries\n",
        c.endpoints.len(),
        c.written_policies().count(),
        resolved.identities.len(),
        resolved.table.len(),
        resolved.cidr_identities.len(),
        resolved.ipcache.len()
    );
    for s in &built.nodes {
        out.push_str(&node_line(s));
    }
    out
}

/// One node's line of the summary.
fn node_line(s: &NodeStats) -> String {
    format!(
        "node {}: {} local endpoint(s), {} policy entries (largest map {}), {} program(s), {} file(s), {} bytes\n",
        s.node, s.endpoints, s.entries, s.largest, s.programs, s.files, s.bytes
    )
}
