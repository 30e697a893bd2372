//! The benchmarks that need root and the kernel: each is an ignored test
//! of `policyc-loader` whose module docs say exactly what each row
//! measures. Times come from the kernel (or, for the agent, from the agent
//! binary of the test profile), and each runs alone so that nothing else
//! of the suite shares the machine with it.
//!
//! - `bench datapath` (`runtime-loader/tests/bench_datapath.rs`): per-packet
//!   cost of the tc programs with `BPF_PROG_TEST_RUN` beside the empty
//!   program and the reference programs timed in the same run, by policy
//!   and ipcache size.
//! - `bench attach` (`runtime-loader/tests/bench_attach.rs`): attaching
//!   from scratch by mechanism (tcx one after the other, tcx in threads,
//!   legacy tc cls_bpf) with the kernel's default RCU settings, then the
//!   loader's own `apply` from scratch of 1 000 endpoints (`--attach tc`;
//!   `--attach tcx` on 100, scaled).
//! - `bench agent` (`runtime-loader/tests/agent_bench.rs`, needs
//!   `containernetworking-plugins`): a pod's CNI ADD to its policy in
//!   force at 100 local pods, one series per `run --attach` mechanism
//!   (tcx first, the baseline), then at 1 000 local pods, beside 150 000
//!   cluster pods, and under churn, with the agent's resident memory.

/// Each kernel benchmark's name on the command line and its ignored test.
const KERNEL_BENCHES: &[(&str, &str)] =
    &[("datapath", "bench_datapath"), ("attach", "bench_attach"), ("agent", "agent_bench")];

/// The ignored test behind the kernel benchmark `name`, if it is one.
pub fn test_of(name: &str) -> Option<&'static str> {
    KERNEL_BENCHES.iter().find(|(bench, _)| *bench == name).map(|(_, test)| *test)
}

/// Runs the ignored test `test` of `policyc-loader` and prints its figures.
pub fn run(test: &str) -> Result<(), String> {
    crate::cargo(
        &["test", "-p", "policyc-loader", "--test", test, "--", "--ignored", "--nocapture", "--test-threads=1"],
        &[],
    )
}
