//! Hostile input, files and messages: no command writes over the database it reads, a mistyped
//! database is never created by a command that only reads it, and every refusal is one line
//! (exit status 2) that says what is wrong without repeating itself or echoing a flood of input.

mod common;

use std::path::{Path, PathBuf};

use common::{effnas, fails_naming, stdout_of};

/// A database with one finished oracle search, in its own folder.
struct Fixture {
    dir: tempfile::TempDir,
    db: PathBuf,
}

impl Fixture {
    /// `name` is the database's file name (a plot needs one ending in .svg to be a target).
    fn new(name: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = dir.path().join(name);
        stdout_of(&["search", "--db", path(&db), "--evaluator", "oracle", "--trials", "3", "--workers", "1"]);
        Fixture { dir, db }
    }

    fn db(&self) -> &str {
        path(&self.db)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The database's bytes and the names in its folder: what a refused command must not change.
fn snapshot(f: &Fixture) -> (Vec<u8>, Vec<String>) {
    let mut names: Vec<String> = std::fs::read_dir(f.dir.path())
        .expect("folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    (std::fs::read(&f.db).expect("database"), names)
}

#[test]
fn no_command_writes_over_the_database_it_reads() {
    let f = Fixture::new("runs.svg");
    let link = f.join("link.svg");
    std::os::unix::fs::symlink(&f.db, &link).expect("symlink");
    let dotted = format!("{}/./runs.svg", path(f.dir.path()));
    let wal = format!("{}-wal", f.db());
    let before = snapshot(&f);
    let cases: Vec<Vec<&str>> = vec![
        vec!["export", "--db", f.db(), "--out", f.db()],
        vec!["export", "--db", f.db(), "--out", &dotted],
        vec!["export", "--db", f.db(), "--out", path(&link)],
        vec!["export", "--db", f.db(), "--out", &wal],
        vec!["plot", "--db", f.db(), "--out", f.db()],
        vec!["plot", "--db", f.db(), "--out", path(&link)],
    ];
    for args in &cases {
        fails_naming(args, "that is the database");
        assert_eq!(snapshot(&f), before, "{args:?} changed the database or its folder");
    }
}

#[test]
fn scale_refuses_to_save_or_plot_over_its_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("phi-1.json");
    stdout_of(&["search", "--db", path(&db), "--evaluator", "oracle", "--trials", "2", "--workers", "1"]);
    let before = std::fs::read(&db).expect("database");
    let save = ["scale", "--from-run", "1", "--db", path(&db), "--phi", "0..2", "--save", path(dir.path())];
    fails_naming(&save, "--save");
    let image = dir.path().join("runs.png");
    std::fs::copy(&db, &image).expect("copy");
    fails_naming(&["scale", "--from-run", "1", "--db", path(&image), "--plot", path(&image)], "--plot");
    assert_eq!(std::fs::read(&db).expect("database"), before);
}

#[test]
fn files_are_replaced_whole_and_no_temporary_is_left() {
    let f = Fixture::new("runs.db");
    let out = f.join("trials.csv");
    std::fs::write(&out, "old").expect("write");
    stdout_of(&["export", "--db", f.db(), "--out", path(&out)]);
    assert!(std::fs::read_to_string(&out).expect("csv").starts_with("id,run_id,"));
    let plot = f.join("run.svg");
    stdout_of(&["plot", "--db", f.db(), "--out", path(&plot)]);
    assert!(std::fs::read_to_string(&plot).expect("svg").contains("<svg"));
    let specs = f.join("specs");
    stdout_of(&["scale", "--phi", "0..1", "--save", path(&specs), "--plot", path(&f.join("scale.png"))]);
    assert!(specs.join("phi-1.json").is_file());
    let leftovers: Vec<_> = std::fs::read_dir(f.dir.path())
        .expect("folder")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    fails_naming(&["export", "--db", f.db(), "--out", path(f.dir.path())], "is a directory");
    fails_naming(&["export", "--db", f.db(), "--out", path(&f.join("nowhere/x.csv"))], "does not exist");
    fails_naming(&["scale", "--save", f.db()], "not a directory");
}

#[test]
fn links_are_written_through_and_devices_are_never_replaced() {
    use std::os::unix::fs::symlink;
    let f = Fixture::new("runs.db");
    let (to_null, to_full, to_file) = (f.join("null.csv"), f.join("full.csv"), f.join("file.csv"));
    let target = f.join("target.csv");
    std::fs::write(&target, "old").expect("write");
    symlink("/dev/null", &to_null).expect("symlink");
    symlink("/dev/full", &to_full).expect("symlink");
    symlink(&target, &to_file).expect("symlink");
    stdout_of(&["export", "--db", f.db(), "--out", path(&to_null)]);
    fails_naming(&["export", "--db", f.db(), "--out", path(&to_full)], "No space left on device");
    stdout_of(&["export", "--db", f.db(), "--out", path(&to_file)]);
    for link in [&to_null, &to_full, &to_file] {
        let meta = std::fs::symlink_metadata(link).expect("link");
        assert!(meta.file_type().is_symlink(), "{} was replaced by a file", link.display());
    }
    assert!(std::fs::read_to_string(&target).expect("csv").starts_with("id,run_id,"));
}

#[test]
fn a_directory_given_as_a_spec_or_space_says_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    fails_naming(&["arch", path(dir.path())], "is a directory");
    fails_naming(&["space", path(dir.path())], "is a directory");
    fails_naming(&["scale", "--base", path(dir.path())], "is a directory");
}

#[test]
fn a_read_only_command_never_creates_a_database() {
    let dir = tempfile::tempdir().expect("tempdir");
    let typo = dir.path().join("typo.db");
    fails_naming(&["scale", "--from-run", "1", "--db", path(&typo)], "no such database file");
    assert!(!typo.exists(), "scale --from-run created {}", typo.display());
}

#[test]
fn sqlite_urls_may_ask_for_read_only() {
    let f = Fixture::new("runs.db");
    let url = format!("sqlite://{}?mode=ro", f.db());
    assert!(stdout_of(&["runs", "--db", &url]).contains("evolution-default"));
    fails_naming(&["runs", "--db", &format!("sqlite://{}?cache=shared", f.db())], "only mode=ro");
    let missing = format!("sqlite://{}?mode=ro", path(&f.join("missing.db")));
    fails_naming(&["runs", "--db", &missing], "no such database file");
}

/// Restores a directory's permissions when the test ends, so the temporary folder can go.
struct Writable<'a>(&'a Path);

