//! A report's files: JSON, CSV, Markdown and the PNG charts, written apart from the report
//! itself so that the report does not depend on the charts that draw it.
use super::report::EvalReport;
use crate::files::write_atomic;
use crate::{Error, Result};
use std::path::{Path, PathBuf};

impl EvalReport {
    /// Writes `<stem>.json`, `<stem>.csv`, `<stem>.md`, the confusion matrix as
    /// `<stem>-confusion.png` and the charts (`-roc`, `-reliability`, `-histogram.png`) into
    /// `dir`, each atomically; returns the paths in that order.
    pub fn write_all(&self, dir: &Path, stem: &str) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let json = serde_json::to_string_pretty(self)
            .map_err(|e| Error::invalid("report", e.to_string()))?;
        let paths: Vec<PathBuf> = ["json", "csv", "md"]
            .iter()
            .map(|ext| dir.join(format!("{stem}.{ext}")))
            .chain([dir.join(format!("{stem}-confusion.png"))])
            .collect();
        let mut paths = paths;
        write_atomic(&paths[0], json.as_bytes())?;
        write_atomic(&paths[1], self.csv()?.as_bytes())?;
        write_atomic(&paths[2], self.markdown().as_bytes())?;
        super::plot::write_confusion_png(
            &paths[3],
            &self.classes,
            &self.metrics.confusion.m,
            &self.title(),
        )?;
        paths.extend(super::charts::write_charts(self, dir, stem, self.focus())?);
        Ok(paths)
    }
}
