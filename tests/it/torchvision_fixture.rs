//! Our ResNet against torchvision: logits, loss, gradients and BatchNorm running statistics
//! for a fixed input, compared with the float64 references in ../shared/fixtures (computed
//! by torchvision, see fixtures/make_resnet_fixture.py), within the tolerances stored in the
//! reference files' metadata (10x PyTorch float32's own error).
use crate::common::shared_dir;
use candle_core::{DType, Device, Tensor};
use covid_resnet::model::io::pretrained::{import_into, read_tensors};
use covid_resnet::model::ops::pass::Compute;
use covid_resnet::model::ops::precision::Precision;
use covid_resnet::model::{Backbone, ResNet};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

fn rel_err(ours: &Tensor, reference: &Tensor) -> f64 {
    let a = ours.to_dtype(DType::F64).unwrap().flatten_all().unwrap();
    let b = reference
        .to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap();
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    let diff = (&a - &b)
        .unwrap()
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
        .sqrt();
    let norm = b
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f64>()
        .unwrap()
        .sqrt();
    diff / norm.max(1e-30)
}

fn check(arch: Backbone, weights: &str, reference: &str) {
    check_dtype(arch, weights, reference, DType::F32)
}

fn check_dtype(arch: Backbone, weights: &str, reference: &str, dtype: DType) {
    check_with(arch, weights, reference, dtype, Precision::F32)
}

/// The bound of `name` in `precision`: the fixture's own for float32.
fn bound_of(
    precision: Precision,
    name: &str,
    tol: &HashMap<String, f64>,
    f32_err: &HashMap<String, f64>,
) -> f64 {
    match precision {
        Precision::F32 => tol[name],
        Precision::Bf16 => (BF16_FACTOR * f32_err[name] * 2f64.powi(16)).min(1.0),
    }
}

/// See [`resnet18_in_bf16_matches_torchvision_within_bf16_rounding`].
const BF16_FACTOR: f64 = 4.0;

fn check_with(arch: Backbone, weights: &str, reference: &str, dtype: DType, precision: Precision) {
    let Some(shared) = shared_dir() else { return };
    let fx = shared.join("fixtures");
    let ref_path = fx.join(reference);
    let bytes = std::fs::read(&ref_path).unwrap_or_else(|e| panic!("{}: {e}", ref_path.display()));
    let (_, md) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let md = md.metadata().clone().expect("reference metadata");
    let tol: HashMap<String, f64> = serde_json::from_str(&md["tolerance_rel_norm"]).unwrap();
    let f32_err: HashMap<String, f64> =
        serde_json::from_str(&md["pytorch_f32_rel_norm_error"]).unwrap();
    let refs: HashMap<String, Tensor> =
        candle_core::safetensors::load_buffer(&bytes, &Device::Cpu).unwrap();

    // COVID_RESNET_TEST_DEVICE (e.g. cuda:0) runs the same check on a GPU build.
    let dev = match std::env::var("COVID_RESNET_TEST_DEVICE") {
        Ok(d) => d
            .parse::<covid_resnet::device::DeviceChoice>()
            .and_then(|c| c.open())
            .unwrap_or_else(|e| panic!("COVID_RESNET_TEST_DEVICE={d}: {e}")),
        Err(_) => Device::Cpu,
    };
    let mut model = ResNet::with_dtype(arch, 1000, 0, &dev, dtype).unwrap();
    model.set_compute(Compute::with_precision(precision));
    let wpath = fx.join(weights);
    let file: BTreeMap<String, Tensor> = read_tensors(&wpath).unwrap();
    let rep = import_into(&model.store, "", &file, &wpath).unwrap();
    assert_eq!(rep.loaded, model.store.named_tensors().len());

    let x = &refs["input"]
        .to_dtype(dtype)
        .unwrap()
        .to_device(&dev)
        .unwrap();
    let target = refs["target"]
        .to_dtype(DType::U32)
        .unwrap()
        .to_device(&dev)
        .unwrap();
    let grad_names: Vec<String> = refs
        .keys()
        .filter_map(|k| k.strip_prefix("grad_eval.").map(String::from))
        .collect();
    assert!(!grad_names.is_empty());

    let mut report: Vec<(String, f64, f64)> = Vec::new();
    let mut record = |name: &str, t: &Tensor| {
        let e = rel_err(&t.to_device(&Device::Cpu).unwrap(), &refs[name]);
        let bound = bound_of(precision, name, &tol, &f32_err);
        report.push((name.to_string(), e, bound));
    };

    // Eval mode: running statistics.
    let logits = model.forward_t(x, false).unwrap();
    record("logits_eval", &logits);
    let loss = candle_nn::loss::cross_entropy(&logits, &target).unwrap();
    let grads = loss.backward().unwrap();
    for n in &grad_names {
        let g = grads.get(model.store.var(n).unwrap().as_tensor()).unwrap();
        record(&format!("grad_eval.{n}"), g);
    }

    // Train mode as training runs it (on the CPU the body's backward from a tape, in bf16
    // with the activations stored in bf16): batch statistics, running statistics updated.
    let fwd = model.train_forward(x).unwrap();
    record("logits_train", fwd.logits());
    let loss = candle_nn::loss::cross_entropy(fwd.logits(), &target).unwrap();
    record("loss_train", &loss.reshape(1).unwrap());
    let grads = fwd.backward(&loss).unwrap();
    for n in &grad_names {
        let g = grads.get(model.store.var(n).unwrap().as_tensor()).unwrap();
        record(&format!("grad_train.{n}"), g);
    }
    record(
        "bn1.running_mean_after_train_forward",
        model.store.var("bn1.running_mean").unwrap().as_tensor(),
    );
    record(
        "bn1.running_var_after_train_forward",
        model.store.var("bn1.running_var").unwrap().as_tensor(),
    );

    println!(
        "{arch} ({dtype:?}, {precision}, {dev:?}) against torchvision (relative error ||ours - ref|| / ||ref||):"
    );
    for (n, e, b) in &report {
        println!(
            "  {n:<45} {e:.3e}   (bound {b:.1e}){}",
            if e <= b { "" } else { "  FAIL" }
        );
    }
    let failed: Vec<_> = report.iter().filter(|(_, e, b)| e > b).collect();
    assert!(failed.is_empty(), "{arch}: outside tolerance: {failed:?}");
    assert_eq!(report.len(), 5 + 2 * grad_names.len());
}

