use super::*;
use proptest::prelude::*;

proptest! {
    /// Whatever the text, a period is a range of whole months or a clear refusal.
    #[test]
    fn any_period_text_is_a_range_or_a_refusal(p in "\\PC{0,12}|[0-9]{1,7}(-(Q[0-9]{1,2}|[0-9]{1,3}))?") {
        match period_range(&p) {
            Ok((from, to)) => {
                prop_assert_eq!(from.day(), 1);
                prop_assert!(to >= from);
                prop_assert_eq!(to.succ_opt().map(|d| d.day()), Some(1));
            }
            Err(e) => {
                let quoted = format!("{:?}", p);
                prop_assert!(e.to_string().contains(&quoted));
            }
        }
    }
}

#[test]
fn periods() {
    let d = |s: &str| s.parse::<NaiveDate>().unwrap();
    assert_eq!(
        period_range("2024-02").unwrap(),
        (d("2024-02-01"), d("2024-02-29"))
    );
    assert_eq!(
        period_range("2024-Q4").unwrap(),
        (d("2024-10-01"), d("2024-12-31"))
    );
    assert_eq!(
        period_range("2023").unwrap(),
        (d("2023-01-01"), d("2023-12-31"))
    );
    for bad in [
        "2024-13",
        "2024-Q5",
        "24",
        "2024-3",
        "march",
        "262142-Q4",
        "0000-00",
        "0000",
        "2024-00",
        "2024-Q0",
        "2024-Q",
        "+2024",
        "2024-1a",
        "２０２４",
        "9999-Q5",
        "",
    ] {
        let e = period_range(bad).expect_err(bad);
        assert!(e.to_string().contains("YYYY-MM"), "{bad}: {e}");
    }
    assert_eq!(
        period_range("9999-Q4").unwrap(),
        (d("9999-10-01"), d("9999-12-31"))
    );
    assert_eq!(
        scheduled_period("previous_month", d("2024-01-01")),
        "2023-12"
    );
    assert_eq!(
        scheduled_period("previous_quarter", d("2024-02-01")),
        "2023-Q4"
    );
    assert_eq!(
        scheduled_period("previous_quarter", d("2024-07-01")),
        "2024-Q2"
    );
    assert_eq!(scheduled_period("previous_year", d("2024-01-01")), "2023");
}
