//! The staged training plan: stages (image size) made of steps (head only or the whole
//! network, a learning rate, a discriminative range or `auto`, epochs), read from and
//! written to TOML, validated with messages that say which row is wrong.
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::str::FromStr;

/// Which parameters a step trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Trainable {
    /// The head (and all BatchNorm layers, fastai `train_bn`); the body is frozen.
    Head,
    /// The whole network.
    All,
}

/// A step's learning rate, written as fastai would.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LrSpec {
    /// One rate for every group (fastai: a float).
    Fixed(f64),
    /// `lo..hi`: rates spread evenly on a log scale over the groups (fastai `slice(lo, hi)`).
    Range(f64, f64),
    /// `..hi`: hi/10 for all groups but the last, hi for the last (fastai `slice(hi)`).
    UpTo(f64),
    /// From the LR finder, run just before the step.
    Auto,
}

impl LrSpec {
    /// What `auto` becomes for an LR-finder suggestion `s`: discriminative rates from s/100
    /// (stem) to s (head).
    pub fn for_suggestion(s: f64) -> Self {
        Self::Range(s / 100.0, s)
    }

    /// Per-group rates for `n` groups; `suggestion` fills in `Auto`.
    pub fn group_lrs(&self, n: usize, suggestion: Option<f64>) -> Result<Vec<f64>> {
        Ok(match *self {
            Self::Fixed(lr) => vec![lr; n],
            Self::UpTo(hi) => (0..n)
                .map(|i| if i + 1 == n { hi } else { hi / 10.0 })
                .collect(),
            Self::Range(lo, hi) => even_mults(lo, hi, n),
            Self::Auto => {
                let s = suggestion.ok_or_else(|| {
                    Error::invalid("learning rate", "auto needs an LR finder suggestion")
                })?;
                Self::for_suggestion(s).group_lrs(n, None)?
            }
        })
    }
}

/// fastai `even_mults`: `lo * (hi/lo)^(i/(n-1))`.
pub fn even_mults(lo: f64, hi: f64, n: usize) -> Vec<f64> {
    if n <= 1 {
        return vec![hi; n];
    }
    let step = (hi / lo).powf(1.0 / (n - 1) as f64);
    (0..n).map(|i| lo * step.powi(i as i32)).collect()
}

impl std::fmt::Display for LrSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fixed(x) => write!(f, "{x:e}"),
            Self::Range(a, b) => write!(f, "{a:e}..{b:e}"),
            Self::UpTo(b) => write!(f, "..{b:e}"),
            Self::Auto => write!(f, "auto"),
        }
    }
}

impl FromStr for LrSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let t = s.trim();
        let num = |v: &str| -> Result<f64> {
            let x: f64 = v.trim().parse().map_err(|_| {
                Error::invalid("learning rate", format!("{s:?}: {v:?} is not a number"))
            })?;
            if !(x.is_finite() && x > 0.0) {
                return Err(Error::invalid(
                    "learning rate",
                    format!("{s:?}: must be a positive number"),
                ));
            }
            Ok(x)
        };
        if t.eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        if let Some((a, b)) = t.split_once("..") {
            if a.trim().is_empty() {
                return Ok(Self::UpTo(num(b)?));
            }
            let (lo, hi) = (num(a)?, num(b)?);
            if lo >= hi {
                return Err(Error::invalid(
                    "learning rate",
                    format!("{s:?}: the range must go from low to high"),
                ));
            }
            return Ok(Self::Range(lo, hi));
        }
        Ok(Self::Fixed(num(t)?))
    }
}

impl Serialize for LrSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for LrSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            S(String),
            F(f64),
        }
        match Raw::deserialize(d)? {
            Raw::S(s) => s.parse().map_err(serde::de::Error::custom),
            Raw::F(x) => x.to_string().parse().map_err(serde::de::Error::custom),
        }
    }
}

/// One `fit_one_cycle` call.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// What is trained.
    pub train: Trainable,
    /// Learning rate(s).
    pub lr: LrSpec,
    /// Epochs.
    pub epochs: usize,
}

/// Steps at one image size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// Side of the square input, in pixels.
    pub size_px: u32,
    /// The steps, in order.
    #[serde(rename = "step")]
    pub steps: Vec<Step>,
}

