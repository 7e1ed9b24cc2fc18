//! The two implementations of checkpoint storage's interface (`Storage`: local disk and S3)
//! answer the same calls the same way, which the rest of storage relies on when it does not
//! ask which one it has. The same sequence runs on a temp directory and on SeaweedFS; where a
//! bucket differs by design (a prefix is a directory once an object is under it, a PUT
//! replaces) the check says so.

mod s3_support;

use floe::checkpoint::storage::{self, Location};
use floe::checkpoint::CheckpointError;

fn keeps_the_contract(dir: &Location) {
    let st = dir.storage();
    assert_eq!(st.is_dir().unwrap(), None);
    match st.list() {
        Err(CheckpointError::NotFound(_)) => assert!(!dir.is_object()),
        Ok(listed) => assert!(dir.is_object() && listed.is_empty(), "{listed:?}"),
        Err(e) => panic!("listing a missing directory: {e}"),
    }
    st.create_dir().unwrap();
    if !dir.is_object() {
        assert_eq!(st.is_dir().unwrap(), Some(true));
        assert!(!st.has_children().unwrap());
    }
    let f = dir.join("f");
    assert!(f.storage().write_once(b"one").unwrap());
    assert!(f.storage().write_once(b"one").unwrap(), "a retry");
    assert!(!f.storage().write_once(b"two").unwrap(), "never replaced");
    assert_eq!(f.storage().read().unwrap().as_deref(), Some(&b"one"[..]));
    assert_eq!(f.storage().read_range(1, 2).unwrap(), b"ne");
    assert_eq!(f.storage().size().unwrap(), Some(3));
    assert_eq!(f.storage().is_dir().unwrap(), Some(false));
    assert_eq!(st.is_dir().unwrap(), Some(true));
    assert!(st.has_children().unwrap());
    let g = dir.join("g");
    g.storage().write_fresh(b"x".to_vec()).unwrap();
    if !dir.is_object() {
        assert_eq!(
            f.storage().read_range(1, 10).unwrap(),
            b"ne",
            "fewer at the end"
        );
        assert!(
            g.storage().write_fresh(b"y".to_vec()).is_err(),
            "a fresh name only"
        );
    }
    let mut listed = st.list().unwrap();
    listed.sort();
    assert_eq!(listed, vec![("f".into(), false), ("g".into(), false)]);
    f.storage().delete().unwrap();
    f.storage().delete().unwrap();
    assert_eq!(f.storage().read().unwrap(), None);
    assert!(!st.remove_dir_if_empty(), "g is still there");
    st.delete_all().unwrap();
    st.delete_all().unwrap();
    assert_eq!(st.is_dir().unwrap(), None);
    assert_eq!(dir.name(), Some("b"));
}

#[test]
fn local_disk_keeps_the_contract() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Location::Local(tmp.path().join("a/b"));
    keeps_the_contract(&dir);
    assert_eq!(dir.parent(), Some(Location::Local(tmp.path().join("a"))));
}

#[test]
fn s3_keeps_the_contract() {
    let Some(s3) = s3_support::server() else {
        return;
    };
    s3.configure_library();
    let dir = storage::parse_dir(&format!("{}/a/b", s3.prefix("contract"))).unwrap();
    assert!(dir.is_object());
    keeps_the_contract(&dir);
}
