//! Registry credentials from the Docker config file, as `docker login`,
//! `podman login`, ORAS and Helm write it: `{"auths": {"HOST[:PORT]":
//! {"auth": base64("user:password")}}}` (or `username` and `password`),
//! or through a credential helper it names (`credHelpers` for one
//! registry, `credsStore` for all; [`crate::cred_helper`]).
//!
//! The file is `--registry-config` where given, else the first of
//! `$REGISTRY_AUTH_FILE` (containers-auth.json(5), podman and buildah),
//! `$DOCKER_CONFIG/config.json` and `~/.docker/config.json` (docker's
//! `config.Dir()`) that exists. A registry it does not name is accessed
//! anonymously.
//!
//! The order is docker's (`cli/config/configfile`, `GetAuthConfig`): the
//! registry's `credHelpers` entry, else `credsStore`, else `auths`. A
//! helper that knows no credentials for the registry means anonymous
//! access, as in docker's native store.

use crate::error::OciError;
use base64::Engine;
use oci_client::secrets::RegistryAuth;
use std::path::{Path, PathBuf};

/// The credentials for one registry and where they came from.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// What is sent.
    pub auth: RegistryAuth,
    /// Where it came from, for errors: "credentials from `auths` of
    /// `FILE`", "no credentials for it in `FILE`", ...
    pub described: String,
}

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

/// The credentials for `registry`: from `explicit` (which must exist), or
/// from the first config file that exists.
pub fn registry_credentials(registry: &str, explicit: Option<&Path>) -> Result<Credentials, OciError> {
    let candidates = match explicit {
        Some(path) => vec![path.to_path_buf()],
        None => config_paths(),
    };
    for path in &candidates {
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && explicit.is_none() => continue,
            Err(e) => return Err(OciError::Auth(format!("cannot read `{}`: {e}", path.display()))),
        };
        let file = path.display();
        let lookup = lookup(&bytes, registry).map_err(|e| OciError::Auth(format!("`{file}`: {e}")))?;
        return Ok(match lookup {
            Lookup::Anonymous => {
                Credentials { auth: RegistryAuth::Anonymous, described: format!("no credentials for it in `{file}`") }
            }
            Lookup::Basic { key, user, password } => Credentials {
                auth: RegistryAuth::Basic(user, password),
                described: format!("credentials from `auths.{key}` of `{file}`"),
            },
            Lookup::Helper { field, name } => {
                let found = crate::cred_helper::get(&name, registry)
                    .map_err(|e| OciError::Auth(format!("`{field}` of `{file}`: {e}")))?;
                match found {
                    Some((user, secret)) => Credentials {
                        auth: RegistryAuth::Basic(user, secret),
                        described: format!("credentials from `docker-credential-{name}` (`{field}` of `{file}`)"),
                    },
                    None => Credentials {
                        auth: RegistryAuth::Anonymous,
                        described: format!(
                            "`docker-credential-{name}` (`{field}` of `{file}`) has no credentials for it"
                        ),
                    },
                }
            }
        });
    }
    let searched: Vec<String> = candidates.iter().map(|p| format!("`{}`", p.display())).collect();
    Ok(Credentials {
        auth: RegistryAuth::Anonymous,
        described: format!("no credentials: no Docker config file at {}", searched.join(", ")),
    })
}

/// What a config file says about one registry.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Nothing: anonymous access.
    Anonymous,
    /// A user name and password in `auths.KEY`.
    Basic {
        /// The `auths` key that matched.
        key: String,
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
    /// A credential helper to run, named by `field`
    /// (`credHelpers.HOST` or `credsStore`).
    Helper {
        /// The config field that names it.
        field: String,
        /// `NAME` of `docker-credential-NAME`.
        name: String,
    },
}

#[derive(serde::Deserialize)]
struct Config {
    #[serde(default)]
    auths: std::collections::BTreeMap<String, Entry>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: std::collections::BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<String>,
}

