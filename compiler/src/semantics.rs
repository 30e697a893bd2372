//! Choices of semantics a cluster's network plugin makes and manifests do
//! not say, set once per process by the command line (flags accepted
//! after any subcommand) like [`crate::front::source::Limits`], so that
//! every command (and both trees of a diff) reads the input the same way.

use std::sync::OnceLock;

/// Whether the pod's own node may always reach it (Cilium's
/// `--allow-localhost`; see [`policyc_ir::localhost`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum AllowLocalhost {
    /// The local node reaches every endpoint on it, whatever ingress
    /// policy says (Kubernetes' rule, Cilium's default under Kubernetes).
    #[default]
    Always,
    /// The local node is a peer like any other: ingress policy decides.
    Policy,
}

/// The semantics flags.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::Args)]
pub struct Semantics {
    /// Whether the pod's own node may always reach it (kubelet's probes),
    /// as Cilium's `--allow-localhost`: `always` (Kubernetes' rule, the
    /// default) or `policy` (ingress policy decides).
    #[arg(long = "allow-localhost", value_enum, value_name = "MODE", default_value = "always", global = true)]
    pub allow_localhost: AllowLocalhost,
}

/// The semantics set for this process by its command line.
static SEMANTICS: OnceLock<Semantics> = OnceLock::new();

/// Sets the semantics every load applies for the rest of the process;
/// `false` if they were set already.
pub fn set_semantics(semantics: Semantics) -> bool {
    SEMANTICS.set(semantics).is_ok()
}

/// The semantics in force: those set by [`set_semantics`], or the defaults.
pub fn semantics() -> Semantics {
    SEMANTICS.get().copied().unwrap_or_default()
}
