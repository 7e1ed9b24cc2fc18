//! floe's own `EndTxn` client (the restore's commit of a pre-committed Kafka transaction)
//! against a scripted coordinator on a real socket (`kafka_support::fake_coordinator`): the
//! answers a Kafka coordinator gives, read as Kafka documents them; a closed connection is a
//! network error tried again until the deadline and then a failure, never an answer; SASL
//! PLAIN before the first request.

mod kafka_support;

use floe::operators::sinks::kafka_resume::{commit, Ended, ResumeError, Security, TxnRef};
use kafka_protocol::error::ResponseError;
use kafka_support::fake_coordinator::{Answer, FakeCoordinator};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const TXN: TxnRef<'static> = TxnRef {
    transactional_id: "floe-out-0-1",
    producer_id: 4711,
    epoch: 3,
};

fn plaintext() -> Security {
    Security::from_properties(&BTreeMap::new()).unwrap()
}

fn sasl_plain(user: &str, password: &str) -> Security {
    let props: BTreeMap<String, String> = [
        ("security.protocol", "SASL_PLAINTEXT"),
        ("sasl.mechanism", "PLAIN"),
        ("sasl.username", user),
        ("sasl.password", password),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    Security::from_properties(&props).unwrap()
}

#[test]
fn the_commit_carries_the_checkpoints_ids_after_sasl_plain() {
    let c = FakeCoordinator::start(&[], Answer::Code(0), Some(("floe", "s3cret")));
    let ended = commit(
        &c.address,
        &sasl_plain("floe", "s3cret"),
        TXN,
        Duration::from_secs(30),
    );
    assert_eq!(ended.unwrap(), Ended::Committed);
    let seen = c.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].transactional_id, "floe-out-0-1");
    assert_eq!((seen[0].producer_id, seen[0].epoch), (4711, 3));
    assert!(seen[0].committed && seen[0].authenticated);
}

#[test]
fn a_wrong_password_fails_at_once() {
    let c = FakeCoordinator::start(&[], Answer::Code(0), Some(("floe", "s3cret")));
    let started = Instant::now();
    let err = commit(
        &c.address,
        &sasl_plain("floe", "wrong"),
        TXN,
        Duration::from_secs(30),
    )
    .unwrap_err();
    assert!(matches!(err, ResumeError::Failed { .. }), "{err}");
    assert!(
        err.to_string().contains("SASL authentication failed"),
        "{err}"
    );
    assert!(started.elapsed() < Duration::from_secs(30), "not retried");
    assert!(c.seen().is_empty());
}

#[test]
fn retriable_answers_are_tried_again_until_the_commit() {
    let c = FakeCoordinator::start(
        &[
            Answer::Code(51), // CONCURRENT_TRANSACTIONS
            Answer::Code(14), // COORDINATOR_LOAD_IN_PROGRESS
            Answer::Code(16), // NOT_COORDINATOR: found again
            Answer::Close,
        ],
        Answer::Code(0),
        None,
    );
    let ended = commit(&c.address, &plaintext(), TXN, Duration::from_secs(60)).unwrap();
    assert_eq!(ended, Ended::Committed);
    assert_eq!(c.seen().len(), 5);
}

#[test]
fn final_refusals_are_reported_as_such() {
    for (code, error) in [
        (90, ResponseError::ProducerFenced),
        (47, ResponseError::InvalidProducerEpoch),
        (48, ResponseError::InvalidTxnState),
        (49, ResponseError::InvalidProducerIdMapping),
    ] {
        let c = FakeCoordinator::start(&[], Answer::Code(code), None);
        let ended = commit(&c.address, &plaintext(), TXN, Duration::from_secs(30)).unwrap();
        assert_eq!(ended, Ended::Refused(error));
        assert_eq!(c.seen().len(), 1, "not retried");
    }
    // An error Kafka does not document for EndTxn fails the restore, with its code.
    let c = FakeCoordinator::start(&[], Answer::Code(53), None);
    let err = commit(&c.address, &plaintext(), TXN, Duration::from_secs(30)).unwrap_err();
    assert!(err.to_string().contains("53"), "{err}");
}

/// tansu answers a refused EndTxn by closing the connection; Kafka never does. A closed
/// connection is no answer: tried again, past any count, until the deadline, then the
/// restore fails saying so.
#[test]
fn a_connection_that_keeps_closing_fails_the_restore_at_the_deadline() {
    let c = FakeCoordinator::start(&[], Answer::Close, None);
    let within = Duration::from_secs(4);
    let err = commit(&c.address, &plaintext(), TXN, within).unwrap_err();
    assert!(matches!(err, ResumeError::NoAnswer { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("floe-out-0-1") && text.contains("no answer"),
        "{text}"
    );
    assert!(c.seen().len() > 3, "tried {} times", c.seen().len());
}
