//! Where resized images are kept between epochs and between runs: in memory within a byte
//! budget that all of a run's caches share, and only past it in the on-disk cache
//! (`disk_cache`), which a later run reads too.
use super::disk_cache::{DiskCache, DEFAULT_CAP_MIB};
use super::preprocess::ResizeMode;
use crate::Result;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

/// Bytes of memory the caches of a run may hold together.
#[derive(Debug)]
pub struct MemoryBudget {
    limit: u64,
    used: AtomicU64,
}

impl MemoryBudget {
    /// A budget of `limit` bytes.
    pub fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicU64::new(0),
        })
    }

    /// A quarter of the machine's memory (2 GiB where it cannot be read).
    pub fn default_limit() -> u64 {
        physical_memory().map(|m| m / 4).unwrap_or(2 << 30)
    }

    /// The limit in bytes.
    pub fn limit(&self) -> u64 {
        self.limit
    }

    /// Bytes held now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    fn try_take(&self, n: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |u| {
                (u + n <= self.limit).then_some(u + n)
            })
            .is_ok()
    }

    fn give_back(&self, n: u64) {
        self.used.fetch_sub(n, Ordering::AcqRel);
    }
}

/// Total physical memory in bytes (Linux: `/proc/meminfo`).
fn physical_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The cache a user sets: its memory and its folder.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CacheSettings {
    /// Memory for resized images, in MiB (None: a quarter of the machine's memory).
    pub memory_mib: Option<u64>,
    /// Folder of the on-disk cache (None: no disk cache; images past the memory budget are
    /// decoded again when needed).
    pub dir: Option<PathBuf>,
    /// Most the disk cache may hold, in MiB (None: 10 GiB); past it the least recently
    /// used entries go.
    pub disk_mib: Option<u64>,
}

impl CacheSettings {
    /// The settings a user gets without asking: the default budget and the user's cache
    /// folder.
    pub fn user_default() -> Self {
        Self {
            memory_mib: None,
            dir: default_cache_dir(),
            disk_mib: None,
        }
    }

    /// The disk cap in bytes.
    pub fn disk_cap(&self) -> u64 {
        self.disk_mib
            .unwrap_or(DEFAULT_CAP_MIB)
            .saturating_mul(1 << 20)
    }

    /// Opens the budget these settings name, for one run.
    pub fn open(&self) -> CachePlace {
        CachePlace {
            budget: MemoryBudget::new(
                self.memory_mib
                    .map(|m| m << 20)
                    .unwrap_or_else(MemoryBudget::default_limit),
            ),
            disk: self
                .dir
                .clone()
                .map(|d| Arc::new(DiskCache::new(d, self.disk_cap()))),
        }
    }
}

/// `$COVID_RESNET_CACHE`, else the platform's cache folder + `covid-resnet/images`.
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("COVID_RESNET_CACHE") {
        return Some(PathBuf::from(p));
    }
    crate::files::user_folder(crate::files::UserFolder::Cache).map(|d| d.join("images"))
}

/// A run's budget and disk folder, shared by its caches.
#[derive(Debug, Clone)]
pub struct CachePlace {
    /// The memory budget.
    pub budget: Arc<MemoryBudget>,
    /// The on-disk cache, if any.
    pub disk: Option<Arc<DiskCache>>,
}

impl Default for CachePlace {
    /// The default budget, no disk cache.
    fn default() -> Self {
        CacheSettings::default().open()
    }
}

/// Pixel types a cache holds: 16-bit training images, f32 evaluation planes.
pub trait Pixel: Copy + Send + Sync + 'static {
    /// Part of the disk key.
    const TAG: &'static str;
    /// Little-endian bytes.
    fn to_bytes(v: &[Self]) -> Vec<u8>;
    /// Back from bytes (None: wrong length).
    fn from_bytes(b: &[u8], n: usize) -> Option<Vec<Self>>;
}

impl Pixel for u8 {
    const TAG: &'static str = "u8";
    fn to_bytes(v: &[Self]) -> Vec<u8> {
        v.to_vec()
    }
    fn from_bytes(b: &[u8], n: usize) -> Option<Vec<Self>> {
        (b.len() == n).then(|| b.to_vec())
    }
}

