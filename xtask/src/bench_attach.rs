//! `cargo xtask bench attach`: the cost of attaching programs from scratch
//! by attach mechanism (tcx one after the other, tcx in threads, legacy tc
//! cls_bpf), with the kernel's default RCU settings (root).
//!
//! The measurement is the ignored test `runtime-loader/tests/bench_attach.rs`;
//! its module docs say what each row measures and why the mechanisms
//! differ.

/// Runs the attach benchmark and prints its table.
pub fn run() -> Result<(), String> {
    crate::cargo(&["test", "-p", "policyc-loader", "--test", "bench_attach", "--", "--ignored", "--nocapture"], &[])
}
