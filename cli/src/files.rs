//! Files the commands write (exports, plots, saved specs, space definitions).
//!
//! Two rules keep a mistyped path from losing data. A command never writes over the database it
//! reads (`effnas export --db runs.db --out runs.db` once replaced the runs with CSV), and every
//! file is written whole into a temporary file beside it and then renamed over the target, so a
//! failure half-way (a full disk, a drawing error) leaves the old file exactly as it was.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{bail, Context, Result};
use effnas_space::error::Echo;

/// The files SQLite keeps beside a database, which are as much a part of it as the file itself.
const COMPANIONS: [&str; 3] = ["-wal", "-shm", "-journal"];

/// Refuses `output` when it is the database `db` (a path or an `sqlite://` URL) or one of its
/// companion files, comparing canonical paths so that symbolic links and `./` spellings are seen
/// through. `flag` names the option that gave `output` in the message.
pub fn refuse_database(flag: &str, output: &Path, db: &str) -> Result<()> {
    let Some(db_path) = effnas_store::Store::path_of(db) else { return Ok(()) };
    // A database that does not exist yet cannot be overwritten.
    let Ok(db_path) = fs::canonicalize(&db_path) else { return Ok(()) };
    let Some(resolved_output) = resolved(output) else { return Ok(()) };
    let mut protected = vec![db_path.clone()];
    protected.extend(COMPANIONS.iter().map(|suffix| {
        let mut name = db_path.clone().into_os_string();
        name.push(suffix);
        PathBuf::from(name)
    }));
    if protected.contains(&resolved_output) {
        bail!(
            "{flag} {}: that is the database {} (or one of its files); writing there would destroy it",
            output.display(),
            Echo(db)
        );
    }
    Ok(())
}

/// Where writing to `path` would land: the canonical path of the file (following a symbolic
/// link) or, for a file that does not exist yet, of its directory joined with its name.
fn resolved(path: &Path) -> Option<PathBuf> {
    if let Ok(existing) = fs::canonicalize(path) {
        return Some(existing);
    }
    let name = path.file_name()?;
    Some(fs::canonicalize(directory_of(path)).ok()?.join(name))
}

/// The directory a file path lives in (`.` for a bare name).
fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// Writes `path` whole or not at all: `write` fills a buffered temporary file beside it, which
/// then replaces `path` in one rename.
pub fn write_atomically(path: &Path, write: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    replace_file(path, |temporary| {
        let file = File::create(temporary)?;
        let mut writer = BufWriter::new(file);
        write(&mut writer)?;
        let file = writer.into_inner().map_err(io::IntoInnerError::into_error)?;
        // On disk before the rename, so a crash leaves the old file or the whole new one. A
        // device such as /dev/null cannot be synced, and needs not be.
        if file.metadata()?.is_file() {
            file.sync_all()?;
        }
        Ok(())
    })
}

/// Replaces `path` with the file that `create` writes at the temporary path it is given (same
/// directory, same extension, so libraries that pick a format by extension still work). When
/// `create` fails, the temporary file is removed and `path` is untouched.
///
/// A symbolic link is followed: the file it points to is replaced and the link stays. Something
/// that is not a regular file (`/dev/null`, a named pipe) cannot be replaced by renaming (that
/// would put a plain file where the device was), so `create` writes to it directly.
pub fn replace_file(path: &Path, create: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    check_writable_target(path)?;
    let target = fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let existing = fs::metadata(&target).ok();
    if existing.as_ref().is_some_and(|meta| !meta.is_file()) {
        return create(&target).with_context(|| format!("writing {}", path.display()));
    }
    let temporary =
        reserve_temporary(&target).with_context(|| format!("{}: cannot write there", path.display()))?;
    let result = create(&temporary).with_context(|| format!("writing {}", path.display())).and_then(|()| {
        if let Some(meta) = &existing {
            // The new file keeps the old one's permissions, as an in-place write would.
            fs::set_permissions(&temporary, meta.permissions())?;
        }
        fs::rename(&temporary, &target).with_context(|| format!("replacing {}", path.display()))
    });
    if result.is_err() {
        // Best effort: the error that matters is the one being returned.
        let _ = fs::remove_file(&temporary);
    }
    result
}

/// Catches the common mistakes before any work, with a message that says what is wrong.
fn check_writable_target(path: &Path) -> Result<()> {
    if path.as_os_str().is_empty() {
        bail!("an empty file name was given");
    }
    if path.is_dir() {
        bail!("{}: is a directory; give a file name", path.display());
    }
    let directory = directory_of(path);
    if !directory.is_dir() {
        bail!("{}: the directory {} does not exist", path.display(), directory.display());
    }
    Ok(())
}

/// Creates an empty, uniquely named temporary file beside `path` (`.name.<pid>.<n>.tmp.ext`),
/// never reusing an existing name.
fn reserve_temporary(path: &Path) -> io::Result<PathBuf> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let name = path.file_name().map_or_else(|| "output".into(), |n| n.to_string_lossy());
    let extension = path.extension().map_or(String::new(), |e| format!(".{}", e.to_string_lossy()));
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let candidate = directory_of(path).join(format!(".{name}.{}.{n}.tmp{extension}", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&candidate) {
            Ok(_) => return Ok(candidate),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failing unwrap is a failing test
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = std::env::temp_dir().join(format!("effnas-files-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let target = dir.join("out.csv");
        fs::write(&target, "old").unwrap();
        let failed = write_atomically(&target, |w| {
            w.write_all(b"half")?;
            bail!("drawing failed")
        });
        assert!(failed.is_err());
        assert_eq!(fs::read_to_string(&target).unwrap(), "old");
        write_atomically(&target, |w| Ok(w.write_all(b"new")?)).unwrap();
        assert_eq!(fs::read_to_string(&target).unwrap(), "new");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "a temporary file was left behind");
        fs::remove_dir_all(&dir).unwrap();
    }
}
