//! Input sanity warnings: signs that an image is unlike the chest radiographs a model was
//! trained on, so that its probabilities deserve less trust ("every image comes out COVID"
//! is the classic symptom of a silent preprocessing mismatch).
//!
//! Thresholds were set on COVIDx v1 (all 5941 images; assets/docs/viewer.md):
//! - polarity: the mediastinum strip (x 45-55 %, y 20-80 %) minus the two lung fields
//!   (x 15-35 % and 65-85 %, y 25-65 %) ranged 0.005..0.464 (median 0.234), never below 0,
//!   so a negative difference flags every inverted COVIDx image and none of the originals;
//! - contrast: the 1st-99th percentile range was at least 0.333 (median 0.788); below 0.15
//!   is called nearly constant.
use crate::data::gray::GrayImage;

/// Aspect ratios (long side / short side) above this are warned about.
pub const MAX_ASPECT: f32 = 1.6;
/// A 1st-99th percentile intensity range below this is "nearly constant".
pub const MIN_RANGE: f32 = 0.15;

/// One reason to distrust a prediction.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum InputWarning {
    /// The file has colour content; radiographs are gray.
    Colour,
    /// Bright lungs beside a dark mediastinum: a negative, or MONOCHROME1 read as
    /// MONOCHROME2.
    InvertedPolarity {
        /// Mediastinum minus lung fields (positive on every COVIDx image).
        contrast: f32,
    },
    /// Far from square.
    AspectRatio {
        /// Long side over short side.
        ratio: f32,
    },
    /// Fewer pixels than the model's input: details were never there.
    SmallImage {
        /// Width.
        width: u32,
        /// Height.
        height: u32,
        /// The model's input side.
        input_px: u32,
    },
    /// Nearly constant intensities (blank, saturated or a failed windowing).
    LowContrast {
        /// 1st-99th percentile range of the intensities.
        range: f32,
    },
    /// DICOM says this is not a frontal view.
    LateralView {
        /// The DICOM ViewPosition value.
        view: String,
    },
}

impl std::fmt::Display for InputWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Colour => write!(
                f,
                "colour image: radiographs are gray; this may be a photo or an annotated figure"
            ),
            Self::InvertedPolarity { contrast } => write!(
                f,
                "polarity looks inverted (lungs brighter than the mediastinum by {:.2}): a \
                 negative, or MONOCHROME1 read as MONOCHROME2",
                -contrast
            ),
            Self::AspectRatio { ratio } => write!(
                f,
                "aspect ratio {ratio:.2}:1 is far from a chest film's; the image is squashed to a square"
            ),
            Self::SmallImage {
                width,
                height,
                input_px,
            } => write!(
                f,
                "only {width}x{height} pixels, smaller than the model's {input_px}x{input_px} input"
            ),
            Self::LowContrast { range } => write!(
                f,
                "nearly constant intensities (1st-99th percentile range {range:.3})"
            ),
            Self::LateralView { view } => write!(
                f,
                "DICOM ViewPosition is {view}: the model was trained on frontal (PA/AP) views"
            ),
        }
    }
}

fn region_mean(img: &GrayImage, x0: f32, x1: f32, y0: f32, y1: f32) -> f32 {
    let (w, h) = (img.width as usize, img.height as usize);
    let xs = ((x0 * w as f32) as usize).min(w - 1)..((x1 * w as f32).ceil() as usize).min(w);
    let ys = ((y0 * h as f32) as usize).min(h - 1)..((y1 * h as f32).ceil() as usize).min(h);
    let (mut sum, mut n) = (0.0f64, 0usize);
    for y in ys {
        for x in xs.clone() {
            sum += img.data[y * w + x] as f64;
            n += 1;
        }
    }
    (sum / n.max(1) as f64) as f32
}

/// Mediastinum strip minus lung fields: positive for a normally displayed frontal film.
pub fn polarity_contrast(img: &GrayImage) -> f32 {
    if img.width == 0 || img.height == 0 {
        return 0.0;
    }
    let mediastinum = region_mean(img, 0.45, 0.55, 0.2, 0.8);
    let left = region_mean(img, 0.15, 0.35, 0.25, 0.65);
    let right = region_mean(img, 0.65, 0.85, 0.25, 0.65);
    mediastinum - 0.5 * (left + right)
}

/// 1st-99th percentile range of the intensities (from a 1024-bin histogram).
pub fn intensity_range(img: &GrayImage) -> f32 {
    const BINS: usize = 1024;
    let mut hist = [0usize; BINS];
    for &v in &img.data {
        hist[((v.clamp(0.0, 1.0) * (BINS - 1) as f32).round()) as usize] += 1;
    }
    let n = img.data.len();
    let q = |p: f64| {
        let target = (p * n as f64).ceil().max(1.0) as usize;
        let mut acc = 0;
        for (i, c) in hist.iter().enumerate() {
            acc += c;
            if acc >= target {
                return i as f32 / (BINS - 1) as f32;
            }
        }
        1.0
    };
    q(0.99) - q(0.01)
}

