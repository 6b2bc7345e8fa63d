//! Batches `[N, 3, H, W]` produced ahead of the consumer by worker threads through bounded
//! queues. Images are decoded and resized once per stage size and then kept as 16-bit pixels
//! (in memory within the run's budget, past it in the on-disk cache: see [`super::cache`]),
//! so later epochs skip decoding. Batch `b` of an epoch is built by worker
//! `b % threads` from samples drawn by (seed, epoch, index): the output depends on the seed
//! alone, never on thread timing.
use super::augment::{apply_geometry, apply_lighting, draw, AugmentConfig};
use super::cache::{CachePlace, ImageCache};
use super::decode::decode_file;
use super::preprocess::{resize_gray, Normalization, ResizeMode};
use super::sampler::{epoch_order, Sampling};
use super::split::Sample;
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Loader settings.
#[derive(Debug, Clone)]
pub struct LoaderConfig {
    /// Images per batch.
    pub batch_size: usize,
    /// Side of the square input.
    pub size_px: u32,
    /// Worker threads.
    pub threads: usize,
    /// Batches each worker may build ahead.
    pub prefetch: usize,
    /// Epoch order.
    pub sampling: Sampling,
    /// Drop a last batch smaller than `batch_size` (fastai does for training).
    pub drop_last: bool,
    /// Augmentation.
    pub augment: AugmentConfig,
    /// Seed of the order and the augmentation.
    pub seed: u64,
    /// Fitting to the square.
    pub resize: ResizeMode,
    /// Normalisation.
    pub norm: Normalization,
    /// Where resized images are kept.
    pub cache: CachePlace,
}

impl LoaderConfig {
    /// Training defaults: shuffled, augmented as the paper, ImageNet normalisation.
    pub fn train(batch_size: usize, size_px: u32, seed: u64) -> Self {
        Self {
            batch_size,
            size_px,
            threads: 2,
            prefetch: 2,
            sampling: Sampling::Shuffle,
            drop_last: false,
            augment: AugmentConfig::paper(),
            seed,
            resize: ResizeMode::Squash,
            norm: Normalization::IMAGENET,
            cache: CachePlace::default(),
        }
    }
}

/// One batch in host memory.
#[derive(Debug, Clone)]
pub struct HostBatch {
    /// Normalised pixels, (N, 3, S, S) row-major.
    pub data: Vec<f32>,
    /// Class indices.
    pub labels: Vec<u32>,
    /// Multi-label sets: each image's finding codes, one after another (`Sample::findings`).
    pub findings: Option<Vec<u8>>,
    /// Indices into the loader's samples.
    pub indices: Vec<usize>,
    /// Side in pixels.
    pub size_px: u32,
}

impl HostBatch {
    /// Images (N, 3, S, S) and labels (N) as tensors on `device`.
    pub fn to_tensors(self, device: &Device) -> Result<(Tensor, Tensor)> {
        let n = self.labels.len();
        let s = self.size_px as usize;
        let x = Tensor::from_vec(self.data, (n, 3, s, s), &Device::Cpu)?.to_device(device)?;
        let y = Tensor::from_vec(self.labels, n, &Device::Cpu)?.to_device(device)?;
        Ok((x, y))
    }

    /// Multi-label sets: targets and mask (N, labels) as float32 tensors on `device`.
    pub fn finding_tensors(&self, device: &Device) -> Result<Option<(Tensor, Tensor)>> {
        let Some(codes) = &self.findings else {
            return Ok(None);
        };
        let n = self.labels.len().max(1);
        let (t, m): (Vec<f32>, Vec<f32>) = codes
            .iter()
            .map(|&c| crate::data::findings::target_of(c))
            .unzip();
        let shape = (self.labels.len(), codes.len() / n);
        Ok(Some((
            Tensor::from_vec(t, shape, &Device::Cpu)?.to_device(device)?,
            Tensor::from_vec(m, shape, &Device::Cpu)?.to_device(device)?,
        )))
    }
}

