//! The README's configuration reference is generated from the key table the loader uses, so
//! it cannot drift: this test fails when they differ, and `UPDATE_EXPECT=1 cargo test` rewrites
//! the README's table (review the diff).

const START: &str = "<!-- config-reference:start -->\n";
const END: &str = "<!-- config-reference:end -->";

#[test]
fn readme_config_reference_matches_the_known_keys() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let start = readme
        .find(START)
        .expect("README has the config-reference start marker")
        + START.len();
    let end = readme[start..]
        .find(END)
        .expect("README has the end marker")
        + start;
    let want = floe::config::render_reference_markdown();
    if readme[start..end] != want {
        if std::env::var_os("UPDATE_EXPECT").is_some() {
            let updated = format!("{}{}{}", &readme[..start], want, &readme[end..]);
            std::fs::write(&path, updated).expect("rewrite README.md");
            return;
        }
        panic!("README's configuration reference is stale: run UPDATE_EXPECT=1 cargo test --test readme_reference");
    }
    for key in floe::config::known_keys() {
        assert!(
            readme.contains(key.canonical),
            "README names {}",
            key.canonical
        );
    }
}
