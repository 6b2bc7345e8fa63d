//! What a review is about, said above it: the model, the data and split, and warnings when
//! the review is of the hand-picked samples or of another model than the one loaded.
use super::review::ReviewState;
use std::path::Path;

impl ReviewState {
    /// What the review is about, said above it: the model (its file, classes and what in
    /// it changes predictions), the data and split, and (as warnings) that the samples are no
    /// test set, or that `loaded`, the model in the Viewer, is another model.
    pub fn header(&self, loaded: Option<&Path>) -> Vec<(bool, String)> {
        let Some(r) = &self.report else {
            return Vec::new();
        };
        let mut out = Vec::new();
        let info = |k: &str| r.info.get(k).cloned();
        let mut model = match info("model") {
            Some(m) => format!("Model: {m} · classes {}", r.classes.join(", ")),
            None => format!(
                "Model: not recorded in this report · classes {}",
                r.classes.join(", ")
            ),
        };
        if let Some(t) = info("temperature") {
            model.push_str(&format!(" · temperature {t}"));
        }
        if let Some(o) = info("operating point") {
            model.push_str(&format!(" · operating point {o}"));
        }
        out.push((false, model));
        out.push((
            false,
            match (info("data"), info("split")) {
                (Some(d), Some(s)) => format!("Data: {s} split of {d} · {} images", r.metrics.n),
                _ => format!("Data: {} · {} images", self.source, r.metrics.n),
            },
        ));
        let samples =
            crate::model::io::shipped::samples_dir().map(|d| crate::files::shown(&d).to_string());
        if samples.is_some() && info("data") == samples {
            out.push((
                true,
                format!(
                    "These {} images are the samples that ship with the program, picked by hand                      to show each class: not a test set, so these figures say nothing about                      the model's accuracy (its test figures are in its description, left).",
                    r.metrics.n
                ),
            ));
        }
        if let (Some(loaded), Some(m)) = (loaded, info("model")) {
            let loaded = crate::files::shown(loaded).to_string();
            if loaded != m {
                out.push((
                    true,
                    format!(
                        "This review is of {m}; the loaded model is {loaded}. Run the test set \
                         again to review the loaded model."
                    ),
                ));
            }
        }
        out
    }
}
