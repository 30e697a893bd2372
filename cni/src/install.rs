//! Installing the plugin on a node: what the DaemonSet's init container
//! runs (`policyc-cni install`), since the image has no shell.
//!
//! It copies this binary into the runtime's plugin directory and chains
//! `policyc-cni` after the plugins of the network configuration the runtime
//! uses. That is the first file of the configuration directory in byte
//! order with the extension `.conf`, `.conflist` or `.json`: containerd's
//! go-cni (`loadFromConfDir`: libcni's `ConfFiles` with those extensions,
//! `sort.Strings`, the first file is the default network) and CRI-O's
//! ocicni choose it so. A single
//! plugin's `.conf` becomes a `.conflist` with the same stem holding that
//! plugin and then `policyc-cni`, since only a list chains (CNI
//! specification 1.0, "Network Configuration Lists").
//!
//! Both writes are atomic (a temporary file in the same directory, then
//! `rename`), so a runtime that reads the directory at any moment sees the
//! old file or the new one, and running the install again changes nothing.
//! No configuration yet (the network plugin's own daemon writes it a
//! moment later) is an error: the init container fails and the kubelet
//! runs it again.

use serde_json::{json, Map, Value};
use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The plugin's `type` in a configuration list, and its file name in the
/// plugin directory.
pub const PLUGIN_TYPE: &str = "policyc-cni";

/// The largest configuration file read: a conflist is a few KiB.
const MAX_CONF: u64 = 1024 * 1024;

/// What to install where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallOptions {
    /// The binary to copy (this one, `/proc/self/exe`).
    pub binary: PathBuf,
    /// The runtime's plugin directory (`/opt/cni/bin`).
    pub bin_dir: PathBuf,
    /// The runtime's configuration directory (`/etc/cni/net.d`).
    pub conf_dir: PathBuf,
    /// The agent's socket, written as the entry's `agentSocket`.
    pub agent_socket: PathBuf,
}

/// What `install` or `uninstall` changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstallReport {
    /// The configuration file that now chains the plugin (or no longer does).
    pub conf: PathBuf,
    /// Whether that file was rewritten (false: it was already as wanted).
    pub conf_changed: bool,
}

/// Why an install or uninstall did not happen.
#[derive(Debug)]
pub enum InstallError {
    /// A file operation failed.
    Io {
        /// What was being done, naming the path.
        action: String,
        /// The error.
        source: std::io::Error,
    },
    /// The configuration directory has no network configuration yet.
    NoConfiguration(PathBuf),
    /// The configuration file is not a configuration the plugin can chain to.
    InvalidConfiguration {
        /// The file.
        file: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InstallError::Io { action, source } => write!(f, "cannot {action}: {source}"),
            InstallError::NoConfiguration(dir) => write!(
                f,
                "`{}` holds no network configuration (`*.conf`, `*.conflist`, `*.json`) yet: \
                 the network plugin writes it, then this runs again",
                dir.display()
            ),
            InstallError::InvalidConfiguration { file, reason } => {
                write!(f, "cannot chain to `{}`: {reason}", file.display())
            }
        }
    }
}

impl std::error::Error for InstallError {}

fn io(action: String) -> impl FnOnce(std::io::Error) -> InstallError {
    move |source| InstallError::Io { action, source }
}

/// Copies the binary into the plugin directory and chains the plugin into
/// the runtime's network configuration.
pub fn install(options: &InstallOptions) -> Result<InstallReport, InstallError> {
    copy_binary(&options.binary, &options.bin_dir.join(PLUGIN_TYPE))?;
    let conf = first_configuration(&options.conf_dir)?;
    let text = read_configuration(&conf)?;
    let entry = json!({ "type": PLUGIN_TYPE, "agentSocket": options.agent_socket });
    let (target, chained) = chain(&conf, &text, entry)?;
    if target != conf && target.exists() {
        return Err(invalid(&conf, format!("`{}` exists beside it", target.display())));
    }
    let conf_changed = target != conf || chained != text;
    if conf_changed {
        write_atomically(&target, chained.as_bytes(), 0o644)?;
        if target != conf {
            fs::remove_file(&conf).map_err(io(format!("remove `{}`", conf.display())))?;
        }
    }
    Ok(InstallReport { conf: target, conf_changed })
}

