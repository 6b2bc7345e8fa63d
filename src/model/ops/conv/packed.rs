//! Convolution weights packed once for the bf16 forward, for a model that only predicts.
//!
//! A bf16 forward rounds and packs every convolution's weight before its product; at batch 1
//! that is a fifth of ResNet-50's inference time. A [`PackedWeights`] keeps each weight
//! packed after its first use, keyed by its parameter (the `Var`'s id). Its owner promises
//! that those parameters no longer change while it lives: a `Predictor` holds one for the
//! networks it loaded (a trainer's validation makes a new predictor each time). Passes that
//! keep gradients never use it.
use super::bf16::PackedA;
use super::gemm::Mat;
use candle_core::{Tensor, TensorId};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Packed bf16 weights by parameter; clones share them.
#[derive(Clone, Default)]
pub struct PackedWeights {
    packed: Arc<Mutex<HashMap<TensorId, Arc<PackedA>>>>,
}

impl std::fmt::Debug for PackedWeights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PackedWeights({} packed)", self.len())
    }
}

impl PackedWeights {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many weights are packed.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TensorId, Arc<PackedA>>> {
        // A panic while packing leaves the map as it was: its entries stay whole.
        self.packed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The weight `w` (float32, C_out x rest) of parameter `key`, packed: from the set, or
    /// packed now and kept. A kept weight of another shape is packed again.
    pub(super) fn get(&self, key: TensorId, w: &Tensor) -> candle_core::Result<Arc<PackedA>> {
        let (rows, cols) = (w.dim(0)?, w.elem_count() / w.dim(0)?.max(1));
        if let Some(p) = self.lock().get(&key) {
            if (p.rows(), p.cols()) == (rows, cols) {
                return Ok(p.clone());
            }
        }
        let data = w.flatten_all()?.to_vec1::<f32>()?;
        let p = Arc::new(PackedA::new(Mat::rm(&data, rows, cols)));
        self.lock().insert(key, p.clone());
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::conv::conv2d_of;
    use crate::model::ops::pass::{Compute, Pass};
    use crate::model::ops::precision::Precision;
    use candle_core::{Device, Var};

    fn bits(t: &Tensor) -> Vec<u32> {
        let v = t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        v.iter().map(|x| x.to_bits()).collect()
    }

    /// A bf16 forward on kept weights gives the bits of one that packs them itself; only
    /// bf16 passes without gradients keep them, and a weight of a new shape under the same
    /// parameter is packed again.
    #[test]
    fn kept_weights_give_the_same_bits_and_only_bf16_inference_keeps_them() {
        let dev = Device::Cpu;
        let x = Tensor::randn(0f32, 1.0, (2, 6, 9, 9), &dev).unwrap();
        let w = Var::from_tensor(&Tensor::randn(0f32, 0.3, (5, 6, 3, 3), &dev).unwrap()).unwrap();
        let id = Some(w.as_tensor().id());
        let set = PackedWeights::new();
        let bf16 = Compute::with_precision(Precision::Bf16);
        let wt = w.as_tensor().detach();
        let plain = conv2d_of(&x, &wt, id, 1, 1, &Pass::infer(bf16)).unwrap();
        // Not bf16, or gradients kept: nothing kept.
        let f32_pass = Pass::infer(Compute::default()).with_packed(&set);
        conv2d_of(&x, &wt, id, 1, 1, &f32_pass).unwrap();
        let grad_pass = Pass::autograd(bf16, false).with_packed(&set);
        conv2d_of(&x, &wt, id, 1, 1, &grad_pass).unwrap();
        assert!(set.is_empty(), "{set:?}");
        let pass = Pass::infer(bf16).with_packed(&set);
        for _ in 0..2 {
            let kept = conv2d_of(&x, &wt, id, 1, 1, &pass).unwrap();
            assert_eq!(bits(&kept), bits(&plain));
            assert_eq!(set.len(), 1);
        }
        // Another shape under the same key: packed again, and right.
        let w2 = Tensor::randn(0f32, 0.3, (4, 6, 1, 1), &dev).unwrap();
        let want = conv2d_of(&x, &w2, None, 1, 0, &Pass::infer(bf16)).unwrap();
        let got = conv2d_of(&x, &w2, id, 1, 0, &pass).unwrap();
        assert_eq!(bits(&got), bits(&want));
        assert_eq!(set.len(), 1);
    }
}
