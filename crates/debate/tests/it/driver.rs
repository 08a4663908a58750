//! The suite's driver ([`run_each`]): results in the suite's order and the first error in that
//! order, whatever the number of threads and the order the runs end in.

use snpsim_debate::debate::{Part, run_each, suite};

#[test]
fn results_and_the_first_error_follow_the_suite_s_order_whatever_the_threads() {
    let entries = suite().unwrap();
    assert!(entries.len() > 100, "{}", entries.len());
    // Later entries end first: each waits longer the earlier it is in the suite (a few ms).
    let wait =
        |i: usize| std::thread::sleep(std::time::Duration::from_micros(((entries.len() - i) * 20) as u64));
    for threads in [1, 3] {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
        let names = pool
            .install(|| {
                run_each(&entries, |i, e| {
                    wait(i);
                    Ok::<_, ()>((i, e.source.clone()))
                })
            })
            .unwrap();
        let expected: Vec<(usize, String)> = entries.iter().map(|e| e.source.clone()).enumerate().collect();
        assert_eq!(names, expected, "{threads} threads");
        // The first claim and the last entry fail, the first claim 50 ms after the last: the first
        // claim's error is the one returned.
        let (first_claim, last) =
            (entries.iter().position(|e| e.part == Part::Claim).unwrap(), entries.len() - 1);
        let err = pool
            .install(|| {
                run_each(&entries, |i, _| {
                    if i == first_claim {
                        std::thread::sleep(std::time::Duration::from_millis(50));
                    }
                    if i == first_claim || i == last { Err(i) } else { Ok(()) }
                })
            })
            .unwrap_err();
        assert_eq!(err, first_claim, "{threads} threads");
    }
}
