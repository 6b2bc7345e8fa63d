//! A run folder's files: the checkpoint (weights, optimizer state, position, counters and
//! settings in one safetensors file), `history.json` (metrics per epoch) and `losses.csv`
//! (every batch's loss, learning rates and beta1), each written atomically.
use super::config::TrainConfig;
use super::events::{BatchRecord, EpochMetrics};
use crate::build_info::BuildInfo;
use crate::files::write_atomic;
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// File name of the checkpoint in a run folder.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// File name of the final model in a run folder.
pub const MODEL_FILE: &str = "model.safetensors";
/// Metrics of every epoch.
pub const HISTORY_FILE: &str = "history.json";
/// Every batch's loss and learning rates.
pub const LOSSES_FILE: &str = "losses.csv";
const CHECKPOINT_FORMAT: &str = "covid-resnet-checkpoint";

/// Where a run is: the next batch to train.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Position {
    /// Stage index.
    pub stage: usize,
    /// Step index in the stage.
    pub step: usize,
    /// Epoch in the step.
    pub epoch: usize,
    /// Batch in the epoch.
    pub batch: usize,
    /// Epochs begun before this one over the whole run (the loader's epoch number).
    pub global_epoch: usize,
    /// Iterations done over the whole plan.
    pub global_iter: usize,
}

/// What the checkpoint's metadata holds besides the tensors.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointMeta {
    format: String,
    version: u32,
    /// The run's settings.
    pub config: TrainConfig,
    /// The next batch to train.
    pub position: Position,
    /// Learning rates per group of the step in progress (fixed once its LR finder ran).
    pub step_lrs: Option<Vec<f64>>,
    /// Training forwards so far (the dropout masks' counter).
    pub train_forwards: u64,
    /// Optimizer steps per parameter.
    pub optim_steps: BTreeMap<String, u64>,
    /// Metrics of the epochs done.
    pub history: Vec<EpochMetrics>,
    /// Sum of the epoch-in-progress's batch losses.
    pub epoch_loss_sum: f64,
    /// Batches of the epoch in progress.
    pub epoch_batches: usize,
    /// Seconds spent on the epoch in progress (pauses left out), so that a resumed epoch's
    /// time counts its part before the stop (absent in older checkpoints).
    #[serde(default)]
    pub epoch_secs: f64,
    /// The program that wrote it.
    pub build: BuildInfo,
    /// The data set the run started on (absent in checkpoints written before it was kept).
    #[serde(default)]
    pub data_fingerprint: Option<crate::data::fingerprint::DataFingerprint>,
}

impl CheckpointMeta {
    /// Metadata of the current program for these settings and counters.
    pub fn new(config: TrainConfig, position: Position) -> Self {
        Self {
            format: CHECKPOINT_FORMAT.into(),
            version: 1,
            config,
            position,
            step_lrs: None,
            train_forwards: 0,
            optim_steps: BTreeMap::new(),
            history: Vec::new(),
            epoch_loss_sum: 0.0,
            epoch_batches: 0,
            epoch_secs: 0.0,
            build: BuildInfo::current(),
            data_fingerprint: None,
        }
    }
}

/// Parses a checkpoint's bytes: its metadata (validated) and every tensor on the CPU.
/// `path` only names the file in errors.
pub fn parse_checkpoint(
    bytes: &[u8],
    path: &Path,
) -> Result<(CheckpointMeta, BTreeMap<String, Tensor>)> {
    let (_, md) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| Error::weights(path, format!("corrupt or truncated checkpoint: {e}")))?;
    let json = md
        .metadata()
        .as_ref()
        .and_then(|m| m.get("checkpoint"))
        .ok_or_else(|| Error::weights(path, "not a covid-resnet checkpoint"))?;
    let meta: CheckpointMeta = serde_json::from_str(json)
        .map_err(|e| Error::weights(path, format!("bad checkpoint metadata: {e}")))?;
    if meta.format != CHECKPOINT_FORMAT {
        return Err(Error::weights(
            path,
            format!("unknown format {:?}", meta.format),
        ));
    }
    let problems = meta.config.plan.problems();
    if !problems.is_empty() || meta.config.batch_size < 2 {
        return Err(Error::weights(
            path,
            format!(
                "checkpoint settings are invalid: {}",
                if problems.is_empty() {
                    format!("batch size {}", meta.config.batch_size)
                } else {
                    problems.join("; ")
                }
            ),
        ));
    }
    let all: BTreeMap<String, Tensor> = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
        .map_err(|e| Error::weights(path, format!("corrupt or truncated checkpoint: {e}")))?
        .into_iter()
        .collect();
    Ok((meta, all))
}

/// Reads the checkpoint of a run folder.
pub fn read_checkpoint(run_dir: &Path) -> Result<(CheckpointMeta, BTreeMap<String, Tensor>)> {
    let path = run_dir.join(CHECKPOINT_FILE);
    let bytes = std::fs::read(&path).map_err(|e| Error::io(&path, e))?;
    parse_checkpoint(&bytes, &path)
}

