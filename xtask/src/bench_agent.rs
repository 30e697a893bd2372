//! `cargo xtask bench agent`: time from a pod's CNI ADD to its policy in
//! force, at 100 local pods made with the reference `ptp` plugin and
//! `policyc-cni`, and the agent's resident memory.
//!
//! The measurement is the ignored test `runtime-loader/tests/agent_bench.rs`
//! (root, `containernetworking-plugins`); its module docs say what it
//! times. It runs the agent binary of the test profile.

/// Runs the agent benchmark and prints its figures.
pub fn run() -> Result<(), String> {
    crate::cargo(
        &[
            "test",
            "-p",
            "policyc-loader",
            "--test",
            "agent_bench",
            "--",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ],
        &[],
    )
}
