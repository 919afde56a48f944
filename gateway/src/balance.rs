//! Choosing a replica: the least outstanding requests among the eligible candidates, ties
//! broken at random. A plain function of the candidates' loads and a random source (no sockets,
//! no clocks), driven by [`crate::pool`], which keeps the loads.

use rand::Rng;

/// Picks, among `candidates` (`(key, outstanding requests)`), a key with the fewest outstanding
/// requests; among equals each is equally likely. `None` when there is no candidate. One pass,
/// no allocation (reservoir sampling over the ties).
pub fn least_loaded<K, R: Rng + ?Sized>(
    candidates: impl IntoIterator<Item = (K, usize)>,
    rng: &mut R,
) -> Option<K> {
    let mut best: Option<(K, usize)> = None;
    let mut ties: u32 = 0;
    for (key, load) in candidates {
        match &best {
            Some((_, min)) if load > *min => {}
            Some((_, min)) if load == *min => {
                ties = ties.saturating_add(1);
                if rng.gen_range(0..ties) == 0 {
                    best = Some((key, load));
                }
            }
            _ => {
                best = Some((key, load));
                ties = 1;
            }
        }
    }
    best.map(|(key, _)| key)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn none_without_candidates() {
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(least_loaded(Vec::<(u8, usize)>::new(), &mut rng), None);
    }

    #[test]
    fn picks_the_least_loaded() {
        let mut rng = StdRng::seed_from_u64(2);
        for _ in 0..100 {
            let pick = least_loaded([("a", 3), ("b", 1), ("c", 2), ("d", 5)], &mut rng);
            assert_eq!(pick, Some("b"));
        }
    }

    #[test]
    fn ties_are_spread_evenly() {
        let seed = 7;
        let mut rng = StdRng::seed_from_u64(seed);
        let mut counts = [0u32; 4];
        for _ in 0..4000 {
            let pick = least_loaded([(0, 2), (1, 0), (2, 0), (3, 0)], &mut rng);
            if let Some(i) = pick
                && let Some(c) = counts.get_mut(i)
            {
                *c += 1;
            }
        }
        assert_eq!(counts.first(), Some(&0), "seed {seed}");
        for (i, n) in counts.iter().enumerate().skip(1) {
            assert!(
                (1100..1600).contains(n),
                "seed {seed}: replica {i} got {n} of 4000"
            );
        }
    }
}
