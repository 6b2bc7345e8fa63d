//! The review of an ensemble: how the gallery is ordered and filtered by the networks'
//! disagreement, and the chart of accuracy against disagreement (whether the cases the
//! networks disagree on are wrong more often).
use crate::eval::disagreement::DisagreementSummary;
use crate::eval::report::Case;
use crate::eval::scores::cell as ci_cell;
use egui::RichText;
use egui_plot::{Bar, BarChart, Plot};

/// The order of the gallery's cases.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GalleryOrder {
    /// Highest loss first.
    #[default]
    Loss,
    /// Most disagreement among an ensemble's networks first.
    Disagreement,
}

impl GalleryOrder {
    /// The words in the gallery's header.
    pub fn words(self) -> &'static str {
        match self {
            Self::Loss => "highest loss first",
            Self::Disagreement => "most disagreement first",
        }
    }
}

/// How the gallery lists a cell's cases.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GalleryView {
    /// Their order.
    pub order: GalleryOrder,
    /// Only the cases on which not every network predicts the ensemble's class.
    pub only_disputed: bool,
}

impl GalleryView {
    /// `cases` filtered and ordered as the view says (ties keep the given order).
    pub fn apply<'a>(&self, mut cases: Vec<&'a Case>) -> Vec<&'a Case> {
        if self.only_disputed {
            cases.retain(|c| c.disagreement.is_some_and(|d| d.agree < d.members));
        }
        match self.order {
            GalleryOrder::Loss => cases.sort_by(|x, y| y.loss.total_cmp(&x.loss)),
            GalleryOrder::Disagreement => cases.sort_by(|x, y| {
                let s = |c: &Case| c.disagreement.map(|d| d.spread).unwrap_or(0.0);
                s(y).total_cmp(&s(x))
            }),
        }
        cases
    }
}

/// The gallery's ordering and filtering controls (an ensemble's review only).
pub fn gallery_controls_ui(ui: &mut egui::Ui, view: &mut GalleryView) {
    ui.horizontal(|ui| {
        ui.label("Order:");
        for o in [GalleryOrder::Loss, GalleryOrder::Disagreement] {
            ui.selectable_value(&mut view.order, o, o.words());
        }
    });
    ui.checkbox(
        &mut view.only_disputed,
        "only images the networks do not all agree on",
    );
}

/// One case's disagreement, for the gallery.
pub fn case_line(c: &Case) -> Option<String> {
    c.disagreement.map(|d| d.describe())
}

/// The summary and its chart: accuracy in each tenth of disagreement.
pub fn summary_ui(ui: &mut egui::Ui, s: &DisagreementSummary) {
    ui.label(RichText::new("Accuracy against the networks' disagreement").strong());
    ui.add(
        egui::Label::new(format!(
            "Most-disagreed tenth ({} images): {}; the other {}: {}; difference {}.",
            s.top_n,
            ci_cell(&s.top_accuracy),
            s.rest_n,
            ci_cell(&s.rest_accuracy),
            ci_cell(&s.difference)
        ))
        .wrap(),
    );
    let bars: Vec<Bar> = s
        .tenths
        .iter()
        .enumerate()
        .map(|(k, (spread, acc, n))| {
            Bar::new(k as f64 + 1.0, *acc)
                .width(0.8)
                .name(format!("{n} images, mean spread {spread:.3}"))
        })
        .collect();
    let size = (ui.available_width() - 24.0).clamp(240.0, 520.0);
    Plot::new("review-disagreement")
        .width(size)
        .height(size * 0.5)
        .include_y(0.0)
        .include_y(1.0)
        .include_x(0.5)
        .include_x(10.5)
        .x_axis_label("tenth of the images by disagreement (1: least, 10: most)")
        .y_axis_label("accuracy")
        .allow_drag(false)
        .allow_zoom(false)
        .allow_scroll(false)
        .show(ui, |pu| {
            pu.bar_chart(BarChart::new("accuracy in the tenth", bars));
        });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::disagreement::Disagreement;

    fn case(loss: f64, spread: f32, agree: usize) -> Case {
        Case {
            file: format!("{loss}-{spread}.png"),
            file_bytes: None,
            actual: 0,
            predicted: 1,
            probs: vec![0.4, 0.6],
            loss,
            source: None,
            patient: None,
            disagreement: Some(Disagreement {
                spread,
                agree,
                members: 3,
            }),
        }
    }

    #[test]
    fn the_gallery_orders_by_disagreement_and_keeps_the_disputed_only_when_asked() {
        let cases = [case(2.0, 0.1, 3), case(1.0, 0.4, 2), case(3.0, 0.2, 1)];
        let refs: Vec<&Case> = cases.iter().collect();
        let losses = |v: Vec<&Case>| v.iter().map(|c| c.loss).collect::<Vec<_>>();
        let by_loss = GalleryView::default();
        assert_eq!(losses(by_loss.apply(refs.clone())), [3.0, 2.0, 1.0]);
        let by_spread = GalleryView {
            order: GalleryOrder::Disagreement,
            only_disputed: false,
        };
        assert_eq!(losses(by_spread.apply(refs.clone())), [1.0, 3.0, 2.0]);
        let disputed = GalleryView {
            order: GalleryOrder::Disagreement,
            only_disputed: true,
        };
        assert_eq!(losses(disputed.apply(refs)), [1.0, 3.0]);
    }
}
