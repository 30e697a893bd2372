//! `policyc publish OUT_DIR oci://HOST[:PORT]/REPOSITORY:TAG`: pushes the
//! bundles `policyc compile --out OUT_DIR` wrote as one OCI artifact
//! (`policyc-oci`) and prints its manifest digest, which nodes pin to.

use super::{EXIT_ERRORS, EXIT_OK, EXIT_USAGE};
use clap::Args;
use policyc_oci::{publish, ArtifactRef, ClientOptions, OciError};
use std::path::PathBuf;

/// Arguments of `publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The output directory of `policyc compile --out` (one bundle per
    /// node in it, or one bundle).
    pub out_dir: PathBuf,
    /// Where to push: `oci://HOST[:PORT]/REPOSITORY:TAG`.
    pub reference: String,
    /// Plain HTTP, no TLS: for a registry on loopback (as ORAS and Helm
    /// name it). Credentials come from the Docker config file
    /// (`$REGISTRY_AUTH_FILE`, `$DOCKER_CONFIG/config.json`,
    /// `~/.docker/config.json`).
    #[arg(long)]
    pub plain_http: bool,
    /// PEM certificates to trust for the registry besides the system's (a
    /// registry whose certificate a private CA signed).
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// The Docker config file to take the credentials from, instead of
    /// the first of the usual places that exists. Its `credHelpers` and
    /// `credsStore` run `docker-credential-NAME get`, as docker does.
    #[arg(long, value_name = "FILE")]
    pub registry_config: Option<PathBuf>,
}

/// Runs `publish`: the digest on stdout, what moved on stderr.
pub fn run(args: &PublishArgs) -> u8 {
    let reference = match ArtifactRef::parse(&args.reference) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let options = ClientOptions {
        plain_http: args.plain_http,
        ca_file: args.ca_file.clone(),
        registry_config: args.registry_config.clone(),
        ..ClientOptions::default()
    };
    match publish(&args.out_dir, &reference, &options) {
        Ok(published) => {
            eprintln!(
                "published `{reference}`: {} blob(s) uploaded ({} bytes), {} already in the registry",
                published.uploaded, published.bytes_uploaded, published.present
            );
            println!("{}", published.digest);
            EXIT_OK
        }
        Err(e @ OciError::Reference(_)) => {
            eprintln!("error: {e}");
            EXIT_USAGE
        }
        Err(e) => {
            eprintln!("error: {e}");
            EXIT_ERRORS
        }
    }
}