/// Takes the plugin out of the runtime's network configuration and removes
/// the binary: what a node needs when policyc leaves it, since the runtime
/// fails every pod's `ADD` while the list names a plugin whose agent is gone.
pub fn uninstall(options: &InstallOptions) -> Result<InstallReport, InstallError> {
    let conf = first_configuration(&options.conf_dir)?;
    let text = read_configuration(&conf)?;
    let unchained = unchain(&conf, &text)?;
    let conf_changed = unchained != text;
    if conf_changed {
        write_atomically(&conf, unchained.as_bytes(), 0o644)?;
    }
    match fs::remove_file(options.bin_dir.join(PLUGIN_TYPE)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(io(format!("remove `{}`", options.bin_dir.join(PLUGIN_TYPE).display()))(e))
        }
        _ => {}
    }
    Ok(InstallReport { conf, conf_changed })
}

/// The configuration file the runtime uses: the first in name order.
pub fn first_configuration(dir: &Path) -> Result<PathBuf, InstallError> {
    let entries = fs::read_dir(dir).map_err(io(format!("read `{}`", dir.display())))?;
    let mut files = Vec::new();
    for entry in entries {
        let path = entry.map_err(io(format!("read `{}`", dir.display())))?.path();
        let extension = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
        if matches!(extension, "conf" | "conflist" | "json") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    files.into_iter().next().ok_or_else(|| InstallError::NoConfiguration(dir.to_path_buf()))
}

fn read_configuration(conf: &Path) -> Result<String, InstallError> {
    let len = fs::metadata(conf).map_err(io(format!("read `{}`", conf.display())))?.len();
    if len > MAX_CONF {
        return Err(invalid(conf, format!("it is longer than {MAX_CONF} bytes")));
    }
    fs::read_to_string(conf).map_err(io(format!("read `{}`", conf.display())))
}

fn invalid(file: &Path, reason: impl Into<String>) -> InstallError {
    InstallError::InvalidConfiguration { file: file.to_path_buf(), reason: reason.into() }
}

/// The configuration `text` of file `conf` with `entry` as its last
/// plugin (an earlier `policyc-cni` entry replaced), and the file to
/// write it to.
pub fn chain(conf: &Path, text: &str, entry: Value) -> Result<(PathBuf, String), InstallError> {
    let mut object = parse_object(conf, text)?;
    let target = if object.contains_key("plugins") {
        conf.to_path_buf()
    } else {
        object = single_to_list(conf, object)?;
        conf.with_extension("conflist")
    };
    let plugins = plugins_of(conf, &mut object)?;
    plugins.retain(|p| p.get("type").and_then(Value::as_str) != Some(PLUGIN_TYPE));
    plugins.push(entry);
    Ok((target, render(&object)))
}

/// The configuration `text` of file `conf` without a `policyc-cni` entry.
pub fn unchain(conf: &Path, text: &str) -> Result<String, InstallError> {
    let mut object = parse_object(conf, text)?;
    if !object.contains_key("plugins") {
        return Ok(text.to_string());
    }
    let plugins = plugins_of(conf, &mut object)?;
    let before = plugins.len();
    plugins.retain(|p| p.get("type").and_then(Value::as_str) != Some(PLUGIN_TYPE));
    Ok(if plugins.len() == before { text.to_string() } else { render(&object) })
}

fn parse_object(conf: &Path, text: &str) -> Result<Map<String, Value>, InstallError> {
    match serde_json::from_str(text) {
        Ok(Value::Object(object)) => Ok(object),
        Ok(_) => Err(invalid(conf, "it is not a JSON object")),
        Err(e) => Err(invalid(conf, format!("it is not JSON: {e}"))),
    }
}

fn plugins_of<'a>(conf: &Path, object: &'a mut Map<String, Value>) -> Result<&'a mut Vec<Value>, InstallError> {
    match object.get_mut("plugins") {
        Some(Value::Array(plugins)) if !plugins.is_empty() => Ok(plugins),
        _ => Err(invalid(conf, "`plugins` is not a list of plugins")),
    }
}

/// A single plugin's configuration as a list of that one plugin: the
/// list keeps `cniVersion` and `name`, the plugin the rest (CNI
/// specification 1.0: a list's plugins have no name or version of their own).
fn single_to_list(conf: &Path, mut single: Map<String, Value>) -> Result<Map<String, Value>, InstallError> {
    if !single.get("type").is_some_and(Value::is_string) {
        return Err(invalid(conf, "it has neither `plugins` nor a plugin `type`"));
    }
    let mut list = Map::new();
    for key in ["cniVersion", "name"] {
        if let Some(value) = single.remove(key) {
            list.insert(key.to_string(), value);
        }
    }
    list.insert("plugins".to_string(), Value::Array(vec![Value::Object(single)]));
    Ok(list)
}

