//! Disk stays bounded under `floe serve` (issue 14, point 3): over many reloads, service
//! savepoints are kept per pipeline up to `service.savepoints.num-retained`, the checkpoint
//! directories of ended versions are deleted once a newer version completed a checkpoint,
//! and the `file` sink rolls part files by size instead of one per checkpoint, exactly once
//! throughout. Real binary, real directories.

mod serve_support;
use serve_support::*;
use std::path::Path;

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Job directories under `ck/` (32 hex characters).
fn job_dirs(l: &Layout) -> Vec<String> {
    entries(&l.path("ck"))
        .into_iter()
        .filter(|n| n.len() == 32 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .collect()
}

fn bytes_in(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn savepoints_checkpoint_directories_and_part_files_stay_bounded_over_reloads() {
    let l = Layout::new("service.savepoints.num-retained: 2\n");
    let managed = l.path("ck/floe-savepoints");
    let conf = l.path("conf/flink-conf.yaml");
    let allowed = format!("rest.savepoints.allowed-dirs: {}\n", managed.display());
    std::fs::write(&conf, std::fs::read_to_string(&conf).unwrap() + &allowed).unwrap();
    // Parts roll by size (2 kb), never by time in this test.
    let by_size = |name: &str, v: u32| {
        l.wordcount(name, None)
            .replace(
                "rollover-interval: 0",
                "max-part-size: 2 kb\n      rollover-interval: 1 h\n      inactivity-interval: 1 h",
            )
            .replace("name: wc", &format!("name: wc\n# version {v}"))
    };
    std::fs::write(l.path("pipelines/wc.yaml"), by_size("wc", 0)).unwrap();
    let serve = Serve::start(&l, &[]);
    let mut id = serve.wait_running("wc.yaml");
    // A savepoint of the user's in the same directory: never the service's to delete.
    let taken = serve.cli(&["savepoint", &id, managed.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&taken.stdout).to_string();
    assert!(
        taken.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&taken.stderr)
    );
    let mine = l.service_savepoints();
    assert_eq!(mine.len(), 1, "{mine:?}");
    let mut all: Vec<Vec<String>> = Vec::new();
    let reloads = 6;
    for v in 1..=reloads {
        let part = lines(60, 80 + v as u64);
        l.input(&format!("part-{v}"), &part);
        all.push(part);
        l.save_by_rename("wc.yaml", &by_size("wc", v));
        let out = serve.cli(&["reload"]);
        // 0: applied, and the new version completed its first checkpoint (its probation).
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        id = serve.wait_replaced("wc.yaml", &id);
    }
    // Two service savepoints are kept, whatever the number of reloads, and the user's.
    wait_for("two service savepoints and the user's", || {
        l.service_savepoints().len() == 3
    });
    assert!(
        mine[0].join("_metadata").is_file(),
        "the user's savepoint stays"
    );
    // The ended versions' checkpoint directories go once the current one checkpointed.
    wait_for("only the current version's checkpoint directory", || {
        job_dirs(&l) == [id.clone()]
    });
    // Part files grow with the data, not with the checkpoints: at most one per 2 kb
    // written (plus the open one), though every version completed checkpoints.
    let out = l.path("out");
    let files = entries(&out).len() as u64;
    assert!(
        files <= bytes_in(&out) / 2048 + 2,
        "{files} part files for {} bytes: {:?}",
        bytes_in(&out),
        entries(&out)
    );
    let completed = serve.get(&format!("/jobs/{id}/checkpoints"))["counts"]["completed"]
        .as_u64()
        .unwrap_or(0);
    assert!(completed >= 1);

    // Every part committed at each checkpoint from now on: the whole output is visible.
    std::fs::write(
        l.path("pipelines/wc.yaml"),
        l.wordcount("wc", None)
            .replace("name: wc", "name: wc\n# last"),
    )
    .unwrap();
    let out = serve.cli(&["reload"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let parts: Vec<&[String]> = all.iter().map(Vec::as_slice).collect();
    let expected = counts(&parts);
    wait_committed(&l, updates(&expected));
    assert!(
        l.service_savepoints().len() <= 3,
        "{:?}",
        l.service_savepoints()
    );
    let (status, log) = serve.terminate();
    assert!(status.success(), "{log}");
    assert_exactly_once(&l.committed(), &expected);
}
