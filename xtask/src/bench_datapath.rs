//! `cargo xtask bench datapath`: per-packet cost of the tc programs with
//! `BPF_PROG_TEST_RUN`, beside the empty program timed in the same run, at
//! 10 / 1 000 / 100 000 policy entries and 100 / 100 000 ipcache entries.
//!
//! The measurement is the ignored test `runtime-loader/tests/bench_datapath.rs`
//! (it needs root and the loader's scratch-root probe); its module docs say
//! exactly what each row measures. Times come from the kernel, so the
//! test's own build profile does not matter.

/// Runs the datapath benchmark and prints its table.
pub fn run() -> Result<(), String> {
    crate::cargo(
        &[
            "test",
            "-p",
            "policyc-loader",
            "--test",
            "bench_datapath",
            "--",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ],
        &[],
    )
}
