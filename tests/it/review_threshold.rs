//! The review's operating point driven as a user would: tick "Predict at a threshold", set
//! it for a target sensitivity and by Youden's J; the matrix, the per-class table and the
//! gallery follow, with the figures computed here by hand from the probabilities.
use crate::app_viewer::harness;
use crate::common::step_until;
use crate::viewer_infer::write_model;
use covid_resnet::app::viewer::Mode;
use covid_resnet::app::App;
use covid_resnet::eval::operating::OperatingPoint;
use covid_resnet::eval::report::{Case, EvalReport};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;

const COVID: usize = 3;

/// 40 cases, 10 per class; COVID-19's probability falls from 0.9 to 0.18 over its ten
/// cases (the rest mostly Normal), and is low elsewhere except for every seventh case.
fn cases(d: &std::path::Path) -> Vec<Case> {
    (0..40)
        .map(|i| {
            let actual = i % 4;
            let j = i / 4;
            let mut p = [0f32; 4];
            if actual == COVID {
                p[COVID] = 0.9 - 0.08 * j as f32;
                let rest = 1.0 - p[COVID];
                p[0] = 0.6 * rest;
                p[1] = 0.25 * rest;
                p[2] = 0.15 * rest;
            } else {
                p[COVID] = if i % 7 == 0 {
                    0.3
                } else {
                    0.02 + 0.01 * j as f32
                };
                let rest = 1.0 - p[COVID];
                for (k, v) in p.iter_mut().enumerate().take(3) {
                    *v = if k == actual { 0.7 * rest } else { 0.15 * rest };
                }
            }
            let predicted = top_of(&p, 4);
            Case {
                file: d.join(format!("case_{i:02}.png")).display().to_string(),
                file_bytes: None,
                actual,
                predicted,
                probs: p.to_vec(),
                loss: -(p[actual] as f64).ln(),
                source: None,
                patient: None,
                disagreement: None,
            }
        })
        .collect()
}

/// The most probable of the first `n` classes (the first on ties).
fn top_of(p: &[f32], n: usize) -> usize {
    (0..n).fold(0, |b, k| if p[k] > p[b] { k } else { b })
}

/// "COVID-19 when p ≥ t, else the most probable other class" (COVID-19 is the last class).
fn rule(p: &[f32], t: f64) -> usize {
    if p[COVID] as f64 >= t {
        COVID
    } else {
        top_of(p, 3)
    }
}

/// The confusion matrix of [`rule`] at `t`.
fn expected_confusion(cases: &[Case], t: f64) -> Vec<Vec<usize>> {
    let mut m = vec![vec![0; 4]; 4];
    for c in cases {
        m[c.actual][rule(&c.probs, t)] += 1;
    }
    m
}

fn operating_point(h: &Harness<'static, App>) -> Option<OperatingPoint> {
    h.state()
        .viewer
        .review
        .report
        .as_ref()
        .unwrap()
        .operating_point
}

