//! What ships with the program: a model trained on COVIDx v1 and a few sample radiographs,
//! found beside the checkout the program was built from, beside the executable, or where
//! `COVID_RESNET_ASSETS` says.
use crate::model::io::model_file::ModelMeta;
use std::path::{Path, PathBuf};

/// The shipped model's file name under `weights/`.
pub const MODEL_FILE: &str = "default-covidx-v1.safetensors";

/// Folders that may hold `weights/` and `assets/`: `COVID_RESNET_ASSETS`, the checkout the
/// program was built from, and the executable's folder and its parents (an unpacked
/// release, or `target/release` inside a checkout).
fn roots() -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Some(p) = std::env::var_os("COVID_RESNET_ASSETS") {
        out.push(PathBuf::from(p));
    }
    out.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    if let Ok(exe) = std::env::current_exe() {
        out.extend(exe.ancestors().skip(1).take(4).map(Path::to_path_buf));
    }
    out
}

/// The shipped model file, if it can be found.
pub fn model_path() -> Option<PathBuf> {
    roots()
        .into_iter()
        .map(|r| r.join("weights").join(MODEL_FILE))
        .find(|p| p.is_file())
}

/// The sample data set (`assets/samples`), if it can be found.
pub fn samples_dir() -> Option<PathBuf> {
    roots()
        .into_iter()
        .map(|r| r.join("assets").join("samples"))
        .find(|p| p.join("test").is_dir())
}

/// Whether `path` is the shipped model.
pub fn is_shipped(path: &Path) -> bool {
    path.file_name().is_some_and(|n| n == MODEL_FILE)
        && path
            .parent()
            .and_then(Path::file_name)
            .is_some_and(|d| d == "weights")
}

/// What the model scored when its run finished, in one line ("test accuracy 81.2 %
/// (78.0–84.3) on 637 images of covidx-v1"), from the training summary in its file.
pub fn score_line(meta: &ModelMeta) -> Option<String> {
    let training = meta.training.as_ref()?;
    // A run that left the test split alone summarises its validation split.
    let (t, split) = match training.get("test") {
        Some(t) => (t, "test"),
        None => (training.get("valid")?, "validation"),
    };
    let acc = t.get("accuracy")?;
    let (v, lo, hi) = (
        acc.get("value")?.as_f64()?,
        acc.get("lo")?.as_f64()?,
        acc.get("hi")?.as_f64()?,
    );
    Some(format!(
        "{split} accuracy {:.1} % ({:.1}–{:.1}) on {} images of {}",
        100.0 * v,
        100.0 * lo,
        100.0 * hi,
        t.get("n")?.as_u64()?,
        t.get("data")?.as_str()?
    ))
}

/// "ResNet-18 at 160 px, trained on COVIDx v1: test accuracy …" for the window and stderr.
pub fn describe(meta: &ModelMeta) -> String {
    let body = if meta.is_ensemble() {
        let mut names: Vec<&str> = meta.members.iter().map(|m| m.backbone.name()).collect();
        names.dedup();
        format!(
            "an ensemble of {} networks ({})",
            meta.members.len(),
            names.join(", ")
        )
    } else {
        meta.backbone.name().to_string()
    };
    let mut s = format!(
        "{body}, {} px input, {} {}",
        meta.input_size_px,
        if meta.findings.is_some() {
            "multi-label, findings"
        } else {
            "classes"
        },
        meta.class_names.join(", ")
    );
    if let Some(score) = score_line(meta) {
        s.push_str(&format!("; {score}"));
    }
    if let Some(t) = &meta.temperature {
        s.push_str(&format!("; temperature {:.3}", t.value));
    }
    if let Some(o) = &meta.operating_point {
        s.push_str(&format!("; predicts {} when p ≥ {}", o.class, o.threshold));
    }
    s
}