/// Writes the checkpoint (tensors moved to the CPU) and `history.json` into `run_dir`,
/// atomically; returns the checkpoint's path.
pub fn write_checkpoint(
    run_dir: &Path,
    meta: &CheckpointMeta,
    tensors: &[(String, Tensor)],
) -> Result<PathBuf> {
    let path = run_dir.join(CHECKPOINT_FILE);
    let cpu: Vec<(&str, Tensor)> = tensors
        .iter()
        .map(|(n, t)| Ok((n.as_str(), t.to_device(&Device::Cpu)?)))
        .collect::<Result<_>>()?;
    let json =
        serde_json::to_string(meta).map_err(|e| Error::invalid("checkpoint", e.to_string()))?;
    let info = HashMap::from([("checkpoint".to_string(), json)]);
    let bytes = safetensors::serialize(cpu.iter().map(|(n, t)| (*n, t)), Some(info))
        .map_err(|e| Error::weights(&path, format!("cannot serialise: {e}")))?;
    write_atomic(&path, &bytes)?;
    let hist = serde_json::to_string_pretty(&meta.history)
        .map_err(|e| Error::invalid("history", e.to_string()))?;
    write_atomic(&run_dir.join(HISTORY_FILE), hist.as_bytes())?;
    Ok(path)
}

fn batch_log_header(groups: usize) -> Vec<String> {
    let mut h = vec!["iteration".to_string(), "loss".into()];
    h.extend((0..groups).map(|g| format!("lr_group{g}")));
    h.push("beta1".into());
    h
}

/// The batches recorded in `losses.csv` (none when the file is absent). Files written
/// before per-group rates were recorded (`iteration,loss,lr`) read with that one rate.
pub fn read_batch_log(run_dir: &Path) -> Result<Vec<BatchRecord>> {
    let path = run_dir.join(LOSSES_FILE);
    let text = match std::fs::read(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(&path, e)),
    };
    let bad = |line: usize, msg: String| {
        Error::invalid(
            "batch log",
            format!("{}: line {line}: {msg}", crate::files::shown(&path)),
        )
    };
    let mut rd = csv::ReaderBuilder::new().from_reader(&text[..]);
    let header = rd
        .headers()
        .map_err(|e| bad(1, e.to_string()))?
        .iter()
        .map(str::to_string)
        .collect::<Vec<_>>();
    let has_beta = header.last().is_some_and(|h| h == "beta1");
    let mut out = Vec::new();
    for (i, rec) in rd.records().enumerate() {
        let rec = rec.map_err(|e| bad(i + 2, e.to_string()))?;
        let nums: Vec<f64> = rec
            .iter()
            .map(|v| v.trim().parse::<f64>())
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| bad(i + 2, e.to_string()))?;
        if nums.len() < 3 || nums[0] < 0.0 || nums[0].fract() != 0.0 {
            return Err(bad(i + 2, format!("{} values", nums.len())));
        }
        let (lrs, beta1) = if has_beta {
            (nums[2..nums.len() - 1].to_vec(), nums[nums.len() - 1])
        } else {
            (nums[2..].to_vec(), f64::NAN)
        };
        out.push(BatchRecord {
            iter: nums[0] as usize,
            loss: nums[1],
            lrs,
            beta1,
        });
    }
    Ok(out)
}

/// Adds `records` to `losses.csv`, replacing rows of the same or later iterations (a run
/// resumed after a crash trains those again, with the same results).
pub fn append_batch_log(run_dir: &Path, records: &[BatchRecord]) -> Result<()> {
    let Some(first) = records.first() else {
        return Ok(());
    };
    let mut all: Vec<BatchRecord> = read_batch_log(run_dir)
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.iter < first.iter)
        .collect();
    all.extend_from_slice(records);
    let path = run_dir.join(LOSSES_FILE);
    let groups = all.iter().map(|r| r.lrs.len()).max().unwrap_or(0);
    let mut w = csv::Writer::from_writer(Vec::new());
    let csv_err =
        |e: csv::Error| Error::invalid("batch log", format!("{}: {e}", crate::files::shown(&path)));
    w.write_record(batch_log_header(groups)).map_err(csv_err)?;
    for r in &all {
        let mut row = vec![r.iter.to_string(), r.loss.to_string()];
        row.extend((0..groups).map(|g| r.lrs.get(g).map(|v| format!("{v:e}")).unwrap_or_default()));
        row.push(r.beta1.to_string());
        w.write_record(&row).map_err(csv_err)?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| Error::invalid("batch log", e.to_string()))?;
    write_atomic(&path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(iter: usize, loss: f64) -> BatchRecord {
        BatchRecord {
            iter,
            loss,
            lrs: vec![1e-5, 1e-4, 1e-3],
            beta1: 0.9,
        }
    }

    #[test]
    fn batch_log_round_trips_and_replaces_retrained_iterations() {
        let d = tempfile::tempdir().unwrap();
        append_batch_log(d.path(), &[rec(0, 1.5), rec(1, 1.25), rec(2, 1.0)]).unwrap();
        // A resume from iteration 2 trains it again.
        append_batch_log(d.path(), &[rec(2, 1.0), rec(3, 0.75)]).unwrap();
        let back = read_batch_log(d.path()).unwrap();
        assert_eq!(
            back,
            vec![rec(0, 1.5), rec(1, 1.25), rec(2, 1.0), rec(3, 0.75)]
        );
    }

    #[test]
    fn an_old_batch_log_reads_with_its_one_rate() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join(LOSSES_FILE),
            "iteration,loss,lr\n0,2.5,1e-3\n",
        )
        .unwrap();
        let back = read_batch_log(d.path()).unwrap();
        assert_eq!((back[0].iter, back[0].loss), (0, 2.5));
        assert_eq!(back[0].lrs, vec![1e-3]);
        assert!(back[0].beta1.is_nan());
        std::fs::write(
            d.path().join(LOSSES_FILE),
            "iteration,loss,lr\nx,2.5,1e-3\n",
        )
        .unwrap();
        let e = read_batch_log(d.path()).unwrap_err().to_string();
        assert!(e.contains("losses.csv") && e.contains("line 2"), "{e}");
    }
}
