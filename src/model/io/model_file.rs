//! Our own model file: safetensors holding every parameter and buffer of the classifier,
//! with JSON metadata (backbone, classes, input size, normalisation, build, training
//! summary), written atomically.
use crate::build_info::BuildInfo;
use crate::data::preprocess::{Normalization, Preprocess, ResizeMode};
use crate::files::write_atomic;
use crate::model::layers::classifier::Classifier;
use crate::model::layers::resnet::Backbone;
use crate::{Error, Result, IMAGENET_MEAN, IMAGENET_STD};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// Value of `format` in our model files.
pub const MODEL_FORMAT: &str = "covid-resnet-model";
/// Current version of the model file layout: 1 for one network, 2 for an ensemble (a
/// program that knows only version 1 refuses an ensemble by its version).
pub const MODEL_FORMAT_VERSION: u32 = 2;
/// The version of a file holding one network.
pub const SINGLE_FORMAT_VERSION: u32 = 1;
/// Metadata key holding our JSON.
pub const META_KEY: &str = "covid_resnet";

/// What a model file says about itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ModelMeta {
    /// Always [`MODEL_FORMAT`].
    pub format: String,
    /// Layout version.
    pub format_version: u32,
    /// The body.
    pub backbone: Backbone,
    /// Class names in output order.
    pub class_names: Vec<String>,
    /// Side of the square input the model was last trained at.
    pub input_size_px: u32,
    /// Normalisation mean per channel.
    pub mean: [f32; 3],
    /// Normalisation std per channel.
    pub std: [f32; 3],
    /// How images are fitted to the square input (squashed when the file does not say).
    #[serde(default)]
    pub resize: ResizeMode,
    /// The program that wrote the file.
    pub build: BuildInfo,
    /// Training summary (plan, epochs, metrics), if the file comes from a training run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<serde_json::Value>,
    /// Temperature scaling fitted on held-out images: logits are divided by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<Temperature>,
    /// The operating point predictions follow (argmax when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operating_point: Option<SavedOperatingPoint>,
    /// The networks of an ensemble, in the file as `member.{i}.` tensors; empty for one
    /// network. The class names, input handling, temperature and operating point above
    /// are the ensemble's: they apply to the mean of the members' probabilities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberMeta>,
    /// A multi-label model: its outputs are findings (`class_names` their labels), each an
    /// independent probability (sigmoid) decided at its own threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub findings: Option<FindingsMeta>,
}

/// One network of an ensemble file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct MemberMeta {
    /// Its body.
    pub backbone: Backbone,
    /// The name of the model file it came from.
    pub source: String,
    /// That file's SHA-256 (hex).
    pub sha256: String,
    /// Its training summary, as its own file recorded it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub training: Option<serde_json::Value>,
}

/// A fitted temperature and where it was fitted.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Temperature {
    /// The temperature (> 0; above 1 softens over-confident probabilities).
    pub value: f64,
    /// The images it was fitted on, e.g. "valid split of covidx-v1 (538 images)".
    pub fitted_on: String,
}

/// What a multi-label model file records of its findings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct FindingsMeta {
    /// The uncertain-label policies it was trained with (as `--uncertain` writes them).
    pub uncertain: String,
    /// Each finding's threshold ("present when its probability is at least t").
    pub thresholds: Vec<f64>,
    /// How the thresholds were chosen.
    pub thresholds_from: String,
}

/// An operating point as the model file keeps it (by class name).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SavedOperatingPoint {
    /// The class of interest.
    pub class: String,
    /// Its threshold.
    pub threshold: f64,
}

impl ModelMeta {
    /// Metadata for a classifier of `backbone` with `class_names` in output order.
    pub fn new(backbone: Backbone, input_size_px: u32, class_names: Vec<String>) -> Self {
        Self {
            format: MODEL_FORMAT.into(),
            format_version: SINGLE_FORMAT_VERSION,
            backbone,
            class_names,
            input_size_px,
            mean: IMAGENET_MEAN,
            std: IMAGENET_STD,
            resize: ResizeMode::Squash,
            build: BuildInfo::current(),
            training: None,
            temperature: None,
            operating_point: None,
            members: Vec::new(),
            findings: None,
        }
    }

    /// Whether the file holds several networks.
    pub fn is_ensemble(&self) -> bool {
        !self.members.is_empty()
    }

    /// The seed of the validation split its run drew (an ensemble: its first network's),
    /// so that held-out images are the ones the run held out.
    pub fn split_seed(&self) -> Option<u64> {
        let t = *self.trainings().first()?;
        t.get("split_seed")
            .or_else(|| t.get("seed"))
            .and_then(|v| v.as_u64())
    }

