//! The deployment examples in `deploy/` stay correct: every Kubernetes manifest parses as YAML and
//! has the structure that matters (an Indexed Job of workers with one GPU each, the database URL
//! from the Secret, a worker command line of `effnas worker` flags only), and the Slurm scripts pass
//! `bash -n`, keep their `#SBATCH` lines where Slurm reads them, and — run with stand-ins for
//! `srun` and `effnas` — start `effnas worker` with the URL and refuse a URL file others can read.
//! None of this runs effnas itself, so it does not need the `worker` command to exist.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use yaml_rust2::{Yaml, YamlLoader};

/// The flags `effnas worker` takes (issue 10); the manifests and scripts may use no others.
const WORKER_FLAGS: &[&str] = &["--db", "--device", "--slots", "--run", "--idle-exit"];

fn deploy(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy").join(sub)
}

/// The files of `deploy/<sub>` whose names end in `ext`, sorted; at least one.
fn files(sub: &str, ext: &str) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(deploy(sub))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == ext))
        .collect();
    found.sort();
    assert!(!found.is_empty(), "no *.{ext} in deploy/{sub}");
    found
}

/// Every YAML document of every manifest, with the file it came from.
fn manifests() -> Vec<(PathBuf, Yaml)> {
    let mut docs = Vec::new();
    for path in files("kubernetes", "yaml") {
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed = YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        for doc in parsed.into_iter().filter(|d| !d.is_null()) {
            docs.push((path.clone(), doc));
        }
    }
    docs
}

fn str_of<'a>(node: &'a Yaml, what: &str) -> &'a str {
    node.as_str().unwrap_or_else(|| panic!("{what} should be a string, is {node:?}"))
}

fn seq<'a>(node: &'a Yaml, what: &str) -> &'a [Yaml] {
    node.as_vec().unwrap_or_else(|| panic!("{what} should be a list, is {node:?}"))
}

fn of_kind<'a>(docs: &'a [(PathBuf, Yaml)], kind: &str) -> Vec<&'a Yaml> {
    docs.iter().map(|(_, d)| d).filter(|d| d["kind"].as_str() == Some(kind)).collect()
}

/// The worker Job: the one Indexed Job.
fn worker_job(docs: &[(PathBuf, Yaml)]) -> &Yaml {
    let indexed: Vec<&Yaml> = of_kind(docs, "Job")
        .into_iter()
        .filter(|job| job["spec"]["completionMode"].as_str() == Some("Indexed"))
        .collect();
    assert_eq!(indexed.len(), 1, "exactly one Job with completionMode: Indexed (the workers)");
    indexed[0]
}

/// The one container of a Job's pod template.
fn container(job: &Yaml) -> &Yaml {
    let containers = seq(&job["spec"]["template"]["spec"]["containers"], "containers");
    assert_eq!(containers.len(), 1, "one container per pod");
    &containers[0]
}

/// `command` + `args` of a container, every element a string (Kubernetes refuses a bare number).
fn command_line(container: &Yaml) -> Vec<String> {
    let mut line = Vec::new();
    for key in ["command", "args"] {
        if !container[key].is_badvalue() {
            for (i, word) in seq(&container[key], key).iter().enumerate() {
                line.push(str_of(word, &format!("{key}[{i}] (quote numbers)")).to_owned());
            }
        }
    }
    line
}

/// The variables a container takes from the Secret: variable name → key.
fn env_from_secret(container: &Yaml, secret: &str) -> HashMap<String, String> {
    let mut vars = HashMap::new();
    for var in seq(&container["env"], "env") {
        let name = str_of(&var["name"], "env[].name");
        if !var["value"].is_badvalue() {
            str_of(&var["value"], &format!("env {name}: value (quote it)"));
        }
        let reference = &var["valueFrom"]["secretKeyRef"];
        if !reference.is_badvalue() && str_of(&reference["name"], "secretKeyRef.name") == secret {
            vars.insert(name.to_owned(), str_of(&reference["key"], "secretKeyRef.key").to_owned());
        }
    }
    vars
}

