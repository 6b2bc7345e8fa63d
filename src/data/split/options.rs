//! How a data set is read: the validation choice and where validation came from, the data
//! set's own `dataset.toml`, and the options a user gives.
use super::table::CsvColumns;
use crate::files::shown;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Where the validation images come from.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase", tag = "kind", content = "percent")]
pub enum ValidChoice {
    /// The data set's own validation split, else 10 % of the training patients.
    #[default]
    Auto,
    /// The test split (the paper's way: no honest test figure remains).
    Test,
    /// This percentage of the training patients, drawn with the run's seed.
    Percent(f64),
}

impl ValidChoice {
    /// What runs made before validation splits existed did (they validated on the test split).
    pub fn legacy() -> Self {
        Self::Test
    }
}

impl std::str::FromStr for ValidChoice {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim().to_ascii_lowercase();
        match t.as_str() {
            "auto" => Ok(Self::Auto),
            "test" => Ok(Self::Test),
            _ => {
                let p: f64 = t.trim_end_matches('%').parse().map_err(|_| {
                    Error::invalid(
                        "validation split",
                        format!("{s:?}: expected auto, test or a percentage such as 10"),
                    )
                })?;
                if !(p > 0.0 && p < 100.0) {
                    return Err(Error::invalid(
                        "validation split",
                        format!("{s:?}: a percentage between 0 and 100"),
                    ));
                }
                Ok(Self::Percent(p))
            }
        }
    }
}

impl std::fmt::Display for ValidChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Test => f.write_str("test"),
            Self::Percent(p) => write!(f, "{p}"),
        }
    }
}

/// Where the validation images came from, in the end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ValidSource {
    /// The data set's own validation split.
    Own,
    /// Drawn from the training patients.
    Drawn {
        /// Percentage of the training patients.
        percent: f64,
        /// Seed of the draw.
        seed: u64,
    },
    /// The test split (the paper's way).
    Test,
}

impl ValidSource {
    /// The source in words.
    pub fn describe(&self) -> String {
        match self {
            Self::Own => "the data set's own validation split".into(),
            Self::Drawn { percent, seed } => {
                format!("{percent} % of the training patients (seed {seed})")
            }
            Self::Test => "the test split (the paper's way: the test figures are then not \
                           independent of the choices made on them)"
                .into(),
        }
    }
}

/// A data set's own settings, in `dataset.toml` at its root.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Manifest {
    /// The classes in their order.
    pub classes: Option<Vec<String>>,
    /// Validation: `auto`, `test` or a percentage.
    pub valid: Option<String>,
    /// Kermany's layout: split pneumonia into bacterial and viral by file name.
    pub split_pneumonia: Option<bool>,
    /// The CSV layout's file and columns.
    pub csv: Option<CsvColumns>,
}

impl Manifest {
    /// Reads `root/dataset.toml` (an empty manifest when there is none); unknown keys, at
    /// the top and in `[csv]`, and a `valid` that is no choice are refused naming the file.
    pub fn read(root: &Path) -> Result<Self> {
        let p = root.join("dataset.toml");
        match std::fs::read_to_string(&p) {
            Ok(text) => {
                let m: Self = toml::from_str(&text)
                    .map_err(|e| Error::invalid("dataset.toml", format!("{}: {e}", shown(&p))))?;
                if let Some(v) = &m.valid {
                    v.parse::<ValidChoice>().map_err(|_| {
                        Error::invalid(
                            "dataset.toml",
                            format!(
                                "{}: valid = {v:?}: expected \"auto\", \"test\" or a \
                                 percentage between 0 and 100 such as \"10\"",
                                shown(&p)
                            ),
                        )
                    })?;
                }
                Ok(m)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(Error::io(&p, e)),
        }
    }
}

/// How a data set folder is read. What is given here wins over `dataset.toml`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DataOptions {
    /// The classes in their order.
    pub classes: Option<Vec<String>>,
    /// Where validation images come from (None: `dataset.toml`'s choice, else auto).
    pub valid: Option<ValidChoice>,
    /// Seed of a drawn validation split.
    pub seed: u64,
    /// Use links that lead to files outside the data folder (refused by default).
    pub allow_outside_links: bool,
    /// Kermany's layout: pneumonia split into bacterial and viral.
    pub split_pneumonia: Option<bool>,
    /// The CSV file listing the images (the columns come from `dataset.toml`).
    pub csv_file: Option<PathBuf>,
    /// Multi-label sets: the uncertain-label policies (None: ignore).
    pub uncertain: Option<crate::data::findings::Policies>,
    /// Multi-label sets: keep only these views (empty: all).
    pub views: Vec<String>,
}
