//! Registry credentials from the Docker config file, as `docker login`,
//! `podman login`, ORAS and Helm write it: `{"auths": {"HOST[:PORT]":
//! {"auth": base64("user:password")}}}` (or `username` and `password`).
//!
//! The file is the first of `$REGISTRY_AUTH_FILE` (containers-auth.json(5),
//! podman and buildah), `$DOCKER_CONFIG/config.json` and
//! `~/.docker/config.json` (docker's `config.Dir()`) that exists. A registry
//! it does not name is accessed anonymously. Credential helpers
//! (`credsStore`, `credHelpers`) are not run.

use crate::error::OciError;
use base64::Engine;
use oci_client::secrets::RegistryAuth;
use std::path::{Path, PathBuf};

/// Where the credentials are looked for, in order.
pub fn config_paths() -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Some(file) = std::env::var_os("REGISTRY_AUTH_FILE") {
        paths.push(PathBuf::from(file));
    }
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        paths.push(Path::new(&dir).join("config.json"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        paths.push(Path::new(&home).join(".docker/config.json"));
    }
    paths
}

/// The credentials for `registry` from the first config file that exists.
pub fn registry_auth(registry: &str) -> Result<RegistryAuth, OciError> {
    for path in config_paths() {
        match std::fs::read(&path) {
            Ok(bytes) => {
                return auth_from_config(&bytes, registry)
                    .map_err(|e| OciError::Auth(format!("`{}`: {e}", path.display())))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(OciError::Auth(format!("cannot read `{}`: {e}", path.display()))),
        }
    }
    Ok(RegistryAuth::Anonymous)
}

#[derive(serde::Deserialize)]
struct Config {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, Entry>,
}

#[derive(serde::Deserialize)]
struct Entry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// The credentials for `registry` in the config file `bytes`. Keys may
/// carry a scheme and a path (`https://registry.example/v1/`), as old
/// `docker login` wrote them.
pub fn auth_from_config(bytes: &[u8], registry: &str) -> Result<RegistryAuth, String> {
    let config: Config = serde_json::from_slice(bytes).map_err(|e| format!("not a Docker config file: {e}"))?;
    let entry = config.auths.iter().find(|(key, _)| {
        let key = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
        key.split('/').next() == Some(registry)
    });
    let Some((key, entry)) = entry else { return Ok(RegistryAuth::Anonymous) };
    if let Some(encoded) = &entry.auth {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| format!("`auths.{key}.auth` is not base64: {e}"))?;
        let text = String::from_utf8(decoded).map_err(|_| format!("`auths.{key}.auth` is not UTF-8"))?;
        let (user, password) =
            text.split_once(':').ok_or_else(|| format!("`auths.{key}.auth` is not `user:password` in base64"))?;
        return Ok(RegistryAuth::Basic(user.to_string(), password.to_string()));
    }
    match (&entry.username, &entry.password) {
        (Some(user), Some(password)) => Ok(RegistryAuth::Basic(user.clone(), password.clone())),
        _ => Ok(RegistryAuth::Anonymous),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(auth: RegistryAuth) -> Option<(String, String)> {
        match auth {
            RegistryAuth::Basic(u, p) => Some((u, p)),
            _ => None,
        }
    }

    #[test]
    fn credentials_come_from_the_registry_entry() {
        // base64("ci:s3cret:x") (a password may hold a colon)
        let config = br#"{"auths": {"https://registry.example/v1/": {"auth": "Y2k6czNjcmV0Ong="},
            "127.0.0.1:5000": {"username": "u", "password": "p"}}}"#;
        assert_eq!(
            basic(auth_from_config(config, "registry.example").unwrap()),
            Some(("ci".into(), "s3cret:x".into()))
        );
        assert_eq!(basic(auth_from_config(config, "127.0.0.1:5000").unwrap()), Some(("u".into(), "p".into())));
        assert_eq!(basic(auth_from_config(config, "other.example").unwrap()), None);
    }

    #[test]
    fn a_broken_config_is_an_error_that_names_the_entry() {
        assert!(auth_from_config(b"{", "r").unwrap_err().contains("not a Docker config file"));
        let config = br#"{"auths": {"r": {"auth": "bm9jb2xvbg=="}}}"#;
        assert!(auth_from_config(config, "r").unwrap_err().contains("`auths.r.auth`"));
    }
}