impl Drop for Writable<'_> {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(self.0, std::fs::Permissions::from_mode(0o755));
    }
}

#[test]
fn a_database_in_a_read_only_directory_names_the_directory() {
    use std::os::unix::fs::PermissionsExt;
    let f = Fixture::new("runs.db");
    let _restore = Writable(f.dir.path());
    std::fs::set_permissions(f.dir.path(), std::fs::Permissions::from_mode(0o555)).expect("chmod");
    // Reading still works; writing or creating names the directory.
    assert!(stdout_of(&["runs", "--db", f.db()]).contains("evolution-default"));
    let search = ["search", "--evaluator", "oracle", "--trials", "1", "--workers", "1", "--db"];
    fails_naming(&[&search[..], &[f.db()]].concat(), "is not writable");
    fails_naming(&[&search[..], &[path(&f.join("new.db"))]].concat(), "is not writable");
}

/// How often `needle` occurs in the one-line message of a failing command.
fn mentions(args: &[&str], needle: &str) -> usize {
    let out = effnas(args);
    assert_eq!(out.status.code(), Some(2), "{args:?}");
    String::from_utf8_lossy(&out.stderr).matches(needle).count()
}

#[test]
fn messages_name_the_culprit_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = path(&dir.path().join("missing.json")).to_owned();
    let text = dir.path().join("text.db");
    std::fs::write(&text, "not a database").expect("write");
    assert_eq!(mentions(&["arch", &missing], "missing.json"), 1);
    assert_eq!(mentions(&["space", &missing], "missing.json"), 1);
    assert_eq!(mentions(&["scale", "--base", &missing], "missing.json"), 1);
    assert_eq!(mentions(&["scale", "--from-run", "1", "--db", path(&text)], "text.db"), 1);
    // A damaged database: SQLite's complaint once, not once per layer of the error chain.
    let f = Fixture::new("runs.db");
    let bytes = std::fs::read(&f.db).expect("database");
    std::fs::write(&f.db, &bytes[..8192]).expect("truncate");
    for command in ["runs", "trials", "export"] {
        assert_eq!(mentions(&[command, "--db", f.db()], "malformed"), 1, "{command}");
    }
}

#[test]
fn echoed_input_is_cut_short() {
    let dir = tempfile::tempdir().expect("tempdir");
    let huge_spec = vec!["r1_k3_s11_e1_i32_o16_zz"; 4000].join(",");
    let huge_name = "x".repeat(100_000);
    let huge_url = format!("postgres://{huge_name}");
    let huge_file = dir.path().join("huge.json");
    std::fs::write(&huge_file, format!("{{\"blocks\": \"{}\"}}", "y".repeat(100_000))).expect("write");
    let cases: Vec<Vec<&str>> = vec![
        vec!["arch", &huge_spec],
        vec!["arch", &huge_name],
        vec!["space", &huge_name],
        vec!["arch", path(&huge_file)],
        vec!["runs", "--db", &huge_url],
    ];
    let f = Fixture::new("runs.db");
    let mut cases = cases;
    cases.push(vec!["trials", "--db", f.db(), "--run", &huge_name]);
    // Quoted once, not once per layer.
    fails_naming(&["runs", "--db", "mysql://x"], "unsupported database \"mysql://x\": give");
    for args in &cases {
        let out = effnas(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(
            stderr.len() < 600,
            "{} bytes: {}",
            stderr.len(),
            stderr.chars().take(600).collect::<String>()
        );
    }
}

#[test]
fn scale_shows_fractional_powers_of_two_and_its_true_phi_range() {
    let table = stdout_of(&["scale", "--phi=-1,0.5"]);
    let rows: Vec<&str> = table
        .lines()
        .filter(|l| l.trim_start().starts_with("-1") || l.trim_start().starts_with("0.5"))
        .collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert!(rows[0].split_whitespace().any(|cell| cell == "0.5"), "{}", rows[0]);
    assert!(rows[1].split_whitespace().any(|cell| cell == "1.414"), "{}", rows[1]);
    // The help's range holds at its edges and fails past them with the range in the message.
    stdout_of(&["scale", "--phi=-8,15.2"]);
    fails_naming(&["scale", "--phi", "16"], "φ from -8 to 15.2");
    fails_naming(&["scale", "--phi", "30"], "out of range");
}
