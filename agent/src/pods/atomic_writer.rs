//! kubelet's AtomicWriter scheme for configMap, secret, downwardAPI and projected volumes: a
//! container sees either the old set of files or the new one, never a mix.
//!
//! Layout of a target directory:
//! ```text
//! ..2026_11_23_22_50_05.123456789/   the current payload (a fresh directory per update)
//! ..data -> ..2026_11_23_22_50_05.123456789
//! key    -> ..data/key                 one user-visible symlink per top-level path
//! ```
//! An update writes a new timestamped directory, points a `..data_tmp` symlink at it and renames
//! that over `..data` (rename is atomic), then fixes the user-visible symlinks and removes the old
//! directory. Because containers see files through `..data`, a bind mount of the target directory
//! picks up updates without remounting.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    io::{self, ErrorKind},
    os::unix::fs::{PermissionsExt as _, symlink},
    path::{Component, Path, PathBuf},
    sync::atomic::{AtomicU64, Ordering},
};

/// The symlink to the current payload directory.
pub const DATA_DIR: &str = "..data";
const DATA_DIR_TMP: &str = "..data_tmp";

/// One file of a payload: its bytes and permission bits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileProjection {
    /// File contents.
    pub data: Vec<u8>,
    /// Permission bits (e.g. 0o644).
    pub mode: u32,
}

/// A payload: relative path (may contain '/') -> file.
pub type Payload = BTreeMap<String, FileProjection>;

/// Checks a payload path as kubelet's `validatePath`: relative, not empty, no `..` component and
/// not starting with `..` (which would collide with the writer's own entries).
pub fn validate_path(path: &str) -> Result<(), String> {
    if path.is_empty() {
        return Err("invalid path: must not be empty".into());
    }
    if path.len() > 4096 {
        return Err(format!(
            "invalid path: must be less than or equal to 4096 characters: {path:?}"
        ));
    }
    if Path::new(path).is_absolute() {
        return Err(format!("invalid path: must be relative path: {path}"));
    }
    if path.split('/').any(|part| part == "..") {
        return Err(format!("invalid path: must not contain '..': {path}"));
    }
    if path.starts_with("..") {
        return Err(format!("invalid path: must not start with '..': {path}"));
    }
    Ok(())
}