#[test]
fn the_threshold_moves_the_matrix_the_table_and_the_gallery() {
    // A fixed folder: its path is in the snapshot.
    let dir = std::env::temp_dir().join("covid-resnet-review-threshold");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.as_path();
    let model = write_model(d, 64);
    let cs = cases(d);
    let classes: Vec<String> = covid_resnet::data::split::labels::PAPER_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let report = EvalReport::from_cases(classes, cs.clone(), 200, 0);
    let json = report.write_all(&d.join("eval"), "eval-test").unwrap()[0].clone();
    let mut h = harness(&model, d);
    step_until(&mut h, 60, "the model", |a| a.viewer.model.is_some());
    // As `covid-resnet open --report` does.
    h.state_mut().viewer.open_report_at_start(json);
    h.run_steps(3);
    assert_eq!(h.state().viewer.mode, Mode::Review);
    let confusion = |h: &Harness<'static, App>| {
        h.state()
            .viewer
            .review
            .report
            .as_ref()
            .unwrap()
            .metrics
            .confusion
            .m
            .clone()
    };
    // At argmax: each case's most probable class.
    let mut argmax = vec![vec![0; 4]; 4];
    for c in &cs {
        argmax[c.actual][top_of(&c.probs, 4)] += 1;
    }
    assert_eq!(confusion(&h), argmax);

    // Tick the threshold: it starts at 0.5.
    h.get_by_label("Predict at a threshold").click();
    h.run_steps(3);
    let op = operating_point(&h).unwrap();
    assert_eq!((op.class, op.threshold), (COVID, 0.5));
    assert_eq!(confusion(&h), expected_confusion(&cs, 0.5));

    // 95 % sensitivity on ten COVID-19 cases needs all ten: the lowest, 0.9 - 0.72 = 0.18.
    h.get_by_label("Set for the target sensitivity").click();
    h.run_steps(3);
    let op = operating_point(&h).unwrap();
    assert_eq!(op.threshold, (0.9f32 - 0.08 * 9.0) as f64);
    let m = expected_confusion(&cs, op.threshold);
    assert_eq!(confusion(&h), m);
    assert_eq!(m[COVID][COVID], 10);
    // The cases with p = 0.3 (every seventh, not COVID-19) are now called COVID-19 too.
    let false_pos: usize = (0..3).map(|a| m[a][COVID]).sum();
    assert!(false_pos >= 4, "{m:?}");
    // The table: recall 10/10 with its Wilson interval, lower bound n / (n + z²) =
    // 10 / (10 + 1.959964²) = 0.7225.
    assert!(
        h.query_all_by_label_contains("100.0 % (72.2–100.0) †")
            .count()
            >= 1,
        "COVID-19's recall at the threshold is not shown"
    );
    // The gallery of "actual Normal, predicted COVID-19" lists exactly those cases.
    h.get_by_label("actual Normal predicted COVID-19").click();
    h.run_steps(3);
    let listed = h.state().viewer.review.gallery().len();
    assert_eq!(listed, m[0][COVID]);

    // Youden's J: the threshold that maximises sensitivity + specificity - 1 here.
    h.get_by_label("Youden's J").click();
    h.run_steps(3);
    let op = operating_point(&h).unwrap();
    let j = |t: f64| {
        let m = expected_confusion(&cs, t);
        let tp = m[COVID][COVID] as f64;
        let fp: f64 = (0..3).map(|a| m[a][COVID] as f64).sum();
        tp / 10.0 - fp / 30.0
    };
    let best = cs
        .iter()
        .map(|c| j(c.probs[COVID] as f64))
        .fold(f64::NEG_INFINITY, f64::max);
    assert!(
        (j(op.threshold) - best).abs() < 1e-12,
        "J {} < {best}",
        j(op.threshold)
    );
    assert_eq!(confusion(&h), expected_confusion(&cs, op.threshold));
    // Tall enough to show the charts under the matrix.
    h.set_size(egui::vec2(1400.0, 1500.0));
    h.hover_at(egui::pos2(5.0, 1490.0));
    // The gallery's thumbnails load on the worker: wait for them (a loaded machine showed a
    // spinner in place of "unreadable").
    step_until(&mut h, 60, "the gallery's thumbnails", |a| !a.viewer.busy());
    h.run_steps(3);
    h.snapshot("viewer_review_operating_point");
    h.set_size(egui::vec2(1400.0, 900.0));

    // Unticked: back to argmax.
    h.get_by_label("Predict at a threshold").click();
    h.run_steps(3);
    assert!(operating_point(&h).is_none());
    assert_eq!(confusion(&h), report.metrics.confusion.m);

    // A second report (the same images at p ≥ 0.18) to compare with: the paired counts
    // are those of the two rules, case by case.
    let t = (0.9f32 - 0.08 * 9.0) as f64;
    let other = EvalReport::with_operating_point(
        report.classes.clone(),
        cs.clone(),
        200,
        0,
        Some(OperatingPoint {
            class: COVID,
            threshold: t,
        }),
    );
    let b_json = other.write_all(&d.join("other"), "eval-test").unwrap()[0].clone();
    h.state_mut().viewer.review.compare_with(&b_json).unwrap();
    h.run_steps(3);
    assert!(
        h.query_all_by_label_contains("Comparison (B − A, paired)")
            .count()
            >= 1
    );
    let argmax = |p: &[f32]| top_of(p, 4);
    let at_t = |p: &[f32]| rule(p, t);
    let only_a = cs
        .iter()
        .filter(|c| argmax(&c.probs) == c.actual && at_t(&c.probs) != c.actual)
        .count();
    let only_b = cs
        .iter()
        .filter(|c| argmax(&c.probs) != c.actual && at_t(&c.probs) == c.actual)
        .count();
    let c = h.state().viewer.review.comparison.clone().unwrap();
    assert_eq!((c.only_a, c.only_b), (only_a, only_b));
    assert!(
        only_a + only_b > 0,
        "the two rules should disagree somewhere"
    );
    drop(h);
    let _ = std::fs::remove_dir_all(&dir);
}