/// A whole training plan.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    /// Name shown in the UI and reports.
    pub name: String,
    /// Epoch order, `shuffle` or `balanced` (unset: the run's setting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sampling: Option<crate::data::sampler::Sampling>,
    /// Loss weights, `none` or `auto` (unset: the run's setting).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_weights: Option<super::loss::ClassWeights>,
    /// The stages, in order.
    #[serde(rename = "stage")]
    pub stages: Vec<Stage>,
}

/// Smallest and largest accepted input sizes.
pub const SIZE_RANGE_PX: (u32, u32) = (32, 1024);

impl Plan {
    /// The paper's plan (Farooq & Hafeez 2020, section 3): 41 epochs in three stages (128, 224,
    /// 229 px).
    pub fn paper() -> Self {
        let step = |train, lr: &str, epochs| Step {
            train,
            lr: lr.parse().unwrap_or(LrSpec::Auto),
            epochs,
        };
        Self {
            name: "paper".into(),
            sampling: None,
            class_weights: None,
            stages: vec![
                Stage {
                    size_px: 128,
                    steps: vec![
                        step(Trainable::Head, "1e-3", 3),
                        step(Trainable::All, "auto", 5),
                    ],
                },
                Stage {
                    size_px: 224,
                    steps: vec![
                        step(Trainable::Head, "1e-4", 3),
                        step(Trainable::All, "auto", 5),
                    ],
                },
                Stage {
                    size_px: 229,
                    steps: vec![step(Trainable::All, "1e-6..1e-4", 25)],
                },
            ],
        }
    }

    /// A few minutes on a CPU: small images, fixed rates (no LR finder), 4 epochs.
    pub fn quick() -> Self {
        Self {
            name: "quick".into(),
            sampling: None,
            class_weights: None,
            stages: vec![
                Stage {
                    size_px: 64,
                    steps: vec![
                        Step {
                            train: Trainable::Head,
                            lr: LrSpec::Fixed(2e-3),
                            epochs: 1,
                        },
                        Step {
                            train: Trainable::All,
                            lr: LrSpec::Range(1e-4, 1e-3),
                            epochs: 2,
                        },
                    ],
                },
                Stage {
                    size_px: 96,
                    steps: vec![Step {
                        train: Trainable::All,
                        lr: LrSpec::Range(5e-5, 5e-4),
                        epochs: 1,
                    }],
                },
            ],
        }
    }

    /// A preset by name, or a TOML file.
    pub fn resolve(name_or_path: &str) -> Result<Self> {
        match name_or_path {
            "paper" => Ok(Self::paper()),
            "quick" => Ok(Self::quick()),
            p => Self::load(Path::new(p)),
        }
    }

    /// Total epochs.
    pub fn total_epochs(&self) -> usize {
        self.stages
            .iter()
            .flat_map(|s| &s.steps)
            .map(|s| s.epochs)
            .sum()
    }

    /// Every problem, one message per wrong row ("stage 2, step 1: ...").
    pub fn problems(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.stages.is_empty() {
            v.push("the plan has no stages".to_string());
        }
        if self.sampling == Some(crate::data::sampler::Sampling::Sequential) {
            v.push("sampling \"sequential\": a run trains with shuffle or balanced".to_string());
        }
        for (i, st) in self.stages.iter().enumerate() {
            let (lo, hi) = SIZE_RANGE_PX;
            if !(lo..=hi).contains(&st.size_px) {
                v.push(format!(
                    "stage {}: size {} px is outside {lo}..{hi}",
                    i + 1,
                    st.size_px
                ));
            }
            if st.steps.is_empty() {
                v.push(format!("stage {}: no steps", i + 1));
            }
            for (j, s) in st.steps.iter().enumerate() {
                let at = format!("stage {}, step {}", i + 1, j + 1);
                if s.epochs == 0 {
                    v.push(format!("{at}: epochs must be at least 1"));
                }
                // Any positive rate is allowed (a divergence test wants a huge one); the
                // trainer stops cleanly if the loss becomes NaN.
                let bad = |x: f64| !(x.is_finite() && x > 0.0);
                match s.lr {
                    LrSpec::Fixed(x) | LrSpec::UpTo(x) if bad(x) => {
                        v.push(format!("{at}: learning rate {x} must be a positive number"))
                    }
                    LrSpec::Range(a, b) if bad(a) || bad(b) || a >= b => v.push(format!(
                        "{at}: learning-rate range {a}..{b} must rise from a positive low"
                    )),
                    _ => {}
                }
            }
        }
        v
    }

