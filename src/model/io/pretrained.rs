//! Reading weight files (safetensors, PyTorch zip `.pth`) and importing a pretrained
//! torchvision/timm ResNet body into our models by tensor name.
use crate::model::layers::params::ParamStore;
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The kinds of weight file we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// Hugging Face safetensors.
    Safetensors,
    /// PyTorch `torch.save` zip archive (`.pth`, `.pt`, `.bin`).
    PthZip,
}

/// Detects the file format from its first bytes.
pub fn sniff_format(path: &Path) -> Result<WeightFormat> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut head = [0u8; 9];
    let n = f.read(&mut head).map_err(|e| Error::io(path, e))?;
    if n >= 4 && head[..4] == *b"PK\x03\x04" {
        return Ok(WeightFormat::PthZip);
    }
    if n == 9 {
        let header_len = u64::from_le_bytes(head[..8].try_into().unwrap_or([0; 8]));
        if head[8] == b'{' && header_len.saturating_add(8) <= len {
            return Ok(WeightFormat::Safetensors);
        }
        if head[8] == b'{' {
            return Err(Error::weights(
                path,
                format!(
                    "truncated safetensors file: header claims {header_len} bytes, file has {len}"
                ),
            ));
        }
    }
    if n >= 2 && head[0] == 0x80 && head[1] <= 5 {
        return Err(Error::weights(
            path,
            "legacy (non-zip) PyTorch pickle file; re-save it in PyTorch with torch.save(state_dict, path)",
        ));
    }
    if n == 0 {
        return Err(Error::weights(path, "empty file"));
    }
    Err(Error::weights(
        path,
        "not a safetensors or PyTorch (.pth zip) weight file",
    ))
}

/// Reads every tensor of a weight file onto the CPU, names as stored (a `module.` or
/// `model.` prefix common to all names is removed; a `state_dict`/`model` entry of a
/// training checkpoint is used when the top level is not a state_dict).
pub fn read_tensors(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let map = match sniff_format(path)? {
        WeightFormat::Safetensors => {
            let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            candle_core::safetensors::load_buffer(&bytes, &Device::Cpu)
                .map_err(|e| Error::weights(path, format!("cannot read safetensors: {e}")))?
                .into_iter()
                .collect::<BTreeMap<_, _>>()
        }
        WeightFormat::PthZip => {
            // candle's pickle reader can panic on malformed input (a LONG1 of more than 8
            // bytes overflows a shift; found by the pth_weights fuzz target): contain it.
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| read_pth(path)))
                .unwrap_or_else(|p| {
                    let msg = p
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| p.downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    Err(Error::weights(
                        path,
                        format!("malformed PyTorch file (the pickle reader failed: {msg})"),
                    ))
                })?
        }
    };
    if map.is_empty() {
        return Err(Error::weights(path, "the file holds no tensors"));
    }
    Ok(strip_common_prefix(map))
}

fn read_pth(path: &Path) -> Result<BTreeMap<String, Tensor>> {
    let err =
        |e: candle_core::Error| Error::weights(path, format!("cannot read PyTorch file: {e}"));
    for key in [
        None,
        Some("state_dict"),
        Some("model"),
        Some("model_state_dict"),
    ] {
        let pth = candle_core::pickle::PthTensors::new(path, key).map_err(err)?;
        if pth.tensor_infos().is_empty() {
            continue;
        }
        let mut out = BTreeMap::new();
        let names: Vec<String> = pth.tensor_infos().keys().cloned().collect();
        for name in names {
            if let Some(t) = pth.get(&name).map_err(err)? {
                out.insert(name, t);
            }
        }
        return Ok(out);
    }
    Err(Error::weights(
        path,
        "no state_dict found in the PyTorch file (looked at the top level and at 'state_dict', 'model', 'model_state_dict')",
    ))
}

fn strip_common_prefix(map: BTreeMap<String, Tensor>) -> BTreeMap<String, Tensor> {
    for prefix in ["module.", "model."] {
        if map.keys().all(|k| k.starts_with(prefix)) {
            return map
                .into_iter()
                .map(|(k, v)| (k[prefix.len()..].to_string(), v))
                .collect();
        }
    }
    map
}

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct ImportReport {
    /// Tensors copied into the model.
    pub loaded: usize,
    /// File tensors deliberately not used (e.g. `fc.*`, `num_batches_tracked`).
    pub skipped: Vec<String>,
}