#[derive(serde::Deserialize)]
struct Entry {
    auth: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

/// What the config file `bytes` says about `registry`. `auths` keys may
/// carry a scheme and a path (`https://registry.example/v1/`), as old
/// `docker login` wrote them; `credHelpers` keys are host names, as
/// docker matches them.
pub fn lookup(bytes: &[u8], registry: &str) -> Result<Lookup, String> {
    let config: Config = serde_json::from_slice(bytes).map_err(|e| format!("not a Docker config file: {e}"))?;
    if let Some(name) = config.cred_helpers.get(registry) {
        return Ok(Lookup::Helper { field: format!("credHelpers.{registry}"), name: name.clone() });
    }
    if let Some(name) = config.creds_store.filter(|n| !n.is_empty()) {
        return Ok(Lookup::Helper { field: "credsStore".into(), name });
    }
    let entry = config.auths.iter().find(|(key, _)| {
        let key = key.strip_prefix("https://").or_else(|| key.strip_prefix("http://")).unwrap_or(key);
        key.split('/').next() == Some(registry)
    });
    let Some((key, entry)) = entry else { return Ok(Lookup::Anonymous) };
    if let Some(encoded) = &entry.auth {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .map_err(|e| format!("`auths.{key}.auth` is not base64: {e}"))?;
        let text = String::from_utf8(decoded).map_err(|_| format!("`auths.{key}.auth` is not UTF-8"))?;
        let (user, password) =
            text.split_once(':').ok_or_else(|| format!("`auths.{key}.auth` is not `user:password` in base64"))?;
        return Ok(Lookup::Basic { key: key.clone(), user: user.to_string(), password: password.to_string() });
    }
    match (&entry.username, &entry.password) {
        (Some(user), Some(password)) => {
            Ok(Lookup::Basic { key: key.clone(), user: user.clone(), password: password.clone() })
        }
        _ => Ok(Lookup::Anonymous),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(lookup: Lookup) -> Option<(String, String)> {
        match lookup {
            Lookup::Basic { user, password, .. } => Some((user, password)),
            _ => None,
        }
    }

    #[test]
    fn credentials_come_from_the_registry_entry() {
        // base64("ci:s3cret:x") (a password may hold a colon)
        let config = br#"{"auths": {"https://registry.example/v1/": {"auth": "Y2k6czNjcmV0Ong="},
            "127.0.0.1:5000": {"username": "u", "password": "p"}}}"#;
        assert_eq!(basic(lookup(config, "registry.example").unwrap()), Some(("ci".into(), "s3cret:x".into())));
        assert_eq!(basic(lookup(config, "127.0.0.1:5000").unwrap()), Some(("u".into(), "p".into())));
        assert_eq!(lookup(config, "other.example").unwrap(), Lookup::Anonymous);
    }

    #[test]
    fn helpers_come_before_auths_as_in_docker() {
        let config = br#"{"auths": {"a.example": {"auth": "dTpw"}, "b.example": {"auth": "dTpw"}},
            "credHelpers": {"a.example": "pass"}, "credsStore": "secretservice"}"#;
        assert_eq!(
            lookup(config, "a.example").unwrap(),
            Lookup::Helper { field: "credHelpers.a.example".into(), name: "pass".into() }
        );
        assert_eq!(
            lookup(config, "b.example").unwrap(),
            Lookup::Helper { field: "credsStore".into(), name: "secretservice".into() }
        );
        let config = br#"{"auths": {"b.example": {"auth": "dTpw"}}, "credHelpers": {"a.example": "pass"}}"#;
        assert_eq!(basic(lookup(config, "b.example").unwrap()), Some(("u".into(), "p".into())));
    }

    #[test]
    fn a_broken_config_is_an_error_that_names_the_entry() {
        assert!(lookup(b"{", "r").unwrap_err().contains("not a Docker config file"));
        let config = br#"{"auths": {"r": {"auth": "bm9jb2xvbg=="}}}"#;
        assert!(lookup(config, "r").unwrap_err().contains("`auths.r.auth`"));
    }

    #[test]
    fn a_named_config_file_must_exist() {
        let error = registry_credentials("r", Some(Path::new("/nonexistent/policyc/config.json"))).unwrap_err();
        assert!(error.to_string().contains("/nonexistent/policyc/config.json"), "{error}");
    }
}