    /// Ok, or an error listing every problem.
    pub fn validate(&self) -> Result<()> {
        let p = self.problems();
        if p.is_empty() {
            Ok(())
        } else {
            Err(Error::invalid(
                format!("plan {:?}", self.name),
                p.join("; "),
            ))
        }
    }

    /// Parses TOML and validates.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let plan: Plan = toml::from_str(text)
            .map_err(|e| Error::invalid("plan file", format!("{origin}: {e}")))?;
        plan.validate()?;
        Ok(plan)
    }

    /// The plan as TOML.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string_pretty(self).map_err(|e| Error::invalid("plan", e.to_string()))
    }

    /// Reads a plan file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::from_toml(&text, &crate::files::shown(path).to_string())
    }

    /// Writes the plan atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::files::write_atomic(path, self.to_toml()?.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paper_plan_is_methods_table() {
        let p = Plan::paper();
        assert_eq!(p.total_epochs(), 41);
        assert_eq!(
            p.stages.iter().map(|s| s.size_px).collect::<Vec<_>>(),
            vec![128, 224, 229]
        );
        assert!(p.validate().is_ok());
        assert!(Plan::quick().validate().is_ok());
    }

    #[test]
    fn lr_specs_parse_and_spread_like_fastai() {
        assert_eq!("1e-3".parse::<LrSpec>().unwrap(), LrSpec::Fixed(1e-3));
        assert_eq!("auto".parse::<LrSpec>().unwrap(), LrSpec::Auto);
        // slice(1e-6, 1e-4) over 3 groups: 1e-6, 1e-5, 1e-4.
        let v = "1e-6..1e-4"
            .parse::<LrSpec>()
            .unwrap()
            .group_lrs(3, None)
            .unwrap();
        for (a, b) in v.iter().zip([1e-6, 1e-5, 1e-4]) {
            assert!((a / b - 1.0).abs() < 1e-12, "{v:?}");
        }
        // slice(1e-3): [1e-4, 1e-4, 1e-3].
        assert_eq!(
            "..1e-3"
                .parse::<LrSpec>()
                .unwrap()
                .group_lrs(3, None)
                .unwrap(),
            vec![1e-4, 1e-4, 1e-3]
        );
        assert_eq!(LrSpec::Fixed(2.0).group_lrs(3, None).unwrap(), vec![2.0; 3]);
        assert!(LrSpec::Auto.group_lrs(3, None).is_err());
        for bad in ["", "abc", "-1", "1e-3..1e-5", "nan", "0"] {
            assert!(bad.parse::<LrSpec>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn toml_round_trip_and_row_messages() {
        let p = Plan::paper();
        let t = p.to_toml().unwrap();
        assert_eq!(Plan::from_toml(&t, "x").unwrap(), p);
        let bad = "name = \"b\"\n[[stage]]\nsize_px = 16\n[[stage.step]]\ntrain = \"all\"\nlr = \"1e-3\"\nepochs = 0\n";
        let e = Plan::from_toml(bad, "b.toml").unwrap_err().to_string();
        assert!(
            e.contains("stage 1: size 16 px") && e.contains("stage 1, step 1: epochs"),
            "{e}"
        );
        let e = Plan::from_toml("name = 3", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("c.toml"), "{e}");
        let e = Plan::from_toml(&t.replace("\"1e-3\"", "\"fast\""), "d.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("fast"), "{e}");
        // A bare number is accepted as a fixed rate.
        let num = t.replace("lr = \"1e-3\"", "lr = 0.001");
        assert_eq!(
            Plan::from_toml(&num, "e").unwrap().stages[0].steps[0].lr,
            LrSpec::Fixed(1e-3)
        );
    }
}
