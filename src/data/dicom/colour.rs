//! Colour DICOM frames to RGB in [0, 1], handed to the program's one colour-to-grey path
//! (`gray::to_gray`, which also decides the colour warning): RGB, YBR_FULL and
//! YBR_FULL_422 (converted as PS3.3 C.7.6.3.1.2 defines), PALETTE COLOR (the red, green and
//! blue palette LUTs), and what a codec already turned into RGB (JPEG's YBR, JPEG 2000's
//! YBR_RCT and YBR_ICT).
use super::pixels::{stored_values, Layout};
use super::voi::lut_table;
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;

/// RLE and JPEG-LS keep YBR samples as they are; dicom-pixeldata calls them RGB all the same.
const KEEPS_YBR: [&str; 3] = [
    "1.2.840.10008.1.2.5",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
];

fn ints(obj: &DefaultDicomObject, tag: Tag) -> Option<Vec<i64>> {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_multi_int::<i64>().ok())
}

/// YCbCr (full range, `half` = 2^(bits-1)) to RGB samples: rounded half up and clamped to
/// [0, max], as pydicom's `convert_color_space` gives them.
fn ybr_to_rgb(y: f64, cb: f64, cr: f64, half: f64, max: f64) -> [f64; 3] {
    let (cb, cr) = (cb - half, cr - half);
    [
        y + 1.402 * cr,
        y - 0.114 * 1.772 / 0.587 * cb - 0.299 * 1.402 / 0.587 * cr,
        y + 1.772 * cb,
    ]
    .map(|v| (v + 0.5).floor().clamp(0.0, max))
}

/// The frame as interleaved RGB in [0, 1].
pub(super) fn to_rgb(
    obj: &DefaultDicomObject,
    layout: &Layout,
    bytes: &[u8],
    decoded: bool,
    syntax: &str,
) -> Result<Vec<f32>, String> {
    let n = layout.rows * layout.cols;
    let pm = layout.photometric.as_str();
    let max = ((1u64 << layout.bits_stored) - 1) as f64;
    if pm == "PALETTE COLOR" {
        let s = stored_values(bytes, layout, n)?;
        let lut = |d, t| lut_table(&ints(obj, d)?, &ints(obj, t)?);
        let (Some(r), Some(g), Some(b)) = (
            lut(
                tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
                tags::RED_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            ),
            lut(
                tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
                tags::GREEN_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            ),
            lut(
                tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DESCRIPTOR,
                tags::BLUE_PALETTE_COLOR_LOOKUP_TABLE_DATA,
            ),
        ) else {
            return Err(
                "PALETTE COLOR DICOM without readable red, green and blue palette \
                        tables (segmented palettes are not supported)"
                    .into(),
            );
        };
        let at = |(first, table): &(f64, Vec<f64>), v: i64| {
            table[(v as f64 - first).clamp(0.0, (table.len() - 1) as f64) as usize] as f32
        };
        return Ok(s
            .iter()
            .flat_map(|&v| [at(&r, v), at(&g, v), at(&b, v)])
            .collect());
    }
    if layout.spp != 3 {
        return Err(format!(
            "DICOM {pm} with {} samples a pixel is not supported",
            layout.spp
        ));
    }
    let is_ybr = pm.starts_with("YBR_FULL") && (!decoded || KEEPS_YBR.contains(&syntax));
    if !decoded && !matches!(pm, "RGB" | "YBR_FULL" | "YBR_FULL_422") {
        return Err(format!(
            "uncompressed DICOM with photometric interpretation {pm} is not supported"
        ));
    }
    // Samples as (c0, c1, c2) for each pixel, whatever the arrangement in the data.
    let triples: Vec<[f64; 3]> = if !decoded && pm == "YBR_FULL_422" {
        let s = stored_values(bytes, layout, layout.stored_samples())?;
        (0..n)
            .map(|p| {
                let pair = &s[(p / 2) * 4..(p / 2) * 4 + 4];
                [pair[p % 2] as f64, pair[2] as f64, pair[3] as f64]
            })
            .collect()
    } else {
        let s = stored_values(bytes, layout, 3 * n)?;
        if layout.planar && !decoded {
            (0..n)
                .map(|p| [s[p] as f64, s[n + p] as f64, s[2 * n + p] as f64])
                .collect()
        } else {
            s.chunks_exact(3)
                .map(|c| [c[0] as f64, c[1] as f64, c[2] as f64])
                .collect()
        }
    };
    let half = (1u64 << (layout.bits_stored - 1)) as f64;
    Ok(triples
        .into_iter()
        .flat_map(|t| {
            let rgb = if is_ybr {
                ybr_to_rgb(t[0], t[1], t[2], half, max)
            } else {
                t
            };
            rgb.map(|v| (v / max).clamp(0.0, 1.0) as f32)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::ybr_to_rgb;

    #[test]
    fn ybr_full_inverts_the_standards_forward_transform() {
        // PS3.3 C.7.6.3.1.2: Y = .299R + .587G + .114B, Cb = -.1687R - .3313G + .5B + 128,
        // Cr = .5R - .4187G - .0813B + 128.
        for [r, g, b] in [[200.0, 30.0, 90.0], [0.0, 255.0, 0.0], [12.0, 12.0, 12.0]] {
            let y = 0.299 * r + 0.587 * g + 0.114 * b;
            let cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128.0;
            let cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128.0;
            let back = ybr_to_rgb(y, cb, cr, 128.0, 255.0);
            for (x, want) in back.iter().zip([r, g, b]) {
                assert!((x - want).abs() < 1e-3, "{back:?} vs {r} {g} {b}");
            }
        }
    }
}
