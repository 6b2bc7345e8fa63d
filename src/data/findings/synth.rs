//! A generated multi-label data set in NIH ChestX-ray14's published layout, for tests and
//! the scale measurement: `Data_Entry_2017.csv` with NIH's header, `train_val_list.txt` and
//! `test_list.txt`, the images in folders of 10,000 (`images_001/images/`, ... as NIH ships
//! them), two images a patient, every tenth patient in the test list. Three findings are
//! drawn as shapes an image may show together: Effusion a bright disc low on the left, Mass a
//! bright bar high on the right, Cardiomegaly a wide bright block in the middle; the other
//! eleven are never present. Nothing of it is committed.
use crate::data::synth::{save_png, SynthSpec, SynthSummary};
use crate::files::shown;
use crate::{Error, Result};
use image::{GrayImage, Luma};
use rand::{Rng, SeedableRng};
use rayon::prelude::*;
use std::path::Path;

/// The findings drawn, in NIH's names.
pub const DRAWN: [&str; 3] = ["Effusion", "Mass", "Cardiomegaly"];

/// Image `i`'s name, patient, findings (as `Finding Labels` writes them) and whether it is
/// a test image.
fn layout(i: usize) -> (String, usize, Vec<&'static str>, bool) {
    let patient = i / 2;
    // A fixed hash of the image picks its findings (about 40, 30 and 30 %).
    let h = (i as u64 ^ 0x5DEE_CE66).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    let mut f = Vec::new();
    if h % 10 < 4 {
        f.push(DRAWN[0]);
    }
    if (h / 10) % 10 < 3 {
        f.push(DRAWN[1]);
    }
    if (h / 100) % 10 < 3 {
        f.push(DRAWN[2]);
    }
    (
        format!("{patient:08}_{:03}.png", i % 2),
        patient,
        f,
        patient % 10 == 9,
    )
}

fn image(i: usize, findings: &[&str], side: u32, seed: u64) -> GrayImage {
    let mut rng =
        rand_chacha::ChaCha8Rng::seed_from_u64(seed ^ (i as u64).wrapping_mul(0x9E37_79B9));
    let s = side as f32;
    let mut img = GrayImage::new(side, side);
    for (x, y, p) in img.enumerate_pixels_mut() {
        let (u, v) = (x as f32 / s, y as f32 / s);
        let mut val = 60.0 + 40.0 * v + rng.random_range(-15.0..=15.0);
        if findings.contains(&"Effusion") && (u - 0.28).hypot(v - 0.72) < 0.16 {
            val += 110.0;
        }
        if findings.contains(&"Mass") && (0.55..0.9).contains(&u) && (0.18..0.3).contains(&v) {
            val += 110.0;
        }
        if findings.contains(&"Cardiomegaly") && (0.3..0.7).contains(&u) && (0.4..0.6).contains(&v)
        {
            val += 70.0;
        }
        *p = Luma([val.clamp(0.0, 255.0) as u8]);
    }
    img
}

/// Writes the data set into `root` (created; must not hold an NIH entries file already).
pub fn write_nih_synth(root: &Path, spec: SynthSpec) -> Result<SynthSummary> {
    spec.check()?;
    if super::nih::entry_file(root).is_some() {
        return Err(Error::invalid(
            "synthetic data set",
            format!(
                "{} already holds Data_Entry_2017.csv: choose an empty folder",
                shown(root)
            ),
        ));
    }
    let dir = |i: usize| {
        root.join(format!("images_{:03}", i / 10_000 + 1))
            .join("images")
    };
    for shard in 0..spec.images.div_ceil(10_000) {
        let d = dir(shard * 10_000);
        std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
    }
    let bytes: Vec<u64> = (0..spec.images)
        .into_par_iter()
        .map(|i| {
            let (name, _, findings, _) = layout(i);
            save_png(
                &image(i, &findings, spec.side, spec.seed),
                &dir(i).join(name),
            )
        })
        .collect::<Result<_>>()?;
    let mut entries = String::from(
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],\n",
    );
    let (mut tv, mut te) = (String::new(), String::new());
    let mut summary = SynthSummary {
        train: 0,
        test: 0,
        bytes: bytes.iter().sum(),
    };
    for i in 0..spec.images {
        let (name, patient, findings, test) = layout(i);
        let labels = if findings.is_empty() {
            super::nih::NO_FINDING.to_string()
        } else {
            findings.join("|")
        };
        let view = if patient % 4 == 3 { "AP" } else { "PA" };
        entries += &format!(
            "{name},{labels},{},{patient},50,M,{view},{},{},0.143,0.143\n",
            i % 2,
            spec.side,
            spec.side
        );
        if test {
            te += &format!("{name}\n");
            summary.test += 1;
        } else {
            tv += &format!("{name}\n");
            summary.train += 1;
        }
    }
    for (name, text) in [
        ("Data_Entry_2017.csv", entries),
        ("train_val_list.txt", tv),
        ("test_list.txt", te),
    ] {
        let p = root.join(name);
        std::fs::write(&p, text).map_err(|e| Error::io(&p, e))?;
    }
    Ok(summary)
}