fn render(object: &Map<String, Value>) -> String {
    // serde_json's maps sort their keys here (its `preserve_order` feature
    // is off in the workspace, and turning it on would change every JSON
    // output of policyc): the runtime reads keys by name, not order.
    let mut text = serde_json::to_string_pretty(object).unwrap_or_default();
    text.push('\n');
    text
}

fn copy_binary(from: &Path, to: &Path) -> Result<(), InstallError> {
    let bytes = fs::read(from).map_err(io(format!("read `{}`", from.display())))?;
    if fs::read(to).is_ok_and(|old| old == bytes) {
        return Ok(());
    }
    write_atomically(to, &bytes, 0o755)
}

/// Writes `bytes` to a temporary file beside `path` and renames it over
/// `path`, so a reader sees the old content or the new, never a part.
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), InstallError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or(PLUGIN_TYPE);
    // A leading dot and no CNI extension: the runtime never reads it.
    let temporary = path.with_file_name(format!(".{name}.policyc-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&temporary);
        io(format!("write `{}`", path.display()))(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Value {
        json!({ "type": PLUGIN_TYPE, "agentSocket": "/run/policyc/agent.sock" })
    }

    #[test]
    fn a_list_gets_the_plugin_last_once() {
        let conf = Path::new("/etc/cni/net.d/10-ptp.conflist");
        let text = r#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"ptp"},{"type":"portmap"}]}"#;
        let (target, chained) = chain(conf, text, entry()).unwrap();
        assert_eq!(target, conf);
        let value: Value = serde_json::from_str(&chained).unwrap();
        let types: Vec<&str> =
            value["plugins"].as_array().unwrap().iter().map(|p| p["type"].as_str().unwrap()).collect();
        assert_eq!(types, ["ptp", "portmap", "policyc-cni"]);
        assert_eq!(chain(conf, &chained, entry()).unwrap().1, chained, "a second install changes nothing");
        let moved = json!({ "type": PLUGIN_TYPE, "agentSocket": "/var/run/policyc/agent.sock" });
        let rechained: Value = serde_json::from_str(&chain(conf, &chained, moved).unwrap().1).unwrap();
        assert_eq!(rechained["plugins"].as_array().unwrap().len(), 3, "the entry is replaced, not doubled");
        assert_eq!(rechained["plugins"][2]["agentSocket"], "/var/run/policyc/agent.sock");
        let unchained: Value = serde_json::from_str(&unchain(conf, &chained).unwrap()).unwrap();
        assert_eq!(unchained, serde_json::from_str::<Value>(text).unwrap());
    }

    #[test]
    fn a_single_plugin_becomes_a_list_of_it_and_the_plugin() {
        let conf = Path::new("/etc/cni/net.d/10-bridge.conf");
        let text =
            r#"{"cniVersion":"0.4.0","name":"k8s","type":"bridge","bridge":"cni0","ipam":{"type":"host-local"}}"#;
        let (target, chained) = chain(conf, text, entry()).unwrap();
        assert_eq!(target, Path::new("/etc/cni/net.d/10-bridge.conflist"));
        let value: Value = serde_json::from_str(&chained).unwrap();
        assert_eq!(
            value,
            json!({"cniVersion": "0.4.0", "name": "k8s", "plugins": [
                {"type": "bridge", "bridge": "cni0", "ipam": {"type": "host-local"}},
                {"type": "policyc-cni", "agentSocket": "/run/policyc/agent.sock"}]})
        );
    }

    #[test]
    fn what_is_no_configuration_is_refused_naming_the_file() {
        let conf = Path::new("/etc/cni/net.d/00-x.json");
        for (text, reason) in [
            ("[1]", "it is not a JSON object"),
            (r#"{"name":"x"}"#, "it has neither `plugins` nor a plugin `type`"),
            (r#"{"plugins":[]}"#, "`plugins` is not a list of plugins"),
            (r#"{"plugins":{"type":"ptp"}}"#, "`plugins` is not a list of plugins"),
        ] {
            let e = chain(conf, text, entry()).unwrap_err();
            assert_eq!(e.to_string(), format!("cannot chain to `/etc/cni/net.d/00-x.json`: {reason}"));
        }
        assert!(chain(conf, "{", entry()).unwrap_err().to_string().contains("it is not JSON"));
    }
}
