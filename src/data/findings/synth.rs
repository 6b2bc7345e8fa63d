//! Generated multi-label data sets in the published layouts, for tests and the scale
//! measurement. NIH ChestX-ray14: `Data_Entry_2017.csv` with NIH's header, `train_val_list.txt`
//! and `test_list.txt`, the images in folders of 10,000 (`images_001/images/`, ... as NIH
//! ships them), every tenth patient in the test list. CheXpert: `train.csv` and `valid.csv`
//! with CheXpert's header and its 14 observations (1.0, 0.0, -1.0 uncertain, blank), images at
//! `train/patientNNNNN/study1/viewK_frontal.jpg`. MIMIC-CXR-JPG: its three tables and
//! `files/pNN/p<subject>/s<study>/<dicom_id>.jpg`. Two images a patient. Three findings are
//! drawn as shapes an image may show together: Effusion (CheXpert's Pleural Effusion) a
//! bright disc low on the left, Mass (Lung Lesion) a bright bar high on the right,
//! Cardiomegaly a wide bright block in the middle; the others are never present. In the
//! CheXpert and MIMIC sets every fifth image that shows a finding marks its first one
//! uncertain (-1.0) instead, and half the absent findings are blank rather than 0.0. Nothing
//! of it is committed.
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

/// CheXpert's (and MIMIC's) names of the drawn findings, in [`DRAWN`]'s order.
pub const CHEXPERT_DRAWN: [&str; 3] = ["Pleural Effusion", "Lung Lesion", "Cardiomegaly"];

/// Image `i`'s cells for CheXpert's 14 observations: a drawn finding 1.0 (the first one -1.0
/// in every fifth image that shows one), "No Finding" 1.0 when none is drawn, the others 0.0
/// in odd images and blank in even ones.
fn chexpert_cells(i: usize, findings: &[&str]) -> Vec<&'static str> {
    let shown: Vec<&str> = findings
        .iter()
        .map(|f| CHEXPERT_DRAWN[DRAWN.iter().position(|d| d == f).unwrap_or(0)])
        .collect();
    let uncertain = i
        .is_multiple_of(5)
        .then(|| shown.first().copied())
        .flatten();
    super::chexpert::OBSERVATIONS
        .iter()
        .map(|&o| {
            if Some(o) == uncertain {
                "-1.0"
            } else if shown.contains(&o) || (o == "No Finding" && shown.is_empty()) {
                "1.0"
            } else if i % 2 == 1 {
                "0.0"
            } else {
                ""
            }
        })
        .collect()
}

/// Writes the images of `spec` where `path(i)` says (folders created); the bytes written.
fn write_images(spec: SynthSpec, path: impl Fn(usize) -> std::path::PathBuf + Sync) -> Result<u64> {
    let bytes: Vec<u64> = (0..spec.images)
        .into_par_iter()
        .map(|i| {
            let (_, _, findings, _) = layout(i);
            let p = path(i);
            if let Some(d) = p.parent() {
                std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
            }
            save_png(&image(i, &findings, spec.side, spec.seed), &p)
        })
        .collect::<Result<_>>()?;
    Ok(bytes.iter().sum())
}

fn refuse_if(root: &Path, taken: bool, what: &str) -> Result<()> {
    if taken {
        return Err(Error::invalid(
            "synthetic data set",
            format!(
                "{} already holds {what}: choose an empty folder",
                shown(root)
            ),
        ));
    }
    Ok(())
}

/// Writes a CheXpert-shaped set into `root`: every tenth patient in `valid.csv` (CheXpert
/// publishes no test set: the reader draws one from the training patients).
pub fn write_chexpert_synth(root: &Path, spec: SynthSpec) -> Result<SynthSummary> {
    spec.check()?;
    refuse_if(root, root.join("train.csv").exists(), "train.csv")?;
    let rel = |i: usize| {
        let (_, patient, _, valid) = layout(i);
        format!(
            "{}/patient{:05}/study1/view{}_frontal.jpg",
            if valid { "valid" } else { "train" },
            patient + 1,
            i % 2 + 1
        )
    };
    let bytes = write_images(spec, |i| root.join(rel(i)))?;
    let head = format!(
        "Path,Sex,Age,Frontal/Lateral,AP/PA,{}\n",
        super::chexpert::OBSERVATIONS.join(",")
    );
    let (mut train, mut valid) = (head.clone(), head);
    let mut summary = SynthSummary {
        train: 0,
        test: 0,
        bytes,
    };
    for i in 0..spec.images {
        let (_, patient, findings, is_valid) = layout(i);
        let view = if patient % 4 == 3 { "AP" } else { "PA" };
        let row = format!(
            "{},Female,60,Frontal,{view},{}\n",
            rel(i),
            chexpert_cells(i, &findings).join(",")
        );
        if is_valid {
            valid += &row;
        } else {
            train += &row;
            summary.train += 1;
        }
    }
    for (name, text) in [("train.csv", train), ("valid.csv", valid)] {
        let p = root.join(name);
        std::fs::write(&p, text).map_err(|e| Error::io(&p, e))?;
    }
    Ok(summary)
}

/// Writes a MIMIC-CXR-JPG-shaped set into `root`: one study an image, the patient the
/// subject; every tenth patient in the test split, every tenth but one in the validation
/// split.
pub fn write_mimic_synth(root: &Path, spec: SynthSpec) -> Result<SynthSummary> {
    use super::mimic::{image_path, LABELS, METADATA, SPLIT};
    spec.check()?;
    refuse_if(
        root,
        super::mimic::table_file(root, LABELS).is_some(),
        "MIMIC's tables",
    )?;
    let ids = |i: usize| {
        let (_, patient, _, _) = layout(i);
        (
            format!("{}", 10_000_000 + patient),
            format!("{}", 50_000_000 + i),
            format!("synth-{i:06}"),
        )
    };
    let bytes = write_images(spec, |i| {
        let (sub, study, dicom) = ids(i);
        image_path(root, &sub, &study, &dicom)
    })?;
    let mut labels = format!(
        "subject_id,study_id,{}\n",
        super::chexpert::OBSERVATIONS.join(",")
    );
    let mut meta = String::from("dicom_id,subject_id,study_id,ViewPosition\n");
    let mut split = String::from("dicom_id,study_id,subject_id,split\n");
    let mut summary = SynthSummary {
        train: 0,
        test: 0,
        bytes,
    };
    for i in 0..spec.images {
        let (_, patient, findings, _) = layout(i);
        let (sub, study, dicom) = ids(i);
        labels += &format!("{sub},{study},{}\n", chexpert_cells(i, &findings).join(","));
        let view = if patient % 4 == 3 { "AP" } else { "PA" };
        meta += &format!("{dicom},{sub},{study},{view}\n");
        let kind = match patient % 10 {
            9 => "test",
            8 => "validate",
            _ => "train",
        };
        match kind {
            "test" => summary.test += 1,
            "train" => summary.train += 1,
            _ => {}
        }
        split += &format!("{dicom},{study},{sub},{kind}\n");
    }
    for (name, text) in [(LABELS, labels), (METADATA, meta), (SPLIT, split)] {
        let p = root.join(format!("{name}.csv"));
        std::fs::write(&p, text).map_err(|e| Error::io(&p, e))?;
    }
    Ok(summary)
}
