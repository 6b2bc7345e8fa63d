//! The grey-scale pipeline of a monochrome image, in f64 for every bit depth: the modality
//! rescale (slope and intercept) and then the VOI transform (PS3.3 C.11.2): the first VOI LUT
//! of the VOI LUT Sequence when there is one (as pydicom's `apply_voi_lut` prefers), else the
//! first window (LINEAR, LINEAR_EXACT or SIGMOID), else the range of the rescaled values
//! stretched to [0, 1].
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;

/// How stored values become display values in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Voi {
    /// A lookup table: input `first` maps to `table[0]`; outputs already scaled to [0, 1].
    Lut { first: f64, table: Vec<f64> },
    /// A window, PS3.3 C.11.2.1.2 and C.11.2.1.3.
    Window {
        center: f64,
        width: f64,
        function: Function,
    },
    /// The range of the values, stretched.
    Range,
}

/// The VOI LUT Function (0028,1056).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Function {
    Linear,
    LinearExact,
    Sigmoid,
}

fn floats(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<f64>> {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_multi_float64().ok())
        .filter(|v| !v.is_empty() && v.iter().all(|x| x.is_finite()))
}

fn ints(obj: &InMemDicomObject, tag: Tag) -> Option<Vec<i64>> {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_multi_int::<i64>().ok())
}

/// Rescale slope and intercept (1 and 0 when absent or unreadable).
pub(super) fn rescale(obj: &InMemDicomObject) -> (f64, f64) {
    let slope = floats(obj, tags::RESCALE_SLOPE).map_or(1.0, |v| v[0]);
    let intercept = floats(obj, tags::RESCALE_INTERCEPT).map_or(0.0, |v| v[0]);
    (slope, intercept)
}

/// A LUT from a descriptor (entries, first input, bits an entry) and its data, as PS3.3
/// C.11.2.1.1 defines it (0 entries means 65536). `None` when they do not agree.
pub(super) fn lut_table(descriptor: &[i64], data: &[i64]) -> Option<(f64, Vec<f64>)> {
    let [entries, first, bits] = descriptor[..] else {
        return None;
    };
    let n = if entries == 0 { 65536 } else { entries } as usize;
    if !(1..=16).contains(&bits) || data.len() < n || n > 65536 {
        return None;
    }
    let max = ((1u32 << bits) - 1) as f64;
    let table = data[..n]
        .iter()
        .map(|&v| (v as f64 / max).clamp(0.0, 1.0))
        .collect();
    Some((first as f64, table))
}

/// The VOI transform a file asks for.
pub(super) fn voi(obj: &InMemDicomObject) -> Voi {
    let first_lut = obj
        .element_opt(tags::VOILUT_SEQUENCE)
        .ok()
        .flatten()
        .and_then(|e| e.items().and_then(|items| items.first()))
        .and_then(|item| {
            lut_table(
                &ints(item, tags::LUT_DESCRIPTOR)?,
                &ints(item, tags::LUT_DATA)?,
            )
        });
    if let Some((first, table)) = first_lut {
        return Voi::Lut { first, table };
    }
    let function = match obj
        .element_opt(tags::VOILUT_FUNCTION)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok())
        .as_deref()
        .map(str::trim)
    {
        Some("LINEAR_EXACT") => Function::LinearExact,
        Some("SIGMOID") => Function::Sigmoid,
        _ => Function::Linear,
    };
    match (
        floats(obj, tags::WINDOW_CENTER),
        floats(obj, tags::WINDOW_WIDTH),
    ) {
        // LINEAR needs a width of at least 1, the others more than 0 (C.11.2.1.2.1).
        (Some(c), Some(w)) if w[0] >= 1.0 || (function != Function::Linear && w[0] > 0.0) => {
            Voi::Window {
                center: c[0],
                width: w[0],
                function,
            }
        }
        _ => Voi::Range,
    }
}

