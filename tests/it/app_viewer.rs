//! The Viewer tab driven as a user would, through egui_kittest: files dropped on the window,
//! a corrupt one among them, the test-set review with a cell click and the gallery, and
//! snapshot PNGs.
use crate::common::step_until;
use crate::training::write_synthetic;
use crate::viewer_infer::{film, write_model};
use covid_resnet::app::viewer::{ImageState, Mode, ViewerSettings};
use covid_resnet::app::{App, Settings, Tab};
use covid_resnet::data::dicom::testing::{write_gray, Spec};
use covid_resnet::eval::report::{Case, EvalReport};
use covid_resnet::infer::InputWarning;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A folder with a fixed name under the temp dir (paths appear in snapshots), removed at
/// the end.
pub struct FixedDir(pub PathBuf);

impl FixedDir {
    pub fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(name);
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for FixedDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A file dropped on the window, as eframe hands it over.
#[derive(Debug)]
struct Dropped(PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

pub fn harness(model: &Path, data: &Path) -> Harness<'static, App> {
    let mut s = Settings {
        tab: Tab::Viewer,
        viewer: ViewerSettings {
            model: model.display().to_string(),
            ..Default::default()
        },
        ..Default::default()
    };
    s.training.device = "cpu".into();
    s.training.data_dir = data.display().to_string();
    Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_ui_state(|ui, app: &mut App| app.frame(ui), App::with_settings(s))
}

fn all_predicted(a: &App) -> bool {
    a.viewer.model.is_some()
        && !a.viewer.images.is_empty()
        && a.viewer.images.iter().all(|i| match &i.state {
            ImageState::Failed(_) => true,
            ImageState::Loading => false,
            ImageState::Ready(_) => i.analysis().is_some(),
        })
        && !a.viewer.busy()
}

/// True when some accessible node's label contains `text`.
fn shown(h: &Harness<'static, App>, text: &str) -> bool {
    h.query_all_by_label_contains(text).next().is_some()
}

pub fn drop_files(h: &mut Harness<'static, App>, files: &[PathBuf]) {
    for f in files {
        h.input_mut()
            .dropped_files
            .push(Arc::new(Dropped(f.clone())));
    }
    h.step();
}

#[test]
fn dropped_files_get_probabilities_and_a_corrupt_one_is_named() {
    // A fixed folder: its path is on screen in the snapshot.
    let dir = FixedDir::new("covid-resnet-viewer-drop");
    let d = dir.0.as_path();
    let model = write_model(d, 64);
    let files: Vec<PathBuf> = ["a.png", "broken.png", "b.png"]
        .iter()
        .map(|n| d.join(n))
        .collect();
    film(100, 90, 1).save(&files[0]).unwrap();
    std::fs::write(&files[1], b"\x89PNG\r\n\x1a\nnot a png at all").unwrap();
    film(80, 80, 2).save(&files[2]).unwrap();
    // A 12-bit MONOCHROME1 DICOM lateral view: stored values are inverted (high = dark), so
    // read correctly it shows the right way up; the view position earns a warning.
    let dcm = d.join("lateral.dcm");
    let f = film(96, 96, 4);
    let values: Vec<u16> = f.pixels().map(|p| 4095 - p.0[0] as u16 * 16).collect();
    write_gray(
        &dcm,
        &Spec {
            width: 96,
            height: 96,
            values: &values,
            bits_stored: 12,
            photometric: "MONOCHROME1",
            rescale: None,
            window: None,
            view: Some("LL"),
        },
    )
    .unwrap();
    let mut files = files;
    files.push(dcm);

    let mut h = harness(&model, d);
    // While files hover, the overlay says what a drop does.
    h.input_mut().hovered_files.push(egui::HoveredFile {
        path: Some(files[0].clone()),
        mime: String::new(),
    });
    h.run_steps(2);
    assert_eq!(h.state().viewer.hovering(), 1);
    h.input_mut().hovered_files.clear();
    drop_files(&mut h, &files);
    step_until(
        &mut h,
        120,
        "predictions for the dropped files",
        all_predicted,
    );

    let v = &h.state().viewer;
    assert_eq!(v.images.len(), 4);
    match &v.images[1].state {
        ImageState::Failed(e) => assert!(e.contains("broken.png"), "{e}"),
        _ => panic!("the corrupt file must fail"),
    }
    for i in [0, 2] {
        let a = v.images[i].analysis().unwrap().as_ref().unwrap();
        assert!((a.probs.iter().sum::<f32>() - 1.0).abs() < 1e-4);
        assert!(a.warnings.is_empty(), "{:?}", a.warnings);
    }
    // The corrupt file's message is on screen, naming it; the others are listed.
    assert!(shown(&h, "broken.png"));
    assert!(shown(&h, "a.png"));
    // The DICOM file: polarity right (MONOCHROME1 honoured), lateral view flagged.
    let a = v.images[3].analysis().unwrap().as_ref().unwrap();
    assert_eq!(
        a.warnings,
        vec![InputWarning::LateralView { view: "LL".into() }]
    );
    // The last dropped image is shown with its four probability bars, its warning, its
    // DICOM facts and Grad-CAM.
    assert_eq!(h.state().viewer.selected, Some(3));
    assert!(shown(&h, "MONOCHROME1"));
    assert!(shown(&h, "Explicit VR Little Endian"));
    assert!(shown(&h, "ViewPosition is LL"));
    for c in covid_resnet::data::split::labels::PAPER_CLASSES {
        assert!(h.query_by_label(c).is_some(), "no bar for {c}");
    }
    assert!(shown(&h, "Predicted: "));
    assert!(shown(&h, "Research use only"));

    // Choosing a class for Grad-CAM re-explains the shown image for that class.
    h.state_mut().viewer.cam_class = Some(3);
    step_until(&mut h, 60, "the COVID-19 Grad-CAM", |a| {
        a.viewer.images[3]
            .analysis()
            .and_then(|r| r.as_ref().ok())
            .is_some_and(|a| a.cam.class == 3)
            && !a.viewer.busy()
    });
    h.state_mut().viewer.cam_class = None;
    step_until(&mut h, 60, "the predicted-class map again", |a| {
        !a.viewer.busy()
            && a.viewer.images[3]
                .analysis()
                .and_then(|r| r.as_ref().ok())
                .is_some_and(|x| x.cam.class == x.predicted)
    });
    h.snapshot("viewer_image_with_gradcam");
}

fn case(file: &Path, actual: usize, predicted: usize, loss: f64) -> Case {
    let mut probs = vec![0.1f32; 4];
    probs[predicted] = 0.7;
    Case {
        file: file.display().to_string(),
        file_bytes: None,
        actual,
        predicted,
        probs,
        loss,
        source: Some(if actual == 3 { "cohen" } else { "kermany" }.into()),
        patient: None,
        disagreement: None,
    }
}

#[test]
fn confusion_cell_click_lists_exactly_its_cases_and_opens_one() {
    let dir = FixedDir::new("covid-resnet-viewer-review");
    let d = dir.0.as_path();
    let model = write_model(d, 64);
    let mut cases = Vec::new();
    // Normal predicted COVID-19: three files, with distinct losses.
    let wrong: Vec<PathBuf> = (0..3)
        .map(|i| d.join(format!("normal_as_covid_{i}.png")))
        .collect();
    for (i, f) in wrong.iter().enumerate() {
        film(64, 64, i as u32).save(f).unwrap();
        cases.push(case(f, 0, 3, 1.0 + i as f64));
    }
    // Others, in other cells.
    for i in 0..6 {
        let f = d.join(format!("other_{i}.png"));
        film(64, 64, 10 + i).save(&f).unwrap();
        cases.push(case(&f, (i % 4) as usize, (i % 4) as usize, 0.1));
    }
    let f = d.join("covid_as_viral.png");
    film(64, 64, 20).save(&f).unwrap();
    cases.push(case(&f, 3, 2, 2.5));
    let classes: Vec<String> = covid_resnet::data::split::labels::PAPER_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect();
    let report = EvalReport::from_cases(classes.clone(), cases, 50, 0);
    let json = report.write_all(&d.join("eval"), "eval-test").unwrap()[0].clone();

    let mut h = harness(&model, d);
    step_until(&mut h, 60, "the model", |a| a.viewer.model.is_some());
    h.state_mut().viewer.review.open_report(&json).unwrap();
    h.state_mut().viewer.mode = Mode::Review;
    h.run_steps(3);
    assert!(shown(&h, "10 images"));
    h.get_by_label("actual Normal predicted COVID-19").click();
    h.run_steps(3);
    // The gallery lists exactly the three files, highest loss first.
    let listed: Vec<String> = h
        .state()
        .viewer
        .review
        .gallery()
        .iter()
        .map(|c| c.file.clone())
        .collect();
    let expected: Vec<String> = wrong
        .iter()
        .rev()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(listed, expected);
    for f in &wrong {
        let name = f.file_name().unwrap().to_str().unwrap();
        assert!(h.query_by_label(name).is_some(), "{name} not shown");
    }
    assert!(h.query_by_label("covid_as_viral.png").is_none());
    assert!(h.query_by_label("other_0.png").is_none());
    step_until(&mut h, 30, "the gallery thumbnails", |a| !a.viewer.busy());
    h.hover_at(egui::pos2(5.0, 600.0));
    h.run_steps(5);
    h.snapshot("viewer_review_gallery");

    // Clicking a case shows it in the image view with its prediction and Grad-CAM.
    h.get_by_label("normal_as_covid_1.png").click();
    step_until(&mut h, 60, "the case's prediction", all_predicted);
    let v = &h.state().viewer;
    assert_eq!(v.mode, Mode::Image);
    let sel = &v.images[v.selected.unwrap()];
    assert_eq!(sel.path, wrong[1]);
    let a = sel.analysis().unwrap().as_ref().unwrap();
    assert_eq!(a.cam.class, a.predicted);
    // The case keeps its true label in the image view (panel and corner text).
    assert_eq!(sel.truth, Some(covid_resnet::app::viewer::Truth::Class(0)));
    let said = format!(
        "true: Normal, predicted: {}",
        covid_resnet::data::split::labels::PAPER_CLASSES[a.predicted]
    );
    assert!(
        h.query_all_by_label_contains(&said).count() >= 1,
        "{said} is not shown"
    );

    // Export: JSON reads back to the same report, the PNG decodes.
    let out = d.join("export");
    let files = h.state_mut().viewer.review.export(&out).unwrap();
    assert_eq!(EvalReport::load(&files[0]).unwrap(), report);
    assert!(image::open(&files[3]).is_ok());
    let csv = std::fs::read_to_string(&files[1]).unwrap();
    assert_eq!(csv.lines().count(), 11);
}

#[test]
fn test_set_run_in_the_background_fills_the_matrix() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let data = d.join("data");
    write_synthetic(&data, 4, 10);
    let model = write_model(d, 32);
    // No model remembered: the one of the last training run is offered.
    let mut h = harness(Path::new(""), &data);
    h.run_steps(2);
    assert!(h.query_by_label("Use the last run's model").is_none());
    h.state_mut().training.run.finished_model = Some(model.clone());
    h.run_steps(2);
    h.get_by_label("Use the last run's model").click();
    step_until(&mut h, 60, "the model", |a| a.viewer.model.is_some());
    // It is remembered for the next start.
    assert_eq!(
        h.state().settings().viewer.model,
        model.display().to_string()
    );
    h.get_by_label("Run test set").click();
    step_until(&mut h, 120, "the test-set run", |a| {
        a.viewer.review.running.is_none() && a.viewer.review.report.is_some()
    });
    let r = h.state().viewer.review.report.as_ref().unwrap();
    assert_eq!(r.metrics.n, 10);
    assert_eq!(r.metrics.confusion.total(), 10);
    assert_eq!(r.per_source.get("synth").map(|s| s.n), Some(10));
    assert_eq!(h.state().viewer.mode, Mode::Review);
    assert!(shown(&h, "10 images"));
}