/// Training images are kept as 16-bit values: a 12- or 16-bit radiograph trains on the grey
/// levels prediction sees (to 1/65535), not on 256 of them.
type Cache = ImageCache<u16>;

fn cache_for(n: usize, cfg: &LoaderConfig) -> Arc<Cache> {
    Arc::new(ImageCache::new(
        n,
        cfg.size_px,
        cfg.resize,
        cfg.cache.clone(),
    ))
}

/// Image `i` as 16-bit pixels at the cache's size.
fn cached(cache: &Cache, sample: &Sample, i: usize) -> Result<Arc<[u16]>> {
    cache.get(i, &sample.path, || {
        let img = decode_file(&sample.path)?;
        Ok(resize_gray(&img, cache.size_px(), cache.resize())?
            .into_iter()
            .map(|v| (v.clamp(0.0, 1.0) * 65535.0).round() as u16)
            .collect())
    })
}

/// Produces the batches of a list of samples, epoch after epoch.
pub struct DataLoader {
    samples: Arc<Vec<Sample>>,
    cfg: LoaderConfig,
    cache: Arc<Cache>,
}

impl DataLoader {
    /// A loader over `samples`.
    pub fn new(samples: Vec<Sample>, cfg: LoaderConfig) -> Result<Self> {
        if cfg.batch_size == 0 || cfg.size_px < 8 || cfg.threads == 0 {
            return Err(Error::invalid(
                "loader",
                format!(
                    "batch size {}, size {} px, {} threads",
                    cfg.batch_size, cfg.size_px, cfg.threads
                ),
            ));
        }
        let cache = cache_for(samples.len(), &cfg);
        Ok(Self {
            samples: Arc::new(samples),
            cfg,
            cache,
        })
    }

    /// The samples.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// The settings.
    pub fn config(&self) -> &LoaderConfig {
        &self.cfg
    }

    /// Changes the input size (a new stage): the cache is rebuilt for the new size.
    pub fn set_size(&mut self, size_px: u32) {
        if size_px != self.cfg.size_px {
            self.cfg.size_px = size_px;
            // The old size's memory goes back to the budget before the new one fills.
            self.cache = cache_for(0, &self.cfg);
            self.cache = cache_for(self.samples.len(), &self.cfg);
        }
    }

    /// Images held in memory so far.
    pub fn cached(&self) -> usize {
        self.cache.in_memory()
    }

    /// The first failure to write the on-disk cache, if any.
    pub fn disk_cache_error(&self) -> Option<String> {
        self.cache.disk_error().map(String::from)
    }

