//! Datasets as researchers have them: COVID-Net split files (`patient_id filename label
//! [source]`) or one folder per class; auto-detection; the patient-leakage check.
use crate::{Error, Result, CLASS_NAMES};
use std::collections::BTreeSet;
use std::path::{Component, Path, PathBuf};

/// Image file extensions picked up from class folders.
pub const IMAGE_EXTENSIONS: [&str; 10] = [
    "png", "jpg", "jpeg", "bmp", "tif", "tiff", "dcm", "dicom", "dic", "ima",
];

/// The class index (0 Normal, 1 Bacterial, 2 Viral, 3 COVID-19) of a label or folder name,
/// case-insensitive, with the usual aliases.
pub fn parse_label(s: &str) -> Option<usize> {
    let k: String = s
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c == '_' || c == ' ' { '-' } else { c })
        .collect();
    match k.as_str() {
        "normal" | "healthy" | "no-finding" | "negative" => Some(0),
        "bacteria"
        | "bacterial"
        | "pneumonia-bacterial"
        | "bacterial-pneumonia"
        | "pneumonia-bacteria" => Some(1),
        "viral" | "virus" | "pneumonia-viral" | "viral-pneumonia" | "pneumonia-virus" => Some(2),
        "covid-19" | "covid19" | "covid" | "sars-cov-2" | "covid-19-pneumonia"
        | "pneumonia-covid-19" => Some(3),
        _ => None,
    }
}

/// One labelled image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// Where the image is.
    pub path: PathBuf,
    /// Class index.
    pub label: usize,
    /// Patient identifier (from the split file; the file stem for class folders).
    pub patient: String,
    /// Source tag (4th split-file column), if any.
    pub source: Option<String>,
}

/// The samples of one split, plus the listed files that do not exist.
#[derive(Debug, Clone, Default)]
pub struct Split {
    /// Samples whose file exists.
    pub samples: Vec<Sample>,
    /// Files listed but not found (reported, never silently dropped).
    pub missing: Vec<PathBuf>,
    /// Entries not used, with the reason (a dangling or looping link, a link that leaves
    /// the data folder).
    pub skipped: Vec<(PathBuf, String)>,
}

impl Split {
    /// Images per class.
    pub fn class_counts(&self) -> [usize; 4] {
        let mut c = [0; 4];
        for s in &self.samples {
            c[s.label] += 1;
        }
        c
    }

    /// Distinct patients per class (a patient with two classes counts in both).
    pub fn patient_counts(&self) -> [usize; 4] {
        let mut sets: [BTreeSet<&str>; 4] = Default::default();
        for s in &self.samples {
            sets[s.label].insert(&s.patient);
        }
        sets.map(|s| s.len())
    }

    /// Distinct patients.
    pub fn patients(&self) -> BTreeSet<&str> {
        self.samples.iter().map(|s| s.patient.as_str()).collect()
    }

    /// An error naming the missing files, if any.
    pub fn check_complete(&self, what: &str) -> Result<()> {
        if self.missing.is_empty() {
            return Ok(());
        }
        let shown: Vec<String> = self
            .missing
            .iter()
            .take(5)
            .map(|p| crate::files::shown(p).to_string())
            .collect();
        Err(Error::invalid(
            format!("{what} split"),
            format!(
                "{} listed image(s) do not exist: {}{}",
                self.missing.len(),
                shown.join(", "),
                if self.missing.len() > 5 { ", ..." } else { "" }
            ),
        ))
    }
}

/// Parses split-file text. `image_dir` is where its filenames live; `path` names the file
/// in errors. Lines: `patient_id filename label [source]`, separated by spaces or tabs;
/// blank lines and `#` comments are ignored.
pub fn parse_split_text(text: &str, path: &Path, image_dir: &Path) -> Result<Split> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut split = Split::default();
    let mut seen = BTreeSet::new();
    for (i, line) in text.lines().enumerate() {
        let n = i + 1;
        let line = line.trim_end_matches('\r').trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let err = |msg: String| {
            Error::invalid(
                "split file",
                format!("{}:{n}: {msg}", crate::files::shown(path)),
            )
        };
        let cols: Vec<&str> = line.split_whitespace().collect();
        if !(3..=4).contains(&cols.len()) {
            return Err(err(format!(
                "expected 'patient_id filename label [source]', found {} column(s): {line:?}",
                cols.len()
            )));
        }
        let label = parse_label(cols[2]).ok_or_else(|| {
            err(format!(
                "unknown label {:?} (expected one of {})",
                cols[2],
                CLASS_NAMES.join(", ")
            ))
        })?;
        let rel = safe_relative(cols[1])
            .ok_or_else(|| err(format!("file name {:?} leaves the image folder", cols[1])))?;
        if !seen.insert(rel.clone()) {
            return Err(err(format!("{:?} is listed twice", cols[1])));
        }
        let file = image_dir.join(&rel);
        if !file.is_file() {
            split.missing.push(file);
            continue;
        }
        split.samples.push(Sample {
            path: file,
            label,
            patient: cols[0].to_string(),
            source: cols.get(3).map(|s| s.to_string()),
        });
    }
    Ok(split)
}