#[test]
fn resnet50_safetensors_f16_matches_torchvision() {
    check(
        Backbone::Resnet50,
        "resnet50_torchvision_seeded_f16.safetensors",
        "resnet50_torchvision_reference.safetensors",
    );
}

#[test]
fn resnet18_pth_matches_torchvision() {
    check(
        Backbone::Resnet18,
        "resnet18_torchvision_seeded.pth",
        "resnet18_torchvision_reference.safetensors",
    );
}

#[test]
fn pth_file_is_read_with_every_tensor() {
    let Some(shared) = shared_dir() else { return };
    let p = shared.join("fixtures/resnet18_torchvision_seeded.pth");
    let t = read_tensors(Path::new(&p)).unwrap();
    // 62 parameters + 2*20 running stats + 20 num_batches_tracked in torchvision's resnet18.
    assert_eq!(t.len(), 122, "{:?}", t.keys().take(5).collect::<Vec<_>>());
    assert_eq!(t["conv1.weight"].dims(), &[64, 3, 7, 7]);
    assert_eq!(t["fc.weight"].dims(), &[1000, 512]);
}

/// In float64 the only difference left is the f32 storage of the references (~3e-8): this
/// separates a wrong formula from float32 rounding.
#[test]
fn resnet18_in_float64_matches_torchvision_to_storage_precision() {
    check_dtype(
        Backbone::Resnet18,
        "resnet18_torchvision_seeded.pth",
        "resnet18_torchvision_reference.safetensors",
        DType::F64,
    );
}

/// bf16 mixed precision against the float64 references. The bound of each tensor, derived:
/// rounding an operand to bf16 perturbs it by at most u_b = 2^-8 relatively, against
/// u_f = 2^-24 for float32. To first order an output's relative error is the sum over the
/// perturbed quantities of (condition number x relative perturbation), so the same
/// computation with bf16 operands misses by about (u_b / u_f) = 2^16 times what PyTorch's
/// float32 run misses (the fixture's `pytorch_f32_rel_norm_error`, which measures those
/// condition numbers). The bound is BF16_FACTOR = 4 times that: more quantities are rounded
/// here (inputs, weights and output gradients of every convolution, where float32 rounds
/// mostly the sums), and a norm of independent roundings can reach twice its typical
/// size. It is capped at 1 (an error the size of the answer): for the train-mode
/// gradients of ResNet-50's early convolutions, which BatchNorm's scale invariance makes
/// ill-conditioned (PyTorch float32 itself is 2e-3 off there), the cap is the only bound.
#[test]
fn resnet18_in_bf16_matches_torchvision_within_bf16_rounding() {
    check_with(
        Backbone::Resnet18,
        "resnet18_torchvision_seeded.pth",
        "resnet18_torchvision_reference.safetensors",
        DType::F32,
        Precision::Bf16,
    );
}

#[test]
fn resnet50_in_bf16_matches_torchvision_within_bf16_rounding() {
    check_with(
        Backbone::Resnet50,
        "resnet50_torchvision_seeded_f16.safetensors",
        "resnet50_torchvision_reference.safetensors",
        DType::F32,
        Precision::Bf16,
    );
}
