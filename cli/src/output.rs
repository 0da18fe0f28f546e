//! Standard output that reports failure instead of panicking.
//!
//! `println!` panics when stdout cannot be written (a full disk behind `> file`, `/dev/full`, a
//! closed pipe). Every command prints through [`outln!`] and [`out!`] instead, which return the
//! failure as an error: a full disk becomes a one-line error and exit status 2, and a reader that
//! went away (`effnas trials | head`) ends the command quietly, as SIGPIPE would.

use std::fmt;
use std::io::{self, Write};

/// The reader of stdout went away (a closed pipe). Not worth a message: the user stopped reading.
#[derive(Debug)]
pub struct StdoutClosed;

impl fmt::Display for StdoutClosed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("standard output was closed")
    }
}

impl std::error::Error for StdoutClosed {}

/// Writes formatted text to stdout and flushes it, so a failure surfaces here and not at exit
/// (where Rust ignores it).
pub fn write_stdout(args: fmt::Arguments<'_>) -> anyhow::Result<()> {
    let mut stdout = io::stdout().lock();
    match stdout.write_fmt(args).and_then(|()| stdout.flush()) {
        Ok(()) => Ok(()),
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Err(StdoutClosed.into()),
        Err(error) => Err(anyhow::Error::new(error).context("cannot write to standard output")),
    }
}

/// `print!` that returns an error instead of panicking; use with `?`.
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!($($arg)*))
    };
}

/// `println!` that returns an error instead of panicking; use with `?`.
macro_rules! outln {
    () => {
        $crate::output::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {out, outln};
