//! How far one file's upload is, told on stderr: a bar on a terminal; elsewhere (a log, CI, a
//! pipe) a line when the file starts, at every tenth of it and when it is stored.

use std::{
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use indicatif::{ProgressBar, ProgressStyle};

#[derive(Clone)]
pub struct Progress {
    bar: ProgressBar,
    name: Arc<str>,
    /// Without a bar: the tenths already told.
    told: Arc<AtomicU64>,
}

impl Progress {
    pub fn new(file: &Path, length: u64) -> Self {
        let bar = ProgressBar::new(length);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:20!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        let name: Arc<str> = file
            .file_name()
            .map(|name| name.to_string_lossy().into())
            .unwrap_or_else(|| file.display().to_string().into());
        bar.set_message(name.to_string());
        let progress = Self {
            bar,
            name,
            told: Arc::default(),
        };
        if progress.bar.is_hidden() {
            eprintln!("{}: {length} bytes to send", progress.name);
        }
        progress
    }

    /// A line of its own, above the bar if there is one.
    pub fn say(&self, line: String) {
        match self.bar.is_hidden() {
            true => eprintln!("{line}"),
            false => self.bar.println(line),
        }
    }

    /// The server has the first `offset` bytes.
    pub fn set_position(&self, offset: u64) {
        self.bar.set_position(offset);
        self.tell();
    }

    /// `bytes` more were sent.
    pub fn inc(&self, bytes: u64) {
        self.bar.inc(bytes);
        self.tell();
    }

    /// The file is stored: the bar gives way to one line, so that what is printed next starts a
    /// line of its own.
    pub fn finish(&self, size: u64) {
        self.bar.finish_and_clear();
        eprintln!("{}: stored, {size} bytes", self.name);
    }

    fn tell(&self) {
        let length = self.bar.length().unwrap_or_default();
        if !self.bar.is_hidden() || length == 0 {
            return;
        }
        let position = self.bar.position();
        let tenths = position * 10 / length;
        if self.told.fetch_max(tenths, Ordering::Relaxed) < tenths {
            eprintln!(
                "{}: {}% ({position} of {length} bytes)",
                self.name,
                tenths * 10
            );
        }
    }
}