impl Pixel for u16 {
    const TAG: &'static str = "u16";
    fn to_bytes(v: &[Self]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }
    fn from_bytes(b: &[u8], n: usize) -> Option<Vec<Self>> {
        (b.len() == 2 * n).then(|| {
            b.chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect()
        })
    }
}

impl Pixel for f32 {
    const TAG: &'static str = "f32";
    fn to_bytes(v: &[Self]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }
    fn from_bytes(b: &[u8], n: usize) -> Option<Vec<Self>> {
        (b.len() == 4 * n).then(|| {
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        })
    }
}

/// Resized images of one size for a list of files, filled on first use.
pub struct ImageCache<T: Pixel> {
    size_px: u32,
    resize: ResizeMode,
    slots: Vec<OnceLock<Arc<[T]>>>,
    place: CachePlace,
    held: AtomicU64,
    disk_error: OnceLock<String>,
}

impl<T: Pixel> ImageCache<T> {
    /// A cache for `n` images at `size_px`, `resize`, in `place`.
    pub fn new(n: usize, size_px: u32, resize: ResizeMode, place: CachePlace) -> Self {
        Self {
            size_px,
            resize,
            slots: (0..n).map(|_| OnceLock::new()).collect(),
            place,
            held: AtomicU64::new(0),
            disk_error: OnceLock::new(),
        }
    }

    /// The input size.
    pub fn size_px(&self) -> u32 {
        self.size_px
    }

    /// The resize mode.
    pub fn resize(&self) -> ResizeMode {
        self.resize
    }

    /// Images held in memory.
    pub fn in_memory(&self) -> usize {
        self.slots.iter().filter(|s| s.get().is_some()).count()
    }

    /// The first failure to write the disk cache, if any (the run goes on without it).
    pub fn disk_error(&self) -> Option<&str> {
        self.disk_error.get().map(String::as_str)
    }

    /// Image `i` (the file at `path`): from memory, else from disk, else `make()` (decode and
    /// resize); kept in memory while the budget allows, else written to the disk cache.
    pub fn get(
        &self,
        i: usize,
        path: &Path,
        make: impl FnOnce() -> Result<Vec<T>>,
    ) -> Result<Arc<[T]>> {
        if let Some(v) = self.slots[i].get() {
            return Ok(v.clone());
        }
        let n = self.size_px as usize * self.size_px as usize;
        let disk = self.place.disk.as_deref();
        let what = format!("{}/{:?}/{}", self.size_px, self.resize, T::TAG);
        let entry = disk.and_then(|d| d.entry(path, &what));
        let from_disk = disk
            .zip(entry.as_deref())
            .and_then(|(d, e)| d.read(e))
            .and_then(|b| T::from_bytes(&b, n));
        let fresh = from_disk.is_none();
        let v: Arc<[T]> = match from_disk {
            Some(v) => v,
            None => make()?,
        }
        .into();
        let bytes = (v.len() * std::mem::size_of::<T>()) as u64;
        if self.place.budget.try_take(bytes) {
            if self.slots[i].set(v.clone()).is_ok() {
                self.held.fetch_add(bytes, Ordering::AcqRel);
            } else {
                self.place.budget.give_back(bytes);
            }
        } else if let (true, Some(d), Some(e)) = (fresh, disk, &entry) {
            // Past the memory budget: kept on disk for the next time.
            if let Err(err) = d.write(e, &T::to_bytes(&v)) {
                let _ = self
                    .disk_error
                    .set(format!("{}: {err}", crate::files::shown(e)));
            }
        }
        Ok(v)
    }
}

impl<T: Pixel> Drop for ImageCache<T> {
    fn drop(&mut self) {
        self.place
            .budget
            .give_back(self.held.load(Ordering::Acquire));
    }
}