/// Writes `payload` into `target` atomically; returns whether anything changed (an identical
/// payload leaves the directory untouched, so repeated refreshes are cheap).
pub fn write(target: &Path, payload: &Payload) -> io::Result<bool> {
    for path in payload.keys() {
        validate_path(path).map_err(|message| io::Error::new(ErrorKind::InvalidInput, message))?;
    }
    fs::create_dir_all(target)?;
    let data_link = target.join(DATA_DIR);
    let old_dir = match fs::read_link(&data_link) {
        Ok(name) => Some(name),
        Err(err) if err.kind() == ErrorKind::NotFound => None,
        Err(err) => return Err(err),
    };
    let old_paths = match &old_dir {
        Some(name) => {
            let dir = target.join(name);
            let old = list_files(&dir)?;
            if same_payload(&dir, &old, payload)? {
                return Ok(false);
            }
            old
        }
        None => BTreeSet::new(),
    };

    let new_name = timestamped_name();
    let new_dir = target.join(&new_name);
    fs::create_dir(&new_dir)?;
    fs::set_permissions(&new_dir, fs::Permissions::from_mode(0o755))?;
    for (path, file) in payload {
        let destination = new_dir.join(path);
        if let Some(parent) = destination.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(&destination, &file.data)?;
        fs::set_permissions(&destination, fs::Permissions::from_mode(file.mode & 0o7777))?;
    }

    let tmp_link = target.join(DATA_DIR_TMP);
    match fs::remove_file(&tmp_link) {
        Ok(()) => {}
        Err(err) if err.kind() == ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    symlink(&new_name, &tmp_link)?;
    fs::rename(&tmp_link, &data_link)?;

    let new_top: BTreeSet<String> = payload.keys().map(|p| top_level(p)).collect();
    for top in &new_top {
        let visible = target.join(top);
        if fs::symlink_metadata(&visible).is_err() {
            symlink(Path::new(DATA_DIR).join(top), &visible)?;
        }
    }
    for top in old_paths.iter().map(|p| top_level(p)) {
        if !new_top.contains(&top) {
            match fs::remove_file(target.join(&top)) {
                Ok(()) => {}
                Err(err) if err.kind() == ErrorKind::NotFound => {}
                Err(err) => return Err(err),
            }
        }
    }
    if let Some(old) = old_dir {
        // Only directories this writer created are removed (never something a symlink names
        // outside the target).
        let old_path = target.join(&old);
        if old.components().count() == 1 && old.to_string_lossy().starts_with("..") {
            fs::remove_dir_all(old_path)?;
        }
    }
    Ok(true)
}

fn top_level(path: &str) -> String {
    path.split('/')
        .find(|part| !part.is_empty() && *part != ".")
        .unwrap_or(path)
        .to_owned()
}

/// The relative paths of the regular files below `dir`.
fn list_files(dir: &Path) -> io::Result<BTreeSet<String>> {
    let mut found = BTreeSet::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(relative) = pending.pop() {
        let entries = match fs::read_dir(dir.join(&relative)) {
            Ok(entries) => entries,
            Err(err) if err.kind() == ErrorKind::NotFound => continue,
            Err(err) => return Err(err),
        };
        for entry in entries {
            let entry = entry?;
            let path = relative.join(entry.file_name());
            if entry.file_type()?.is_dir() {
                pending.push(path);
            } else {
                found.insert(path.to_string_lossy().into_owned());
            }
        }
    }
    Ok(found)
}

fn same_payload(dir: &Path, old: &BTreeSet<String>, payload: &Payload) -> io::Result<bool> {
    let wanted: BTreeSet<String> = payload.keys().map(|p| normalize(p)).collect();
    if &wanted != old {
        return Ok(false);
    }
    for (path, file) in payload {
        let on_disk = dir.join(path);
        let metadata = fs::metadata(&on_disk)?;
        if metadata.permissions().mode() & 0o7777 != file.mode & 0o7777 {
            return Ok(false);
        }
        if fs::read(&on_disk)? != file.data {
            return Ok(false);
        }
    }
    Ok(true)
}

/// A payload path as [`list_files`] reports it (no `.` or empty components).
fn normalize(path: &str) -> String {
    Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(part) => Some(part.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// `..YYYY_MM_DD_HH_MM_SS.<unique>` as kubelet names its payload directories.
fn timestamped_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let now = jiff::Timestamp::now();
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!(
        "..{}.{:09}{count}",
        now.strftime("%Y_%m_%d_%H_%M_%S"),
        now.subsec_nanosecond()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(data: &str, mode: u32) -> FileProjection {
        FileProjection {
            data: data.as_bytes().to_vec(),
            mode,
        }
    }

    fn tempdir() -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix("flotilla-atomic-")
            .tempdir()
            .unwrap()
    }

    #[test]
    fn paths_are_validated() {
        assert!(validate_path("a/b").is_ok());
        assert!(validate_path("..a").is_err());
        assert!(validate_path("a/../b").is_err());
        assert!(validate_path("/etc/passwd").is_err());
        assert!(validate_path("").is_err());
    }

    #[test]
    fn writes_swaps_and_cleans_up() {
        let dir = tempdir();
        let target = dir.path().join("vol");
        let first = Payload::from([
            ("a".to_owned(), file("one", 0o644)),
            ("dir/b".to_owned(), file("two", 0o600)),
        ]);
        assert!(write(&target, &first).unwrap());
        assert_eq!(fs::read_to_string(target.join("a")).unwrap(), "one");
        assert_eq!(fs::read_to_string(target.join("dir/b")).unwrap(), "two");
        assert_eq!(
            fs::read_link(target.join("a")).unwrap(),
            Path::new("..data/a")
        );
        assert_eq!(
            fs::read_link(target.join("dir")).unwrap(),
            Path::new("..data/dir")
        );
        let mode = fs::metadata(target.join("dir/b"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let first_dir = fs::read_link(target.join(DATA_DIR)).unwrap();
        assert!(first_dir.to_string_lossy().starts_with(".."));

        // Same payload: nothing changes.
        assert!(!write(&target, &first).unwrap());
        assert_eq!(fs::read_link(target.join(DATA_DIR)).unwrap(), first_dir);

        // New payload: contents change through the same paths, stale names disappear.
        let second = Payload::from([
            ("a".to_owned(), file("uno", 0o644)),
            ("c".to_owned(), file("tres", 0o644)),
        ]);
        assert!(write(&target, &second).unwrap());
        assert_eq!(fs::read_to_string(target.join("a")).unwrap(), "uno");
        assert_eq!(fs::read_to_string(target.join("c")).unwrap(), "tres");
        assert!(fs::symlink_metadata(target.join("dir")).is_err());
        assert!(!target.join(&first_dir).exists());
        let mut names: Vec<String> = fs::read_dir(&target)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names.len(), 4, "{names:?}");
        assert!(names.contains(&DATA_DIR.to_owned()));

        // A mode change alone is an update.
        let third = Payload::from([
            ("a".to_owned(), file("uno", 0o400)),
            ("c".to_owned(), file("tres", 0o644)),
        ]);
        assert!(write(&target, &third).unwrap());
        let mode = fs::metadata(target.join("a")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o400);

        // An empty payload leaves an empty view.
        assert!(write(&target, &Payload::new()).unwrap());
        assert!(fs::symlink_metadata(target.join("a")).is_err());
    }

    #[test]
    fn rejects_escaping_paths() {
        let dir = tempdir();
        let target = dir.path().to_path_buf();
        let bad = Payload::from([("../x".to_owned(), file("x", 0o644))]);
        assert!(write(&target, &bad).is_err());
    }
}
