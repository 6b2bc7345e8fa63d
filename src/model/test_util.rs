//! Helpers of the model's unit tests.
use candle_core::{DType, Device, Tensor};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

/// A seeded float32 tensor of standard normal values times `scale` plus `shift`.
pub(crate) fn randn(seed: u64, shape: &[usize], scale: f32, shift: f32) -> Tensor {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|_| Distribution::<f32>::sample(&StandardNormal, &mut rng) * scale + shift)
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

/// Every element's bits (as float64, exact for f32 and bf16), for bit-for-bit comparisons.
pub(crate) fn bits(t: &Tensor) -> Vec<u64> {
    t.flatten_all()
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}
