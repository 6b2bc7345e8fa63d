//! The bf16 training forward of BatchNorm(+ReLU): its output is the float32 output rounded
//! to bf16, and its backward, which reads the input and output stored in bf16, computes what
//! the float32 backward computes on those bf16 values widened (bit for bit), its input
//! gradient then rounded to bf16.
use super::*;
use crate::model::ops::pass::{Compute, Pass};
use crate::model::ops::precision::Precision;
use crate::model::ops::tape;
use crate::model::test_util::{bits, randn};
use candle_core::backprop::GradStore;
use candle_core::Var;

fn widened(t: &Tensor, dtype: DType) -> Tensor {
    t.to_dtype(dtype).unwrap().to_dtype(DType::F32).unwrap()
}

#[test]
fn the_bf16_forward_stores_bf16_and_its_backward_is_the_float32_one_on_those_values() {
    for relu in [true, false] {
        let x = randn(1, &[3, 4, 5, 7], 1.7, 0.3);
        let gamma = randn(2, &[4], 0.5, 1.0);
        let beta = randn(3, &[4], 0.5, 0.0);
        let dy = randn(4, &[3, 4, 5, 7], 1.0, 0.0);
        let vars: Vec<Var> = [&x, &gamma, &beta]
            .iter()
            .map(|t| Var::from_tensor(t).unwrap())
            .collect();
        let t: Vec<&Tensor> = vars.iter().map(|v| v.as_tensor()).collect();
        let ((y16, stats), tape) = tape::record(|tp| {
            let pass = Pass::taped(Compute::with_precision(Precision::Bf16), tp);
            Ok(batch_norm_relu_train_cpu(
                t[0], t[1], t[2], 1e-5, relu, &pass,
            )?)
        })
        .unwrap();
        let mut grads = GradStore::default();
        tape.backward(y16.id(), dy.clone(), &mut grads).unwrap();

        // The float32 op with the same statistics (those of the float32 input).
        let op = BnTrainFwd {
            eps: 1e-5,
            relu,
            stats: Arc::new(Mutex::new(None)),
            keep16: None,
        };
        let y32 = x.apply_op3_no_bwd(&gamma, &beta, &op).unwrap();
        let st = op.stats.lock().unwrap().clone().unwrap();
        assert_eq!((st.mean.clone(), st.var.clone()), (stats.mean, stats.var));
        assert_eq!(y16.dtype(), DType::BF16);
        assert_eq!(
            bits(&y16),
            bits(&y32.to_dtype(DType::BF16).unwrap()),
            "relu {relu}"
        );

        let y_read = widened(&y16, DType::BF16);
        let (dx, dg, db) = op
            .grads(&widened(&x, DType::BF16), &gamma, Some(&y_read), &dy)
            .unwrap();
        // The input gradient is stored in bf16 (what the convolution below rounds it to),
        // the parameters' gradients in float32.
        let dx = dx.to_dtype(DType::BF16).unwrap();
        for (name, ours, want) in [("dx", t[0], dx), ("dgamma", t[1], dg), ("dbeta", t[2], db)] {
            let got = grads.get(ours).unwrap();
            assert_eq!(got.dtype(), want.dtype(), "{name}");
            assert_eq!(bits(got), bits(&want), "{name}, relu {relu}");
        }
        assert_eq!(grads.get(t[0]).unwrap().dtype(), DType::BF16);
        // And the stored input is the rounded one, not the float32 one: the backward on the
        // float32 input differs.
        let (dx32, ..) = op.grads(&x, &gamma, Some(&y_read), &dy).unwrap();
        let dx32 = dx32.to_dtype(DType::BF16).unwrap();
        assert_ne!(bits(grads.get(t[0]).unwrap()), bits(&dx32), "relu {relu}");
    }
}