    /// The training summaries of its networks: the members' for an ensemble, else its own.
    pub fn trainings(&self) -> Vec<&serde_json::Value> {
        if self.is_ensemble() {
            self.members
                .iter()
                .filter_map(|m| m.training.as_ref())
                .collect()
        } else {
            self.training.iter().collect()
        }
    }
}

impl ModelMeta {
    /// The normalisation the model was trained with.
    pub fn norm(&self) -> Normalization {
        Normalization {
            mean: self.mean,
            std: self.std,
        }
    }

    /// How an image becomes this model's input.
    pub fn preprocess(&self) -> Preprocess {
        Preprocess {
            size_px: self.input_size_px,
            resize: self.resize,
            norm: self.norm(),
        }
    }
}

/// Writes the classifier and its metadata to `path` atomically, in f32.
pub fn save_model(path: &Path, model: &Classifier, meta: &ModelMeta) -> Result<()> {
    save_model_as(path, model, meta, DType::F32)
}

/// Writes the classifier with its tensors in `dtype` (f16 halves the file; loading
/// converts back to the model's type).
pub fn save_model_as(
    path: &Path,
    model: &Classifier,
    meta: &ModelMeta,
    dtype: DType,
) -> Result<()> {
    if meta.class_names.len() != model.num_classes() {
        return Err(Error::invalid(
            "model metadata",
            format!(
                "{} class names for a model with {} outputs",
                meta.class_names.len(),
                model.num_classes()
            ),
        ));
    }
    let tensors: Vec<(String, Tensor)> = model
        .store()
        .named_tensors()
        .into_iter()
        .map(|(n, t)| Ok((n, t.to_dtype(dtype)?.to_device(&Device::Cpu)?)))
        .collect::<Result<_>>()?;
    write_file(path, meta, tensors.iter().map(|(n, t)| (n.as_str(), t)))
}

/// Writes a model file: `tensors` with `meta` as its metadata, atomically. Every writer of
/// model files (one network, an ensemble, a rewrite) ends here.
pub(super) fn write_file<S, V>(
    path: &Path,
    meta: &ModelMeta,
    tensors: impl IntoIterator<Item = (S, V)>,
) -> Result<()>
where
    S: AsRef<str> + Ord + std::fmt::Display,
    V: safetensors::View,
{
    let json =
        serde_json::to_string(meta).map_err(|e| Error::invalid("model metadata", e.to_string()))?;
    let info = HashMap::from([(META_KEY.to_string(), json)]);
    let bytes = safetensors::serialize(tensors, Some(info))
        .map_err(|e| Error::weights(path, format!("cannot serialise: {e}")))?;
    write_atomic(path, &bytes)
}

/// Copies the model file `input` (one network or an ensemble) to `output` with every
/// floating-point tensor stored as `dtype` (f16 halves the file; loading converts back).
pub fn rewrite_tensors_as(input: &Path, output: &Path, dtype: DType) -> Result<()> {
    let bytes = std::fs::read(input).map_err(|e| Error::io(input, e))?;
    let (meta, tensors) = parse_model_file(&bytes, input)?;
    let tensors: Vec<(String, Tensor)> = tensors
        .into_iter()
        .map(|(n, t)| {
            let t = if t.dtype().is_float() {
                t.to_dtype(dtype)?
            } else {
                t
            };
            Ok((n, t))
        })
        .collect::<Result<_>>()?;
    write_file(output, &meta, tensors.iter().map(|(n, t)| (n.as_str(), t)))
}

/// Copies the model file `input` to `output` (atomically; the same path rewrites it) with
/// its metadata changed by `edit`, the tensors as they are on disk.
pub fn rewrite_meta(input: &Path, output: &Path, edit: impl FnOnce(&mut ModelMeta)) -> Result<()> {
    let bytes = std::fs::read(input).map_err(|e| Error::io(input, e))?;
    let mut meta = meta_from_bytes(&bytes, input)?;
    edit(&mut meta);
    let st = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| Error::weights(input, format!("not a readable model file: {e}")))?;
    write_file(output, &meta, st.tensors())
}

/// Reads only the metadata of a model file.
pub fn read_meta(path: &Path) -> Result<ModelMeta> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    meta_from_bytes(&bytes, path)
}

