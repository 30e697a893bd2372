//! The pod sandboxes the CNI plugin bound, by container id, kept in the
//! state directory (one JSON file each) so that a restarted agent binds
//! exactly what it bound before, and finds its state in force already.

use policyc_cni::protocol::Sandbox;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The bound sandboxes.
#[derive(Clone, Debug, Default)]
pub struct Sandboxes {
    dir: PathBuf,
    by_id: BTreeMap<String, Sandbox>,
}

/// A container id is a file name here: the runtime's ids are hex or
/// similar; anything else is refused rather than made a path.
fn check_id(id: &str) -> Result<(), String> {
    let ok = !id.is_empty() && id.len() <= 200 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if ok && id != "." && id != ".." {
        Ok(())
    } else {
        Err(format!("container id `{id}` is not a plain name (letters, digits, `-`, `_`, `.`)"))
    }
}

impl Sandboxes {
    /// The sandboxes kept in `dir` (created if missing); a file that does
    /// not parse is reported and left out.
    pub fn load(dir: &Path) -> Result<(Sandboxes, Vec<String>), String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("cannot create `{}`: {e}", dir.display()))?;
        let entries = std::fs::read_dir(dir).map_err(|e| format!("cannot read `{}`: {e}", dir.display()))?;
        let mut by_id = BTreeMap::new();
        let mut problems = Vec::new();
        for entry in entries.filter_map(Result::ok) {
            let path = entry.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue;
            }
            match std::fs::read_to_string(&path)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str::<Sandbox>(&t).map_err(|e| e.to_string()))
            {
                Ok(s) => {
                    by_id.insert(s.container_id.clone(), s);
                }
                Err(e) => problems.push(format!("`{}`: {e}", path.display())),
            }
        }
        Ok((Sandboxes { dir: dir.to_path_buf(), by_id }, problems))
    }

    /// Binds `sandbox`; an older sandbox of the same pod is dropped (the
    /// pod was re-created: its old sandbox's `DEL` may come late, and must
    /// then find nothing). What changed: false when it was bound already
    /// exactly so.
    pub fn add(&mut self, sandbox: Sandbox) -> Result<bool, String> {
        check_id(&sandbox.container_id)?;
        if self.by_id.get(&sandbox.container_id) == Some(&sandbox) {
            return Ok(false);
        }
        let older: Vec<String> = self
            .by_id
            .values()
            .filter(|s| s.pod_name() == sandbox.pod_name() && s.container_id != sandbox.container_id)
            .map(|s| s.container_id.clone())
            .collect();
        for id in older {
            self.remove(&id)?;
        }
        let path = self.path(&sandbox.container_id);
        let text = serde_json::to_string(&sandbox).map_err(|e| e.to_string())?;
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| format!("cannot write `{}`: {e}", path.display()))?;
        self.by_id.insert(sandbox.container_id.clone(), sandbox);
        Ok(true)
    }

    /// Unbinds container `id`; whether it was bound.
    pub fn remove(&mut self, id: &str) -> Result<bool, String> {
        if self.by_id.remove(id).is_none() {
            return Ok(false);
        }
        let path = self.path(id);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
            Err(e) => Err(format!("cannot remove `{}`: {e}", path.display())),
        }
    }

    /// Container `id`'s sandbox.
    pub fn get(&self, id: &str) -> Option<&Sandbox> {
        self.by_id.get(id)
    }

    /// Every sandbox, by container id.
    pub fn iter(&self) -> impl Iterator<Item = &Sandbox> {
        self.by_id.values()
    }

    fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(id: &str, pod: &str) -> Sandbox {
        Sandbox {
            container_id: id.into(),
            namespace: "shop".into(),
            pod: pod.into(),
            netns: format!("/run/netns/{id}"),
            interface: format!("v{id}"),
            addresses: vec!["10.200.0.2".parse().unwrap()],
        }
    }

    #[test]
    fn a_recreated_pod_replaces_its_old_sandbox_and_survives_a_reload() {
        let dir = std::env::temp_dir().join(format!("policyc-agent-sandboxes-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (mut s, problems) = Sandboxes::load(&dir).unwrap();
        assert!(problems.is_empty());
        assert!(s.add(sandbox("a1", "api")).unwrap());
        assert!(!s.add(sandbox("a1", "api")).unwrap(), "the same ADD twice changes nothing");
        assert!(s.add(sandbox("b1", "web")).unwrap());
        assert!(s.add(sandbox("a2", "api")).unwrap());
        assert!(!s.remove("a1").unwrap(), "the old sandbox's late DEL finds nothing");
        let (again, _) = Sandboxes::load(&dir).unwrap();
        assert_eq!(again.iter().map(|s| s.container_id.as_str()).collect::<Vec<_>>(), ["a2", "b1"]);
        assert!(s.add(sandbox("../x", "evil")).unwrap_err().contains("not a plain name"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