/// The flags of a command line after `sub` (`worker`, `search`): flag → value (None for a switch).
fn flags_after(line: &[String], program: &str, sub: &str) -> HashMap<String, Option<String>> {
    assert_eq!(line.first().map(String::as_str), Some(program), "{line:?} should run {program}");
    assert_eq!(line.get(1).map(String::as_str), Some(sub), "{line:?} should be `{program} {sub}`");
    let mut flags = HashMap::new();
    let mut words = line[2..].iter().peekable();
    while let Some(word) = words.next() {
        assert!(word.starts_with("--"), "{line:?}: {word:?} is not a flag (no positional arguments)");
        let value = words.next_if(|next| !next.starts_with("--")).cloned();
        assert!(flags.insert(word.clone(), value).is_none(), "{line:?}: {word} twice");
    }
    flags
}

/// A worker command line: only the worker's flags, each with a valid value; `--db` is `db`.
fn check_worker_flags(line: &[String], program: &str, db: &str) {
    let flags = flags_after(line, program, "worker");
    for (flag, value) in &flags {
        assert!(WORKER_FLAGS.contains(&flag.as_str()), "{line:?}: `effnas worker` has no {flag}");
        let value = value.as_deref().unwrap_or_else(|| panic!("{line:?}: {flag} needs a value"));
        match flag.as_str() {
            "--device" => assert!(
                value == "cpu"
                    || value == "cuda"
                    || value.strip_prefix("cuda:").is_some_and(|n| n.parse::<u32>().is_ok()),
                "{line:?}: --device {value}"
            ),
            "--slots" | "--idle-exit" => {
                assert!(value.parse::<u64>().is_ok_and(|n| n > 0), "{line:?}: {flag} {value}")
            }
            _ => {}
        }
    }
    assert_eq!(flags.get("--db"), Some(&Some(db.to_owned())), "{line:?}: --db");
    assert!(flags.contains_key("--idle-exit"), "{line:?}: without --idle-exit the workers never end");
}

#[test]
fn every_manifest_is_yaml_with_a_kind_and_a_name() {
    let docs = manifests();
    for (path, doc) in &docs {
        let what = path.display();
        assert!(doc.as_hash().is_some(), "{what}: a document should be a mapping");
        str_of(&doc["apiVersion"], &format!("{what}: apiVersion"));
        str_of(&doc["kind"], &format!("{what}: kind"));
        str_of(&doc["metadata"]["name"], &format!("{what}: metadata.name"));
    }
    assert_eq!(of_kind(&docs, "Secret").len(), 1, "one Secret");
    worker_job(&docs);
}

#[test]
fn the_secret_holds_a_postgres_url_marked_as_a_placeholder() {
    let docs = manifests();
    let secret = of_kind(&docs, "Secret")[0];
    let url = str_of(&secret["stringData"]["url"], "Secret stringData.url");
    assert!(url.starts_with("postgres://"), "{url}");
    assert!(url.contains("CHANGE-ME"), "{url}: the placeholder password should be marked CHANGE-ME");
}

#[test]
fn the_worker_job_is_indexed_with_one_gpu_per_pod_and_replaces_failed_pods() {
    let docs = manifests();
    let job = worker_job(&docs);
    assert_eq!(str_of(&job["apiVersion"], "apiVersion"), "batch/v1");
    let spec = &job["spec"];
    let completions = spec["completions"].as_i64().unwrap();
    assert!(completions >= 1);
    assert_eq!(
        spec["parallelism"].as_i64(),
        Some(completions),
        "parallelism = completions: every worker at once"
    );

    // A killed worker's trial comes back through its lease, so a failed pod is replaced, not the
    // end of the Job: some retries (backoffLimit ≥ 1) and a restart policy a Job accepts.
    let restart = str_of(&spec["template"]["spec"]["restartPolicy"], "restartPolicy");
    assert!(restart == "Never" || restart == "OnFailure", "restartPolicy {restart}");
    assert!(spec["backoffLimit"].as_i64().is_some_and(|n| n >= 1), "backoffLimit ≥ 1");
    if !spec["podFailurePolicy"].is_badvalue() {
        assert_eq!(restart, "Never", "podFailurePolicy needs restartPolicy: Never");
    }

    let limits = &container(job)["resources"]["limits"];
    let gpus = match &limits["nvidia.com/gpu"] {
        Yaml::Integer(n) => *n,
        Yaml::String(s) => s.parse().unwrap(),
        other => panic!("limits nvidia.com/gpu: {other:?}"),
    };
    assert_eq!(gpus, 1, "one GPU per worker");
}