/// Copies the tensors of `file` into the model tensors whose names start with
/// `model_prefix` (e.g. `body.`), matching file names without that prefix.
///
/// `fc.*` is skipped unless the model has it; `num_batches_tracked` is always skipped.
/// A model tensor the file lacks, a file tensor the model lacks, or a shape difference is
/// an error that names every such tensor.
pub fn import_into(
    store: &ParamStore,
    model_prefix: &str,
    file: &BTreeMap<String, Tensor>,
    path: &Path,
) -> Result<ImportReport> {
    let wanted: BTreeMap<String, Vec<usize>> = store
        .named_tensors()
        .into_iter()
        .filter_map(|(n, t)| {
            n.strip_prefix(model_prefix)
                .map(|s| (s.to_string(), t.dims().to_vec()))
        })
        .collect();
    let has_fc = wanted.keys().any(|k| k.starts_with("fc."));
    let mut report = ImportReport::default();
    let mut unexpected = Vec::new();
    let mut bad_shape = Vec::new();
    let mut used = BTreeSet::new();
    for (name, t) in file {
        if name.ends_with("num_batches_tracked") || (!has_fc && name.starts_with("fc.")) {
            report.skipped.push(name.clone());
            continue;
        }
        match wanted.get(name) {
            None => unexpected.push(name.clone()),
            Some(shape) => {
                if shape.as_slice() != t.dims() {
                    bad_shape.push(format!("{name} (model {shape:?}, file {:?})", t.dims()));
                }
                // Present either way: a wrong shape is reported as such, not as missing.
                used.insert(name.clone());
            }
        }
    }
    let missing: Vec<&String> = wanted.keys().filter(|k| !used.contains(*k)).collect();
    if !missing.is_empty() || !unexpected.is_empty() || !bad_shape.is_empty() {
        let mut msg = String::from("weights do not match the model");
        let list = |v: Vec<String>| -> String {
            let n = v.len();
            let mut s = v.into_iter().take(8).collect::<Vec<_>>().join(", ");
            if n > 8 {
                s.push_str(&format!(", ... ({n} in all)"));
            }
            s
        };
        if !missing.is_empty() {
            msg.push_str(&format!(
                "; missing: {}",
                list(missing.into_iter().cloned().collect())
            ));
        }
        if !unexpected.is_empty() {
            msg.push_str(&format!("; unexpected: {}", list(unexpected)));
        }
        if !bad_shape.is_empty() {
            msg.push_str(&format!("; wrong shape: {}", list(bad_shape)));
        }
        return Err(Error::weights(path, msg));
    }
    for name in &used {
        let t = file[name].to_dtype(store.dtype())?;
        store.set(&format!("{model_prefix}{name}"), &t)?;
        report.loaded += 1;
    }
    Ok(report)
}

/// Imports an ImageNet-pretrained torchvision or timm ResNet body into a classifier
/// (skipping `fc.*`).
pub fn import_pretrained_body(
    model: &crate::model::Classifier,
    path: &Path,
) -> Result<ImportReport> {
    let file = read_tensors(path)?;
    import_into(model.store(), "body.", &file, path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Backbone, Classifier, ResNet};
    use candle_core::DType;

    #[test]
    fn sniffing_rejects_garbage_with_a_clear_message() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.pth");
        std::fs::write(&p, b"hello world, not weights").unwrap();
        let e = sniff_format(&p).unwrap_err().to_string();
        assert!(
            e.contains("w.pth") && e.contains("not a safetensors"),
            "{e}"
        );
        std::fs::write(&p, b"").unwrap();
        assert!(sniff_format(&p).unwrap_err().to_string().contains("empty"));
        std::fs::write(&p, [0x80u8, 2, 0x8a, 0x0a]).unwrap();
        assert!(sniff_format(&p).unwrap_err().to_string().contains("legacy"));
    }

    #[test]
    fn import_reports_missing_unexpected_and_shape() {
        let dev = Device::Cpu;
        let src = ResNet::new(Backbone::Resnet18, 10, 1, &dev).unwrap();
        let mut file: BTreeMap<String, Tensor> = src.store.named_tensors().into_iter().collect();
        let model = Classifier::new(Backbone::Resnet18, 4, 2, &dev).unwrap();
        // A complete torchvision file imports into the body, fc skipped.
        let rep = import_into(model.store(), "body.", &file, Path::new("x")).unwrap();
        assert!(rep.skipped.iter().any(|s| s == "fc.weight"));
        let conv1 = model
            .store()
            .var("body.conv1.weight")
            .unwrap()
            .as_tensor()
            .clone();
        let diff = (conv1 - src.store.var("conv1.weight").unwrap().as_tensor())
            .unwrap()
            .abs()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert_eq!(diff, 0.0);

        file.remove("layer1.0.conv1.weight");
        file.insert(
            "layer9.weight".into(),
            Tensor::zeros(3, DType::F32, &dev).unwrap(),
        );
        file.insert(
            "bn1.weight".into(),
            Tensor::zeros(65, DType::F32, &dev).unwrap(),
        );
        let e = import_into(model.store(), "body.", &file, Path::new("w.safetensors"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("w.safetensors"), "{e}");
        assert!(e.contains("missing: layer1.0.conv1.weight"), "{e}");
        assert!(e.contains("unexpected: layer9.weight"), "{e}");
        assert!(
            e.contains("wrong shape: bn1.weight (model [64], file [65])"),
            "{e}"
        );
    }
}