/// A relative path without `..`, root or prefix components, or None.
fn safe_relative(name: &str) -> Option<PathBuf> {
    let p = Path::new(name);
    let ok = p
        .components()
        .all(|c| matches!(c, Component::Normal(_) | Component::CurDir));
    (ok && !name.is_empty()).then(|| p.to_path_buf())
}

/// Reads and parses a split file.
pub fn read_split_file(path: &Path, image_dir: &Path) -> Result<Split> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        Error::invalid(
            "split file",
            format!("{}: not UTF-8 text: {e}", crate::files::shown(path)),
        )
    })?;
    parse_split_text(&text, path, image_dir)
}

/// Reads a class-per-folder layout: `root/<class>/*.png` etc. Unknown folder names are an
/// error naming them; the patient id is the file stem (no patient information exists).
pub fn read_class_folders(root: &Path) -> Result<Split> {
    let mut split = Split::default();
    let entries = std::fs::read_dir(root).map_err(|e| Error::io(root, e))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    if dirs.is_empty() {
        return Err(Error::invalid(
            "dataset",
            format!("{} has no class folders", crate::files::shown(root)),
        ));
    }
    for dir in dirs {
        let name = dir
            .file_name()
            .map(|n| crate::files::path_text(Path::new(n)))
            .unwrap_or_default();
        let label = parse_label(&name).ok_or_else(|| {
            Error::invalid(
                "class folder",
                format!(
                    "{}: unknown class {name:?} (expected {})",
                    crate::files::shown(&dir),
                    CLASS_NAMES.join(", ")
                ),
            )
        })?;
        // Files, and links whatever they lead to (a broken one is reported, not dropped).
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map_err(|e| Error::io(&dir, e))?
            .filter_map(|e| e.ok())
            .filter(|e| {
                let t = e.file_type();
                (e.path().is_file() || t.is_ok_and(|t| t.is_symlink()))
                    && has_image_extension(&e.path())
            })
            .map(|e| e.path())
            .collect();
        files.sort();
        for f in files {
            let stem = f
                .file_stem()
                .map(|s| crate::files::path_text(Path::new(s)))
                .unwrap_or_default();
            split.samples.push(Sample {
                path: f,
                label,
                patient: format!("{name}/{stem}"),
                source: None,
            });
        }
    }
    Ok(split)
}

fn has_image_extension(p: &Path) -> bool {
    p.extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.as_str()))
}

/// How the dataset folder is organised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// `train_*.txt` and `test_*.txt` split files with `train/` and `test/` image folders.
    SplitFiles {
        /// The training split file.
        train: PathBuf,
        /// The test split file.
        test: PathBuf,
    },
    /// `train/<class>/` and `test/<class>/` folders.
    ClassFolders,
}

/// Which split of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitKind {
    /// Training images.
    Train,
    /// Test images.
    Test,
}

impl SplitKind {
    /// The split's name in files and messages.
    pub fn name(self) -> &'static str {
        match self {
            Self::Train => "train",
            Self::Test => "test",
        }
    }
}

/// How a data set folder is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DataOptions {
    /// Use links that lead to files outside the data folder (refused by default: a split
    /// file or a class folder must not reach files elsewhere unnoticed).
    pub allow_outside_links: bool,
}

/// Why the file at `path` cannot be used: a link that is dangling or loops, one that leads
/// outside the data folder `root` (canonical) when that is not allowed, or no file at all.
fn link_problem(path: &Path, root: &Path, opts: &DataOptions) -> Option<String> {
    match path.canonicalize() {
        Err(e) => Some(format!(
            "a link that leads nowhere (dangling or looping: {e})"
        )),
        Ok(t) if !t.starts_with(root) && !opts.allow_outside_links => Some(format!(
            "a link to {}, outside the data folder (allow with --allow-outside-links)",
            crate::files::shown(&t)
        )),
        Ok(t) if !t.is_file() => Some("not a file".into()),
        Ok(_) => None,
    }
}