    /// Batches per epoch.
    pub fn num_batches(&self) -> usize {
        let n = self.samples.len();
        let b = self.cfg.batch_size;
        if self.cfg.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// The batches of epoch `epoch`, built in the background.
    pub fn epoch(&self, epoch: u64) -> EpochIter {
        self.epoch_from(epoch, 0)
    }

    /// The batches of epoch `epoch` from batch `start` on (resuming inside an epoch):
    /// the same batches, with the same contents, as the full epoch's.
    pub fn epoch_from(&self, epoch: u64, start: usize) -> EpochIter {
        let labels: Vec<usize> = self.samples.iter().map(|s| s.label).collect();
        let order = epoch_order(&labels, self.cfg.sampling, self.cfg.seed, epoch);
        let b = self.cfg.batch_size;
        let mut batches: Vec<Vec<usize>> = order.chunks(b).map(|c| c.to_vec()).collect();
        if self.cfg.drop_last && batches.last().is_some_and(|l| l.len() < b) {
            batches.pop();
        }
        batches.drain(..start.min(batches.len()));
        let batches = Arc::new(batches);
        let stop = Arc::new(AtomicBool::new(false));
        let threads = self.cfg.threads.min(batches.len().max(1));
        let mut receivers = Vec::with_capacity(threads);
        let mut handles = Vec::with_capacity(threads);
        for w in 0..threads {
            let (tx, rx) = sync_channel::<Result<HostBatch>>(self.cfg.prefetch.max(1));
            receivers.push(rx);
            let (batches, samples, cache, cfg, stop) = (
                batches.clone(),
                self.samples.clone(),
                self.cache.clone(),
                self.cfg.clone(),
                stop.clone(),
            );
            let spawned = std::thread::Builder::new()
                .name(format!("loader-{w}"))
                .spawn(move || {
                    for bi in (w..batches.len()).step_by(threads) {
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        let r = build_batch(&batches[bi], &samples, &cache, &cfg, epoch);
                        if tx.send(r).is_err() {
                            return;
                        }
                    }
                });
            match spawned {
                Ok(h) => handles.push(h),
                Err(e) => {
                    // Without this worker its batches never arrive: report it at once.
                    let (tx, rx) = sync_channel(1);
                    let _ = tx.send(Err(Error::invalid(
                        "loader",
                        format!("cannot start a worker thread: {e}"),
                    )));
                    receivers[w] = rx;
                }
            }
        }
        EpochIter {
            receivers,
            next: 0,
            total: batches.len(),
            stop,
            handles,
        }
    }
}

fn build_batch(
    idx: &[usize],
    samples: &[Sample],
    cache: &Cache,
    cfg: &LoaderConfig,
    epoch: u64,
) -> Result<HostBatch> {
    let s = cache.size_px() as usize;
    let plane = s * s;
    let mut data = vec![0f32; idx.len() * 3 * plane];
    let mut labels = Vec::with_capacity(idx.len());
    let mut src = vec![0f32; plane];
    let mut px = vec![0f32; plane];
    for (k, &i) in idx.iter().enumerate() {
        let img = cached(cache, &samples[i], i)?;
        for (d, &v) in src.iter_mut().zip(img.iter()) {
            *d = v as f32 / 65535.0;
        }
        let d = draw(&cfg.augment, cfg.seed, epoch, i as u64);
        apply_geometry(&src, s, &d, &mut px);
        apply_lighting(&mut px, &d);
        cfg.norm
            .apply_into(&px, &mut data[k * 3 * plane..(k + 1) * 3 * plane]);
        labels.push(samples[i].label as u32);
    }
    let findings = idx
        .first()
        .and_then(|&i| samples[i].findings.as_ref())
        .map(|_| {
            let mut codes = Vec::new();
            for &i in idx {
                codes.extend_from_slice(samples[i].findings.as_deref().unwrap_or_default());
            }
            codes
        });
    Ok(HostBatch {
        data,
        labels,
        findings,
        indices: idx.to_vec(),
        size_px: cache.size_px(),
    })
}

/// A training image as the network gets it, for people to look at.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewImage {
    /// Gray pixels (the first channel with the normalisation undone), side x side.
    pub pixels: Vec<u8>,
    /// Side in pixels.
    pub side: usize,
    /// Class index.
    pub label: usize,
    /// Multi-label sets: the image's finding codes (`Sample::findings`; None: single-label).
    pub findings: Option<Vec<u8>>,
}

/// The first batch of epoch `epoch` over `samples` as the network gets it (augmented as
/// `cfg` says), for the batch preview.
pub fn preview_batch(
    samples: Vec<Sample>,
    cfg: LoaderConfig,
    epoch: u64,
) -> Result<Vec<PreviewImage>> {
    let norm = cfg.norm;
    let loader = DataLoader::new(samples, cfg)?;
    let b = loader
        .epoch(epoch)
        .next()
        .ok_or_else(|| Error::invalid("dataset", "no training images"))??;
    let s = b.size_px as usize;
    let plane = s * s;
    let nf = b
        .findings
        .as_ref()
        .map_or(0, |f| f.len() / b.labels.len().max(1));
    Ok(b.labels
        .iter()
        .enumerate()
        .map(|(k, &l)| PreviewImage {
            pixels: b.data[k * 3 * plane..k * 3 * plane + plane]
                .iter()
                .map(|&v| (norm.invert(0, v).clamp(0.0, 1.0) * 255.0).round() as u8)
                .collect(),
            side: s,
            label: l as usize,
            findings: b
                .findings
                .as_ref()
                .map(|f| f[k * nf..(k + 1) * nf].to_vec()),
        })
        .collect())
}

