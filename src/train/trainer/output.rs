//! What a run writes: the checkpoint after every epoch (with `history.json` and
//! `losses.csv`), and at the end the model file and the test report.
use super::{Outcome, Trainer};
use crate::model::io::model_file::save_model;
use crate::train::checkpoint::{append_batch_log, write_checkpoint, CheckpointMeta, MODEL_FILE};
use crate::train::events::TrainEvent;
use crate::Result;
use candle_core::Tensor;
use std::path::PathBuf;

impl Trainer {
    /// What the model file records of its run: `extra`'s fields (an object) with the
    /// classes, plan, epochs, seeds, batch size, augmentation, weights, data, last epoch,
    /// validation split, precision and, distilled, the teacher.
    pub(super) fn training_summary(&self, extra: serde_json::Value) -> serde_json::Value {
        let mut v = serde_json::json!({
            "classes": self.classes,
            "plan": self.cfg.plan,
            "epochs": self.history.len(),
            "seed": self.cfg.seed,
            "split_seed": self.cfg.split_seed(),
            "batch_size": self.cfg.batch_size,
            "augment": self.cfg.augment,
            "weights": self.cfg.weights.as_deref().map(crate::files::path_text),
            "data": crate::files::path_text(&self.cfg.data),
            "final_epoch": self.history.last(),
            "validation": self.valid_source.describe(),
            "precision": self.cfg.precision,
        });
        if let (Some(o), Some(d)) = (v.as_object_mut(), &self.cfg.distill) {
            o.insert(
                "distilled_from".into(),
                serde_json::json!({
                    "teacher": crate::files::path_text(&d.teacher),
                    "sha256": d.sha256,
                    "weight": d.weight,
                    "temperature": d.temperature,
                }),
            );
        }
        if let (Some(o), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
            o.extend(e);
        }
        v
    }

    /// Writes the checkpoint, `history.json` and `losses.csv` atomically and returns the
    /// checkpoint's path.
    pub fn save_checkpoint(&mut self) -> Result<PathBuf> {
        let st = self.opt.state();
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        for (n, t) in self.model.store().named_tensors() {
            tensors.push((format!("model.{n}"), t));
        }
        for (n, t) in st.tensors {
            tensors.push((format!("optim.{n}"), t));
        }
        let mut meta = CheckpointMeta::new(self.cfg.clone(), self.pos);
        meta.step_lrs = self.step_lrs.clone();
        meta.train_forwards = self.model.train_forwards();
        meta.optim_steps = st.steps.into_iter().collect();
        meta.history = self.history.clone();
        meta.epoch_loss_sum = self.epoch_loss_sum;
        meta.epoch_batches = self.epoch_batches;
        meta.epoch_secs = self.epoch_secs;
        meta.data_fingerprint = Some(self.fingerprint.clone());
        let path = write_checkpoint(&self.cfg.out_dir, &meta, &tensors)?;
        append_batch_log(&self.cfg.out_dir, &self.unsaved_batches)?;
        self.unsaved_batches.clear();
        Ok(path)
    }

    pub(super) fn finish(&mut self) -> Result<Outcome> {
        let size = self
            .cfg
            .plan
            .stages
            .last()
            .map(|s| s.size_px)
            .unwrap_or(224);
        if self.findings.is_some() {
            return self.finish_findings(size);
        }
        let mut meta = self.model_meta(size);
        // The test figures go into the model file too, so whoever opens it knows what it
        // scored on which data (the Viewer and `predict` say so). A run told to leave the
        // test split alone reports its validation split instead, under that name.
        let split = if self.cfg.skip_test { "valid" } else { "test" };
        let mut report = self.validate(size, self.cfg.bootstrap, split == "test")?;
        report.validated_on_test = self.valid_source == crate::data::split::ValidSource::Test;
        let m = &report.metrics;
        let data_name = self
            .cfg
            .data
            .file_name()
            .map(|n| crate::files::path_text(std::path::Path::new(n)))
            .unwrap_or_default();
        meta.training = Some(self.training_summary(serde_json::json!({
            "class_weights": self.cfg.class_weights.name(),
            "sampling": self.cfg.sampling,
            split: {
                "data": data_name,
                "split": split,
                "validated_on_test": report.validated_on_test,
                "n": m.n,
                "accuracy": m.accuracy,
                "macro_f1": m.macro_f1,
                "recall": m.per_class.iter().map(|c| (c.class.clone(), c.recall)).collect::<std::collections::BTreeMap<_, _>>(),
            },
        })));
        let model_path = self.cfg.out_dir.join(MODEL_FILE);
        // The last epoch's checkpoint already holds these weights; resuming from it
        // trains nothing and finishes again.
        save_model(&model_path, &self.model, &meta)?;
        report.record_source(&model_path, &meta, &self.cfg.data, split);
        report
            .info
            .insert("validation".into(), self.valid_source.describe());
        let paths = report.write_all(&self.cfg.out_dir, "report")?;
        self.sink.send(TrainEvent::Finished {
            model: model_path.clone(),
            report: paths.into_iter().next(),
        });
        Ok(Outcome::Finished { model: model_path })
    }
}
