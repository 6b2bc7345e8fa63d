//! Downloading a file that must have a known SHA-256, resumably: bytes arrive in
//! `<file>.part`, an interrupted transfer continues from where it stopped (HTTP Range), the
//! whole is checked against the hash, and only a file that matches gets its final name.
//! The file's length is known in advance: no more is ever written, and a transfer that
//! stalls is given up after a while with what arrived kept for the next try.
use crate::files::shown;
use crate::{Error, Result};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

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

/// The running SHA-256 of everything `f` holds (the file at `path`), and its length.
fn hash_all(mut f: std::fs::File, path: &Path) -> Result<(Sha256, u64)> {
    let mut h = Sha256::new();
    let n = std::io::copy(&mut f, &mut h).map_err(|e| Error::io(path, e))?;
    Ok((h, n))
}

/// SHA-256 (hex) of bytes in memory.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// SHA-256 (hex) of a file, and its length.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let (h, n) = hash_all(f, path)?;
    Ok((hex(&h.finalize()), n))
}

fn network(url: &str, what: impl std::fmt::Display, manual: &str) -> Error {
    refused(format!("{url}: {what}. Without a network: {manual}"))
}

fn refused(msg: String) -> Error {
    Error::Download { msg }
}

/// The `.part` file beside `dest`.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

/// What to download and what it must be.
#[derive(Debug, Clone)]
pub struct Download<'a> {
    /// Where it is published.
    pub url: &'a str,
    /// Where it goes.
    pub dest: &'a Path,
    /// Its SHA-256, hex.
    pub sha256: &'a str,
    /// Its exact length: a larger announced length is refused before anything is written,
    /// and no more than this is ever read.
    pub len: u64,
    /// What the user can do without a network (for messages).
    pub manual: &'a str,
    /// How long to wait for the answer, or for the next byte, before giving up.
    pub stall: Duration,
}

/// How long a transfer may stall before it is given up: a minute without a byte.
pub const DEFAULT_STALL: Duration = Duration::from_secs(60);

fn read_part(part: &Path, keep: u64) -> Result<(Sha256, u64)> {
    let Ok(f) = std::fs::File::open(part) else {
        return Ok((Sha256::new(), 0));
    };
    let len = f.metadata().map_err(|e| Error::io(part, e))?.len();
    if len > keep {
        // Longer than the file can be: it cannot be the start of it.
        drop(f);
        std::fs::remove_file(part).map_err(|e| Error::io(part, e))?;
        return Ok((Sha256::new(), 0));
    }
    hash_all(f, part)
}

fn is_stall(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
    ) || matches!(
        e.get_ref().and_then(|x| x.downcast_ref::<ureq::Error>()),
        Some(ureq::Error::Timeout(_))
    )
}

