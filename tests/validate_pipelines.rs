//! Every pipeline shipped in `pipelines/` validates, and gives the settings it promises.

use floe::pipeline::{load, Pipeline};
use floe::record::{DataType, Schema};
use std::path::Path;

fn setting<'a>(p: &'a Pipeline, key: &str) -> Option<(&'a str, &'a str)> {
    p.settings
        .iter()
        .find(|s| s.key == key)
        .map(|s| (s.value.as_str(), s.origin.as_str()))
}

#[test]
fn every_shipped_pipeline_validates() {
    let mut n = 0;
    for entry in std::fs::read_dir("pipelines").unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            if let Err(e) = load(&path) {
                panic!("{} does not validate:\n{e}", path.display());
            }
            n += 1;
        }
    }
    assert!(n >= 3, "expected the shipped pipelines, found {n}");
}

#[test]
fn socket_wordcount_is_the_seed_demo() {
    let p = load(Path::new("pipelines/socket-wordcount.yaml")).unwrap();
    let ids: Vec<&str> = p.operators.iter().map(|o| o.id.0.as_str()).collect();
    assert_eq!(ids, ["source", "split", "pair", "sum", "print"]);
    assert_eq!(
        p.operator("sum").unwrap().output_schema,
        Schema::new([("word", DataType::Str), ("one", DataType::Int)])
    );
    assert_eq!(
        setting(&p, "execution.checkpointing.interval"),
        Some(("1 s", "pipelines/socket-wordcount.yaml:14"))
    );
    assert_eq!(
        setting(&p, "execution.checkpointing.mode").map(|s| s.0),
        Some("EXACTLY_ONCE")
    );
    assert_eq!(
        setting(&p, "execution.checkpointing.dir").map(|s| s.0),
        Some("file:///tmp/flink/checkpoints")
    );
    assert_eq!(setting(&p, "parallelism.default").map(|s| s.0), Some("1"));
}

#[test]
fn operators_come_in_topological_order_with_inputs_remapped() {
    let text = "name: t\nconfig:\n  state.checkpoints.num-retained: 3\n  state:\n    backend.type: rocksdb\noperators:\n  - {id: out, type: blackhole, inputs: [split]}\n  - {id: split, type: flat_map, inputs: [src]}\n  - {id: src, type: datagen, lines: 1}\n";
    let p = floe::pipeline::parse(text, Path::new("t.yaml")).unwrap();
    let ids: Vec<&str> = p.operators.iter().map(|o| o.id.0.as_str()).collect();
    assert_eq!(ids, ["src", "split", "out"]);
    assert_eq!(p.operators[2].inputs, [1]);
    assert_eq!(p.operators[1].inputs, [0]);
    assert_eq!(
        setting(&p, "state.checkpoints.num-retained"),
        Some(("3", "t.yaml:3"))
    );
    assert_eq!(
        setting(&p, "state.backend.type").map(|s| s.0),
        Some("rocksdb")
    );
}
