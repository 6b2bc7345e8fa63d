//! A generated data set for scale tests: many small grayscale PNGs in COVID-Net split-file
//! layout (`train_synth.txt`, `test_synth.txt`, images sharded into folders of 1,000), two
//! images a patient, three classes that differ in brightness and stripe direction. Used by
//! `covid-resnet data synth` and the tests; nothing of it is committed.
use crate::files::shown;
use crate::{Error, Result};
use image::{GrayImage, Luma};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use std::path::Path;

/// The class names of the generated set, in its order.
pub const SYNTH_CLASSES: [&str; 3] = ["normal", "pneumonia", "COVID-19"];

/// What to generate.
#[derive(Debug, Clone, Copy)]
pub struct SynthSpec {
    /// Number of images (train and test together; every tenth patient is a test patient).
    pub images: usize,
    /// Side of the square images in pixels.
    pub side: u32,
    /// Seed of the pixel noise.
    pub seed: u64,
}

impl SynthSpec {
    /// An error unless there are at least 20 images of 8 to 1024 px.
    pub fn check(&self) -> Result<()> {
        if self.images < 20 || !(8..=1024).contains(&self.side) {
            return Err(Error::invalid(
                "synthetic data set",
                format!(
                    "{} images of {} px: at least 20 images of 8 to 1024 px",
                    self.images, self.side
                ),
            ));
        }
        Ok(())
    }
}

/// Saves `img` at `path`; its size in bytes.
pub fn save_png(img: &GrayImage, path: &Path) -> Result<u64> {
    img.save(path)
        .map_err(|e| Error::invalid("synthetic image", format!("{}: {e}", shown(path))))?;
    Ok(std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len())
}

/// What was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SynthSummary {
    pub train: usize,
    pub test: usize,
    pub bytes: u64,
}

/// Image `i`'s class, patient and split ("train" or "test").
fn layout(i: usize) -> (usize, usize, &'static str) {
    let patient = i / 2;
    // Class by patient so both images of a patient share it; COVID-19 the rare class (1 in 8),
    // drawn from the tens so that train and test patients get every class.
    let class = match (patient / 10) % 8 {
        0 => 2,
        1 | 3 | 5 => 1,
        _ => 0,
    };
    let split = if patient % 10 == 9 { "test" } else { "train" };
    (class, patient, split)
}

fn image(i: usize, class: usize, side: u32, seed: u64) -> GrayImage {
    let mut rng =
        rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9));
    let base: i32 = [70, 120, 170][class];
    let mut img = GrayImage::new(side, side);
    for (x, y, p) in img.enumerate_pixels_mut() {
        let stripe = match class {
            0 => (y / 4) % 2,
            1 => (x / 4) % 2,
            _ => ((x + y) / 4) % 2,
        } as i32;
        let noise: i32 = rng.random_range(-12..=12);
        *p = Luma([(base + 40 * stripe + noise).clamp(0, 255) as u8]);
    }
    img
}

/// Writes the data set into `root` (created; must not hold split files already). Images are
/// written in parallel on rayon's pool.
pub fn write_synth(root: &Path, spec: SynthSpec) -> Result<SynthSummary> {
    spec.check()?;
    for name in ["train_synth.txt", "test_synth.txt"] {
        if root.join(name).exists() {
            return Err(Error::invalid(
                "synthetic data set",
                format!(
                    "{} already holds {name}: choose an empty folder",
                    shown(root)
                ),
            ));
        }
    }
    let rel = |i: usize| format!("{:03}/{i:07}.png", i / 1000);
    for split in ["train", "test"] {
        for shard in 0..spec.images.div_ceil(1000) {
            let dir = root.join(split).join(format!("{shard:03}"));
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
    }
    let bytes: Vec<u64> = (0..spec.images)
        .into_par_iter()
        .map(|i| {
            let (class, _, split) = layout(i);
            save_png(
                &image(i, class, spec.side, spec.seed),
                &root.join(split).join(rel(i)),
            )
        })
        .collect::<Result<_>>()?;
    let (mut train, mut test) = (String::new(), String::new());
    let mut summary = SynthSummary {
        train: 0,
        test: 0,
        bytes: bytes.iter().sum(),
    };
    for i in 0..spec.images {
        let (class, patient, split) = layout(i);
        let line = format!("synth{patient} {} {} synth\n", rel(i), SYNTH_CLASSES[class]);
        if split == "test" {
            test.push_str(&line);
            summary.test += 1;
        } else {
            train.push_str(&line);
            summary.train += 1;
        }
    }
    for (name, text) in [("train_synth.txt", train), ("test_synth.txt", test)] {
        let p = root.join(name);
        std::fs::write(&p, text).map_err(|e| Error::io(&p, e))?;
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patients_stay_in_one_split_and_every_class_is_present() {
        let dir = tempfile::tempdir().unwrap();
        let s = write_synth(
            dir.path(),
            SynthSpec {
                images: 100,
                side: 16,
                seed: 1,
            },
        )
        .unwrap();
        assert_eq!(s.train + s.test, 100);
        assert_eq!(
            s.test, 10,
            "patients 9, 19, ..., 49 (two images each) are test patients"
        );
        let test = std::fs::read_to_string(dir.path().join("test_synth.txt")).unwrap();
        assert!(
            test.contains(" COVID-19 ") && test.contains(" normal "),
            "{test}"
        );
        let train = std::fs::read_to_string(dir.path().join("train_synth.txt")).unwrap();
        for c in SYNTH_CLASSES {
            assert!(train.contains(&format!(" {c} ")), "{c} missing");
        }
        assert!(dir.path().join("test/000/0000019.png").is_file());
        let again = write_synth(
            dir.path(),
            SynthSpec {
                images: 100,
                side: 16,
                seed: 1,
            },
        );
        assert!(again.unwrap_err().to_string().contains("already holds"));
    }
}