/// Every warning that applies to `img` for a model with `input_px` inputs.
pub fn check(img: &GrayImage, input_px: u32) -> Vec<InputWarning> {
    let mut out = Vec::new();
    if img.width == 0 || img.height == 0 || img.data.is_empty() {
        out.push(InputWarning::LowContrast { range: 0.0 });
        return out;
    }
    if img.was_color {
        out.push(InputWarning::Colour);
    }
    let range = intensity_range(img);
    let low_contrast = range < MIN_RANGE;
    if low_contrast {
        out.push(InputWarning::LowContrast { range });
    }
    // Polarity means nothing on a blank image.
    let contrast = polarity_contrast(img);
    if !low_contrast && contrast < 0.0 {
        out.push(InputWarning::InvertedPolarity { contrast });
    }
    let (long, short) = (img.width.max(img.height), img.width.min(img.height));
    let ratio = long as f32 / short as f32;
    if ratio > MAX_ASPECT {
        out.push(InputWarning::AspectRatio { ratio });
    }
    if short < input_px {
        out.push(InputWarning::SmallImage {
            width: img.width,
            height: img.height,
            input_px,
        });
    }
    if let Some(view) = img
        .dicom
        .as_ref()
        .and_then(|d| d.view_position.as_deref())
        .map(str::trim)
    {
        let v = view.to_ascii_uppercase();
        if matches!(v.as_str(), "LL" | "RL" | "LAT" | "LATERAL" | "LLD" | "RLD") {
            out.push(InputWarning::LateralView { view: v });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A synthetic frontal film: dark lungs on either side of a bright mediastinum.
    pub(crate) fn film(w: u32, h: u32) -> GrayImage {
        GrayImage::from_fn(w, h, |x, y| {
            let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
            let lung = (0.12..0.42).contains(&fx) || (0.58..0.88).contains(&fx);
            let base = if lung && (0.15..0.75).contains(&fy) {
                0.2
            } else {
                0.7
            };
            base + 0.1 * ((x * 7 + y * 13) % 11) as f32 / 11.0
        })
    }

    #[test]
    fn a_plain_frontal_film_has_no_warnings() {
        assert_eq!(check(&film(300, 320), 224), vec![]);
    }

    #[test]
    fn each_problem_is_named() {
        let mut neg = film(300, 320);
        neg.data.iter_mut().for_each(|v| *v = 1.0 - *v);
        let w = check(&neg, 224);
        assert!(
            matches!(w.as_slice(), [InputWarning::InvertedPolarity { contrast }] if *contrast < -0.3),
            "{w:?}"
        );

        let mut col = film(300, 320);
        col.was_color = true;
        assert_eq!(check(&col, 224), vec![InputWarning::Colour]);

        let wide = film(700, 300);
        assert!(matches!(
            check(&wide, 224).as_slice(),
            [InputWarning::AspectRatio { ratio }] if (*ratio - 7.0 / 3.0).abs() < 1e-6
        ));

        let small = film(100, 90);
        assert_eq!(
            check(&small, 224),
            vec![InputWarning::SmallImage {
                width: 100,
                height: 90,
                input_px: 224
            }]
        );

        let mut flat = film(300, 300);
        flat.data.iter_mut().for_each(|v| *v = 0.5);
        let w = check(&flat, 224);
        assert!(
            matches!(w.as_slice(), [InputWarning::LowContrast { range }] if *range < 0.01),
            "{w:?}"
        );

        let mut lat = film(300, 300);
        lat.dicom = Some(crate::data::gray::DicomInfo {
            view_position: Some("LL ".into()),
            ..Default::default()
        });
        assert_eq!(
            check(&lat, 224),
            vec![InputWarning::LateralView { view: "LL".into() }]
        );
        for w in [
            InputWarning::Colour,
            InputWarning::LowContrast { range: 0.01 },
            InputWarning::LateralView { view: "LL".into() },
        ] {
            assert!(!w.to_string().is_empty());
        }
    }

    #[test]
    fn percentile_range_of_a_ramp() {
        // Values 0..1 uniformly: the 1st-99th percentile range is 0.98 (to a bin).
        let n = 10_000u32;
        let img = GrayImage::from_fn(n, 1, |x, _| x as f32 / (n - 1) as f32);
        assert!((intensity_range(&img) - 0.98).abs() < 2.0 / 1023.0);
    }
}