/// The batches of one epoch, in order.
pub struct EpochIter {
    receivers: Vec<Receiver<Result<HostBatch>>>,
    next: usize,
    total: usize,
    stop: Arc<AtomicBool>,
    handles: Vec<JoinHandle<()>>,
}

impl Iterator for EpochIter {
    type Item = Result<HostBatch>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.next >= self.total {
            return None;
        }
        let w = self.next % self.receivers.len();
        self.next += 1;
        Some(self.receivers[w].recv().unwrap_or_else(|_| {
            Err(Error::invalid(
                "loader",
                "a worker thread stopped unexpectedly",
            ))
        }))
    }
}

impl Drop for EpochIter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receivers unblocks workers waiting to send.
        self.receivers.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{GrayImage as Img, Luma};

    fn dataset(n: usize) -> (tempfile::TempDir, Vec<Sample>) {
        let dir = tempfile::tempdir().unwrap();
        let samples = (0..n)
            .map(|i| {
                let p = dir.path().join(format!("{i}.png"));
                Img::from_fn(20, 16, |x, y| {
                    Luma([((x * 5 + y * 3 + i as u32 * 17) % 256) as u8])
                })
                .save(&p)
                .unwrap();
                Sample {
                    path: p,
                    label: i % 4,
                    patient: i.to_string(),
                    source: None,
                    findings: None,
                }
            })
            .collect();
        (dir, samples)
    }

    #[test]
    fn each_sample_once_per_epoch_with_a_partial_last_batch() {
        let (_d, samples) = dataset(23);
        let l = DataLoader::new(samples, LoaderConfig::train(5, 16, 3)).unwrap();
        assert_eq!(l.num_batches(), 5);
        let mut seen: Vec<usize> = Vec::new();
        let mut sizes = Vec::new();
        for b in l.epoch(0) {
            let b = b.unwrap();
            assert_eq!(b.data.len(), b.labels.len() * 3 * 16 * 16);
            sizes.push(b.labels.len());
            seen.extend(&b.indices);
        }
        assert_eq!(sizes, vec![5, 5, 5, 5, 3]);
        seen.sort();
        assert_eq!(seen, (0..23).collect::<Vec<_>>());
        assert_eq!(l.cached(), 23);
        let mut dl = LoaderConfig::train(5, 16, 3);
        dl.drop_last = true;
        let l2 = DataLoader::new(l.samples().to_vec(), dl).unwrap();
        assert_eq!(l2.epoch(0).count(), 4);
    }

    #[test]
    fn deterministic_for_a_seed_whatever_the_threads() {
        let (_d, samples) = dataset(12);
        let run = |threads: usize, seed: u64, epoch: u64| -> Vec<(Vec<usize>, Vec<f32>)> {
            let mut cfg = LoaderConfig::train(4, 16, seed);
            cfg.threads = threads;
            let l = DataLoader::new(samples.clone(), cfg).unwrap();
            l.epoch(epoch)
                .map(|b| b.unwrap())
                .map(|b| (b.indices, b.data))
                .collect()
        };
        let a = run(1, 9, 0);
        assert_eq!(a, run(3, 9, 0), "thread count changed the output");
        assert_eq!(a, run(2, 9, 0));
        assert_ne!(a, run(2, 9, 1), "a new epoch draws anew");
        assert_ne!(a, run(2, 10, 0), "a new seed draws anew");
    }

    fn in_order(batch: usize, size: u32) -> LoaderConfig {
        LoaderConfig {
            sampling: Sampling::Sequential,
            augment: AugmentConfig::off(),
            ..LoaderConfig::train(batch, size, 0)
        }
    }

    #[test]
    fn a_16_bit_image_trains_on_the_pixels_prediction_sees() {
        // A 16-bit gradient: 64 x 64 distinct grey levels, most between two 8-bit ones.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("deep.png");
        image::ImageBuffer::<Luma<u16>, Vec<u16>>::from_fn(64, 64, |x, y| {
            Luma([(x * 1021 + y * 13) as u16])
        })
        .save(&p)
        .unwrap();
        let samples = vec![Sample {
            path: p.clone(),
            label: 0,
            patient: "p".into(),
            source: None,
            findings: None,
        }];
        let cfg = in_order(1, 32);
        let norm = cfg.norm;
        let l = DataLoader::new(samples, cfg).unwrap();
        let b = l.epoch(0).next().unwrap().unwrap();
        // What eval, predict and the Viewer feed the network: `Preprocess`'s plane.
        let pre = crate::data::preprocess::Preprocess {
            size_px: 32,
            resize: ResizeMode::Squash,
            norm,
        };
        let want = pre
            .plane(&crate::data::decode::decode_file(&p).unwrap())
            .unwrap();
        let got: Vec<f32> = b.data[..32 * 32]
            .iter()
            .map(|&v| norm.invert(0, v))
            .collect();
        let worst = got
            .iter()
            .zip(&want)
            .map(|(g, w)| (g - w).abs())
            .fold(0f32, f32::max);
        // Equal to the rounding of the stored type (half a 16-bit step), plus f32 noise of
        // the normalisation and its inverse.
        assert!(worst <= 0.5 / 65535.0 + 2e-6, "{worst}");
        // 8 bits would have been 170 times further off.
        let eight = want
            .iter()
            .map(|w| (w - (w * 255.0).round() / 255.0).abs())
            .fold(0f32, f32::max);
        assert!(eight > 1e-3, "{eight}");
    }

    #[test]
    fn preview_undoes_the_normalisation() {
        let (_d, samples) = dataset(6);
        let first = crate::data::decode::decode_file(&samples[0].path).unwrap();
        let want: Vec<u8> = resize_gray(&first, 16, ResizeMode::Squash)
            .unwrap()
            .iter()
            .map(|v| (v * 255.0).round() as u8)
            .collect();
        let p = preview_batch(samples, in_order(4, 16), 0).unwrap();
        assert_eq!(p.len(), 4);
        assert_eq!((p[0].side, p[0].label, p[1].label), (16, 0, 1));
        assert_eq!(p[0].pixels, want);
    }

    #[test]
    fn sequential_loader_is_in_order_and_normalised() {
        let (_d, samples) = dataset(6);
        let l = DataLoader::new(samples, in_order(4, 16)).unwrap();
        let batches: Vec<HostBatch> = l.epoch(0).map(|b| b.unwrap()).collect();
        assert_eq!(batches[0].indices, vec![0, 1, 2, 3]);
        assert_eq!(batches[1].indices, vec![4, 5]);
        // Channel 0 of a pixel is (g - 0.485) / 0.229 for g in [0, 1].
        let lo = (0.0 - 0.485) / 0.229 - 1e-5;
        let hi = (1.0 - 0.485) / 0.229 + 1e-5;
        assert!(batches[0].data[..256]
            .iter()
            .all(|&v| (lo..=hi).contains(&v)));
        let (x, y) = batches[1].clone().to_tensors(&Device::Cpu).unwrap();
        assert_eq!(x.dims(), &[2, 3, 16, 16]);
        assert_eq!(y.to_vec1::<u32>().unwrap(), vec![0, 1]);
    }

    #[test]
    fn an_unreadable_file_is_an_error_naming_it() {
        let (d, mut samples) = dataset(4);
        let bad = d.path().join("bad.png");
        std::fs::write(&bad, b"not an image").unwrap();
        samples[2].path = bad;
        let l = DataLoader::new(samples, in_order(2, 16)).unwrap();
        let r: Vec<_> = l.epoch(0).collect();
        assert!(r[0].is_ok());
        let e = r[1].as_ref().unwrap_err().to_string();
        assert!(e.contains("bad.png"), "{e}");
    }

    #[test]
    fn dropping_an_epoch_early_stops_the_workers() {
        let (_d, samples) = dataset(40);
        let l = DataLoader::new(samples, LoaderConfig::train(2, 16, 0)).unwrap();
        let mut it = l.epoch(0);
        assert!(it.next().unwrap().is_ok());
        drop(it); // must not hang
    }
}
