use super::*;

#[test]
fn remembers_the_window_and_forgets_the_oldest() {
    let mut ids = RecentIds::new(3);
    assert_eq!(ids.insert(1), Seen::New);
    assert_eq!(ids.insert(1), Seen::ThisRun);
    assert_eq!(ids.insert(2), Seen::New);
    assert_eq!(ids.insert(3), Seen::New);
    assert_eq!(ids.insert(4), Seen::New); // 3 generations of one id, and the current
    assert_eq!(ids.insert(5), Seen::New); // 1 falls out of the window
    assert_eq!(ids.len(), 4);
    assert_eq!(ids.insert(4), Seen::ThisRun);
    assert_eq!(ids.insert(2), Seen::ThisRun, "still within the window");
    assert_eq!(ids.insert(1), Seen::New, "forgotten after the window");
}

/// The window's promise, for sizes below, at and past a generation count: after
/// every arrival the `capacity` most recent ids are known, and nothing older than
/// a sixteenth more (and a generation's rounding).
#[test]
fn holds_at_least_the_window_and_at_most_a_sixteenth_more() {
    for capacity in [1, 2, 3, 17, 1000, 4097] {
        let mut ids = RecentIds::new(capacity);
        let most = capacity + capacity / 16 + GENERATIONS + 1;
        let n = (capacity * 5) as u128;
        for i in 1..=n {
            assert_eq!(ids.insert(i), Seen::New, "window {capacity}, id {i}");
            let newest = (i.saturating_sub(capacity as u128) + 1)..=i;
            for j in [*newest.start(), (newest.start() + i) / 2, i] {
                assert!(ids.contains(j), "window {capacity}: id {j} after {i}");
            }
            assert!(ids.len() >= (i as usize).min(capacity), "window {capacity}");
            assert!(ids.len() <= most, "window {capacity}: {} ids", ids.len());
            if i > most as u128 {
                assert!(!ids.contains(i - most as u128), "window {capacity}");
            }
        }
    }
}

#[test]
fn a_forgotten_id_is_new_again() {
    let mut ids = RecentIds::new(10);
    assert_eq!(ids.insert(7), Seen::New);
    ids.forget(7);
    assert!(!ids.contains(7));
    assert_eq!(ids.insert(7), Seen::New);
}

#[test]
fn ids_from_the_lake_are_told_apart_from_ids_of_this_run() {
    let mut ids = RecentIds::new(10);
    ids.seed(5);
    ids.seed(5);
    assert_eq!(ids.len(), 1);
    assert_eq!(ids.insert(5), Seen::InLake);
    assert_eq!(ids.insert(5), Seen::ThisRun);
    ids.seed(5); // learning it from the lake again changes nothing
    assert_eq!(ids.insert(5), Seen::ThisRun);
}

/// The window against a `HashMap` model of its generations, through inserts,
/// seeds, forgets and small windows that turn over many times (every generation
/// dropped by a pass over the table, every forget a backward shift). An arrival
/// (a new id, or a seed of an absent one) belongs to generation `arrival / size`;
/// when a generation begins, the one `generations + 1` before it is forgotten. An
/// id forgotten and seen again stays until the window moves past its *new* arrival.
#[test]
fn agrees_with_a_model_through_a_turning_window() {
    use std::collections::HashMap;
    for window in [1000, 37, 5] {
        let mut ids = RecentIds::new(window);
        let (size, kept) = (ids.generation_size as u64, ids.generations as u64);
        // id → (seen in this run, arrival).
        let mut model: HashMap<u128, (bool, u64)> = HashMap::new();
        let mut arrivals = 0u64;
        let mut rng = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        let space = window as u64 * 3;
        for step in 0..200_000 {
            // Ids from a small space, so re-sends, seeds of known ids and the nil
            // id occur.
            let id = (next() % space) as u128;
            let mut arrive = |model: &mut HashMap<u128, (bool, u64)>, this_run| {
                let generation = arrivals / size;
                if arrivals.is_multiple_of(size) && generation > kept {
                    let gone = generation - kept - 1;
                    model.retain(|_, (_, a)| *a / size != gone);
                }
                model.insert(id, (this_run, arrivals));
                arrivals += 1;
            };
            match next() % 10 {
                0 => {
                    ids.seed(id);
                    if !model.contains_key(&id) {
                        arrive(&mut model, false);
                    }
                }
                1 => {
                    ids.forget(id);
                    model.remove(&id);
                }
                _ => {
                    let expected = match model.get_mut(&id) {
                        Some((true, _)) => Seen::ThisRun,
                        Some((flag, _)) => {
                            *flag = true;
                            Seen::InLake
                        }
                        None => {
                            arrive(&mut model, true);
                            Seen::New
                        }
                    };
                    // Both ways in: one at a time, and through the prefetching pass.
                    let seen = if step % 2 == 0 {
                        ids.insert(id)
                    } else {
                        ids.insert_all(&[id])[0]
                    };
                    assert_eq!(seen, expected, "window {window}, step {step}, id {id}");
                }
            }
            assert_eq!(ids.len(), model.len(), "window {window}, step {step}");
            if step % 997 == 0 {
                for probe in 0..space as u128 {
                    assert_eq!(
                        ids.contains(probe),
                        model.contains_key(&probe),
                        "window {window}, step {step}, id {probe}"
                    );
                }
            }
        }
    }
}

