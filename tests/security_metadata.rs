//! `_metadata` is untrusted input (issue 13, point 1): a forged one, written with floe's own
//! encoder (a valid checksum) but naming a file by an absolute path, with `..` or with a
//! slash, is refused whole by `floe inspect`, `floe run -s`, `floe savepoint -d`,
//! `POST /savepoint-disposal` and a CLAIM restore; CLAIM takes only `chk-<n>` and
//! `savepoint-…` directories, and deletes only the files the claimed `_metadata` lists. Every
//! test ends by checking that the files outside stayed exactly as they were.

mod security_support;

use floe::checkpoint::metadata::{BlobLocation, SnapshotKind};
use security_support::*;
use serde_json::json;
use std::path::{Path, PathBuf};

/// The forged names: an absolute path to the victim, a relative one climbing out with `..`,
/// and a name with a slash.
fn forged_names(outside: &Path) -> Vec<(&'static str, String)> {
    vec![
        ("absolute", outside.join("victim.txt").display().to_string()),
        ("dot-dot", "../../outside/victim.txt".to_string()),
        (
            "slash",
            "nested/0b0b0b0b-0000-4000-8000-00000000000b".to_string(),
        ),
    ]
}

struct Root {
    dir: tempfile::TempDir,
}

impl Root {
    fn new() -> Root {
        Root {
            dir: tempfile::tempdir().unwrap(),
        }
    }
    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }
}

fn assert_refused(out: &std::process::Output, what: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{what}: {err}");
    assert!(err.contains("is refused"), "{what}: {err}");
    assert!(err.contains("not one floe writes"), "{what}: {err}");
}

#[test]
fn inspect_and_restore_refuse_forged_names_in_exclusive_and_shared_files() {
    let r = Root::new();
    let outside = r.path("outside");
    let before = victim(&outside);
    let pipeline = counting_pipeline(r.dir.path(), "wordcount", "");
    for (label, name) in forged_names(&outside) {
        for (kind, location) in [
            ("exclusive", BlobLocation::Exclusive(name.clone())),
            ("shared", BlobLocation::Shared(name.clone())),
        ] {
            let chk = r.path(&format!("ck/{JOB}/chk-3"));
            write_forged(&chk, SnapshotKind::Checkpoint, location);
            let what = format!("{label} {kind} name {name:?}");
            let out = floe().arg("inspect").arg(&chk).output().unwrap();
            assert_refused(&out, &format!("inspect, {what}"));
            let metadata = chk.join("_metadata");
            for given in [&chk, &metadata] {
                let out = floe()
                    .arg("run")
                    .arg(&pipeline)
                    .arg("-s")
                    .arg(given)
                    .args(["-D", "rest.port=0"])
                    .output()
                    .unwrap();
                assert_refused(&out, &format!("run -s, {what}"));
            }
            // CLAIM reads the same file first: refused before anything is owned.
            let out = floe()
                .arg("run")
                .arg(&pipeline)
                .arg("-s")
                .arg(&chk)
                .args(["-cm", "CLAIM", "-D", "rest.port=0"])
                .output()
                .unwrap();
            assert_refused(&out, &format!("run -s -cm CLAIM, {what}"));
            assert!(metadata.is_file(), "{what}: the forged _metadata stays");
            assert_eq!(tree(&outside), before, "{what}: outside untouched");
        }
    }
}

