//! Writing files a user cares about atomically: a temporary file beside the target,
//! flushed to disk, then renamed over it, so a crash never leaves a half-written file.
use crate::{Error, Result};
use std::io::Write;
use std::path::{Path, PathBuf};

/// A path as people read it: UTF-8 as it is, every other byte as `\xHH`. Never U+FFFD, so
/// two different names never look the same (`bad\xff.jpg`, `bad\xfe.jpg`).
pub fn path_text(p: &Path) -> String {
    #[cfg(unix)]
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str());
    #[cfg(not(unix))]
    let owned = p.to_string_lossy().into_owned().into_bytes();
    #[cfg(not(unix))]
    let bytes = &owned[..];
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// The raw bytes of a path that is not UTF-8, as hex (None for a UTF-8 path): what a report
/// keeps beside [`path_text`] so the exact file can be found again.
pub fn path_bytes_hex(p: &Path) -> Option<String> {
    if p.to_str().is_some() {
        return None;
    }
    #[cfg(unix)]
    {
        let b = std::os::unix::ffi::OsStrExt::as_bytes(p.as_os_str());
        Some(b.iter().map(|x| format!("{x:02x}")).collect())
    }
    #[cfg(not(unix))]
    None
}

/// The path whose bytes [`path_bytes_hex`] wrote, or None for text that is not such hex.
pub fn path_from_hex(hex: &str) -> Option<PathBuf> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect();
    #[cfg(unix)]
    {
        let os: std::ffi::OsString = std::os::unix::ffi::OsStringExt::from_vec(bytes?);
        Some(PathBuf::from(os))
    }
    #[cfg(not(unix))]
    {
        String::from_utf8(bytes?).ok().map(PathBuf::from)
    }
}

/// `Display` for a path with [`path_text`]'s escapes.
pub struct Shown<'a>(&'a Path);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.to_str() {
            Some(s) => f.write_str(s),
            None => f.write_str(&path_text(self.0)),
        }
    }
}

/// A path to show to people (see [`path_text`]).
pub fn shown(p: &Path) -> Shown<'_> {
    Shown(p)
}

/// Writes `bytes` to `path` atomically (temp file in the same folder + fsync + rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().ok_or_else(|| {
        Error::invalid(
            "output path",
            format!("{} has no file name", path.display()),
        )
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, path)?;
        // Make the rename itself durable where the platform allows opening a directory.
        if let Ok(d) = std::fs::File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// Removes temporary files [`write_atomic`] left in `dir` when a process was killed in the
/// middle of a write (`.<name>.tmp-<pid>` of another process). Returns what was removed.
pub fn remove_stale_temps(dir: &Path) -> Vec<PathBuf> {
    let own = format!(".tmp-{}", std::process::id());
    let mut removed = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let stale = name.starts_with('.')
                && name.rsplit_once(".tmp-").is_some_and(|(_, pid)| {
                    !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
                })
                && !name.ends_with(&own);
            if stale && e.file_type().is_ok_and(|t| t.is_file()) {
                let p = e.path();
                if std::fs::remove_file(&p).is_ok() {
                    removed.push(p);
                }
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_replaces_without_leaving_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.bin");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn stale_temps_of_killed_writers_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::write(d.join(".checkpoint.safetensors.tmp-99999999"), b"half").unwrap();
        std::fs::write(d.join("keep.json"), b"{}").unwrap();
        std::fs::write(d.join(".hidden"), b"x").unwrap();
        let removed = remove_stale_temps(d);
        assert_eq!(
            removed,
            vec![d.join(".checkpoint.safetensors.tmp-99999999")]
        );
        assert!(d.join("keep.json").is_file() && d.join(".hidden").is_file());
    }

    #[test]
    #[cfg(unix)]
    fn names_that_are_not_utf8_stay_distinct_and_come_back() {
        use std::os::unix::ffi::OsStrExt;
        let a = Path::new(std::ffi::OsStr::from_bytes(b"dir/bad\xff.jpg"));
        let b = Path::new(std::ffi::OsStr::from_bytes(b"dir/bad\xfe.jpg"));
        assert_eq!(path_text(a), "dir/bad\\xff.jpg");
        assert_ne!(path_text(a), path_text(b));
        assert_eq!(shown(a).to_string(), path_text(a));
        assert_eq!(path_from_hex(&path_bytes_hex(a).unwrap()).unwrap(), a);
        assert_eq!(path_bytes_hex(Path::new("plain.png")), None);
        assert_eq!(path_text(Path::new("ümlaut.png")), "ümlaut.png");
    }

    #[test]
    fn error_names_the_file() {
        let err = write_atomic(Path::new("/nonexistent-dir/x.bin"), b"x").unwrap_err();
        assert!(err.to_string().contains("/nonexistent-dir/x.bin"), "{err}");
    }
}

/// Which of the user's platform folders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserFolder {
    /// Data kept for the user (`$XDG_DATA_HOME` or `~/.local/share`, `~/Library/Application
    /// Support`, `%APPDATA%`).
    Data,
    /// Data that can be made again (`$XDG_CACHE_HOME` or `~/.cache`, `~/Library/Caches`,
    /// `%LOCALAPPDATA%`).
    Cache,
}

/// The program's folder of that kind: the platform's folder + `covid-resnet`.
pub fn user_folder(kind: UserFolder) -> Option<PathBuf> {
    let home = std::env::home_dir();
    let (mac, win, xdg, unix) = match kind {
        UserFolder::Data => (
            "Library/Application Support",
            "APPDATA",
            "XDG_DATA_HOME",
            ".local/share",
        ),
        UserFolder::Cache => ("Library/Caches", "LOCALAPPDATA", "XDG_CACHE_HOME", ".cache"),
    };
    let base = if cfg!(target_os = "macos") {
        home.map(|h| h.join(mac))
    } else if cfg!(windows) {
        std::env::var_os(win).map(PathBuf::from)
    } else {
        std::env::var_os(xdg)
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .or_else(|| home.map(|h| h.join(unix)))
    };
    base.map(|b| b.join("covid-resnet"))
}
