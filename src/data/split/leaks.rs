//! Images in more than one split: patients listed in two (by their ids), the same file
//! listed in two (by its path), and the same picture under two names (by a hash of the
//! bytes of files whose lengths agree, which only `data check` reads).
use super::{Dataset, Split, SplitKind, ValidSource};
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// The pairs of splits that must not share images (valid and test are one when the
/// validation split is the test split).
fn pairs(ds: &Dataset) -> Vec<(SplitKind, SplitKind)> {
    use SplitKind::*;
    let mut pairs = vec![(Train, Test)];
    if ds.valid_source != ValidSource::Test {
        pairs.extend([(Train, Valid), (Valid, Test)]);
    }
    pairs
}

fn real(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

impl Dataset {
    /// Patients in more than one of train, valid and test, sorted.
    pub fn leaked_patients(&self) -> Vec<String> {
        let out: BTreeSet<String> = self.leaks().into_iter().flat_map(|(_, _, p)| p).collect();
        out.into_iter().collect()
    }

    /// Each pair of splits that shares patients, with those patients.
    pub fn leaks(&self) -> Vec<(SplitKind, SplitKind, Vec<String>)> {
        pairs(self)
            .into_iter()
            .map(|(a, b)| (a, b, leaked_patients(self.split(a), self.split(b))))
            .filter(|(_, _, p)| !p.is_empty())
            .collect()
    }

    /// Each pair of splits that lists the same files (by their real paths), with them.
    pub fn shared_files(&self) -> Vec<(SplitKind, SplitKind, Vec<PathBuf>)> {
        pairs(self)
            .into_iter()
            .filter_map(|(a, b)| {
                let in_a: BTreeSet<PathBuf> = self
                    .split(a)
                    .samples
                    .iter()
                    .map(|s| real(&s.path))
                    .collect();
                let both: BTreeSet<PathBuf> = self
                    .split(b)
                    .samples
                    .iter()
                    .map(|s| real(&s.path))
                    .filter(|p| in_a.contains(p))
                    .collect();
                (!both.is_empty()).then(|| (a, b, both.into_iter().collect()))
            })
            .collect()
    }

    /// Each pair of splits holding files with the same bytes (the same file, or a copy
    /// under another name), as "file" or "file = copy". Only files whose length another
    /// split's file shares are read.
    pub fn shared_content(&self) -> Vec<(SplitKind, SplitKind, Vec<String>)> {
        let pairs = pairs(self);
        let kinds: BTreeSet<SplitKind> = pairs.iter().flat_map(|&(a, b)| [a, b]).collect();
        // Every distinct file of the compared splits, with the splits that list it.
        let mut files: BTreeMap<PathBuf, BTreeSet<SplitKind>> = BTreeMap::new();
        for &k in &kinds {
            for s in &self.split(k).samples {
                files.entry(real(&s.path)).or_default().insert(k);
            }
        }
        let mut by_len: HashMap<u64, Vec<&PathBuf>> = HashMap::new();
        for p in files.keys() {
            if let Ok(m) = std::fs::metadata(p) {
                by_len.entry(m.len()).or_default().push(p);
            }
        }
        let candidates: Vec<&PathBuf> = by_len
            .into_values()
            .filter(|g| {
                let splits: BTreeSet<SplitKind> =
                    g.iter().flat_map(|p| files[*p].iter().copied()).collect();
                splits.len() > 1
            })
            .flatten()
            .collect();
        let hashed: Vec<(String, &PathBuf)> = candidates
            .par_iter()
            .filter_map(|p| Some((crate::fetch::sha256_file(p).ok()?.0, *p)))
            .collect();
        let mut by_hash: BTreeMap<String, Vec<&PathBuf>> = BTreeMap::new();
        for (h, p) in hashed {
            by_hash.entry(h).or_default().push(p);
        }
        let mut out: BTreeMap<(SplitKind, SplitKind), Vec<String>> = BTreeMap::new();
        for group in by_hash.values() {
            for &(a, b) in &pairs {
                let pa = group.iter().find(|p| files[**p].contains(&a));
                let pb = group.iter().find(|p| files[**p].contains(&b));
                if let (Some(pa), Some(pb)) = (pa, pb) {
                    let shown = if pa == pb {
                        crate::files::shown(pa).to_string()
                    } else {
                        format!("{} = {}", crate::files::shown(pa), crate::files::shown(pb))
                    };
                    out.entry((a, b)).or_default().push(shown);
                }
            }
        }
        out.into_iter().map(|((a, b), v)| (a, b, v)).collect()
    }
}

/// Patients in both `a` and `b`.
pub fn leaked_patients(a: &Split, b: &Split) -> Vec<String> {
    let pa = a.patients();
    b.patients()
        .into_iter()
        .filter(|p| pa.contains(p))
        .map(String::from)
        .collect()
}
