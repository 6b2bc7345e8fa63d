//! Events from the trainer thread to the UI: a bounded channel plus a repaint request.
use crate::train::events::{EventSink, TrainEvent};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};

/// Sends events to the UI thread and wakes it.
pub struct GuiSink {
    tx: SyncSender<TrainEvent>,
    ctx: egui::Context,
}

impl GuiSink {
    /// A sink and the receiver the UI drains each frame.
    pub fn new(ctx: egui::Context) -> (Self, Receiver<TrainEvent>) {
        let (tx, rx) = sync_channel(16_384);
        (Self { tx, ctx }, rx)
    }
}

impl EventSink for GuiSink {
    fn send(&self, e: TrainEvent) {
        // Full: the UI is not drawing (minimised); wait rather than lose an event.
        if let Err(TrySendError::Full(e)) = self.tx.try_send(e) {
            let _ = self.tx.send(e);
        }
        self.ctx.request_repaint();
    }
}
