//! Downloading a file that must have a known SHA-256, resumably: bytes arrive in
//! `<file>.part`, an interrupted transfer continues from where it stopped (HTTP Range), the
//! whole is checked against the hash, and only a file that matches gets its final name.
use crate::files::shown;
use crate::{Error, Result};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// How a fetch went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The verified file.
    pub path: PathBuf,
    /// Bytes that came over the network in this call.
    pub downloaded: u64,
    /// Bytes that were already there (a resumed transfer, or a file fetched before).
    pub reused: u64,
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 (hex) of a file, and its length.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    Ok((hex(&h.finalize()), n))
}

fn network(url: &str, what: impl std::fmt::Display, manual: &str) -> Error {
    Error::invalid(
        "download",
        format!("{url}: {what}. Without a network: {manual}"),
    )
}

/// The `.part` file beside `dest`.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

/// Fetches `url` into `dest` unless a file with SHA-256 `sha256` is already there.
/// `progress(done, total)` follows the transfer; `cancel` stops it (the `.part` file stays
/// for the next call to resume). `manual` tells the user what to do without a network.
pub fn fetch(
    url: &str,
    dest: &Path,
    sha256: &str,
    manual: &str,
    cancel: &AtomicBool,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<Fetched> {
    if dest.is_file() {
        let (h, n) = sha256_file(dest)?;
        if h == sha256 {
            return Ok(Fetched {
                path: dest.to_path_buf(),
                downloaded: 0,
                reused: n,
            });
        }
    }
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let part = part_path(dest);
    // What is already there is hashed first: the hash covers the whole file.
    let mut hasher = Sha256::new();
    let mut have = 0u64;
    if let Ok(mut f) = std::fs::File::open(&part) {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let k = f.read(&mut buf).map_err(|e| Error::io(&part, e))?;
            if k == 0 {
                break;
            }
            hasher.update(&buf[..k]);
            have += k as u64;
        }
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(std::time::Duration::from_secs(20)))
        .build()
        .into();
    let mut req = agent.get(url);
    if have > 0 {
        req = req.header("Range", format!("bytes={have}-"));
    }
    let mut resp = req.call().map_err(|e| network(url, e, manual))?;
    let status = resp.status().as_u16();
    let reused = match status {
        206 => have,
        200 => {
            // The server sends the whole file: start over.
            hasher = Sha256::new();
            0
        }
        416 if have > 0 => {
            // Nothing left to send: the part file may already be whole.
            have
        }
        s => {
            return Err(network(
                url,
                format!("the server answered HTTP {s}"),
                manual,
            ))
        }
    };
    let header = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let total = match status {
        206 => header("content-range")
            .and_then(|r| r.rsplit('/').next().and_then(|t| t.parse::<u64>().ok())),
        200 => header("content-length").and_then(|l| l.parse::<u64>().ok()),
        _ => Some(have),
    };
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(reused > 0)
        .truncate(reused == 0)
        .open(&part)
        .map_err(|e| Error::io(&part, e))?;
    let mut downloaded = 0u64;
    if status != 416 {
        let mut body = resp.body_mut().as_reader();
        let mut buf = vec![0u8; 1 << 16];
        progress(reused, total);
        loop {
            if cancel.load(Ordering::Relaxed) {
                let _ = out.flush();
                return Err(Error::invalid(
                    "download",
                    format!(
                        "{url}: stopped after {} bytes; fetch again to continue",
                        reused + downloaded
                    ),
                ));
            }
            let k = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(k) => k,
                Err(e) => {
                    let _ = out.flush();
                    return Err(network(
                        url,
                        format!(
                            "the transfer broke off after {} bytes ({e}); fetch again to \
                             continue where it stopped",
                            reused + downloaded
                        ),
                        manual,
                    ));
                }
            };
            out.write_all(&buf[..k]).map_err(|e| Error::io(&part, e))?;
            hasher.update(&buf[..k]);
            downloaded += k as u64;
            progress(reused + downloaded, total);
        }
    }
    out.sync_all().map_err(|e| Error::io(&part, e))?;
    drop(out);
    let got = hex(&hasher.finalize());
    if let Some(t) = total {
        if reused + downloaded < t {
            return Err(network(
                url,
                format!(
                    "the transfer ended after {} of {t} bytes; fetch again to continue",
                    reused + downloaded
                ),
                manual,
            ));
        }
    }
    if got != sha256 {
        let _ = std::fs::remove_file(&part);
        return Err(Error::invalid(
            "download",
            format!(
                "{url}: the file's SHA-256 is {got}, but {sha256} was expected (its name \
                 abbreviates it): the download is corrupted or not the file asked for, and was \
                 not kept"
            ),
        ));
    }
    std::fs::rename(&part, dest).map_err(|e| Error::io(dest, e))?;
    Ok(Fetched {
        path: dest.to_path_buf(),
        downloaded,
        reused,
    })
}

/// A message for a fetch that cannot reach the network: where to get the file by hand and
/// where to put it (or pass it with `--weights`).
pub fn manual_hint(url: &str, dest: &Path) -> String {
    format!(
        "download {url} by hand and put it at {}, or pass the file itself to --weights",
        shown(dest)
    )
}