/// A dataset with its train and test splits.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// The folder the user chose.
    pub root: PathBuf,
    /// How it is organised.
    pub layout: Layout,
    /// Training images.
    pub train: Split,
    /// Test images.
    pub test: Split,
}

impl Dataset {
    /// One of the splits.
    pub fn split(&self, kind: SplitKind) -> &Split {
        match kind {
            SplitKind::Train => &self.train,
            SplitKind::Test => &self.test,
        }
    }

    /// Detects the layout of `root` and reads both splits, with the default options.
    pub fn open(root: &Path) -> Result<Self> {
        Self::open_with(root, &DataOptions::default())
    }

    /// Detects the layout of `root` and reads both splits. Links that do not lead to a file
    /// inside `root` are set aside with the reason (see [`Split::skipped`]).
    pub fn open_with(root: &Path, opts: &DataOptions) -> Result<Self> {
        let mut ds = Self::read(root)?;
        let canon = root.canonicalize().map_err(|e| Error::io(root, e))?;
        for split in [&mut ds.train, &mut ds.test] {
            let (keep, set_aside): (Vec<Sample>, Vec<Sample>) = std::mem::take(&mut split.samples)
                .into_iter()
                .partition(|s| link_problem(&s.path, &canon, opts).is_none());
            for s in set_aside {
                let why = link_problem(&s.path, &canon, opts).unwrap_or_default();
                split.skipped.push((s.path, why));
            }
            split.samples = keep;
        }
        Ok(ds)
    }

    fn read(root: &Path) -> Result<Self> {
        if !root.is_dir() {
            return Err(Error::invalid(
                "dataset",
                format!("{} is not a folder", crate::files::shown(root)),
            ));
        }
        let layout = detect_layout(root)?;
        let (train, test) = match &layout {
            Layout::SplitFiles { train, test } => (
                read_split_file(train, &root.join("train"))?,
                read_split_file(test, &root.join("test"))?,
            ),
            Layout::ClassFolders => (
                read_class_folders(&root.join("train"))?,
                read_class_folders(&root.join("test"))?,
            ),
        };
        Ok(Self {
            root: root.to_path_buf(),
            layout,
            train,
            test,
        })
    }

