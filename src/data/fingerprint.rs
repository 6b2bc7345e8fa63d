//! What a data set was when a run started: images per split and class, and a digest of
//! every image's place, label and size, so that a resumed run notices a changed or
//! relabelled data set, and recognises a moved one by its content.
use super::split::{Dataset, Split};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The recorded identity of a data set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFingerprint {
    /// The classes, in order.
    #[serde(default)]
    pub classes: Vec<String>,
    /// Training images per class.
    pub train: Vec<usize>,
    /// Validation images per class.
    #[serde(default)]
    pub valid: Vec<usize>,
    /// Test images per class.
    pub test: Vec<usize>,
    /// SHA-256 (hex) of every image's path relative to the data folder, label and size.
    pub digest: String,
}

fn feed(h: &mut Sha256, ds: &Dataset, name: &str, split: &Split) {
    let mut rows: Vec<(Vec<u8>, usize, u64)> = split
        .samples
        .iter()
        .map(|s| {
            let rel = s.path.strip_prefix(&ds.root).unwrap_or(&s.path);
            let size = std::fs::metadata(&s.path).map(|m| m.len()).unwrap_or(0);
            (crate::files::path_text(rel).into_bytes(), s.label, size)
        })
        .collect();
    rows.sort();
    for (rel, label, size) in rows {
        h.update(name.as_bytes());
        h.update([0]);
        h.update(&rel);
        h.update([0]);
        h.update((label as u64).to_le_bytes());
        h.update(size.to_le_bytes());
    }
}

/// The fingerprint of `ds` as it is now.
pub fn fingerprint(ds: &Dataset) -> DataFingerprint {
    let mut h = Sha256::new();
    for c in &ds.classes {
        h.update(c.as_bytes());
        h.update([0]);
    }
    feed(&mut h, ds, "train", &ds.train);
    feed(&mut h, ds, "valid", &ds.valid);
    feed(&mut h, ds, "test", &ds.test);
    let k = ds.classes.len();
    DataFingerprint {
        classes: ds.classes.clone(),
        train: ds.train.class_counts(k),
        valid: ds.valid.class_counts(k),
        test: ds.test.class_counts(k),
        digest: h.finalize().iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// What differs between a recorded fingerprint and the data set now, in words; None when
/// nothing does.
pub fn describe_change(then: &DataFingerprint, now: &DataFingerprint) -> Option<String> {
    if then == now {
        return None;
    }
    let mut said = Vec::new();
    if !then.classes.is_empty() && then.classes != now.classes {
        said.push(format!(
            "classes {:?} then, {:?} now",
            then.classes, now.classes
        ));
    }
    for (name, a, b) in [
        ("train", &then.train, &now.train),
        ("valid", &then.valid, &now.valid),
        ("test", &then.test, &now.test),
    ] {
        let (ta, tb): (usize, usize) = (a.iter().sum(), b.iter().sum());
        if a != b && !(name == "valid" && a.is_empty()) {
            said.push(format!(
                "{name}: {ta} images ({}) then, {tb} ({}) now",
                counts(&then.classes, a),
                counts(&now.classes, b)
            ));
        }
    }
    if said.is_empty() {
        said.push("the same number of images per class, but files, labels or sizes differ".into());
    }
    Some(said.join("; "))
}

fn counts(classes: &[String], v: &[usize]) -> String {
    v.iter()
        .enumerate()
        .map(|(i, n)| {
            let c = classes
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("class {i}"));
            format!("{c} {n}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}
