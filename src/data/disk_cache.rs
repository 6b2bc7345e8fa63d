//! The on-disk cache of resized images: one file an entry, named by a digest of what it was
//! made from (the source file's path, length, modification time and a sample of its content,
//! plus the size, resize mode and pixel type), holding a checksum of its pixels. A source
//! whose content changed gets a new name, so a stale entry is never read; an entry whose
//! pixels do not match their checksum (damaged, zeroed, cut short) is refused, and the image
//! is decoded again and the entry rewritten. Entries are written whole (a temporary file
//! renamed), so a crash or a second process cannot leave half of one. The folder is held
//! under a size cap: past it the oldest entries (by when they were written) go first.
use sha2::{Digest, Sha256};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// The start of every entry: the format and its version.
const MAGIC: &[u8; 8] = b"CRPX\x01\0\0\0";
/// Magic, payload length (u64 LE), SHA-256 of the payload.
const HEADER: usize = 8 + 8 + 32;
/// How much of each end of a source file its digest reads (the whole file when it is at
/// most twice this).
pub const SAMPLE: u64 = 64 << 10;
/// The cap when the user sets none: 10 GiB.
pub const DEFAULT_CAP_MIB: u64 = 10 << 10;

/// An on-disk cache folder with its cap.
#[derive(Debug)]
pub struct DiskCache {
    dir: PathBuf,
    cap: u64,
    /// Bytes of entries in the folder as last counted (None: not counted yet).
    used: Mutex<Option<u64>>,
    damaged: AtomicU64,
}

impl DiskCache {
    /// The cache in `dir`, holding at most `cap` bytes.
    pub fn new(dir: PathBuf, cap: u64) -> Self {
        Self {
            dir,
            cap,
            used: Mutex::new(None),
            damaged: AtomicU64::new(0),
        }
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The cap in bytes.
    pub fn cap(&self) -> u64 {
        self.cap
    }

    /// Entries refused so far because their pixels did not match their checksum.
    pub fn damaged(&self) -> u64 {
        self.damaged.load(Ordering::Relaxed)
    }

    /// The entry of `source` as it is now, for the resize described by `what` (None when
    /// the source cannot be read).
    pub fn entry(&self, source: &Path, what: &str) -> Option<PathBuf> {
        let digest = source_digest(source).ok()?;
        let mut h = Sha256::new();
        h.update(source.as_os_str().as_encoded_bytes());
        h.update([0]);
        h.update(digest);
        h.update(what.as_bytes());
        let hex: String = h.finalize()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Some(self.dir.join(&hex[..2]).join(format!("{hex}.px")))
    }

    /// The pixels stored in `entry`, if it is there, whole and matches its checksum.
    pub fn read(&self, entry: &Path) -> Option<Vec<u8>> {
        let bytes = std::fs::read(entry).ok()?;
        match unpack(&bytes) {
            Some(p) => Some(p.to_vec()),
            None => {
                self.damaged.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Writes `payload` as `entry`, first making room under the cap.
    pub fn write(&self, entry: &Path, payload: &[u8]) -> std::io::Result<()> {
        let size = (HEADER + payload.len()) as u64;
        if size > self.cap {
            return Ok(());
        }
        // A rewritten entry replaces its old bytes.
        let old = std::fs::metadata(entry).map(|m| m.len()).unwrap_or(0);
        self.make_room(size, old);
        let dir = entry.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        tmp.write_all(&pack(payload))?;
        tmp.persist(entry).map_err(|e| e.error)?;
        Ok(())
    }

    /// Counts the folder if not yet done; past the cap, removes the oldest entries until
    /// `incoming` more bytes (in place of `replaced` ones) leave a tenth of the cap free.
    fn make_room(&self, incoming: u64, replaced: u64) {
        let mut used = self.used.lock().unwrap_or_else(|e| e.into_inner());
        let now = match *used {
            Some(u) => u,
            None => usage(&self.dir).map(|u| u.bytes).unwrap_or(0),
        }
        .saturating_sub(replaced);
        let now = if now + incoming > self.cap {
            evict(
                &self.dir,
                self.cap - self.cap / 10 - incoming.min(self.cap / 10 * 9),
            )
        } else {
            now
        };
        *used = Some(now + incoming);
    }
}

/// What a cache folder holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Entries.
    pub entries: u64,
    /// Their bytes.
    pub bytes: u64,
}

fn entries(dir: &Path) -> Vec<(std::time::SystemTime, u64, PathBuf)> {
    let mut out = Vec::new();
    let Ok(subs) = std::fs::read_dir(dir) else {
        return out;
    };
    for sub in subs.flatten() {
        let Ok(files) = std::fs::read_dir(sub.path()) else {
            continue;
        };
        for f in files.flatten() {
            let p = f.path();
            if p.extension().is_some_and(|e| e == "px") {
                if let Ok(md) = f.metadata() {
                    let t = md.modified().unwrap_or(std::time::UNIX_EPOCH);
                    out.push((t, md.len(), p));
                }
            }
        }
    }
    out
}

/// The entries in `dir` and their bytes.
pub fn usage(dir: &Path) -> std::io::Result<Usage> {
    if !dir.exists() {
        return Ok(Usage::default());
    }
    std::fs::read_dir(dir)?;
    let all = entries(dir);
    Ok(Usage {
        entries: all.len() as u64,
        bytes: all.iter().map(|e| e.1).sum(),
    })
}

/// Removes the oldest entries of `dir` (by modification time: when they were written) until
/// at most `keep` bytes remain; returns the bytes left.
pub fn evict(dir: &Path, keep: u64) -> u64 {
    let mut all = entries(dir);
    let mut left: u64 = all.iter().map(|e| e.1).sum();
    all.sort_by_key(|e| e.0);
    for (_, len, p) in all {
        if left <= keep {
            break;
        }
        if std::fs::remove_file(&p).is_ok() {
            left -= len;
        }
    }
    left
}

/// A digest of what a source file is now: its length, modification time and content (the
/// whole file up to 2 * SAMPLE bytes, else its first and last SAMPLE bytes).
pub fn source_digest(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut f = std::fs::File::open(path)?;
    let md = f.metadata()?;
    let len = md.len();
    let mtime = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let mut h = Sha256::new();
    h.update(len.to_le_bytes());
    h.update(mtime.to_le_bytes());
    let mut buf = Vec::new();
    if len <= 2 * SAMPLE {
        f.read_to_end(&mut buf)?;
    } else {
        buf.resize(SAMPLE as usize, 0);
        f.read_exact(&mut buf)?;
        h.update(&buf);
        f.seek(SeekFrom::Start(len - SAMPLE))?;
        f.read_exact(&mut buf)?;
    }
    h.update(&buf);
    Ok(h.finalize().into())
}

fn pack(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(payload));
    out.extend_from_slice(payload);
    out
}

/// The payload of an entry, if its header is right and its checksum matches.
fn unpack(bytes: &[u8]) -> Option<&[u8]> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return None;
    }
    let n = u64::from_le_bytes(bytes[8..16].try_into().ok()?);
    let payload = &bytes[HEADER..];
    (payload.len() as u64 == n && Sha256::digest(payload)[..] == bytes[16..48]).then_some(payload)
}

