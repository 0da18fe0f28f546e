//! Progress bars of the long-running commands.

use effnas_store::RunId;
use indicatif::{ProgressBar, ProgressStyle};

/// The progress bar of a long command (`search`, `compound`): `done` of `total` `unit`s.
pub fn bar(what: &str, unit: &str, run: RunId, total: u64, done: u64) -> ProgressBar {
    let bar = ProgressBar::new(total).with_position(done);
    let template =
        format!("{{spinner}} {what} {{prefix}} [{{bar:30}}] {{pos}}/{{len}} {unit}, {{elapsed}} elapsed, ETA {{eta}} | {{msg}}");
    bar.set_style(
        ProgressStyle::with_template(&template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(run.to_string());
    bar
}