fn meta_from_bytes(bytes: &[u8], path: &Path) -> Result<ModelMeta> {
    let (_, md) = safetensors::SafeTensors::read_metadata(bytes).map_err(|e| {
        Error::weights(
            path,
            format!("not a readable model file (corrupt or truncated?): {e}"),
        )
    })?;
    let found = md.metadata().as_ref();
    if found.is_some_and(|m| m.contains_key("checkpoint")) {
        let dir = path.parent().unwrap_or(Path::new("."));
        return Err(Error::weights(
            path,
            format!(
                "this is a training checkpoint, not a model file; the run's model is {} once \
                 the run has finished, or continue the run with --resume {}",
                crate::files::shown(&dir.join("model.safetensors")),
                crate::files::shown(dir)
            ),
        ));
    }
    let json = found.and_then(|m| m.get(META_KEY)).ok_or_else(|| {
        Error::weights(
            path,
            "not a covid-resnet model file (no covid_resnet metadata); a torchvision/timm file is \
             pretrained weights: pass it as --weights to train from it",
        )
    })?;
    let meta: ModelMeta = serde_json::from_str(json)
        .map_err(|e| Error::weights(path, format!("bad model metadata: {e}")))?;
    if meta.format != MODEL_FORMAT {
        return Err(Error::weights(
            path,
            format!("unknown format {:?}", meta.format),
        ));
    }
    if meta.format_version > MODEL_FORMAT_VERSION {
        return Err(Error::weights(
            path,
            format!(
                "model file version {} is newer than this program understands ({MODEL_FORMAT_VERSION})",
                meta.format_version
            ),
        ));
    }
    if let Some(problem) = meta.problem() {
        return Err(Error::weights(path, format!("model metadata: {problem}")));
    }
    Ok(meta)
}

/// Smallest and largest input sizes a model file may give.
pub const INPUT_SIZE_RANGE: std::ops::RangeInclusive<u32> = 32..=1024;
/// How many networks an ensemble file may hold.
pub const ENSEMBLE_MEMBERS: std::ops::RangeInclusive<usize> = 2..=16;
/// The temperatures a model file may hold: the interval `model calibrate` fits in.
pub const TEMPERATURE_RANGE: std::ops::RangeInclusive<f64> = 0.05..=20.0;
/// Fewest and most classes a model may have: those a data set may have.
pub use crate::data::split::CLASS_COUNT_RANGE;

impl ModelMeta {
    /// The first field that cannot be right, named, if any.
    pub fn problem(&self) -> Option<String> {
        let k = self.class_names.len();
        if !CLASS_COUNT_RANGE.contains(&k) {
            return Some(format!(
                "class_names lists {k} classes (expected {} to {})",
                CLASS_COUNT_RANGE.start(),
                CLASS_COUNT_RANGE.end()
            ));
        }
        let mut seen = std::collections::BTreeSet::new();
        for c in &self.class_names {
            if c.trim().is_empty() || !seen.insert(c.as_str()) {
                return Some(format!(
                    "class_names {:?}: names must be distinct and not empty",
                    self.class_names
                ));
            }
        }
        if !INPUT_SIZE_RANGE.contains(&self.input_size_px) {
            return Some(format!(
                "input_size_px {} is outside {}..={}",
                self.input_size_px,
                INPUT_SIZE_RANGE.start(),
                INPUT_SIZE_RANGE.end()
            ));
        }
        if let Some(p) = self.norm().problem() {
            return Some(format!("mean/std: {p}"));
        }
        if let Some(t) = &self.temperature {
            if !(TEMPERATURE_RANGE.contains(&t.value)) {
                return Some(format!(
                    "temperature.value {} is outside [{}, {}] (the range it is fitted in)",
                    crate::fmt::number(t.value),
                    TEMPERATURE_RANGE.start(),
                    TEMPERATURE_RANGE.end()
                ));
            }
        }
        if let Some(o) = &self.operating_point {
            if crate::infer::decision::class_index(&o.class, &self.class_names).is_none() {
                return Some(format!(
                    "operating_point.class {:?} is not one of the model's classes ({})",
                    o.class,
                    self.class_names.join(", ")
                ));
            }
            if !(0.0..=1.0).contains(&o.threshold) {
                return Some(format!(
                    "operating_point.threshold {} is outside [0, 1]",
                    crate::fmt::number(o.threshold)
                ));
            }
        }
        if self.is_ensemble() {
            let n = self.members.len();
            if !ENSEMBLE_MEMBERS.contains(&n) {
                return Some(format!(
                    "members lists {n} networks (an ensemble has {} to {})",
                    ENSEMBLE_MEMBERS.start(),
                    ENSEMBLE_MEMBERS.end()
                ));
            }
            if self.format_version < MODEL_FORMAT_VERSION {
                return Some(format!(
                    "format_version {} cannot hold an ensemble (version {MODEL_FORMAT_VERSION} can)",
                    self.format_version
                ));
            }
        }
        // A file from training records what it was trained at and on: they must agree,
        // for each of an ensemble's networks.
        self.trainings()
            .into_iter()
            .find_map(|t| self.training_problem(t))
    }