#[cfg(test)]
mod tests {
    use super::super::disk_cache::set_mtime;
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn file(dir: &Path, name: &str, content: &[u8]) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    #[test]
    fn memory_stays_within_the_budget_and_is_given_back() {
        let d = tempfile::tempdir().unwrap();
        let files: Vec<PathBuf> = (0..10)
            .map(|i| file(d.path(), &format!("{i}"), b"x"))
            .collect();
        let place = CachePlace {
            budget: MemoryBudget::new(4 * 16),
            disk: None,
        };
        let made = AtomicUsize::new(0);
        let make = || {
            made.fetch_add(1, Ordering::Relaxed);
            Ok(vec![7u8; 16])
        };
        {
            let c = ImageCache::<u8>::new(10, 4, ResizeMode::Squash, place.clone());
            for (i, f) in files.iter().enumerate() {
                assert_eq!(&*c.get(i, f, make).unwrap(), &[7u8; 16]);
            }
            assert_eq!(c.in_memory(), 4);
            assert_eq!(place.budget.used(), 64);
            // Held images are not made again; the others are (no disk cache).
            for (i, f) in files.iter().enumerate() {
                c.get(i, f, make).unwrap();
            }
            assert_eq!(made.load(Ordering::Relaxed), 16);
        }
        assert_eq!(
            place.budget.used(),
            0,
            "a dropped cache gives its memory back"
        );
    }

    #[test]
    fn the_disk_cache_is_reused_and_invalidated_when_the_file_changes() {
        let d = tempfile::tempdir().unwrap();
        let cache_dir = d.path().join("cache");
        let img = file(d.path(), "a.png", b"first");
        let place = || CachePlace {
            budget: MemoryBudget::new(0),
            disk: Some(Arc::new(DiskCache::new(cache_dir.clone(), 1 << 30))),
        };
        let made = AtomicUsize::new(0);
        let make = |v: f32| {
            let made = &made;
            move || {
                made.fetch_add(1, Ordering::Relaxed);
                Ok(vec![v; 4])
            }
        };
        let c = ImageCache::<f32>::new(1, 2, ResizeMode::Squash, place());
        assert_eq!(&*c.get(0, &img, make(0.25)).unwrap(), &[0.25; 4]);
        // A second cache (a later run) reads the entry instead of decoding.
        let c2 = ImageCache::<f32>::new(1, 2, ResizeMode::Squash, place());
        assert_eq!(&*c2.get(0, &img, make(9.0)).unwrap(), &[0.25; 4]);
        assert_eq!(made.load(Ordering::Relaxed), 1);
        // Another size or resize mode is another entry.
        let c3 = ImageCache::<f32>::new(1, 2, ResizeMode::CenterCrop, place());
        assert_eq!(&*c3.get(0, &img, make(0.5)).unwrap(), &[0.5; 4]);
        // The file changes (length and time): the old entry is not read.
        std::thread::sleep(std::time::Duration::from_millis(20));
        std::fs::write(&img, b"second version").unwrap();
        let c4 = ImageCache::<f32>::new(1, 2, ResizeMode::Squash, place());
        assert_eq!(&*c4.get(0, &img, make(0.75)).unwrap(), &[0.75; 4]);
        assert_eq!(made.load(Ordering::Relaxed), 3);
        // Damaged entries (cut short; zeroed at their full length) are made again and
        // rewritten, never misread.
        for (k, bad) in [false, true].into_iter().enumerate() {
            for e in walk(&cache_dir) {
                let len = std::fs::metadata(&e).unwrap().len() as usize;
                std::fs::write(&e, if bad { vec![0u8; len] } else { b"xx".to_vec() }).unwrap();
            }
            let c5 = ImageCache::<f32>::new(1, 2, ResizeMode::Squash, place());
            assert_eq!(&*c5.get(0, &img, make(0.75)).unwrap(), &[0.75; 4]);
            assert!(c5.disk_error().is_none());
            assert_eq!(made.load(Ordering::Relaxed), 4 + k);
            // ... and the rewritten entry serves the next run.
            let c6 = ImageCache::<f32>::new(1, 2, ResizeMode::Squash, place());
            assert_eq!(&*c6.get(0, &img, make(9.0)).unwrap(), &[0.75; 4]);
            assert_eq!(made.load(Ordering::Relaxed), 4 + k);
        }
    }

