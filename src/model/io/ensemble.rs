//! Ensemble files: several trained networks in one model file, so that an ensemble is a
//! model wherever a model is accepted.
//!
//! One self-contained file rather than a manifest naming member files: a model file is what
//! users move, ship and open, and a manifest breaks when one member moves or changes. The
//! members' tensors are stored under `member.{i}.` as their own files stored them (f16 stays
//! f16), and the metadata names each member's source file with its SHA-256, so the file
//! says where it came from.
use super::model_file::{
    parse_model_file, write_file, MemberMeta, ModelMeta, ENSEMBLE_MEMBERS, MODEL_FORMAT_VERSION,
};
use crate::files::shown;
use crate::model::Classifier;
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use std::collections::BTreeMap;
use std::path::Path;

/// The prefix of member `i`'s tensors in an ensemble file.
pub fn member_prefix(i: usize) -> String {
    format!("member.{i}.")
}

/// Writes the model files `inputs` as one ensemble file at `out`: the same classes and the
/// same input handling (size, resize, normalisation) are required; backbones may differ.
/// The members' own temperatures and operating points are dropped: the ensemble's apply to
/// the mean of the members' probabilities (fit them with `model calibrate` / `threshold`).
pub fn write_ensemble(inputs: &[&Path], out: &Path) -> Result<ModelMeta> {
    if !ENSEMBLE_MEMBERS.contains(&inputs.len()) {
        return Err(Error::invalid(
            "ensemble",
            format!(
                "{} model files given: an ensemble has {} to {} members",
                inputs.len(),
                ENSEMBLE_MEMBERS.start(),
                ENSEMBLE_MEMBERS.end()
            ),
        ));
    }
    let mut meta: Option<ModelMeta> = None;
    let mut tensors: Vec<(String, Tensor)> = Vec::new();
    let mut members = Vec::new();
    for (i, path) in inputs.iter().enumerate() {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        let (m, ts) = parse_model_file(&bytes, path)?;
        if m.is_ensemble() {
            return Err(Error::weights(
                path,
                format!(
                    "already an ensemble of {}: list its members' own files instead",
                    m.members.len()
                ),
            ));
        }
        if let Some(first) = &meta {
            if let Some(diff) = difference(first, &m) {
                return Err(Error::weights(
                    path,
                    format!(
                        "cannot join {}: {diff} (an ensemble's members share classes and input \
                         handling)",
                        shown(inputs[0])
                    ),
                ));
            }
        }
        members.push(MemberMeta {
            backbone: m.backbone,
            source: path
                .file_name()
                .map(|n| crate::files::path_text(Path::new(n)))
                .unwrap_or_default(),
            sha256: crate::fetch::sha256_bytes(&bytes),
            training: m.training.clone(),
        });
        let prefix = member_prefix(i);
        tensors.extend(ts.into_iter().map(|(n, t)| (format!("{prefix}{n}"), t)));
        meta.get_or_insert(m);
    }
    let mut meta = meta.expect("at least two inputs");
    meta.format_version = MODEL_FORMAT_VERSION;
    meta.members = members;
    meta.training = None;
    meta.temperature = None;
    meta.operating_point = None;
    meta.build = crate::build_info::BuildInfo::current();
    if let Some(p) = meta.problem() {
        return Err(Error::invalid("ensemble", p));
    }
    write_file(out, &meta, tensors.iter().map(|(n, t)| (n.as_str(), t)))?;
    Ok(meta)
}

/// What makes `b` unfit to join `a` in an ensemble, named.
fn difference(a: &ModelMeta, b: &ModelMeta) -> Option<String> {
    if a.class_names != b.class_names {
        return Some(format!(
            "classes {:?} against {:?}",
            b.class_names, a.class_names
        ));
    }
    if a.input_size_px != b.input_size_px {
        return Some(format!(
            "input size {} px against {} px",
            b.input_size_px, a.input_size_px
        ));
    }
    if a.resize != b.resize {
        return Some(format!("resize {:?} against {:?}", b.resize, a.resize));
    }
    if a.mean != b.mean || a.std != b.std {
        return Some(format!(
            "normalisation mean {:?} std {:?} against mean {:?} std {:?}",
            b.mean, b.std, a.mean, a.std
        ));
    }
    None
}

/// The networks of a parsed model file on `device`: its members in order for an ensemble,
/// else the one network.
pub fn networks(
    meta: &ModelMeta,
    tensors: &BTreeMap<String, Tensor>,
    path: &Path,
    device: &Device,
) -> Result<Vec<Classifier>> {
    let k = meta.class_names.len();
    if !meta.is_ensemble() {
        let model = Classifier::new(meta.backbone, k, 0, device)?;
        super::pretrained::import_into(model.store(), "", tensors, path)?;
        return Ok(vec![model]);
    }
    let mut out = Vec::with_capacity(meta.members.len());
    for (i, m) in meta.members.iter().enumerate() {
        let prefix = member_prefix(i);
        let own: BTreeMap<String, Tensor> = tensors
            .iter()
            .filter_map(|(n, t)| n.strip_prefix(&prefix).map(|s| (s.to_string(), t.clone())))
            .collect();
        let model = Classifier::new(m.backbone, k, 0, device)?;
        super::pretrained::import_into(model.store(), "", &own, path)
            .map_err(|e| Error::weights(path, format!("member {} ({}): {e}", i + 1, m.source)))?;
        out.push(model);
    }
    let claimed: usize = out.iter().map(|m| m.store().named_tensors().len()).sum();
    let stored = tensors
        .keys()
        .filter(|n| !n.ends_with("num_batches_tracked"))
        .count();
    if claimed != stored {
        return Err(Error::weights(
            path,
            format!(
                "{stored} tensors, but its {} members hold {claimed}: tensors outside the members",
                meta.members.len()
            ),
        ));
    }
    Ok(out)
}