    fn training_problem(&self, training: &serde_json::Value) -> Option<String> {
        // The plan as the training summary writes it: `{"name": .., "stage": [{"size_px": ..}]}`.
        if let Some(last) = training
            .get("plan")
            .and_then(|p| p.get("stage"))
            .and_then(|s| s.as_array())
            .and_then(|s| s.last())
            .and_then(|s| s.get("size_px"))
            .and_then(|v| v.as_u64())
        {
            if last != self.input_size_px as u64 {
                return Some(format!(
                    "input_size_px {} but the model was last trained at {last} px",
                    self.input_size_px
                ));
            }
        }
        if let Some(trained) = training.get("classes").and_then(|c| c.as_array()) {
            let trained: Vec<&str> = trained.iter().filter_map(|v| v.as_str()).collect();
            if trained
                != self
                    .class_names
                    .iter()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
            {
                return Some(format!(
                    "class_names {:?} differ from the classes it was trained on {:?}",
                    self.class_names, trained
                ));
            }
        }
        None
    }
}

/// Checks the metadata against the tensors: the head's last layer has one output per class.
fn check_tensors(meta: &ModelMeta, tensors: &BTreeMap<String, Tensor>, path: &Path) -> Result<()> {
    let heads: Vec<(String, String)> = if meta.is_ensemble() {
        (0..meta.members.len())
            .map(|i| {
                let name = format!("{}head.8.weight", super::ensemble::member_prefix(i));
                (name, format!("member {}'s head", i + 1))
            })
            .collect()
    } else {
        vec![("head.8.weight".into(), "the head".into())]
    };
    for (name, what) in heads {
        if let Some(w) = tensors.get(&name) {
            let rows = w.dims().first().copied().unwrap_or(0);
            if rows != meta.class_names.len() {
                return Err(Error::weights(
                    path,
                    format!(
                        "model metadata: class_names lists {} classes but {what} has {rows} \
                         outputs",
                        meta.class_names.len()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Parses a model file's bytes: its metadata and every tensor (on the CPU). `path` only
/// names the file in errors.
pub fn parse_model_file(
    bytes: &[u8],
    path: &Path,
) -> Result<(ModelMeta, BTreeMap<String, Tensor>)> {
    let meta = meta_from_bytes(bytes, path)?;
    let tensors = tensors_from_bytes(bytes, path)?;
    check_tensors(&meta, &tensors, path)?;
    Ok((meta, tensors))
}

/// Loads a model file into its networks on `device`: one, or an ensemble's members.
pub fn load_networks(path: &Path, device: &Device) -> Result<(Vec<Classifier>, ModelMeta)> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (meta, tensors) = parse_model_file(&bytes, path)?;
    let nets = super::ensemble::networks(&meta, &tensors, path, device)?;
    Ok((nets, meta))
}

/// Loads a model file holding one network into a new classifier on `device` (an ensemble
/// is refused by name: see [`load_networks`]).
pub fn load_model(path: &Path, device: &Device) -> Result<(Classifier, ModelMeta)> {
    let (mut nets, meta) = load_networks(path, device)?;
    if nets.len() != 1 {
        return Err(Error::weights(
            path,
            format!(
                "an ensemble of {} networks, where one network is needed",
                nets.len()
            ),
        ));
    }
    Ok((nets.remove(0), meta))
}

/// Loads the weights of a model file into an existing classifier, which must have the
/// file's backbone and number of classes.
pub fn load_into(model: &Classifier, path: &Path) -> Result<ModelMeta> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let meta = meta_from_bytes(&bytes, path)?;
    if meta.backbone != model.backbone() || meta.class_names.len() != model.num_classes() {
        return Err(Error::weights(
            path,
            format!(
                "the file holds a {} with {} classes, the model is a {} with {} classes",
                meta.backbone,
                meta.class_names.len(),
                model.backbone(),
                model.num_classes()
            ),
        ));
    }
    load_tensors_from_bytes(model, &bytes, path)?;
    Ok(meta)
}

fn tensors_from_bytes(bytes: &[u8], path: &Path) -> Result<BTreeMap<String, Tensor>> {
    Ok(candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
        .map_err(|e| Error::weights(path, format!("corrupt or truncated model file: {e}")))?
        .into_iter()
        .collect())
}

fn load_tensors_from_bytes(model: &Classifier, bytes: &[u8], path: &Path) -> Result<()> {
    let tensors = tensors_from_bytes(bytes, path)?;
    crate::model::io::pretrained::import_into(model.store(), "", &tensors, path)?;
    Ok(())
}
