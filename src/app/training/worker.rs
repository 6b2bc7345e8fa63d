//! The Training tab's background work through one job/reply channel: the dataset scan and
//! the batch preview on short threads, training, resuming and the LR finder on the
//! "trainer" thread. The trainer thread's handle is kept: dropping the worker (closing the
//! window) stops the run after its batch and waits for its checkpoint.
use crate::data::check::{summarize, DatasetSummary};
use crate::data::loader::{preview_batch, LoaderConfig, PreviewImage};
use crate::device::DeviceChoice;
use crate::train::events::{Control, EventSink, TrainEvent};
use crate::train::worker::{self, Job};
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

/// What comes back from background work.
#[derive(Debug)]
pub enum Reply {
    /// A dataset folder was listed.
    Scanned {
        /// What was scanned (the folder and the options).
        key: String,
        /// What it holds, or why it cannot be used.
        result: Result<DatasetSummary, String>,
    },
    /// A preview batch of the data set in this folder, with each image's class name (from
    /// the data set the preview itself opened: the folder's scan may not have arrived yet).
    Preview(PathBuf, Result<Vec<(PreviewImage, String)>, String>),
    /// An event of the training thread.
    Train(TrainEvent),
    /// The training thread ended; its events have all arrived.
    JobEnded,
    /// Bytes of a weights download so far, and in all when known.
    Fetching(u64, Option<u64>),
    /// A weights download ended: the verified file, or why not.
    Fetched(Result<PathBuf, String>),
}

/// Sends the trainer's events as replies and wakes the UI.
struct ChannelSink {
    tx: Sender<Reply>,
    ctx: egui::Context,
}

impl EventSink for ChannelSink {
    fn send(&self, e: TrainEvent) {
        let _ = self.tx.send(Reply::Train(e));
        self.ctx.request_repaint();
    }
}

/// Handle to the tab's background work.
pub struct Worker {
    tx: Sender<Reply>,
    rx: Receiver<Reply>,
    ctx: egui::Context,
    trainer: Option<(JoinHandle<()>, Arc<Control>)>,
}

impl Worker {
    /// A worker whose replies wake `ctx`.
    pub fn new(ctx: egui::Context) -> Self {
        let (tx, rx) = channel();
        Self {
            tx,
            rx,
            ctx,
            trainer: None,
        }
    }

    /// Replies that have arrived, oldest first.
    pub fn poll(&mut self) -> Vec<Reply> {
        let replies: Vec<Reply> = self.rx.try_iter().collect();
        if replies.iter().any(|r| matches!(r, Reply::JobEnded)) {
            if let Some((h, _)) = self.trainer.take() {
                let _ = h.join();
            }
        }
        replies
    }

    fn spawn(&self, name: &str, f: impl FnOnce(&Sender<Reply>) + Send + 'static) {
        let (tx, ctx) = (self.tx.clone(), self.ctx.clone());
        let spawned = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                f(&tx);
                ctx.request_repaint();
            });
        if let Err(e) = spawned {
            let _ = self.tx.send(Reply::Train(TrainEvent::Log(format!(
                "cannot start the {name} thread: {e}"
            ))));
        }
    }

    /// Lists the dataset folder `dir` (nothing decoded); `key` comes back with the result.
    pub fn scan(&self, key: String, dir: String, opts: crate::data::split::DataOptions) {
        self.spawn("dataset-scan", move |tx| {
            let result =
                summarize(std::path::Path::new(dir.trim()), &opts).map_err(|e| e.to_string());
            let _ = tx.send(Reply::Scanned { key, result });
        });
    }

    /// Builds a training batch of `dir` as the network gets it.
    pub fn preview(
        &self,
        dir: PathBuf,
        opts: crate::data::split::DataOptions,
        cfg: LoaderConfig,
        epoch: u64,
    ) {
        self.spawn("batch-preview", move |tx| {
            let r = crate::data::findings::dataset::open_any(&dir, &opts)
                .and_then(|ds| {
                    let classes = ds.classes;
                    let images = preview_batch(ds.train.samples, cfg, epoch)?;
                    Ok(images
                        .into_iter()
                        .map(|p| {
                            let name = match &p.findings {
                                // A multi-label image: the findings it shows.
                                Some(codes) => {
                                    let present: Vec<&str> = classes
                                        .iter()
                                        .zip(codes)
                                        .filter(|(_, &c)| c == crate::data::findings::PRESENT)
                                        .map(|(n, _)| n.as_str())
                                        .collect();
                                    if present.is_empty() {
                                        "no finding".to_string()
                                    } else {
                                        present.join(", ")
                                    }
                                }
                                None => classes.get(p.label).cloned().unwrap_or_default(),
                            };
                            (p, name)
                        })
                        .collect())
                })
                .map_err(|e| e.to_string());
            let _ = tx.send(Reply::Preview(dir, r));
        });
    }

    /// Downloads torchvision's weights `entry` into the user's weights folder.
    pub fn fetch_weights(&self, entry: &'static crate::model::io::zoo::ZooEntry) {
        let ctx = self.ctx.clone();
        self.spawn("weights-fetch", move |tx| {
            let r = (|| -> crate::Result<PathBuf> {
                let dir = crate::model::io::zoo::weights_dir()?;
                let base = std::env::var("COVID_RESNET_WEIGHTS_URL")
                    .unwrap_or_else(|_| crate::model::io::zoo::DEFAULT_BASE_URL.into());
                let url = format!("{}/{}", base.trim_end_matches('/'), entry.file);
                let dest = dir.join(entry.file);
                let hint = crate::fetch::manual_hint(
                    &url,
                    &dest,
                    "choose the file with Browse… beside Pretrained weights",
                );
                let mut last = std::time::Instant::now();
                crate::fetch::fetch(
                    &crate::fetch::Download {
                        url: &url,
                        dest: &dest,
                        sha256: entry.sha256,
                        len: entry.bytes,
                        manual: &hint,
                        stall: crate::fetch::DEFAULT_STALL,
                    },
                    &std::sync::atomic::AtomicBool::new(false),
                    |done, total| {
                        if last.elapsed().as_millis() > 100 {
                            last = std::time::Instant::now();
                            let _ = tx.send(Reply::Fetching(done, total));
                            ctx.request_repaint();
                        }
                    },
                )
                .map(|f| f.path)
            })();
            let _ = tx.send(Reply::Fetched(r.map_err(|e| e.to_string())));
        });
    }

    /// True while a training job runs.
    pub fn training(&self) -> bool {
        self.trainer.is_some()
    }

    /// Starts `job` on the "trainer" thread.
    pub fn start(
        &mut self,
        job: Job,
        device: DeviceChoice,
        control: Arc<Control>,
    ) -> Result<(), String> {
        if self.trainer.is_some() {
            return Err("a job is already running".into());
        }
        let sink: Arc<dyn EventSink> = Arc::new(ChannelSink {
            tx: self.tx.clone(),
            ctx: self.ctx.clone(),
        });
        let (tx, ctx, c) = (self.tx.clone(), self.ctx.clone(), control.clone());
        let h = std::thread::Builder::new()
            .name("trainer".into())
            .spawn(move || {
                let _ = worker::run(job, device, sink, c);
                let _ = tx.send(Reply::JobEnded);
                ctx.request_repaint();
            })
            .map_err(|e| format!("cannot start the trainer thread: {e}"))?;
        self.trainer = Some((h, control));
        Ok(())
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some((h, control)) = self.trainer.take() {
            // Finish the batch, write the checkpoint, end: nothing is lost on close.
            control.stop();
            control.resume();
            let _ = h.join();
        }
    }
}
