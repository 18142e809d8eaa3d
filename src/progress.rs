//! Progress reporting on stderr: phase announcements, terminal bars, and
//! JSON-lines events for CI (`--progress=json`).
//!
//! One process-wide reporter, set once by the CLI with [`init`]; library code
//! calls the free functions ([`phase`], [`step`], [`note`], [`done`],
//! [`bar`]). Before `init` (e.g. in tests) output is plain lines. Not for
//! results: those go to stdout or the compose JSON.

use std::io::{IsTerminal, Write};
use std::sync::OnceLock;
use std::time::Instant;

/// What `--progress` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum ProgressMode {
    /// Bars on a terminal, plain lines otherwise.
    #[default]
    Auto,
    /// Plain lines.
    Plain,
    /// One JSON object per line.
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Terminal,
    Plain,
    Json,
}

struct Reporter {
    style: Style,
    start: Instant,
}

static REPORTER: OnceLock<Reporter> = OnceLock::new();

/// Set the process-wide mode (first call wins).
pub fn init(mode: ProgressMode) {
    let style = match mode {
        ProgressMode::Json => Style::Json,
        ProgressMode::Plain => Style::Plain,
        ProgressMode::Auto if std::io::stderr().is_terminal() => Style::Terminal,
        ProgressMode::Auto => Style::Plain,
    };
    let _ = REPORTER.set(Reporter {
        style,
        start: Instant::now(),
    });
}

fn reporter() -> &'static Reporter {
    REPORTER.get_or_init(|| Reporter {
        style: Style::Plain,
        start: Instant::now(),
    })
}

/// True when events are JSON lines (callers may skip human-only output).
pub fn is_json() -> bool {
    reporter().style == Style::Json
}

fn emit_json(fields: serde_json::Map<String, serde_json::Value>) {
    let r = reporter();
    let mut obj = serde_json::Map::new();
    obj.insert(
        "elapsed".into(),
        serde_json::json!((r.start.elapsed().as_millis() as f64) / 1000.0),
    );
    obj.extend(fields);
    let line = serde_json::Value::Object(obj).to_string();
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

fn fields(pairs: &[(&str, serde_json::Value)]) -> serde_json::Map<String, serde_json::Value> {
    pairs
        .iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect()
}

/// A phase starts: `==> install: Installing 34 packages`.
pub fn phase(name: &str, message: &str) {
    match reporter().style {
        Style::Json => emit_json(fields(&[
            ("event", "phase".into()),
            ("phase", name.into()),
            ("message", message.into()),
        ])),
        _ => eprintln!("==> {name}: {message}"),
    }
}

/// A phase finished, with how long it took.
pub fn done(name: &str, message: &str, seconds: f64) {
    match reporter().style {
        Style::Json => emit_json(fields(&[
            ("event", "done".into()),
            ("phase", name.into()),
            ("message", message.into()),
            ("seconds", serde_json::json!(seconds)),
        ])),
        _ => eprintln!("    {name} done in {seconds:.1}s: {message}"),
    }
}

/// A progress step inside a phase.
pub fn step(name: &str, done: u64, total: Option<u64>, bytes: Option<u64>) {
    match reporter().style {
        Style::Json => emit_json(fields(&[
            ("event", "progress".into()),
            ("phase", name.into()),
            ("done", done.into()),
            (
                "total",
                total.map(Into::into).unwrap_or(serde_json::Value::Null),
            ),
            (
                "bytes",
                bytes.map(Into::into).unwrap_or(serde_json::Value::Null),
            ),
        ])),
        _ => match total {
            Some(t) => eprintln!("    {name}: {done}/{t}"),
            None => eprintln!("    {name}: {done}"),
        },
    }
}

/// A line of information (also used for warnings, prefixed by the caller).
pub fn note(message: &str) {
    match reporter().style {
        Style::Json => emit_json(fields(&[
            ("event", "note".into()),
            ("message", message.into()),
        ])),
        _ => eprintln!("{message}"),
    }
}

/// A bar for a counted step: an indicatif bar on a terminal, otherwise step
/// events at most every 10%.
pub struct Bar {
    name: String,
    total: u64,
    last_reported: u64,
    bar: Option<indicatif::ProgressBar>,
}

/// Start a bar for `total` items of phase `name`.
pub fn bar(name: &str, total: u64) -> Bar {
    let bar = (reporter().style == Style::Terminal).then(|| {
        let b = indicatif::ProgressBar::new(total);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("    {prefix} [{bar:30}] {pos}/{len} {elapsed}")
        {
            b.set_style(style.progress_chars("=> "));
        }
        b.set_prefix(name.to_string());
        b
    });
    Bar {
        name: name.to_string(),
        total,
        last_reported: 0,
        bar,
    }
}

impl Bar {
    /// Set the position to `done` items.
    pub fn set(&mut self, done: u64) {
        if let Some(b) = &self.bar {
            b.set_position(done);
            return;
        }
        let every = if self.total == 0 {
            1000
        } else {
            (self.total / 10).max(1)
        };
        if done == self.total || done >= self.last_reported + every {
            self.last_reported = done;
            step(
                &self.name,
                done,
                (self.total > 0).then_some(self.total),
                None,
            );
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