#[test]
fn the_worker_runs_effnas_worker_with_the_url_from_the_secret() {
    let docs = manifests();
    let secret = of_kind(&docs, "Secret")[0];
    let secret_name = str_of(&secret["metadata"]["name"], "Secret name");
    let container = container(worker_job(&docs));
    let vars = env_from_secret(container, secret_name);
    assert_eq!(vars.len(), 1, "one variable from Secret {secret_name}: {vars:?}");
    let (var, key) = vars.iter().next().unwrap();
    assert!(
        !secret["stringData"][key.as_str()].is_badvalue() || !secret["data"][key.as_str()].is_badvalue(),
        "Secret {secret_name} has no key {key}"
    );
    // Kubernetes substitutes $(VAR) in command and args from the container's own env.
    check_worker_flags(&command_line(container), "effnas", &format!("$({var})"));
}

#[test]
fn the_search_job_if_any_only_enqueues_for_external_workers() {
    let docs = manifests();
    let secret_name = str_of(&of_kind(&docs, "Secret")[0]["metadata"]["name"], "Secret name").to_owned();
    let searches: Vec<&Yaml> = of_kind(&docs, "Job")
        .into_iter()
        .filter(|job| command_line(container(job)).get(1).map(String::as_str) == Some("search"))
        .collect();
    for job in searches {
        let container = container(job);
        let line = command_line(container);
        let vars = env_from_secret(container, &secret_name);
        let var = vars.keys().next().unwrap_or_else(|| panic!("{line:?}: no URL from the Secret"));
        let flags = flags_after(&line, "effnas", "search");
        assert_eq!(flags.get("--external-workers"), Some(&None), "{line:?}");
        assert_eq!(flags.get("--db"), Some(&Some(format!("$({var})"))), "{line:?}");
        assert!(container["resources"]["limits"]["nvidia.com/gpu"].is_badvalue(), "the search needs no GPU");
        assert_eq!(
            job["spec"]["backoffLimit"].as_i64(),
            Some(0),
            "a failed search is resumed, not run again as a new run"
        );
    }
}

// --- Slurm -----------------------------------------------------------------------------------------

/// The `#SBATCH` lines Slurm reads: those before the first line that is neither a comment nor
/// blank (after the `#!` line). Any `#SBATCH` below that is ignored by sbatch: refuse it.
fn sbatch_directives(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    assert!(lines.next().is_some_and(|l| l.starts_with("#!")), "{}: starts with #!", path.display());
    let mut directives = Vec::new();
    let mut header = true;
    for line in lines {
        let trimmed = line.trim_start();
        header &= trimmed.is_empty() || trimmed.starts_with('#');
        if let Some(rest) = trimmed.strip_prefix("#SBATCH") {
            assert!(
                header,
                "{}: `{line}` comes after a command, where sbatch no longer reads",
                path.display()
            );
            let option = rest.trim();
            assert!(
                option.starts_with("--") && !option.contains(char::is_whitespace),
                "{}: `{line}` should be one --option[=value]",
                path.display()
            );
            directives.push(option.to_owned());
        }
    }
    directives
}

fn directive<'a>(directives: &'a [String], name: &str) -> Option<&'a str> {
    directives.iter().find_map(|d| d.strip_prefix(name)?.strip_prefix('='))
}

#[test]
fn every_slurm_script_passes_bash_n_and_keeps_its_directives_where_sbatch_reads_them() {
    for path in files("slurm", "sbatch") {
        let out = Command::new("bash").arg("-n").arg(&path).output().unwrap();
        assert!(out.status.success(), "bash -n {}: {}", path.display(), String::from_utf8_lossy(&out.stderr));
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("set -euo pipefail"), "{}: set -euo pipefail", path.display());
        let directives = sbatch_directives(&path);
        assert!(directive(&directives, "--job-name").is_some(), "{}: --job-name", path.display());
        assert!(directive(&directives, "--time").is_some(), "{}: --time", path.display());
    }
}

#[test]
fn the_worker_array_asks_one_gpu_per_task() {
    let directives = sbatch_directives(&deploy("slurm/effnas-workers.sbatch"));
    let array = directive(&directives, "--array").expect("an --array");
    assert!(array.chars().next().is_some_and(|c| c.is_ascii_digit()), "--array={array}");
    assert_eq!(directive(&directives, "--gres"), Some("gpu:1"));
    assert_eq!(directive(&directives, "--ntasks"), Some("1"));
}