/// The image uses the space it has at the common screen sizes: a portrait radiograph fills
/// the canvas's height, the toolbar's sliders keep their values in view. Snapshots of both.
#[test]
fn the_image_view_uses_the_space_at_1280x800_and_1920x1080() {
    let dir = FixedDir::new("covid-resnet-viewer-sizes");
    let d = dir.0.as_path();
    let model = write_model(d, 64);
    let f = d.join("portrait.png");
    film(900, 1000, 3).save(&f).unwrap();
    let mut h = harness(&model, d);
    step_until(&mut h, 60, "the model", |a| a.viewer.model.is_some());
    drop_files(&mut h, std::slice::from_ref(&f));
    step_until(&mut h, 60, "the prediction", all_predicted);
    for (w, h_px, min_height, name) in [
        (1280.0, 800.0, 600.0, "viewer_1280x800"),
        (1920.0, 1080.0, 870.0, "viewer_1920x1080"),
    ] {
        h.set_size(egui::vec2(w, h_px));
        h.run_steps(4);
        let shown_rect = match &h.state().viewer.images[0].state {
            ImageState::Ready(l) => l.shown_rect.expect("drawn"),
            _ => panic!("not ready"),
        };
        assert!(
            shown_rect.height() >= min_height,
            "{name}: the radiograph is {} points tall",
            shown_rect.height()
        );
        // The toolbar's last slider and its value box are inside the window.
        let slider = |label: &str| {
            h.get_by_role_and_label(egui::accesskit::Role::Slider, label)
                .rect()
        };
        assert!(slider("Level").max.x <= w - 60.0, "{name}");
        assert!(
            slider("Opacity").max.x <= w - 60.0,
            "{name}: {:?}",
            slider("Opacity")
        );
        h.snapshot(name);
    }
}