/// Fetches `d.url` into `d.dest` unless a file with SHA-256 `d.sha256` is already there.
/// `progress(done, total)` follows the transfer; `cancel` stops it (the `.part` file stays
/// for the next call to resume). Never writes more than `d.len` bytes: a server that
/// announces another length is refused, one that sends more is cut off at `d.len` (and the
/// hash then decides), one that sends nothing for `d.stall` is given up with the `.part`
/// kept.
pub fn fetch(
    d: &Download,
    cancel: &AtomicBool,
    mut progress: impl FnMut(u64, Option<u64>),
) -> Result<Fetched> {
    let (url, dest, sha256, manual, want) = (d.url, d.dest, d.sha256, d.manual, d.len);
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
    let (mut hasher, have) = read_part(&part, want)?;
    if have == want {
        // Whole already: no request needed.
        return finish(d, &part, hasher, 0, have);
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_recv_response(Some(d.stall))
        .timeout_per_read(Some(d.stall))
        .build()
        .into();
    let mut req = agent.get(url);
    if have > 0 {
        req = req.header("Range", format!("bytes={have}-"));
    }
    let mut resp = req.call().map_err(|e| {
        if matches!(e, ureq::Error::Timeout(_)) {
            network(
                url,
                format!("no answer within {} s", d.stall.as_secs_f64()),
                manual,
            )
        } else {
            network(url, e, manual)
        }
    })?;
    let status = resp.status().as_u16();
    let reused = match status {
        206 => have,
        200 => {
            // The server sends the whole file: start over.
            hasher = Sha256::new();
            0
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
    // The whole file's length as the server announces it.
    let announced = match status {
        206 => header("content-range").and_then(|r| {
            r.rsplit('/')
                .next()
                .and_then(|t| t.trim().parse::<u64>().ok())
        }),
        _ => header("content-length").and_then(|l| l.trim().parse::<u64>().ok()),
    };
    if let Some(a) = announced.filter(|&a| a != want) {
        return Err(refused(format!(
            "{url}: the server announces {a} bytes, but the file is {want} bytes: not the \
                 file asked for; refused before writing anything"
        )));
    }
    let mut out = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .append(reused > 0)
        .truncate(reused == 0)
        .open(&part)
        .map_err(|e| Error::io(&part, e))?;
    let mut downloaded = 0u64;
    let mut body = resp.body_mut().as_reader();
    let mut buf = vec![0u8; 1 << 16];
    progress(reused, Some(want));
    while reused + downloaded < want {
        if cancel.load(Ordering::Relaxed) {
            let _ = out.flush();
            return Err(refused(format!(
                "{url}: stopped after {} bytes; fetch again to continue",
                reused + downloaded
            )));
        }
        // Never more than the file's length.
        let room = (want - reused - downloaded).min(buf.len() as u64) as usize;
        let k = match body.read(&mut buf[..room]) {
            Ok(0) => break,
            Ok(k) => k,
            Err(e) => {
                let _ = out.flush();
                let what = if is_stall(&e) {
                    format!(
                        "no byte arrived for {} s after {} bytes",
                        d.stall.as_secs_f64(),
                        reused + downloaded
                    )
                } else {
                    format!(
                        "the transfer broke off after {} bytes ({e})",
                        reused + downloaded
                    )
                };
                return Err(network(
                    url,
                    format!("{what}; fetch again to continue where it stopped"),
                    manual,
                ));
            }
        };
        out.write_all(&buf[..k]).map_err(|e| Error::io(&part, e))?;
        hasher.update(&buf[..k]);
        downloaded += k as u64;
        progress(reused + downloaded, Some(want));
    }
    out.sync_all().map_err(|e| Error::io(&part, e))?;
    drop(out);
    if reused + downloaded < want {
        return Err(network(
            url,
            format!(
                "the transfer ended after {} of {want} bytes; fetch again to continue",
                reused + downloaded
            ),
            manual,
        ));
    }
    finish(d, &part, hasher, downloaded, reused)
}

/// The whole `.part` is there: keep it under its final name if its hash matches.
fn finish(
    d: &Download,
    part: &Path,
    hasher: Sha256,
    downloaded: u64,
    reused: u64,
) -> Result<Fetched> {
    let got = hex(&hasher.finalize());
    if got != d.sha256 {
        let _ = std::fs::remove_file(part);
        return Err(refused(format!(
            "{}: the file's SHA-256 is {got}, but {} was expected (its name abbreviates \
                 it): the download is corrupted or not the file asked for, and was not kept",
            d.url, d.sha256
        )));
    }
    std::fs::rename(part, d.dest).map_err(|e| Error::io(d.dest, e))?;
    Ok(Fetched {
        path: d.dest.to_path_buf(),
        downloaded,
        reused,
    })
}

/// A message for a fetch that cannot reach the network: where to get the file by hand, where
/// to put it, and `or` what else the user can do with it (`pass the file itself to
/// --weights` on the command line, the Browse button in the window).
pub fn manual_hint(url: &str, dest: &Path, or: &str) -> String {
    format!(
        "download {url} by hand and put it at {}, or {or}",
        shown(dest)
    )
}