/// Runs a Slurm script with stand-ins on PATH: `srun` drops its own options and runs the rest,
/// `effnas` prints its arguments one per line.
fn run_with_stubs(script: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    for (name, body) in [
        ("srun", "#!/bin/bash\nwhile [[ ${1:-} == -* ]]; do shift; done\nexec \"$@\"\n"),
        ("effnas", "#!/bin/bash\nprintf '%s\\n' \"$@\"\n"),
    ] {
        let path = bin.join(name);
        std::fs::write(&path, body).unwrap();
        let status = Command::new("chmod").arg("755").arg(&path).status().unwrap();
        assert!(status.success());
    }
    let path = format!("{}:{}", bin.display(), std::env::var("PATH").unwrap_or_default());
    let mut command = Command::new("bash");
    command.arg(deploy("slurm").join(script)).args(args);
    command.env_clear().env("PATH", path).env("HOME", dir.path());
    command.env("SLURM_JOB_ID", "7").env("SLURM_ARRAY_TASK_ID", "0").env("SLURM_CPUS_PER_TASK", "8");
    command.env("CUDA_VISIBLE_DEVICES", "3");
    for (key, value) in env {
        command.env(key, value);
    }
    let out = command.output().unwrap();
    drop(dir);
    out
}

fn argv(out: &Output) -> Vec<String> {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout.clone()).unwrap().lines().map(str::to_owned).collect()
}

const URL: &str = "postgres://effnas:secret@db.example.org:5432/effnas";

#[test]
fn the_worker_script_starts_effnas_worker_on_the_gpu_slurm_gave_it() {
    let mut line = vec!["effnas".to_owned()];
    line.extend(argv(&run_with_stubs("effnas-workers.sbatch", &[("EFFNAS_DB", URL)], &[])));
    check_worker_flags(&line, "effnas", URL);
    let flags = flags_after(&line, "effnas", "worker");
    assert_eq!(flags["--device"].as_deref(), Some("cuda"), "CUDA_VISIBLE_DEVICES picks the GPU");
    assert!(!flags.contains_key("--run"));

    let env =
        [("EFFNAS_DB", URL), ("EFFNAS_RUN", "cluster-1"), ("EFFNAS_SLOTS", "4"), ("EFFNAS_IDLE_EXIT", "60")];
    let mut line = vec!["effnas".to_owned()];
    line.extend(argv(&run_with_stubs("effnas-workers.sbatch", &env, &[])));
    check_worker_flags(&line, "effnas", URL);
    let flags = flags_after(&line, "effnas", "worker");
    assert_eq!(flags["--run"].as_deref(), Some("cluster-1"));
    assert_eq!(flags["--slots"].as_deref(), Some("4"));
    assert_eq!(flags["--idle-exit"].as_deref(), Some("60"));
}

#[test]
fn the_scripts_read_the_url_from_a_file_only_its_owner_can_read() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("db-url");
    std::fs::write(&file, format!("{URL}\n")).unwrap();
    let file_str = file.to_str().unwrap();
    let chmod = |mode: &str| assert!(Command::new("chmod").arg(mode).arg(&file).status().unwrap().success());

    chmod("644");
    let out = run_with_stubs("effnas-workers.sbatch", &[("EFFNAS_DB_FILE", file_str)], &[]);
    assert!(!out.status.success(), "a URL file others can read should be refused");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("readable by others"), "{stderr}");
    assert!(out.stdout.is_empty(), "effnas should not have run");

    chmod("600");
    let mut line = vec!["effnas".to_owned()];
    line.extend(argv(&run_with_stubs("effnas-workers.sbatch", &[("EFFNAS_DB_FILE", file_str)], &[])));
    check_worker_flags(&line, "effnas", URL);

    let out = run_with_stubs("effnas-search.sbatch", &[("EFFNAS_DB_FILE", file_str)], &["--trials", "100"]);
    assert_eq!(argv(&out), ["search", "--db", URL, "--external-workers", "--trials", "100"]);

    let out = run_with_stubs("effnas-workers.sbatch", &[], &[]);
    assert!(!out.status.success(), "no URL at all should be refused");
    assert!(out.stdout.is_empty());
}
