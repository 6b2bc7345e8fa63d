//! The window's errors and notices in one place and one style: each tab pushes what the
//! user should read; the strip under the tab bar shows the newest few with a dismiss
//! button. Messages that belong to a field (a dataset folder that is not one) are drawn
//! beside it with [`error_text`].
use egui::{Color32, RichText};

/// How much a notice matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    /// Something worked (a checkpoint saved, files written).
    Info,
    /// Something to look at (a dialog that could not open).
    Warning,
    /// Something failed.
    Error,
}

/// What a notice is about: the tab or part of it that said it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Topic {
    /// The Training tab.
    Training,
    /// The Viewer tab's images and model.
    Viewer,
    /// The Viewer's test-set review.
    Review,
}

impl Topic {
    /// The topic as the strip shows it.
    pub fn name(self) -> &'static str {
        match self {
            Topic::Training => "Training",
            Topic::Viewer => "Viewer",
            Topic::Review => "Review",
        }
    }
}

/// One message.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    /// Importance.
    pub level: Level,
    /// What it is about.
    pub topic: Topic,
    /// The message.
    pub text: String,
}

/// Every notice not yet dismissed, oldest first.
#[derive(Debug, Default)]
pub struct Notices {
    items: Vec<Notice>,
}

/// Notices kept; older ones are dropped.
const KEEP: usize = 20;
/// Notices shown at once.
const SHOWN: usize = 4;

impl Notices {
    /// Adds a notice; the same text on the same topic replaces its older copy.
    pub fn push(&mut self, level: Level, topic: Topic, text: impl Into<String>) {
        let text = text.into();
        self.items.retain(|n| !(n.topic == topic && n.text == text));
        self.items.push(Notice { level, topic, text });
        if self.items.len() > KEEP {
            self.items.remove(0);
        }
    }

    /// An error.
    pub fn error(&mut self, topic: Topic, text: impl Into<String>) {
        self.push(Level::Error, topic, text)
    }

    /// Something that went well.
    pub fn info(&mut self, topic: Topic, text: impl Into<String>) {
        self.push(Level::Info, topic, text)
    }

    /// Something to look at.
    pub fn warn(&mut self, topic: Topic, text: impl Into<String>) {
        self.push(Level::Warning, topic, text)
    }

    /// Removes the notices of `topic` (when what they were about is done again).
    pub fn clear_topic(&mut self, topic: Topic) {
        self.items.retain(|n| n.topic != topic);
    }

    /// The notices, oldest first.
    pub fn items(&self) -> &[Notice] {
        &self.items
    }

    /// The newest error of `topic`, if any.
    pub fn last_error(&self, topic: Topic) -> Option<&str> {
        self.items
            .iter()
            .rev()
            .find(|n| n.topic == topic && n.level == Level::Error)
            .map(|n| n.text.as_str())
    }

    /// Draws the newest notices with a dismiss button each.
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        let mut dismiss = None;
        let start = self.items.len().saturating_sub(SHOWN);
        for (i, n) in self.items.iter().enumerate().skip(start) {
            ui.horizontal_wrapped(|ui| {
                if ui
                    .small_button("×")
                    .on_hover_text("dismiss this message")
                    .clicked()
                {
                    dismiss = Some(i);
                }
                ui.label(RichText::new(format!("{}:", n.topic.name())).strong());
                ui.add(egui::Label::new(styled(n.level, &n.text)).wrap());
            });
        }
        if let Some(i) = dismiss {
            self.items.remove(i);
        }
    }
}

fn colour(level: Level) -> Color32 {
    match level {
        Level::Info => Color32::from_rgb(110, 190, 120),
        Level::Warning => Color32::from_rgb(230, 170, 40),
        Level::Error => Color32::from_rgb(235, 90, 80),
    }
}

fn styled(level: Level, text: &str) -> RichText {
    RichText::new(text).color(colour(level))
}

/// A message that belongs to a field, in the notices' error style.
pub fn error_text(ui: &mut egui::Ui, text: &str) -> egui::Response {
    ui.add(egui::Label::new(styled(Level::Error, text)).wrap())
}

/// A warning that belongs to a field, in the notices' warning style.
pub fn warning_text(ui: &mut egui::Ui, text: &str) -> egui::Response {
    ui.add(egui::Label::new(styled(Level::Warning, text)).wrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_replace_and_topics_clear() {
        let mut n = Notices::default();
        n.error(Topic::Training, "boom");
        n.info(Topic::Viewer, "saved");
        n.error(Topic::Training, "boom");
        assert_eq!(n.items().len(), 2);
        assert_eq!(n.items()[1].text, "boom");
        assert_eq!(n.last_error(Topic::Training), Some("boom"));
        n.clear_topic(Topic::Training);
        assert_eq!(n.items().len(), 1);
        for i in 0..30 {
            n.warn(Topic::Viewer, format!("w{i}"));
        }
        assert_eq!(n.items().len(), KEEP);
    }
}
