//! No savepoint write follows a symlink swapped in after the check (issue 13, point 5). The
//! savepoint target is checked against the allowed roots when the request arrives; then the
//! attacker replaces a directory by a symlink to elsewhere. Deterministic: floe's test hook
//! (`FLOE_TEST_SAVEPOINT_PAUSE`) holds the savepoint at the exact moment, the test swaps, and
//! lets it go on. The savepoint fails with a clear error and nothing is written or deleted
//! outside. Disposal goes through the same walk that follows no symlink.

mod security_support;

use floe::checkpoint::metadata::{BlobLocation, SnapshotKind};
use security_support::*;
use serde_json::{json, Value};
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

struct Hook {
    base: PathBuf,
}

impl Hook {
    fn file(&self, suffix: &str) -> PathBuf {
        PathBuf::from(format!("{}.{suffix}", self.base.display()))
    }

    /// Waits until floe paused at `stage`; the path it announced.
    fn reached(&self, stage: &str) -> PathBuf {
        let f = self.file(stage);
        wait_for(&format!("the savepoint to reach `{stage}`"), || f.is_file());
        PathBuf::from(std::fs::read_to_string(&f).unwrap())
    }

    fn go(&self, stage: &str) {
        std::fs::write(self.file(&format!("{stage}.go")), "").unwrap();
    }

    fn reset(&self) {
        for s in ["target", "target.go", "created", "created.go"] {
            let _ = std::fs::remove_file(self.file(s));
        }
    }
}

struct Setup {
    root: tempfile::TempDir,
    hook: Hook,
    floe: Floe,
    job: String,
}

impl Setup {
    fn new() -> Setup {
        let root = tempfile::tempdir().unwrap();
        let allowed = root.path().join("allowed");
        std::fs::create_dir_all(&allowed).unwrap();
        let hook = Hook {
            base: root.path().join("hook"),
        };
        let pipeline = counting_pipeline(root.path(), "wordcount", "");
        let mut cmd = floe();
        cmd.env("FLOE_TEST_SAVEPOINT_PAUSE", &hook.base)
            .arg("run")
            .arg(&pipeline)
            .args([
                "-D",
                "rest.port=0",
                "-D",
                &format!("rest.savepoints.allowed-dirs={}", allowed.display()),
                "-D",
                &format!(
                    "execution.checkpointing.dir={}",
                    root.path().join("ck").display()
                ),
                // Every state blob in a file: the savepoint has files to write.
                "-D",
                "execution.checkpointing.data-inline-threshold=0",
            ]);
        let floe = Floe::spawn(cmd);
        let mut job = String::new();
        wait_for("the job to run", || {
            let jobs = floe.get("/jobs/overview").json()["jobs"].clone();
            match jobs.as_array().and_then(|j| j.first()) {
                Some(j) if j["state"] == "RUNNING" => {
                    job = j["jid"].as_str().unwrap().to_string();
                    true
                }
                _ => false,
            }
        });
        Setup {
            root,
            hook,
            floe,
            job,
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.root.path().join(rel)
    }

    fn trigger(&self, target: &Path) -> String {
        self.hook.reset();
        let a = self.floe.call(
            "POST",
            &format!("/jobs/{}/savepoints", self.job),
            Some(&json!({"target-directory": target.display().to_string()})),
            None,
        );
        assert_eq!(a.status, 202, "{}", a.body);
        a.json()["request-id"].as_str().unwrap().to_string()
    }

    fn outcome(&self, trigger: &str) -> Value {
        wait_completed(
            &self.floe,
            &format!("/jobs/{}/savepoints/{trigger}", self.job),
        )
    }
}

fn failure(op: &Value) -> String {
    op["failure-cause"]["stack-trace"]
        .as_str()
        .unwrap_or_else(|| panic!("the savepoint should have failed: {op}"))
        .to_string()
}

#[test]
fn a_target_swapped_for_a_symlink_after_the_check_gets_nothing_written_through_it() {
    let s = Setup::new();
    let outside = s.path("outside");
    let before = victim(&outside);
    let landing = s.path("landing");
    std::fs::create_dir_all(&landing).unwrap();

    // 1. Replaced between the check and the creation of the savepoint directory.
    let target = s.path("allowed/a");
    let trigger = s.trigger(&target);
    assert_eq!(s.hook.reached("target"), target);
    symlink(&landing, &target).unwrap();
    s.hook.go("target");
    let why = failure(&s.outcome(&trigger));
    assert!(why.contains("symbolic link"), "{why}");
    assert_eq!(tree(&landing).len(), 0, "nothing created through the link");

    // 2. Replaced after the savepoint directory was created, before any file is written:
    //    the link leads to a directory of the same name elsewhere.
    let target = s.path("allowed/b");
    std::fs::create_dir_all(&target).unwrap();
    let trigger = s.trigger(&target);
    s.hook.reached("target");
    s.hook.go("target");
    let dir = s.hook.reached("created");
    assert_eq!(dir.parent().unwrap(), target);
    let name = dir.file_name().unwrap().to_owned();
    std::fs::rename(&target, s.path("allowed/b-moved")).unwrap();
    std::fs::create_dir_all(landing.join(&name)).unwrap();
    std::fs::write(landing.join(&name).join("keep.txt"), "theirs").unwrap();
    symlink(&landing, &target).unwrap();
    let landed = tree(&landing);
    s.hook.go("created");
    let why = failure(&s.outcome(&trigger));
    assert!(why.contains("symbolic link"), "{why}");
    assert_eq!(
        tree(&landing),
        landed,
        "nothing written or deleted through the link (the failed savepoint's cleanup included)"
    );

    // 3. Nothing swapped: the same path works.
    let target = s.path("allowed/c");
    let trigger = s.trigger(&target);
    s.hook.reached("target");
    s.hook.go("target");
    s.hook.reached("created");
    s.hook.go("created");
    let op = s.outcome(&trigger);
    let location = op["location"].as_str().unwrap_or_else(|| panic!("{op}"));
    let written = PathBuf::from(location.trim_start_matches("file:"));
    assert!(written.starts_with(&target), "{location}");
    assert!(written.join("_metadata").is_file());
    assert!(
        std::fs::read_dir(&written).unwrap().count() > 1,
        "state files were written too"
    );

    assert_eq!(tree(&outside), before, "outside untouched");
    let (status, log) = s.floe.terminate();
    assert!(status.success(), "{log}");
}

#[test]
fn disposal_never_deletes_through_a_symlink() {
    let root = tempfile::tempdir().unwrap();
    let outside = root.path().join("outside");
    // A savepoint-looking directory outside, with a file of the name its _metadata lists.
    let real = outside.join("savepoint-8f7974-cccccccccccc");
    let name = "0c0c0c0c-0000-4000-8000-00000000000c";
    write_forged(
        &real,
        SnapshotKind::Savepoint,
        BlobLocation::Exclusive(name.into()),
    );
    std::fs::write(real.join(name), "state of another job").unwrap();
    let before = tree(&outside);
    // The path the API checked was a real directory under the allowed root; by disposal
    // time that directory is a symlink to the outside.
    let allowed = root.path().join("allowed");
    std::fs::create_dir_all(&allowed).unwrap();
    symlink(&outside, allowed.join("sp")).unwrap();
    let given = allowed.join("sp/savepoint-8f7974-cccccccccccc");
    let e = floe::checkpoint::savepoint::dispose(&given).unwrap_err();
    assert!(e.to_string().contains("symbolic link"), "{e}");
    assert_eq!(tree(&outside), before, "nothing deleted through the link");
}
