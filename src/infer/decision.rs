//! How a prediction is decided from the probabilities: at argmax, or at an operating point
//! for one class of interest ("predict this class when its probability is at least t, else
//! the most probable other class"), as a screening tool is used.
use serde::{Deserialize, Serialize};

/// "Predict `class` when its probability ≥ `threshold`."
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OperatingPoint {
    /// The class of interest (index into the model's classes).
    pub class: usize,
    /// Its threshold, in [0, 1].
    pub threshold: f64,
}

impl OperatingPoint {
    /// The class this rule predicts from a probability row: the class of interest when its
    /// probability reaches the threshold, else the most probable of the other classes.
    pub fn decide(&self, probs: &[f32]) -> usize {
        if probs[self.class] as f64 >= self.threshold {
            return self.class;
        }
        let mut best = None;
        for (i, &p) in probs.iter().enumerate() {
            if i != self.class && best.is_none_or(|(_, bp)| p > bp) {
                best = Some((i, p));
            }
        }
        best.map_or(self.class, |(i, _)| i)
    }

    /// Parses `CLASS=T` against the class names (case-insensitive), T in [0, 1].
    pub fn parse(text: &str, classes: &[String]) -> Result<Self, String> {
        let (class, t) = parse_class_value(text, classes)?;
        Ok(Self {
            class,
            threshold: t,
        })
    }
}

/// The class of interest when none is chosen: COVID-19 when the model has it, else the
/// last class (for two classes in alphabetical order usually the finding, e.g. PNEUMONIA).
pub fn default_focus(classes: &[String]) -> usize {
    classes
        .iter()
        .position(|c| c.eq_ignore_ascii_case("COVID-19"))
        .unwrap_or(classes.len().saturating_sub(1))
}

/// The index of the class `name` names: its name in any case, else a spelling of the same
/// class that data sets use (`covid` for COVID-19, see `data::split::canonical`).
pub fn class_index(name: &str, classes: &[String]) -> Option<usize> {
    let name = name.trim();
    classes
        .iter()
        .position(|c| c.eq_ignore_ascii_case(name))
        .or_else(|| {
            let want = crate::data::split::canonical(name);
            classes
                .iter()
                .position(|c| crate::data::split::canonical(c) == want)
        })
}

/// Parses `CLASS=V` (V in [0, 1]) to the class index and the value.
pub fn parse_class_value(text: &str, classes: &[String]) -> Result<(usize, f64), String> {
    let (name, v) = text
        .rsplit_once('=')
        .ok_or_else(|| format!("{text:?}: expected CLASS=VALUE, e.g. COVID-19=0.3"))?;
    let class = class_index(name, classes).ok_or_else(|| {
        format!(
            "{text:?}: no class {:?} (the model's classes: {})",
            name.trim(),
            classes.join(", ")
        )
    })?;
    let v: f64 = v
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: {:?} is not a number", v.trim()))?;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("{text:?}: {v} is outside [0, 1]"));
    }
    Ok((class, v))
}

/// `probs` with logits divided by `t`: softmax(log p / t).
pub fn tempered(probs: &[f32], t: f64) -> Vec<f32> {
    log_tempered(probs, t)
        .iter()
        .map(|v| v.exp() as f32)
        .collect()
}

/// log softmax(log p / t) in f64.
pub fn log_tempered(probs: &[f32], t: f64) -> Vec<f64> {
    super::probs::tempered_log(probs.iter().map(|&p| (p as f64).ln()), t)
}

/// What the model file changes in how predictions are made: its operating point and its
/// temperature, in words; None when it predicts at argmax from raw probabilities.
pub fn rule_text(meta: &crate::model::io::model_file::ModelMeta) -> Option<String> {
    let mut parts = Vec::new();
    if let Some(o) = &meta.operating_point {
        parts.push(format!(
            "operating point: {} when p ≥ {}, else the most probable other class",
            o.class,
            crate::fmt::number(o.threshold)
        ));
    }
    if let Some(t) = &meta.temperature {
        parts.push(format!(
            "probabilities calibrated, temperature {:.3}",
            t.value
        ));
    }
    (!parts.is_empty()).then(|| parts.join("; "))
}
