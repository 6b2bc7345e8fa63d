//! File -> decoded grayscale -> resized, normalised tensor -> softmax over the classes.
use super::decision::OperatingPoint;
use super::disagreement::Disagreement;
use super::gradcam::{grad_cam_coarse, grad_cam_finding, Coarse};
pub use super::probs::{argmax, log_softmax_rows, probs_of};
use super::probs::{mean_log_probs, tempered_log};
use crate::data::augment::{AugmentConfig, Flip};
use crate::data::preprocess::Preprocess;
use crate::data::{decode::decode_file, gray::GrayImage};
use crate::model::io::model_file::{load_networks, ModelMeta};
use crate::model::ops::conv::PackedWeights;
use crate::model::Classifier;
use crate::Result;
use candle_core::{Device, Tensor};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Class probabilities for one image.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Prediction {
    /// The image file.
    pub path: PathBuf,
    /// One probability per class, in the model's class order.
    pub probs: Vec<f32>,
    /// Index of the most probable class.
    pub predicted: usize,
    /// Reasons to distrust this prediction (see [`super::sanity`]).
    pub warnings: Vec<super::InputWarning>,
    /// How much an ensemble's networks disagree (on the plain image; None: one network).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disagreement: Option<Disagreement>,
}

/// Probability rows, and an ensemble's networks' rows (`[network][image]`).
type Members = (Vec<Vec<f32>>, Option<Vec<Vec<Vec<f32>>>>);

/// What the viewer shows for one image: probabilities, warnings and a Grad-CAM map.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// Class probabilities (averaged over the flips when TTA was asked for); a multi-label
    /// model's independent probability a finding.
    pub probs: Vec<f32>,
    /// Index of the predicted class (a multi-label model's most probable finding).
    pub predicted: usize,
    /// A multi-label model's decisions: whether each finding is at or above the threshold
    /// its file records (None: a single-label model).
    pub present: Option<Vec<bool>>,
    /// Whether `probs` average the image and its flips.
    pub tta: bool,
    /// Grad-CAM for the requested class at the feature map's resolution (upsample it to
    /// the size it is shown at).
    pub cam: Coarse,
    /// Input sanity warnings.
    pub warnings: Vec<super::InputWarning>,
    /// How much an ensemble's networks disagree on the plain image (None: one network).
    pub disagreement: Option<Disagreement>,
}

/// The flips test-time augmentation averages over (besides the image itself): those the
/// model was trained with, as its file records; left-right when it does not say.
pub fn tta_flips(meta: &ModelMeta) -> Vec<Flip> {
    // An ensemble's networks: the first one's.
    let trained = meta
        .trainings()
        .first()
        .and_then(|t| t.get("augment"))
        .and_then(|a| serde_json::from_value::<AugmentConfig>(a.clone()).ok());
    match trained.map(|a| (a.enabled, a.flip)) {
        Some((true, Flip::Vertical)) => vec![Flip::Vertical],
        Some((true, Flip::Dihedral)) => vec![Flip::Horizontal, Flip::Vertical],
        _ => vec![Flip::Horizontal],
    }
}

/// The image flipped up-down.
pub fn flip_vertical(img: &GrayImage) -> GrayImage {
    let w = img.width as usize;
    let mut out = img.clone();
    if w > 0 {
        for (dst, src) in out.data.chunks_mut(w).zip(img.data.chunks(w).rev()) {
            dst.copy_from_slice(src);
        }
    }
    out
}

/// The image flipped as `flip` says (Horizontal or Vertical; others leave it).
pub fn flipped(img: &GrayImage, flip: Flip) -> GrayImage {
    match flip {
        Flip::Horizontal => flip_horizontal(img),
        Flip::Vertical => flip_vertical(img),
        _ => img.clone(),
    }
}

/// The image mirrored left-right.
pub fn flip_horizontal(img: &GrayImage) -> GrayImage {
    let w = img.width as usize;
    let mut out = img.clone();
    if w > 0 {
        for (dst, src) in out.data.chunks_mut(w).zip(img.data.chunks(w)) {
            dst.iter_mut()
                .zip(src.iter().rev())
                .for_each(|(d, s)| *d = *s);
        }
    }
    out
}

