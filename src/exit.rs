//! Exit codes and error classes.
//!
//! Every fallible function returns `anyhow::Result`. Errors that should map to
//! a specific exit code carry a [`Classified`] value somewhere in their chain
//! (create them with [`invalid_input`], [`unsupported`], [`output_failed`]);
//! `main` looks for it with [`exit_code_for`]. Anything unclassified is a
//! compose failure (exit 1).

use std::fmt;

/// The class of an error, which decides the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// Installing, post-processing or committing failed (exit 1).
    ComposeFailed,
    /// The command line itself is wrong (exit 2, as clap uses).
    Usage,
    /// A manifest, include, lockfile, .repo file or flag value is invalid (exit 3).
    InvalidInput,
    /// A flag or treefile key that is recognised but not implemented yet (exit 4).
    Unsupported,
    /// The commit was made but an output (export, OCI, push) failed (exit 5).
    OutputFailed,
    /// Another compose holds the lock on the repository (exit 6).
    Locked,
}

impl ErrorClass {
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorClass::ComposeFailed => 1,
            ErrorClass::Usage => 2,
            ErrorClass::InvalidInput => 3,
            ErrorClass::Unsupported => 4,
            ErrorClass::OutputFailed => 5,
            ErrorClass::Locked => 6,
        }
    }
}

/// Text for `--help`: the documented exit codes.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success (including \"No apparent changes since previous commit\")
  1  the compose failed (dependency resolution, scriptlet, post-processing, commit)
  2  the command line is wrong
  3  invalid input: a manifest, include, lockfile, .repo file or flag value
  4  a flag or key that is recognised but not supported yet
  5  the commit was written but an output failed (export, OCI image, push)
  6  another compose holds the lock on the repository";

/// An error that carries its class. Put it into an anyhow chain.
#[derive(Debug)]
pub struct Classified {
    pub class: ErrorClass,
    pub message: String,
}

impl fmt::Display for Classified {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Classified {}

fn classified(class: ErrorClass, message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(Classified {
        class,
        message: message.into(),
    })
}

/// Bad user input: say which file, which key, and what to do.
pub fn invalid_input(message: impl Into<String>) -> anyhow::Error {
    classified(ErrorClass::InvalidInput, message)
}

/// A wrong command line that clap could not catch (e.g. a flag required only in some modes).
pub fn usage(message: impl Into<String>) -> anyhow::Error {
    classified(ErrorClass::Usage, message)
}

/// A recognised flag or key that is not implemented yet.
pub fn unsupported(message: impl Into<String>) -> anyhow::Error {
    classified(ErrorClass::Unsupported, message)
}

/// An output step (export, OCI, push) failed after the commit was written.
pub fn output_failed(message: impl Into<String>) -> anyhow::Error {
    classified(ErrorClass::OutputFailed, message)
}

/// The repository is locked by another compose.
pub fn locked(message: impl Into<String>) -> anyhow::Error {
    classified(ErrorClass::Locked, message)
}

/// Reclassify an existing error (keeps its chain and context).
pub fn with_class(err: anyhow::Error, class: ErrorClass) -> anyhow::Error {
    if class_of(&err).is_some() {
        return err;
    }
    let message = format!("{err:#}");
    err.context(Classified { class, message })
}

/// The class found in the chain, if any (outermost first).
pub fn class_of(err: &anyhow::Error) -> Option<ErrorClass> {
    // A `Classified` attached with `.context()` is only visible to
    // `downcast_ref` on the error itself, not through `chain()`.
    if let Some(c) = err.downcast_ref::<Classified>() {
        return Some(c.class);
    }
    err.chain()
        .find_map(|e| e.downcast_ref::<Classified>())
        .map(|c| c.class)
}

/// The exit code for an error: its class, or 1.
pub fn exit_code_for(err: &anyhow::Error) -> i32 {
    class_of(err)
        .unwrap_or(ErrorClass::ComposeFailed)
        .exit_code()
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn class_survives_context() {
        let e: anyhow::Result<()> = Err(invalid_input("bad key 'foo'"));
        let e = e.context("Loading treefile x.yaml").unwrap_err();
        assert_eq!(exit_code_for(&e), 3);
        assert!(format!("{e:#}").contains("bad key 'foo'"));
    }

    #[test]
    fn unclassified_is_compose_failure() {
        let e = anyhow::anyhow!("dnf failed");
        assert_eq!(exit_code_for(&e), 1);
        let e = with_class(e, ErrorClass::OutputFailed);
        assert_eq!(exit_code_for(&e), 5);
    }
}
