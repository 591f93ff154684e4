//! Progress reporting for downloads, so a command line can draw a progress bar.

use std::fmt;
use std::path::Path;

use crate::error::ModelsError;

/// What a pull is doing at the moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// Receiving bytes from a URL (`item` is the URL).
    Download,
    /// Hashing an already downloaded archive before reusing it (`item` is its file name).
    Verify,
    /// Copying a member out of an archive (`item` is the member path).
    Extract,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Stage::Download => "downloading",
            Stage::Verify => "verifying",
            Stage::Extract => "extracting",
        })
    }
}

/// One progress report: `done` of `total` bytes of `item` in `stage`, for `artifact`.
///
/// A new `(artifact, stage, item)` starts at `done == 0`; `done` grows monotonically
/// until the next one starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProgressEvent<'a> {
    /// The artifact's manifest name.
    pub artifact: &'a str,
    pub stage: Stage,
    /// The URL, archive file name or member being worked on.
    pub item: &'a str,
    /// Bytes done in this stage and item.
    pub done: u64,
    /// Bytes in total for this stage and item, when known.
    pub total: Option<u64>,
}

/// Receives progress of [`crate::Cache::pull`]. Every method is called from the task
/// running the pull; implementations should be quick.
///
/// Any `Fn(&ProgressEvent) + Send + Sync` closure is a `Progress`; [`NoProgress`] ignores
/// everything; with the `progress` feature, [`IndicatifProgress`] draws a bar.
pub trait Progress: Send + Sync {
    /// Bytes moved.
    fn update(&self, event: &ProgressEvent<'_>);

    /// A source failed and the next one (if any) will be tried.
    fn source_failed(&self, _artifact: &str, _source: &str, _error: &ModelsError) {}

    /// The artifact is verified and in place at `path`.
    fn finished(&self, _artifact: &str, _path: &Path) {}
}

/// A [`Progress`] that ignores all reports.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn update(&self, _event: &ProgressEvent<'_>) {}
}

impl<F> Progress for F
where
    F: Fn(&ProgressEvent<'_>) + Send + Sync,
{
    fn update(&self, event: &ProgressEvent<'_>) {
        self(event)
    }
}

#[cfg(feature = "progress")]
pub use bar::IndicatifProgress;

#[cfg(feature = "progress")]
mod bar {
    use std::path::Path;
    use std::sync::Mutex;

    use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

    use super::{Progress, ProgressEvent, Stage};
    use crate::error::ModelsError;

    /// A [`Progress`] drawing one `indicatif` bar (on stderr) that restarts for each
    /// stage and item, and prints failed sources and finished artifacts above it.
    #[derive(Debug)]
    pub struct IndicatifProgress {
        bar: ProgressBar,
        current: Mutex<Option<(String, Stage, String)>>,
    }

    impl Default for IndicatifProgress {
        fn default() -> Self {
            Self::new()
        }
    }

    impl IndicatifProgress {
        /// A bar on stderr (hidden when stderr is not a terminal).
        pub fn new() -> Self {
            Self::with_bar(ProgressBar::with_draw_target(
                None,
                ProgressDrawTarget::stderr(),
            ))
        }

        /// Uses the given bar (e.g. one added to a `MultiProgress`, or a hidden one).
        pub fn with_bar(bar: ProgressBar) -> Self {
            let style = ProgressStyle::with_template(
                "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            IndicatifProgress {
                bar,
                current: Mutex::new(None),
            }
        }

        /// Removes the bar from the terminal (call once all pulls are over).
        pub fn finish(&self) {
            self.bar.finish_and_clear();
        }

        /// The underlying bar.
        pub fn bar(&self) -> &ProgressBar {
            &self.bar
        }
    }

    impl IndicatifProgress {
        /// A line above the bar, or on stderr when the bar is hidden (not a terminal).
        fn say(&self, line: String) {
            if self.bar.is_hidden() {
                eprintln!("{line}");
            } else {
                self.bar.println(line);
            }
        }
    }

    /// The last path segment of a URL or member, for a short message.
    fn short(item: &str) -> &str {
        item.rsplit('/').next().unwrap_or(item)
    }

    impl Progress for IndicatifProgress {
        fn update(&self, ev: &ProgressEvent<'_>) {
            if let Ok(mut cur) = self.current.lock() {
                let same = cur
                    .as_ref()
                    .is_some_and(|(a, s, i)| a == ev.artifact && *s == ev.stage && i == ev.item);
                if !same {
                    *cur = Some((ev.artifact.to_string(), ev.stage, ev.item.to_string()));
                    self.bar.reset();
                    self.bar.set_message(format!(
                        "{} {} {}",
                        ev.artifact,
                        ev.stage,
                        short(ev.item)
                    ));
                }
            }
            if let Some(total) = ev.total {
                self.bar.set_length(total);
            }
            self.bar.set_position(ev.done);
        }

        fn source_failed(&self, artifact: &str, source: &str, error: &ModelsError) {
            self.say(format!("{artifact}: source failed: {source}: {error}"));
        }

        fn finished(&self, artifact: &str, path: &Path) {
            self.say(format!("{artifact}: verified {}", path.display()));
            if let Ok(mut cur) = self.current.lock() {
                *cur = None;
            }
        }
    }
}
