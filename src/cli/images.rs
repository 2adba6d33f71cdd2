//! `drover images push IMAGE... [--minion NAME...]`: images from this host's Docker Engine to
//! the minions (`drover::images`), every minion at once, a progress bar per minion on a
//! terminal, and one summary line per image and minion: `m1: app:1 sent 1 layer (2.1 kB), 2
//! layers there already, 0.4 s`. Exit 0 when every push succeeded, 2 otherwise.

use super::{fail, Context, EXIT_ERROR, EXIT_OK};
use drover::images::PushProgress;
use drover::minion::Minion;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::collections::HashMap;
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::Arc;

pub fn push(cx: &Context, images: &[String], only: &[String]) -> ExitCode {
    let specs = match super::minions::specs(cx) {
        Ok(s) => s,
        Err(e) => return fail(&e),
    };
    if let Some(unknown) = only.iter().find(|n| !specs.iter().any(|s| &s.name == *n)) {
        return fail(&format!("no minion named `{unknown}`"));
    }
    let mut minions = Vec::new();
    for spec in specs {
        if only.is_empty() || only.contains(&spec.name) {
            match Minion::new(spec) {
                Ok(m) => minions.push(Arc::new(m)),
                Err(e) => return fail(&e.to_string()),
            }
        }
    }
    let local = match drover::images::local_engine() {
        Ok(d) => d,
        Err(e) => return fail(&e.to_string()),
    };
    let runtime = super::runtime();
    // Every image read first, so one the local engine lacks changes nothing anywhere.
    let mut found = Vec::new();
    for name in images {
        match runtime.block_on(drover::images::inspect_local(&local, name)) {
            Ok(i) => found.push(i),
            Err(e) => return fail(&e.to_string()),
        }
    }
    let mut failed = false;
    for image in found {
        let name = &image.name;
        let bars = Bars::new(std::io::stderr().is_terminal(), name);
        let progress: Arc<dyn PushProgress> = bars.clone();
        let results = runtime.block_on(drover::images::push(&local, &image, &minions, progress));
        bars.clear();
        for (minion, result) in results {
            match result {
                Ok(sent) => println!("{minion}: {name} {}", sent.summary()),
                Err(e) => {
                    failed = true;
                    eprintln!("drover: error: pushing {name} to {minion}: {e}");
                }
            }
        }
    }
    ExitCode::from(if failed { EXIT_ERROR } else { EXIT_OK })
}

/// A progress bar per minion on a terminal (none otherwise: the summary lines say it all).
struct Bars {
    multi: Option<MultiProgress>,
    image: String,
    bars: std::sync::Mutex<HashMap<String, ProgressBar>>,
}

impl Bars {
    fn new(terminal: bool, image: &str) -> Arc<Bars> {
        Arc::new(Bars {
            multi: terminal.then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
            image: image.to_string(),
            bars: Default::default(),
        })
    }

    fn clear(&self) {
        if let Some(multi) = &self.multi {
            let _ = multi.clear();
        }
    }
}

impl PushProgress for Bars {
    fn starting(&self, minion: &str, bytes: Option<u64>) {
        let Some(multi) = &self.multi else { return };
        // Without a length (only some layers go) the bar says the bytes so far, not a share.
        let (bar, template) = match bytes {
            Some(n) => (
                ProgressBar::new(n),
                "{prefix:>12} {wide_bar} {bytes}/{total_bytes} {bytes_per_sec}",
            ),
            None => (
                ProgressBar::no_length(),
                "{prefix:>12} {spinner} {bytes} {bytes_per_sec}",
            ),
        };
        let bar = multi.add(bar);
        bar.set_style(ProgressStyle::with_template(template).expect("template"));
        bar.set_prefix(format!("{minion} {}", self.image));
        self.bars
            .lock()
            .expect("bars")
            .insert(minion.to_string(), bar);
    }

    fn sent(&self, minion: &str, bytes: u64) {
        if let Some(bar) = self.bars.lock().expect("bars").get(minion) {
            // The length was the image's size, a little under its save stream.
            if let Some(len) = bar.length().filter(|l| bar.position() + bytes > *l) {
                bar.set_length(len.max(bar.position() + bytes));
            }
            bar.inc(bytes);
        }
    }
}