    /// Patients that appear in both splits, sorted.
    pub fn leaked_patients(&self) -> Vec<String> {
        leaked_patients(&self.train, &self.test)
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

fn detect_layout(root: &Path) -> Result<Layout> {
    let mut train = Vec::new();
    let mut test = Vec::new();
    for e in std::fs::read_dir(root)
        .map_err(|e| Error::io(root, e))?
        .flatten()
    {
        let name = e.file_name().to_string_lossy().to_string();
        if !name.ends_with(".txt") || !e.path().is_file() {
            continue;
        }
        if name.starts_with("train_") || name == "train.txt" || name == "train_split.txt" {
            train.push(e.path());
        } else if name.starts_with("test_") || name == "test.txt" || name == "test_split.txt" {
            test.push(e.path());
        }
    }
    train.sort();
    test.sort();
    // COVIDx ships train_extra*.txt beside the core list: prefer the one naming COVIDx,
    // else the shortest name.
    let pick = |v: &[PathBuf]| -> Option<PathBuf> {
        v.iter()
            .find(|p| p.to_string_lossy().to_lowercase().contains("covidx"))
            .or_else(|| v.iter().min_by_key(|p| p.as_os_str().len()))
            .cloned()
    };
    if let (Some(tr), Some(te)) = (pick(&train), pick(&test)) {
        return Ok(Layout::SplitFiles {
            train: tr,
            test: te,
        });
    }
    if root.join("train").is_dir() && root.join("test").is_dir() {
        return Ok(Layout::ClassFolders);
    }
    Err(Error::invalid(
        "dataset",
        format!(
            "{}: found neither train_*.txt/test_*.txt split files nor train/ and test/ class folders",
            crate::files::shown(root)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(dir: &Path, names: &[&str]) {
        for n in names {
            let p = dir.join(n);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
    }

    #[test]
    fn labels_and_aliases() {
        for (s, i) in [
            ("normal", 0),
            ("NORMAL", 0),
            ("bacteria", 1),
            ("Pneumonia-Bacterial", 1),
            ("viral", 2),
            ("pneumonia_viral", 2),
            ("COVID-19", 3),
            ("covid", 3),
            ("Covid19", 3),
        ] {
            assert_eq!(parse_label(s), Some(i), "{s}");
        }
        assert_eq!(parse_label("fungal"), None);
    }

    #[test]
    fn good_lines_three_and_four_columns_crlf_bom_tabs() {
        let d = tempfile::tempdir().unwrap();
        touch(d.path(), &["a.png", "b.jpg", "c.png"]);
        let text = "\u{feff}1 a.png normal cohen\r\n\n# comment\n2\tb.jpg\tCOVID-19\r\n3 c.png pneumonia-viral\n";
        let s = parse_split_text(text, Path::new("t.txt"), d.path()).unwrap();
        assert_eq!(s.samples.len(), 3);
        assert_eq!(s.samples[0].source.as_deref(), Some("cohen"));
        assert_eq!(s.samples[1].label, 3);
        assert_eq!(s.samples[2].source, None);
        assert_eq!(s.class_counts(), [1, 0, 1, 1]);
    }

    #[test]
    fn bad_lines_name_file_and_line() {
        let d = tempfile::tempdir().unwrap();
        touch(d.path(), &["a.png"]);
        for (text, want) in [
            ("1 a.png normal\n2 a.png\n", "t.txt:2: expected"),
            ("1 a.png fungal\n", "t.txt:1: unknown label \"fungal\""),
            ("1 a.png normal x y\n", "t.txt:1: expected"),
            (
                "1 ../../etc/passwd normal\n",
                "t.txt:1: file name \"../../etc/passwd\" leaves",
            ),
            ("1 /etc/passwd normal\n", "leaves the image folder"),
            (
                "1 a.png normal\n1 a.png normal\n",
                "t.txt:2: \"a.png\" is listed twice",
            ),
        ] {
            let e = parse_split_text(text, Path::new("t.txt"), d.path())
                .unwrap_err()
                .to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    }

    #[test]
    fn missing_files_are_reported() {
        let d = tempfile::tempdir().unwrap();
        touch(d.path(), &["a.png"]);
        let s = parse_split_text(
            "1 a.png normal\n2 gone.png viral\n",
            Path::new("t.txt"),
            d.path(),
        )
        .unwrap();
        assert_eq!(s.samples.len(), 1);
        assert_eq!(s.missing, vec![d.path().join("gone.png")]);
        let e = s.check_complete("train").unwrap_err().to_string();
        assert!(e.contains("gone.png"), "{e}");
    }

    #[test]
    fn detects_split_files_and_class_folders_and_leakage() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        touch(r, &["train/a.png", "train/b.png", "test/c.png"]);
        std::fs::write(
            r.join("train_COVIDx_v1.txt"),
            "p1 a.png normal\np2 b.png bacteria\n",
        )
        .unwrap();
        std::fs::write(r.join("train_extra.txt"), "p9 zz.png normal\n").unwrap();
        std::fs::write(r.join("test_COVIDx_v1.txt"), "p2 c.png viral\n").unwrap();
        let ds = Dataset::open(r).unwrap();
        assert!(
            matches!(ds.layout, Layout::SplitFiles { ref train, .. } if train.ends_with("train_COVIDx_v1.txt"))
        );
        assert_eq!(ds.train.samples.len(), 2);
        assert_eq!(ds.leaked_patients(), vec!["p2".to_string()]);

        let d2 = tempfile::tempdir().unwrap();
        let r2 = d2.path();
        touch(
            r2,
            &[
                "train/Normal/1.png",
                "train/COVID-19/2.jpeg",
                "train/Normal/notes.txt",
                "test/viral/3.png",
            ],
        );
        let ds = Dataset::open(r2).unwrap();
        assert_eq!(ds.layout, Layout::ClassFolders);
        assert_eq!(ds.train.class_counts(), [1, 0, 0, 1]);
        assert_eq!(ds.test.class_counts(), [0, 0, 1, 0]);
        assert!(ds.leaked_patients().is_empty());

        touch(r2, &["train/Fungal/4.png"]);
        let e = Dataset::open(r2).unwrap_err().to_string();
        assert!(e.contains("Fungal"), "{e}");
        let e = Dataset::open(&r2.join("nope")).unwrap_err().to_string();
        assert!(e.contains("not a folder"), "{e}");
    }
}