#[test]
fn savepoint_disposal_refuses_forged_names_offline() {
    let r = Root::new();
    let outside = r.path("outside");
    let before = victim(&outside);
    for (label, name) in forged_names(&outside) {
        let sp = r.path("sp/savepoint-8f7974-aaaaaaaaaaaa");
        write_forged(&sp, SnapshotKind::Savepoint, BlobLocation::Exclusive(name));
        let out = floe().args(["savepoint", "-d"]).arg(&sp).output().unwrap();
        let err = text(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{label}: {err}");
        assert!(err.contains("not a floe savepoint"), "{label}: {err}");
        assert!(err.contains("is refused"), "{label}: {err}");
        assert!(sp.join("_metadata").is_file(), "{label}: nothing deleted");
        assert_eq!(tree(&outside), before, "{label}: outside untouched");
    }
}

#[test]
fn rest_disposal_refuses_forged_names() {
    let r = Root::new();
    let outside = r.path("outside");
    let before = victim(&outside);
    let sp_root = r.path("sp");
    std::fs::create_dir_all(&sp_root).unwrap();
    let pipeline = counting_pipeline(r.dir.path(), "wordcount", "");
    let mut cmd = floe();
    cmd.arg("run").arg(&pipeline).args([
        "-D",
        "rest.port=0",
        "-D",
        &format!("rest.savepoints.allowed-dirs={}", sp_root.display()),
    ]);
    let f = Floe::spawn(cmd);
    for (label, name) in forged_names(&outside) {
        let sp = sp_root.join("savepoint-8f7974-bbbbbbbbbbbb");
        write_forged(&sp, SnapshotKind::Savepoint, BlobLocation::Exclusive(name));
        let a = f.call(
            "POST",
            "/savepoint-disposal",
            Some(&json!({"savepoint-path": sp.display().to_string()})),
            None,
        );
        assert_eq!(a.status, 202, "{label}: {}", a.body);
        let id = a.json()["request-id"].as_str().unwrap().to_string();
        let op = wait_completed(&f, &format!("/savepoint-disposal/{id}"));
        let cause = op["failure-cause"]["stack-trace"]
            .as_str()
            .unwrap_or_default();
        assert!(cause.contains("is refused"), "{label}: {op}");
        assert!(sp.join("_metadata").is_file(), "{label}: nothing deleted");
        assert_eq!(tree(&outside), before, "{label}: outside untouched");
    }
    let (status, log) = f.terminate();
    assert!(status.success(), "{log}");
}

#[test]
fn claim_takes_only_checkpoint_and_savepoint_directories() {
    let r = Root::new();
    let pipeline = counting_pipeline(r.dir.path(), "wordcount", "");
    // A genuine _metadata (no files: inline state) in a directory that is neither chk-<n>
    // nor savepoint-…: the user's home, say. CLAIM would delete it later; it is refused.
    let home = r.path("home");
    let inline = BlobLocation::Inline(Vec::new());
    write_forged(&home, SnapshotKind::Checkpoint, inline);
    std::fs::write(home.join("thesis.tex"), "years of work").unwrap();
    let before = tree(&home);
    let out = floe()
        .arg("run")
        .arg(&pipeline)
        .arg("-s")
        .arg(home.join("_metadata"))
        .args(["-cm", "CLAIM", "-D", "rest.port=0"])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("claim mode CLAIM refused"), "{err}");
    assert!(err.contains("NO_CLAIM"), "names the fix: {err}");
    assert_eq!(tree(&home), before, "nothing of it touched");
}

/// Checkpoints of the counting pipeline every 100 ms into `ck`, every state blob in a file.
fn checkpointing(cmd: &mut std::process::Command, ck: &Path) {
    cmd.args([
        "-D",
        "rest.port=0",
        "-D",
        "execution.checkpointing.interval=100ms",
        "-D",
        "execution.checkpointing.data-inline-threshold=0",
        "-D",
        &format!("execution.checkpointing.dir={}", ck.display()),
    ]);
}

/// The complete checkpoints under `ck/<job>/`.
fn completed(ck: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for job in std::fs::read_dir(ck).into_iter().flatten().flatten() {
        for c in std::fs::read_dir(job.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = c.file_name().to_string_lossy().into_owned();
            if name.starts_with("chk-") && c.path().join("_metadata").is_file() {
                out.push(c.path());
            }
        }
    }
    out
}

#[test]
fn a_claimed_checkpoint_loses_only_the_files_its_metadata_lists() {
    let r = Root::new();
    let ck = r.path("ck");
    let pipeline = counting_pipeline(r.dir.path(), "wordcount", "");
    let mut first = floe();
    first.arg("run").arg(&pipeline);
    checkpointing(&mut first, &ck);
    let f = Floe::spawn(first);
    wait_for("a checkpoint with state files", || {
        completed(&ck).iter().any(|c| {
            std::fs::read_dir(c).unwrap().count() > 1 // _metadata and state files
        })
    });
    let (status, log) = f.terminate();
    assert!(status.success(), "{log}");
    let claimed = completed(&ck).into_iter().max().unwrap();
    let own: Vec<String> = std::fs::read_dir(&claimed)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(own.len() > 1, "{own:?}");
    std::fs::write(claimed.join("notes.txt"), "mine, not floe's").unwrap();
    std::fs::create_dir(claimed.join("drafts")).unwrap();
    std::fs::write(claimed.join("drafts/d.txt"), "also mine").unwrap();

    // The second job claims it; its first own checkpoint subsumes it (num-retained 1).
    let ck2 = r.path("ck2");
    let mut second = floe();
    second
        .arg("run")
        .arg(&pipeline)
        .arg("-s")
        .arg(&claimed)
        .args(["-cm", "CLAIM"]);
    checkpointing(&mut second, &ck2);
    let f = Floe::spawn(second);
    wait_for("the claimed checkpoint to be subsumed", || {
        !claimed.join("_metadata").exists()
    });
    let (status, log) = f.terminate();
    assert!(status.success(), "{log}");
    let left = tree(&claimed);
    let names: Vec<String> = left.keys().map(|p| p.display().to_string()).collect();
    assert_eq!(
        names,
        ["drafts", "drafts/d.txt", "notes.txt"],
        "only the files _metadata listed went"
    );
    assert_eq!(left[Path::new("notes.txt")], b"mine, not floe's");
}
