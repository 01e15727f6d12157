//! How many keys to ask for in one `DUMP` round trip, when the values' sizes are unknown.
//!
//! A DUMP's size is only known once it arrives, and a round trip's replies are held in memory
//! whole. So readers (the copy's and verify's) size each round trip by a running estimate of
//! the record size that starts at a large-value guess: a page of 1 MB values fetched as if they
//! were 100 B would be gigabytes in one round trip. The estimate jumps up at once when values are
//! larger than it, and comes down at most fourfold per round trip, so with small values round
//! trips reach full size after a handful of them.

/// The record size assumed before any value has been seen.
pub const FIRST_GUESS: usize = 1 << 20;

/// The estimate after a round trip whose records averaged `seen` bytes.
pub fn next_estimate(estimate: usize, seen: usize) -> usize {
    seen.max(estimate / 4).max(1)
}

/// Keys for a round trip of about `budget` bytes: at least 1, at most `max_keys`.
pub fn keys_per_round_trip(budget: usize, estimate: usize, max_keys: usize) -> usize {
    (budget / estimate.max(1)).clamp(1, max_keys.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_small_grows_within_a_few_round_trips_and_jumps_back_up() {
        let budget = 4 << 20;
        let mut est = FIRST_GUESS;
        assert_eq!(keys_per_round_trip(budget, est, 5000), 4);
        let mut trips = 0;
        while keys_per_round_trip(budget, est, 5000) < 5000 {
            est = next_estimate(est, 124);
            trips += 1;
        }
        assert!(trips <= 8, "{trips} round trips to reach full size");
        // One round trip of 1 MB values: back to 4 keys at once.
        est = next_estimate(est, 1 << 20);
        assert_eq!(keys_per_round_trip(budget, est, 5000), 4);
        assert_eq!(keys_per_round_trip(budget, 64 << 20, 5000), 1);
    }
}