/// Applies `voi` to modality values: each output in [0, 1].
pub(super) fn apply(values: &[f64], voi: &Voi) -> Vec<f32> {
    match voi {
        Voi::Lut { first, table } => {
            let last = (table.len() - 1) as f64;
            values
                .iter()
                .map(|&x| table[(x - first).clamp(0.0, last) as usize] as f32)
                .collect()
        }
        &Voi::Window {
            center: c,
            width: w,
            function,
        } => values
            .iter()
            .map(|&x| {
                let y = match function {
                    Function::Linear => {
                        if x <= c - 0.5 - (w - 1.0) / 2.0 {
                            0.0
                        } else if x > c - 0.5 + (w - 1.0) / 2.0 {
                            1.0
                        } else {
                            (x - (c - 0.5)) / (w - 1.0) + 0.5
                        }
                    }
                    Function::LinearExact => ((x - c) / w + 0.5).clamp(0.0, 1.0),
                    Function::Sigmoid => 1.0 / (1.0 + (-4.0 * (x - c) / w).exp()),
                };
                y as f32
            })
            .collect(),
        Voi::Range => {
            let (lo, hi) = values
                .iter()
                .fold((f64::MAX, f64::MIN), |(l, h), &v| (l.min(v), h.max(v)));
            let span = hi - lo;
            values
                .iter()
                .map(|&x| {
                    if span > 0.0 {
                        ((x - lo) / span) as f32
                    } else {
                        0.0
                    }
                })
                .collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_follow_the_standard_formulas() {
        // PS3.3 C.11.2.1.2.1 LINEAR with c = 100, w = 21: 0 at or below 89.5, 1 above 109.5.
        let lin = Voi::Window {
            center: 100.0,
            width: 21.0,
            function: Function::Linear,
        };
        let v = apply(&[89.5, 89.6, 99.5, 109.5, 109.6], &lin);
        assert_eq!(v[0], 0.0);
        assert!((v[1] as f64 - ((89.6 - 99.5) / 20.0 + 0.5)).abs() < 1e-6);
        assert!((v[2] - 0.5).abs() < 1e-6);
        assert!((v[3] - 1.0).abs() < 1e-6);
        assert_eq!(v[4], 1.0);
        // C.11.2.1.3.2 LINEAR_EXACT: (x - c) / w + 0.5; C.11.2.1.3.1 SIGMOID at the centre 0.5
        // and at c + w/4: 1 / (1 + e^-1).
        let exact = Voi::Window {
            center: 100.0,
            width: 20.0,
            function: Function::LinearExact,
        };
        assert_eq!(
            apply(&[85.0, 95.0, 100.0, 115.0], &exact),
            vec![0.0, 0.25, 0.5, 1.0]
        );
        let sig = Voi::Window {
            center: 100.0,
            width: 20.0,
            function: Function::Sigmoid,
        };
        let s = apply(&[100.0, 105.0], &sig);
        assert!((s[0] - 0.5).abs() < 1e-7);
        assert!((s[1] as f64 - 1.0 / (1.0 + (-1.0f64).exp())).abs() < 1e-7);
    }

    #[test]
    fn a_lut_clamps_its_input_and_scales_by_its_bits() {
        // 4 entries from input -2, 8 bits an entry.
        let (first, table) = lut_table(&[4, -2, 8], &[0, 51, 102, 255]).unwrap();
        let voi = Voi::Lut { first, table };
        assert_eq!(
            apply(&[-10.0, -2.0, -1.0, 0.0, 1.0, 50.0], &voi),
            vec![0.0, 0.0, 0.2, 0.4, 1.0, 1.0]
        );
        assert!(lut_table(&[4, 0, 8], &[1, 2, 3]).is_none(), "short data");
        assert!(lut_table(&[4, 0, 17], &[1, 2, 3, 4]).is_none(), "17 bits");
    }

    #[test]
    fn a_constant_image_is_black_not_nan() {
        assert_eq!(apply(&[7.0; 3], &Voi::Range), vec![0.0; 3]);
    }
}