    #[test]
    fn a_file_rewritten_with_the_same_size_and_time_is_decoded_again() {
        // Before: keyed by path, size and mtime only, an image replaced by its negative
        // with `touch -r` kept serving the old pixels.
        let d = tempfile::tempdir().unwrap();
        let img = file(d.path(), "a.png", b"positive");
        let t = std::fs::metadata(&img).unwrap().modified().unwrap();
        let place = CachePlace {
            budget: MemoryBudget::new(0),
            disk: Some(Arc::new(DiskCache::new(d.path().join("c"), 1 << 30))),
        };
        let c = ImageCache::<u8>::new(1, 1, ResizeMode::Squash, place.clone());
        assert_eq!(&*c.get(0, &img, || Ok(vec![200])).unwrap(), &[200]);
        std::fs::write(&img, b"negative").unwrap();
        set_mtime(&img, t);
        let md = std::fs::metadata(&img).unwrap();
        assert_eq!((md.len(), md.modified().unwrap()), (8, t));
        let c2 = ImageCache::<u8>::new(1, 1, ResizeMode::Squash, place);
        assert_eq!(&*c2.get(0, &img, || Ok(vec![55])).unwrap(), &[55]);
    }

    #[test]
    fn a_real_image_replaced_by_its_negative_is_not_served_stale() {
        // The case on real PNGs: same length, same modification time, other pixels.
        use crate::data::decode::decode_file;
        use crate::data::preprocess::resize_gray;
        let d = tempfile::tempdir().unwrap();
        let (img, neg) = (d.path().join("x.png"), d.path().join("neg.png"));
        let shade = |v: u8| {
            image::GrayImage::from_fn(64, 64, |x, y| image::Luma([v + ((x + y) as u8 & 1)]))
        };
        shade(60).save(&img).unwrap();
        shade(195).save(&neg).unwrap();
        let bytes = std::fs::read(&neg).unwrap();
        assert_eq!(std::fs::metadata(&img).unwrap().len(), bytes.len() as u64);
        let place = CachePlace {
            budget: MemoryBudget::new(0),
            disk: Some(Arc::new(DiskCache::new(d.path().join("c"), 1 << 30))),
        };
        let mean = |p: &Path| -> f32 {
            let c = ImageCache::<f32>::new(1, 8, ResizeMode::Squash, place.clone());
            let v = c
                .get(0, p, || {
                    resize_gray(&decode_file(p)?, 8, ResizeMode::Squash)
                })
                .unwrap();
            v.iter().sum::<f32>() / v.len() as f32 * 255.0
        };
        assert!((mean(&img) - 60.5).abs() < 1.0);
        let t = std::fs::metadata(&img).unwrap().modified().unwrap();
        std::fs::write(&img, &bytes).unwrap();
        set_mtime(&img, t);
        assert!((mean(&img) - 195.5).abs() < 1.0, "stale pixels served");
    }

    #[test]
    fn images_that_fit_in_memory_are_not_written_to_disk() {
        let d = tempfile::tempdir().unwrap();
        let img = file(d.path(), "a.png", b"x");
        let dir = d.path().join("cache");
        let place = CachePlace {
            budget: MemoryBudget::new(1 << 20),
            disk: Some(Arc::new(DiskCache::new(dir.clone(), 1 << 30))),
        };
        let c = ImageCache::<u8>::new(1, 2, ResizeMode::Squash, place);
        c.get(0, &img, || Ok(vec![1, 2, 3, 4])).unwrap();
        assert!(!dir.exists());
    }

    fn walk(d: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(d).unwrap().flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
        out
    }

    #[test]
    fn an_unwritable_cache_folder_is_reported_and_the_images_still_come() {
        let d = tempfile::tempdir().unwrap();
        let img = file(d.path(), "a.png", b"x");
        let blocker = file(d.path(), "not-a-folder", b"");
        let c = ImageCache::<u8>::new(
            1,
            1,
            ResizeMode::Squash,
            CachePlace {
                budget: MemoryBudget::new(0),
                disk: Some(Arc::new(DiskCache::new(blocker, 1 << 30))),
            },
        );
        assert_eq!(&*c.get(0, &img, || Ok(vec![3u8])).unwrap(), &[3u8]);
        assert!(c.disk_error().unwrap().contains("not-a-folder"));
    }
}