/// The memory figures the docs give: a full window costs under 12.5 bytes an id
/// (121 MB for the default 10 M), whether reserved at once or grown id by id.
#[test]
fn a_window_costs_under_12_and_a_half_bytes_an_id() {
    let mut ids = RecentIds::new(DEFAULT_WINDOW);
    ids.reserve(DEFAULT_WINDOW); // as import does, from the file's size
    let per_id = ids.heap_bytes() as f64 / DEFAULT_WINDOW as f64;
    assert!((12.0..12.5).contains(&per_id), "{per_id} bytes an id");
    ids.reserve(DEFAULT_WINDOW * 2);
    assert_eq!(
        ids.heap_bytes() as f64 / DEFAULT_WINDOW as f64,
        per_id,
        "never past the most the window holds"
    );

    let window = 300_000;
    let mut ids = RecentIds::new(window);
    for id in 1..=(window as u128 * 3) {
        ids.insert(id);
    }
    let per_id = ids.heap_bytes() as f64 / window as f64;
    assert!(per_id < 12.5, "{per_id} bytes an id");
    assert!(ids.contains(window as u128 * 3) && !ids.contains(1));
}

/// The odds the docs give: two ids are taken for one only if 74 bits of their
/// keyed hashes agree.
#[test]
fn a_window_keeps_74_bits_an_id() {
    assert_eq!(RecentIds::new(DEFAULT_WINDOW).fingerprint_bits(), 74);
}

/// Two ids whose first hashes agree are still told apart by the second hash (the
/// tag kept beside it). Finding such a pair would take ~2³² tries: the first hash
/// of the second is forced instead.
#[test]
fn ids_with_the_same_hash_are_told_apart() {
    let mut ids = RecentIds::new(100);
    let (a, b) = (1u128, 2u128);
    let ka = ids.key(a);
    let mut kb = ids.key(b);
    kb.x = ka.x;
    if kb.tag == ka.tag {
        kb.tag ^= 1;
    }
    ids.remember(ka, true);
    assert!(ids.table.find(ka).is_some());
    assert_eq!(ids.table.find(kb), None, "same hash, different tag");
    ids.remember(kb, true);
    assert!(ids.table.find(ka).is_some() && ids.table.find(kb).is_some());
}

#[test]
fn grows_past_its_first_table_and_keeps_every_id() {
    let mut ids = RecentIds::new(1_000_000);
    for id in 1..=100_000u128 {
        assert_eq!(ids.insert(id * 0x9e37_79b9_7f4a_7c15), Seen::New);
    }
    let again: Vec<u128> = (1..=100_000u128)
        .map(|id| id * 0x9e37_79b9_7f4a_7c15)
        .collect();
    ids.reserve(500_000);
    assert!(ids.insert_all(&again).iter().all(|s| *s == Seen::ThisRun));
    assert_eq!(
        ids.insert(0),
        Seen::New,
        "the nil id is an id like any other"
    );
    assert_eq!(ids.insert(0), Seen::ThisRun);
}

/// Hashes crowded into a few homes at the table's end: runs wrap past slot 0,
/// and a generation's pass and backward shifts keep every id findable.
#[test]
fn runs_that_wrap_past_the_end_stay_findable() {
    let mut ids = RecentIds::new(64);
    let n = ids.table.hashes.len() as u64;
    // Hashes whose homes are the last two slots.
    let key = |i: u64| Key {
        x: u64::MAX - i * (u64::MAX / n / 64),
        tag: (i % 1000) as u16,
    };
    for i in 0..40 {
        ids.remember(key(i), true);
    }
    for i in 0..40 {
        assert!(ids.table.find(key(i)).is_some(), "{i}");
    }
    let at = ids.table.find(key(3)).unwrap();
    ids.table.remove(at);
    ids.table.retain(|m| m >> TAG_SHIFT != 7);
    for i in 0..40 {
        assert_eq!(ids.table.find(key(i)).is_some(), i != 3 && i != 7, "{i}");
    }
    assert_eq!(ids.len(), 38);
}
