//! Parameter counts, the head, seeded determinism and our model file.
use crate::common::max_abs_diff;
use candle_core::{Device, Tensor};
use covid_resnet::model::io::model_file::{load_into, load_model, save_model, ModelMeta};
use covid_resnet::model::layers::classifier::{HEAD_GROUP, NUM_GROUPS};
use covid_resnet::model::{Backbone, Classifier, ResNet};

#[test]
fn parameter_counts_match_torchvision() {
    // torchvision: sum(p.numel() for p in resnetXX().parameters()).
    for (b, n) in [
        (Backbone::Resnet18, 11_689_512),
        (Backbone::Resnet34, 21_797_672),
        (Backbone::Resnet50, 25_557_032),
    ] {
        let m = ResNet::new(b, 1000, 0, &Device::Cpu).unwrap();
        assert_eq!(m.store.num_params(), n, "{b}");
    }
}

#[test]
fn classifier_head_shape_groups_and_sizes() {
    let m = Classifier::new(Backbone::Resnet18, 4, 1, &Device::Cpu).unwrap();
    let x = Tensor::randn(0f32, 1., (2, 3, 64, 64), &Device::Cpu).unwrap();
    assert_eq!(m.forward_t(&x, false).unwrap().dims(), &[2, 4]);
    assert_eq!(m.forward_t(&x, true).unwrap().dims(), &[2, 4]);
    for p in m.store().params() {
        let top = p.name.split('.').nth(1).unwrap();
        let want = if p.name.starts_with("head.") {
            HEAD_GROUP
        } else if matches!(top, "layer3" | "layer4") {
            1
        } else {
            0
        };
        assert_eq!(p.group, want, "{}", p.name);
    }
    for g in 0..NUM_GROUPS {
        assert!(!m.group_params(g).is_empty(), "group {g} empty");
    }
    // fastai head for 512 features: BN1d(1024), Linear(1024,512), BN1d(512), Linear(512,4).
    let head: usize = m
        .group_params(HEAD_GROUP)
        .iter()
        .map(|p| p.var.elem_count())
        .sum();
    assert_eq!(
        head,
        2 * 1024 + (1024 * 512 + 512) + 2 * 512 + (512 * 4 + 4)
    );
    // ResNet-50 body without fc + head with 4096 inputs.
    let m50 = Classifier::new(Backbone::Resnet50, 4, 1, &Device::Cpu).unwrap();
    let body50 = 25_557_032 - (2048 * 1000 + 1000);
    let head50 = 2 * 4096 + (4096 * 512 + 512) + 2 * 512 + (512 * 4 + 4);
    assert_eq!(m50.store().num_params(), body50 + head50);
}

#[test]
fn head_weights_are_kaiming_normal_with_zero_bias() {
    let m = Classifier::new(Backbone::Resnet18, 4, 3, &Device::Cpu).unwrap();
    let w = m
        .store()
        .var("head.4.weight")
        .unwrap()
        .as_tensor()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let n = w.len() as f64;
    let mean = w.iter().map(|&v| v as f64).sum::<f64>() / n;
    let std = (w.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
    let want = (2.0f64 / 1024.0).sqrt();
    assert!(mean.abs() < 3.0 * want / n.sqrt() * 3.0, "mean {mean}");
    assert!((std / want - 1.0).abs() < 0.01, "std {std} vs {want}");
    let b = m
        .store()
        .var("head.4.bias")
        .unwrap()
        .as_tensor()
        .abs()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(b, 0.0);
}

#[test]
fn one_seed_gives_identical_weights_and_outputs() {
    let dev = Device::Cpu;
    let a = Classifier::new(Backbone::Resnet18, 4, 42, &dev).unwrap();
    let b = Classifier::new(Backbone::Resnet18, 4, 42, &dev).unwrap();
    let c = Classifier::new(Backbone::Resnet18, 4, 43, &dev).unwrap();
    for ((na, ta), (_, tb)) in a
        .store()
        .named_tensors()
        .iter()
        .zip(b.store().named_tensors())
    {
        assert_eq!(max_abs_diff(ta, &tb), 0.0, "{na}");
    }
    let wa = a.store().var("body.conv1.weight").unwrap().as_tensor();
    let wc = c.store().var("body.conv1.weight").unwrap().as_tensor();
    assert!(max_abs_diff(wa, wc) > 0.0);
    let x = Tensor::randn(0f32, 1., (4, 3, 64, 64), &dev).unwrap();
    // Train mode uses dropout: masks come from the seed, so outputs agree too.
    let ya = a.forward_t(&x, true).unwrap();
    let yb = b.forward_t(&x, true).unwrap();
    assert_eq!(max_abs_diff(&ya, &yb), 0.0);
    // The next forward draws new masks.
    let ya2 = a.forward_t(&x, true).unwrap();
    assert!(max_abs_diff(&ya, &ya2) > 0.0);
}

#[test]
fn model_file_round_trip_and_errors() {
    let dev = Device::Cpu;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let m = Classifier::new(Backbone::Resnet18, 4, 7, &dev).unwrap();
    // Move the running statistics away from their initial values.
    let x = Tensor::randn(0f32, 1., (4, 3, 64, 64), &dev).unwrap();
    m.forward_t(&x, true).unwrap();
    let mut meta = ModelMeta::new(
        Backbone::Resnet18,
        64,
        covid_resnet::data::split::labels::paper_classes(),
    );
    meta.training = Some(serde_json::json!({"epochs": 0}));
    save_model(&path, &m, &meta).unwrap();

    let (m2, meta2) = load_model(&path, &dev).unwrap();
    assert_eq!(meta2, meta);
    for ((n, a), (_, b)) in m
        .store()
        .named_tensors()
        .iter()
        .zip(m2.store().named_tensors())
    {
        assert_eq!(max_abs_diff(a, &b), 0.0, "{n}");
    }
    let ya = m.forward_t(&x, false).unwrap();
    let yb = m2.forward_t(&x, false).unwrap();
    assert_eq!(max_abs_diff(&ya, &yb), 0.0);

    // Wrong backbone.
    let m34 = Classifier::new(Backbone::Resnet34, 4, 7, &dev).unwrap();
    let e = load_into(&m34, &path).unwrap_err().to_string();
    assert!(
        e.contains("m.safetensors") && e.contains("resnet18") && e.contains("resnet34"),
        "{e}"
    );

    // Truncated file.
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let e = load_model(&cut, &dev).unwrap_err().to_string();
    assert!(
        e.contains("cut.safetensors") && (e.contains("corrupt") || e.contains("truncated")),
        "{e}"
    );
    std::fs::write(&cut, &bytes[..100]).unwrap();
    let e = load_model(&cut, &dev).unwrap_err().to_string();
    assert!(e.contains("cut.safetensors"), "{e}");

    // A plain torchvision-style file is not a model file.
    let tv = dir.path().join("tv.safetensors");
    let r = ResNet::new(Backbone::Resnet18, 1000, 0, &dev).unwrap();
    let tensors: std::collections::HashMap<String, Tensor> =
        r.store.named_tensors().into_iter().collect();
    candle_core::safetensors::save(&tensors, &tv).unwrap();
    let e = load_model(&tv, &dev).unwrap_err().to_string();
    assert!(e.contains("not a covid-resnet model file"), "{e}");
}
