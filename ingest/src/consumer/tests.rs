/// A rebalance re-reads the lake's recent ids only if some other writer (or a
/// compaction) committed since the window last learned them: this writer's own
/// commits, each directly after the last, leave nothing to learn.
#[test]
fn own_commits_leave_nothing_to_learn_and_any_other_commit_does() {
    use super::OwnVersions;
    use std::collections::BTreeMap;
    use wenming_schemas::Family;
    let (a, b) = (Family::ALL[0], Family::ALL[1]);
    let lake = |va: Option<i64>, vb: Option<i64>| BTreeMap::from([(a, va), (b, vb)]);
    let mut known = OwnVersions::new(lake(Some(4), None));
    assert!(known.only_ours(&lake(Some(4), None)));
    known.committed(a, 5);
    known.committed(a, 6);
    known.committed(b, 0);
    assert!(known.only_ours(&lake(Some(6), Some(0))));
    // The lake moved past what this writer committed: another writer did.
    assert!(!known.only_ours(&lake(Some(7), Some(0))));
    // A commit that skips a version had another one before it.
    known.committed(b, 2);
    assert!(!known.only_ours(&lake(Some(6), Some(2))));
    // And the table stays unknown until the window learns the lake again.
    known.committed(b, 3);
    assert!(!known.only_ours(&lake(Some(6), Some(3))));
    assert!(OwnVersions::new(lake(Some(6), Some(3))).only_ours(&lake(Some(6), Some(3))));
}

use super::flush::{SMALL_FLUSH_ROWS, is_small_flush};
use super::*;

fn partition(positions: &[(Family, Option<i64>)]) -> Partition {
    let mut committed: BTreeMap<Family, Option<i64>> =
        Family::ALL.iter().map(|f| (*f, Some(100))).collect();
    for (f, p) in positions {
        committed.insert(*f, *p);
    }
    Partition {
        committed,
        ..Partition::default()
    }
}

#[test]
fn a_partition_resumes_after_the_table_that_lags_most() {
    assert_eq!(partition(&[]).resume_offset(), Some(101));
    let p = partition(&[(Family::Wish, Some(7)), (Family::Service, Some(250))]);
    assert_eq!(p.resume_offset(), Some(8));
    // A table that never recorded the partition: read it from the start.
    let p = partition(&[(Family::Order, None)]);
    assert_eq!(p.resume_offset(), Some(0));
}

#[test]
fn dead_letters_are_known_sent_up_to_the_table_furthest_ahead() {
    let p = partition(&[(Family::Wish, Some(7)), (Family::Service, Some(250))]);
    assert_eq!(p.dead_letters_upto(), Some(250));
    let none: Vec<(Family, Option<i64>)> = Family::ALL.iter().map(|f| (*f, None)).collect();
    assert_eq!(partition(&none).dead_letters_upto(), None);
}

#[test]
fn a_polled_run_keeps_every_message_and_decodes_them_in_poll_order() {
    const EXAMPLES: &str = include_str!("../../../schemas/tests/fixtures/examples.ndjson");
    let mut lines: Vec<&[u8]> = EXAMPLES.lines().map(str::as_bytes).collect();
    lines.insert(1, b"{not json");
    lines.push(b"");
    let mut run = Polled::default();
    for (i, line) in lines.iter().enumerate() {
        let key = (i % 2 == 0).then_some(format!("key{i}"));
        run.push(
            i as i32 % 3,
            100 + i as i64,
            key.as_deref().map(str::as_bytes),
            line,
        );
    }
    // A run is full at 2,048 messages, or at a smaller flush policy.
    assert!(run.is_full(lines.len()) && !run.is_full(lines.len() + 1));
    assert!(!run.is_full(usize::MAX) && run.is_full(0));

    let decoded = run.decode();
    assert_eq!(decoded.len(), lines.len());
    for (i, ((message, decoded), line)) in run.messages.iter().zip(&decoded).zip(&lines).enumerate()
    {
        assert_eq!(
            (message.partition, message.offset),
            (i as i32 % 3, 100 + i as i64)
        );
        assert_eq!(&run.data[message.payload.clone()], *line);
        let key = message.key.clone().map(|k| run.data[k].to_vec());
        assert_eq!(key, (i % 2 == 0).then(|| format!("key{i}").into_bytes()));
        match wenming_schemas::decode(line) {
            Ok(event) => assert_eq!(decoded.as_ref().ok(), Some(&event), "line {i}"),
            Err(rejection) => assert_eq!(
                decoded.as_ref().err().map(|r| r.reason()),
                Some(rejection.reason()),
                "line {i}"
            ),
        }
    }
    assert!(decoded[1].is_err() && decoded.last().unwrap().is_err());

    let emptied = run.emptied();
    assert!(emptied.is_empty() && emptied.data.is_empty());
}

/// A quiet stream's timed flushes write small files, which compaction counts; a
/// backlog's full flushes (200 k events) do not.
#[test]
fn only_small_flushes_count_toward_compaction() {
    assert!(is_small_flush(1));
    assert!(is_small_flush(SMALL_FLUSH_ROWS - 1));
    assert!(!is_small_flush(SMALL_FLUSH_ROWS));
    assert!(!is_small_flush(
        IngestOptions::new("b", "t", "g").flush_rows as u64
    ));
}

#[test]
fn spare_runs_are_filled_again_and_never_pile_up() {
    let full = || {
        let mut run = Polled::default();
        run.push(0, 1, None, &[b'x'; 1000]);
        run
    };
    let mut spares = Spares::default();
    // Far more runs routed than taken, as when partial runs are routed each time
    // librdkafka has nothing at hand.
    for _ in 0..100 {
        spares.give(full());
    }
    assert_eq!(spares.0.len(), Spares::MAX);
    let again = spares.take();
    assert!(again.is_empty(), "a spare comes back empty");
    assert!(again.data.capacity() >= 1000, "with its buffer kept");
    assert_eq!(spares.0.len(), Spares::MAX - 1);
    let mut empty = Spares::default();
    assert_eq!(empty.take().data.capacity(), 0);
}