/// A loaded model ready to predict: one network, or an ensemble whose probabilities are the
/// mean of its networks' (the model file's temperature and operating point apply to that
/// mean).
#[derive(Debug, Clone)]
pub struct Predictor {
    /// The networks (at least one).
    nets: Vec<Classifier>,
    meta: ModelMeta,
    /// The networks' bf16 convolution weights, packed once: a predictor's weights never
    /// change (a trainer makes a new one for each validation).
    packed: PackedWeights,
}

impl Predictor {
    /// Loads a model file (one network or an ensemble) onto `device`.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let (nets, meta) = load_networks(path, device)?;
        Ok(Self {
            nets,
            meta,
            packed: PackedWeights::new(),
        })
    }

    /// Wraps in-memory networks (one, or an ensemble's members) with their metadata. Their
    /// weights must not change while the predictor (or a clone) lives: it keeps them packed
    /// for bf16 (make a new predictor after training further, as the trainer does).
    pub fn from_networks(nets: Vec<Classifier>, meta: ModelMeta) -> Result<Self> {
        if nets.is_empty() {
            return Err(crate::Error::invalid("model", "no network"));
        }
        Ok(Self {
            nets,
            meta,
            packed: PackedWeights::new(),
        })
    }

    /// Wraps an in-memory model (whose weights then stay as they are, as for
    /// [`Self::from_networks`]).
    pub fn new(model: Classifier, meta: ModelMeta) -> Self {
        Self {
            nets: vec![model],
            meta,
            packed: PackedWeights::new(),
        }
    }

    /// Whether the model is an ensemble of several networks.
    pub fn is_ensemble(&self) -> bool {
        self.nets.len() > 1
    }

    /// The networks (one, or an ensemble's members).
    pub fn networks(&self) -> &[Classifier] {
        &self.nets
    }

    /// The same model computing its convolutions in `precision` (a cheap copy: the
    /// parameters are shared).
    pub fn in_precision(&self, precision: crate::model::ops::precision::Precision) -> Self {
        let mut p = self.clone();
        for net in &mut p.nets {
            let mut c = net.compute();
            c.precision = precision;
            net.set_compute(c);
        }
        p
    }

    /// The (first) network.
    pub fn model(&self) -> &Classifier {
        &self.nets[0]
    }

    /// The model's metadata (class names, input size, ...).
    pub fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    /// How this model wants its input: the model file's size and normalisation.
    pub fn preprocess(&self) -> Preprocess {
        self.meta.preprocess()
    }

    /// The normalised input batch (N, 3, S, S) for decoded images.
    fn input(&self, images: &[&GrayImage]) -> Result<Tensor> {
        self.preprocess().tensor(images, self.model().device())
    }

    /// Log-probabilities (one row per image) for planes already resized by
    /// [`Predictor::preprocess`], evaluated in one batch.
    pub fn log_probs_planes(&self, planes: &[&[f32]]) -> Result<Vec<Vec<f32>>> {
        Ok(self.log_probs_with_members(planes)?.0)
    }

    /// [`Self::log_probs_planes`], and for an ensemble each network's own probabilities
    /// (`[network][image][class]`, without the temperature) for its disagreement.
    pub fn log_probs_with_members(&self, planes: &[&[f32]]) -> Result<Members> {
        self.single_label()?;
        if planes.is_empty() {
            return Ok((Vec::new(), None));
        }
        let x = self
            .preprocess()
            .tensor_from_planes(planes, self.model().device())?;
        if !self.is_ensemble() {
            return Ok((
                log_softmax_rows(&self.temper(self.model().infer_packed(&x, &self.packed)?)?)?,
                None,
            ));
        }
        let members = self
            .nets
            .iter()
            .map(|n| log_softmax_rows(&n.infer_packed(&x, &self.packed)?))
            .collect::<Result<Vec<_>>>()?;
        let mut mean = mean_log_probs(&members);
        if let Some(t) = self.meta.temperature.as_ref().filter(|t| t.value != 1.0) {
            let tempered = |r: &Vec<f32>| -> Vec<f32> {
                let lp = r.iter().map(|&v| v as f64);
                tempered_log(lp, t.value)
                    .into_iter()
                    .map(|v| v as f32)
                    .collect()
            };
            mean = mean.iter().map(tempered).collect();
        }
        Ok((mean, Some(members)))
    }

    /// An error for a multi-label model, whose outputs are not one distribution over classes.
    fn single_label(&self) -> Result<()> {
        match &self.meta.findings {
            None => Ok(()),
            Some(_) => Err(crate::Error::invalid(
                "model",
                "a multi-label model (findings): this command reads single-label models only \
                 (`predict`, `eval` and the Viewer read multi-label ones)",
            )),
        }
    }

    /// A multi-label model's probabilities (one row per image, one sigmoid per finding; an
    /// ensemble's the mean of its networks') for planes resized by [`Predictor::preprocess`].
    pub fn finding_probs_planes(&self, planes: &[&[f32]]) -> Result<Vec<Vec<f32>>> {
        if planes.is_empty() {
            return Ok(Vec::new());
        }
        let x = self
            .preprocess()
            .tensor_from_planes(planes, self.model().device())?;
        let mut sum: Option<Tensor> = None;
        for n in &self.nets {
            let p = candle_nn::ops::sigmoid(&n.infer_packed(&x, &self.packed)?)?;
            sum = Some(match sum {
                Some(s) => (s + p)?,
                None => p,
            });
        }
        let mean = (sum.expect("a predictor has a network") / self.nets.len() as f64)?;
        Ok(mean.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?)
    }

    /// Logits divided by the model file's temperature, when it has one (one network).
    fn temper(&self, logits: Tensor) -> Result<Tensor> {
        Ok(match &self.meta.temperature {
            // In range: checked when the file was read.
            Some(t) if t.value != 1.0 => (logits / t.value)?,
            _ => logits,
        })
    }

    /// The operating point the model file names, when its class is one of the model's.
    pub fn operating_point(&self) -> Option<OperatingPoint> {
        let o = self.meta.operating_point.as_ref()?;
        let class = super::decision::class_index(&o.class, &self.meta.class_names)?;
        Some(OperatingPoint {
            class,
            threshold: o.threshold,
        })
    }

    /// Grad-CAM of `net` (one of this model's networks) for `class`: of a class, or of a
    /// multi-label model's finding.
    fn grad_cam(&self, net: &Classifier, x: &Tensor, class: Option<usize>) -> Result<Coarse> {
        if self.meta.findings.is_some() {
            grad_cam_finding(net, &self.packed, x, class)
        } else {
            grad_cam_coarse(net, &self.packed, x, class)
        }
    }

    /// The class predicted from `probs`: the model file's operating point, else argmax (a
    /// multi-label model's most probable finding).
    pub fn decide(&self, probs: &[f32]) -> usize {
        match self.operating_point() {
            Some(o) => o.decide(probs),
            None => argmax(probs),
        }
    }

    /// Probabilities (one row per image) for decoded images, evaluated in one batch.
    pub fn predict_images(&self, images: &[&GrayImage]) -> Result<Vec<Vec<f32>>> {
        Ok(self.predict_with_members(images)?.0)
    }

    /// [`Self::predict_images`], and for an ensemble each network's probability rows
    /// (`[network][image]`).
    fn predict_with_members(&self, images: &[&GrayImage]) -> Result<Members> {
        let planes = self.planes(images)?;
        let refs: Vec<&[f32]> = planes.iter().map(Vec::as_slice).collect();
        let (lp, members) = self.log_probs_with_members(&refs)?;
        let rows = |lp: &[Vec<f32>]| lp.iter().map(|r| probs_of(r)).collect::<Vec<_>>();
        Ok((
            rows(&lp),
            members.map(|m| m.iter().map(|n| rows(n)).collect()),
        ))
    }

    /// Turns the plain probabilities `plain` of `images` into their average with those of
    /// the images' flips ([`tta_flips`]).
    fn average_with_flips(
        &self,
        images: &[&GrayImage],
        mut plain: Vec<Vec<f32>>,
    ) -> Result<Vec<Vec<f32>>> {
        let flips = tta_flips(&self.meta);
        for &f in &flips {
            let v: Vec<GrayImage> = images.iter().map(|i| flipped(i, f)).collect();
            let refs: Vec<&GrayImage> = v.iter().collect();
            for (acc, p) in plain.iter_mut().zip(self.plain_probs(&refs)?) {
                acc.iter_mut().zip(&p).for_each(|(a, b)| *a += b);
            }
        }
        let n = (flips.len() + 1) as f32;
        plain
            .iter_mut()
            .for_each(|r| r.iter_mut().for_each(|v| *v /= n));
        Ok(plain)
    }

    /// Probabilities of decoded images in one batch: softmax over the classes, or a
    /// multi-label model's sigmoid a finding.
    fn plain_probs(&self, images: &[&GrayImage]) -> Result<Vec<Vec<f32>>> {
        if self.meta.findings.is_none() {
            return self.predict_images(images);
        }
        let planes = self.planes(images)?;
        let refs: Vec<&[f32]> = planes.iter().map(Vec::as_slice).collect();
        self.finding_probs_planes(&refs)
    }

    /// Decoded images resized and normalised as this model reads them.
    fn planes(&self, images: &[&GrayImage]) -> Result<Vec<Vec<f32>>> {
        let pre = self.preprocess();
        images.iter().map(|i| pre.plane(i)).collect()
    }

    /// A multi-label model's probabilities averaged over each image and its flips when `tta`
    /// is true ([`tta_flips`]), plain ones otherwise.
    pub fn finding_probs_tta(&self, images: &[&GrayImage], tta: bool) -> Result<Vec<Vec<f32>>> {
        let plain = self.plain_probs(images)?;
        if tta {
            self.average_with_flips(images, plain)
        } else {
            Ok(plain)
        }
    }

    /// Each finding at or above its recorded threshold (None: a single-label model).
    pub fn findings_present(&self, probs: &[f32]) -> Option<Vec<bool>> {
        let f = self.meta.findings.as_ref()?;
        Some(
            probs
                .iter()
                .zip(&f.thresholds)
                .map(|(&p, &t)| p as f64 >= t)
                .collect(),
        )
    }

    /// Probabilities averaged over each image and its flips ([`tta_flips`]: test-time
    /// augmentation), or plain ones when `tta` is false.
    pub fn predict_images_tta(&self, images: &[&GrayImage], tta: bool) -> Result<Vec<Vec<f32>>> {
        let plain = self.predict_images(images)?;
        if tta {
            self.average_with_flips(images, plain)
        } else {
            Ok(plain)
        }
    }

    /// Sanity warnings for an image given to this model.
    pub fn warnings(&self, img: &GrayImage) -> Vec<super::InputWarning> {
        super::sanity::check(img, self.meta.input_size_px)
    }

    /// Probabilities, Grad-CAM for `cam_class` (None: the predicted class) and warnings.
    pub fn analyze(
        &self,
        img: &GrayImage,
        tta: bool,
        cam_class: Option<usize>,
    ) -> Result<Analysis> {
        if self.is_ensemble() {
            return self.analyze_ensemble(img, tta, cam_class);
        }
        let x = self.input(&[img])?;
        let mut first = self.grad_cam(self.model(), &x, cam_class)?;
        if let Some(t) = &self.meta.temperature {
            first.probs = super::decision::tempered(&first.probs, t.value);
        }
        let probs = if tta {
            self.average_with_flips(&[img], vec![first.probs.clone()])?
                .remove(0)
        } else {
            first.probs.clone()
        };
        let predicted = self.decide(&probs);
        let wanted = cam_class.filter(|&c| c < probs.len()).unwrap_or(predicted);
        // The map explains the plain image's class; redo it when TTA changed the winner.
        let cam = if wanted == first.class {
            first
        } else {
            self.grad_cam(self.model(), &x, Some(wanted))?
        };
        Ok(Analysis {
            present: self.findings_present(&probs),
            probs,
            predicted,
            tta,
            cam,
            warnings: self.warnings(img),
            disagreement: None,
        })
    }

    /// [`Self::analyze`] of an ensemble: the probabilities as `predict` gives them, the
    /// Grad-CAM map the mean of the networks' maps for the class, the networks'
    /// disagreement on the plain image.
    fn analyze_ensemble(
        &self,
        img: &GrayImage,
        tta: bool,
        cam_class: Option<usize>,
    ) -> Result<Analysis> {
        let plane = self.preprocess().plane(img)?;
        let (plain, members) = if self.meta.findings.is_some() {
            (self.finding_probs_planes(&[&plane])?.remove(0), None)
        } else {
            let (lp, members) = self.log_probs_with_members(&[&plane])?;
            (probs_of(&lp[0]), Some(members.unwrap_or_default()))
        };
        let probs = if tta {
            self.average_with_flips(&[img], vec![plain])?.remove(0)
        } else {
            plain
        };
        let predicted = self.decide(&probs);
        let wanted = cam_class.filter(|&c| c < probs.len()).unwrap_or(predicted);
        let x = self.input(&[img])?;
        let maps = self
            .nets
            .iter()
            .map(|n| self.grad_cam(n, &x, Some(wanted)))
            .collect::<Result<Vec<_>>>()?;
        let mut cam = maps[0].clone();
        let n = maps.len() as f32;
        cam.map = (0..cam.map.len())
            .map(|i| maps.iter().map(|m| m.map[i]).sum::<f32>() / n)
            .collect();
        cam.probs = probs.clone();
        // The networks' disagreement over one distribution (a multi-label model has none).
        let disagreement = members.map(|members| {
            let rows: Vec<Vec<f32>> = members.iter().map(|m| probs_of(&m[0])).collect();
            let refs: Vec<&[f32]> = rows.iter().map(Vec::as_slice).collect();
            Disagreement::of(&refs, predicted)
        });
        Ok(Analysis {
            present: self.findings_present(&probs),
            probs,
            predicted,
            tta,
            cam,
            warnings: self.warnings(img),
            disagreement,
        })
    }

    /// Predicts each file; a file that cannot be read gets its own error, the others
    /// are still predicted. Results keep the order of `paths`.
    pub fn predict_files(
        &self,
        paths: &[PathBuf],
        batch_size: usize,
        tta: bool,
    ) -> Vec<Result<Prediction>> {
        let mut out = Vec::with_capacity(paths.len());
        for chunk in paths.chunks(batch_size.max(1)) {
            let decoded: Vec<Result<GrayImage>> =
                chunk.par_iter().map(|p| decode_file(p)).collect();
            let ok: Vec<&GrayImage> = decoded.iter().filter_map(|r| r.as_ref().ok()).collect();
            let both = self.predict_with_members(&ok).and_then(|(plain, members)| {
                let p = if tta {
                    self.average_with_flips(&ok, plain)?
                } else {
                    plain
                };
                Ok((p, members))
            });
            let (mut probs, members) = match both {
                Ok((p, m)) => (p.into_iter(), m),
                Err(e) => {
                    let msg = e.to_string();
                    out.extend(chunk.iter().zip(decoded).map(|(p, d)| {
                        d.and_then(|_| {
                            Err(crate::Error::invalid(
                                "inference",
                                format!("{}: {msg}", crate::files::shown(p)),
                            ))
                        })
                    }));
                    continue;
                }
            };
            let mut at = 0;
            for (path, d) in chunk.iter().zip(decoded) {
                out.push(d.map(|img| {
                    let p = probs.next().unwrap_or_default();
                    let predicted = self.decide(&p);
                    let disagreement = members.as_ref().map(|m| {
                        let rows: Vec<&[f32]> = m.iter().map(|n| n[at].as_slice()).collect();
                        Disagreement::of(&rows, predicted)
                    });
                    at += 1;
                    Prediction {
                        path: path.clone(),
                        probs: p,
                        predicted,
                        warnings: self.warnings(&img),
                        disagreement,
                    }
                }));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ops::precision::Precision;
    use crate::model::Backbone;

    /// A bf16 predictor packs each convolution's weight once and predicts the bits the
    /// network gives when it packs them for every image; a float32 one packs nothing.
    #[test]
    fn a_bf16_predictor_keeps_its_weights_packed_with_the_same_results() {
        let dev = Device::Cpu;
        let net = Classifier::new(Backbone::Resnet18, 3, 7, &dev).unwrap();
        let names = vec!["a".to_string(), "b".into(), "c".into()];
        let meta = ModelMeta::new(Backbone::Resnet18, 48, names);
        let plain = Predictor::new(net, meta);
        let half = plain.in_precision(Precision::Bf16);
        let planes: Vec<Vec<f32>> = (0..2)
            .map(|i| {
                (0..48 * 48)
                    .map(|j| ((i * 7 + j) % 23) as f32 / 23.0)
                    .collect()
            })
            .collect();
        let refs: Vec<&[f32]> = planes.iter().map(|p| p.as_slice()).collect();
        plain.log_probs_planes(&refs).unwrap();
        assert!(plain.packed.is_empty(), "float32 packs nothing");
        let x = half.preprocess().tensor_from_planes(&refs, &dev).unwrap();
        let unpacked = log_softmax_rows(&half.model().infer(&x).unwrap()).unwrap();
        for _ in 0..2 {
            assert_eq!(half.log_probs_planes(&refs).unwrap(), unpacked);
            // ResNet-18: the stem, 16 in the blocks, 3 shortcuts.
            assert_eq!(half.packed.len(), 20);
        }
    }
}