/// Sets a file's modification time (tests: a file rewritten with the same time).
#[cfg(test)]
pub(crate) fn set_mtime(path: &Path, t: std::time::SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(t)
        .unwrap();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_round_trips_and_any_damage_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let c = DiskCache::new(d.path().into(), 1 << 20);
        let e = d.path().join("ab").join("x.px");
        c.write(&e, &[1, 2, 3, 4]).unwrap();
        assert_eq!(c.read(&e).unwrap(), vec![1, 2, 3, 4]);
        let good = std::fs::read(&e).unwrap();
        // Zeroed, one bit flipped in the pixels, one in the checksum, cut short, longer.
        let mut flipped = good.clone();
        flipped[HEADER + 2] ^= 1;
        let mut sum = good.clone();
        sum[20] ^= 0x80;
        let mut longer = good.clone();
        longer.push(0);
        for bad in [
            vec![0u8; good.len()],
            flipped,
            sum,
            good[..good.len() - 1].to_vec(),
            longer,
        ] {
            std::fs::write(&e, &bad).unwrap();
            assert!(c.read(&e).is_none());
        }
        assert_eq!(c.damaged(), 5);
    }

    #[test]
    fn the_digest_follows_the_content_not_only_size_and_time() {
        let d = tempfile::tempdir().unwrap();
        for len in [10usize, 2 * SAMPLE as usize, 3 * SAMPLE as usize + 5] {
            let p = d.path().join(format!("f{len}"));
            let a: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            std::fs::write(&p, &a).unwrap();
            let t = std::fs::metadata(&p).unwrap().modified().unwrap();
            let before = source_digest(&p).unwrap();
            // The same length and time, another first byte, then another last byte.
            for at in [0, len - 1] {
                let mut b = a.clone();
                b[at] ^= 0xff;
                std::fs::write(&p, &b).unwrap();
                set_mtime(&p, t);
                assert_eq!(std::fs::metadata(&p).unwrap().modified().unwrap(), t);
                assert_ne!(source_digest(&p).unwrap(), before, "len {len}, byte {at}");
            }
        }
    }

    #[test]
    fn past_the_cap_the_oldest_entries_go() {
        let d = tempfile::tempdir().unwrap();
        let payload = vec![5u8; 1000 - HEADER];
        // Room for ten entries of 1000 bytes.
        let c = DiskCache::new(d.path().into(), 10_000);
        let path = |i: usize| d.path().join(format!("{:02x}", i)).join(format!("{i}.px"));
        let old = std::time::SystemTime::now() - std::time::Duration::from_secs(1000);
        for i in 0..10 {
            c.write(&path(i), &payload).unwrap();
            // Entry i was written i seconds after the oldest.
            set_mtime(&path(i), old + std::time::Duration::from_secs(i as u64));
        }
        assert_eq!(usage(d.path()).unwrap().bytes, 10_000);
        // Entry 0 is rewritten (a damaged entry decoded again): now the newest.
        c.write(&path(0), &payload).unwrap();
        // A new cache (a later run) counts the folder; the eleventh entry evicts the
        // oldest until a tenth of the cap is free after it: entries 1 and 2 go.
        let c2 = DiskCache::new(d.path().into(), 10_000);
        c2.write(&path(10), &payload).unwrap();
        let u = usage(d.path()).unwrap();
        assert!(u.bytes <= 10_000, "{u:?}");
        assert_eq!(u.entries, 9);
        assert!(path(0).exists() && path(10).exists());
        assert!(!path(1).exists() && !path(2).exists() && path(3).exists());
        // An entry larger than the cap is not written at all.
        let tiny = DiskCache::new(d.path().join("tiny"), 100);
        tiny.write(&d.path().join("tiny/aa/x.px"), &payload)
            .unwrap();
        assert_eq!(usage(&d.path().join("tiny")).unwrap().entries, 0);
    }
}
