//! Property tests for the distances and the metrics built on them.

use proptest::prelude::*;
use siamese::distance::{cosine, euclidean, l2_normalize, Metric};
use siamese::metrics;

fn vec_pair() -> impl Strategy<Value = (Vec<f32>, Vec<f32>)> {
    (1usize..64).prop_flat_map(|n| (prop::collection::vec(-100f32..100.0, n), prop::collection::vec(-100f32..100.0, n)))
}

proptest! {
    #[test]
    fn distances_are_symmetric((a, b) in vec_pair()) {
        for m in Metric::ALL {
            prop_assert_eq!(m.distance(&a, &b), m.distance(&b, &a));
        }
    }

    #[test]
    fn identical_inputs_are_at_distance_zero((a, _) in vec_pair()) {
        prop_assert_eq!(euclidean(&a, &a), 0.0);
        if a.iter().any(|x| *x != 0.0) {
            prop_assert!(cosine(&a, &a).abs() < 1e-6);
        }
    }

    #[test]
    fn distances_are_non_negative_and_cosine_bounded((a, b) in vec_pair()) {
        prop_assert!(euclidean(&a, &b) >= 0.0);
        let c = cosine(&a, &b);
        prop_assert!((0.0..=2.0).contains(&c));
    }

    #[test]
    fn cosine_ignores_positive_scaling((a, b) in vec_pair(), s in 0.01f32..100.0) {
        prop_assume!(a.iter().any(|x| x.abs() > 1e-3) && b.iter().any(|x| x.abs() > 1e-3));
        let sa: Vec<f32> = a.iter().map(|x| x * s).collect();
        prop_assert!((cosine(&sa, &b) - cosine(&a, &b)).abs() < 1e-4);
    }

    #[test]
    fn cosine_of_opposite_vectors_is_two((a, _) in vec_pair()) {
        prop_assume!(a.iter().any(|x| x.abs() > 1e-3));
        let neg: Vec<f32> = a.iter().map(|x| -x).collect();
        prop_assert!((cosine(&a, &neg) - 2.0).abs() < 1e-5);
    }

    #[test]
    fn euclidean_obeys_the_triangle_inequality((a, b) in vec_pair(), seed in 0u64..1000) {
        let c: Vec<f32> = a.iter().enumerate().map(|(i, x)| x * 0.5 + ((i as u64 * 31 + seed) % 17) as f32).collect();
        prop_assert!(euclidean(&a, &b) <= euclidean(&a, &c) + euclidean(&c, &b) + 1e-3);
    }

    #[test]
    fn normalising_is_idempotent((a, _) in vec_pair()) {
        let mut once = a.clone();
        l2_normalize(&mut once);
        let mut twice = once.clone();
        l2_normalize(&mut twice);
        for (x, y) in once.iter().zip(&twice) {
            prop_assert!((x - y).abs() < 1e-6);
        }
    }

    #[test]
    fn on_unit_vectors_euclidean_squared_is_twice_cosine((a, b) in vec_pair()) {
        prop_assume!(a.iter().any(|x| x.abs() > 1e-3) && b.iter().any(|x| x.abs() > 1e-3));
        let (mut a, mut b) = (a, b);
        l2_normalize(&mut a);
        l2_normalize(&mut b);
        prop_assert!((euclidean(&a, &b).powi(2) - 2.0 * cosine(&a, &b)).abs() < 1e-4);
    }

    #[test]
    fn eer_and_auc_are_within_bounds(g in prop::collection::vec(0f32..2.0, 1..50), i in prop::collection::vec(0f32..2.0, 1..50)) {
        let (e, _) = metrics::eer(&g, &i);
        let a = metrics::auc(&g, &i);
        prop_assert!((0.0..=1.0).contains(&e));
        prop_assert!((0.0..=1.0).contains(&a));
    }

    #[test]
    fn threshold_at_far_keeps_the_false_accept_rate((g, i) in (prop::collection::vec(0f32..2.0, 1..50), prop::collection::vec(0f32..2.0, 1..3000))) {
        let (t, _) = metrics::threshold_at_far(&g, &i, 1e-3);
        let (far, _) = metrics::rates_at(&g, &i, t);
        prop_assert!(far <= 1e-3);
    }
}

#[test]
fn zero_vector_has_cosine_distance_one_to_anything() {
    let z = vec![0.0f32; 8];
    let v: Vec<f32> = (0..8).map(|i| i as f32).collect();
    assert_eq!(cosine(&z, &v), 1.0);
    assert_eq!(cosine(&z, &z), 1.0);
    assert_eq!(euclidean(&z, &z), 0.0);
    assert!((euclidean(&z, &v) - v.iter().map(|x| x * x).sum::<f32>().sqrt()).abs() < 1e-5);
}

#[test]
fn separable_distances_have_zero_eer_and_unit_auc() {
    let g = [0.1f32, 0.2, 0.3];
    let i = [0.5f32, 0.6, 0.9, 1.2];
    let (e, t) = metrics::eer(&g, &i);
    assert_eq!(e, 0.0);
    assert!(t > 0.3 && t < 0.5, "threshold {t}");
    assert_eq!(metrics::auc(&g, &i), 1.0);
    assert_eq!(metrics::accuracy_at(&g, &i, t), 1.0);
}

#[test]
fn identical_distributions_have_half_auc_and_half_eer() {
    let g: Vec<f32> = (0..100).map(|k| k as f32 / 100.0).collect();
    let (e, _) = metrics::eer(&g, &g);
    assert!((metrics::auc(&g, &g) - 0.5).abs() < 1e-9);
    assert!((e - 0.5).abs() < 0.02, "eer {e}");
}

#[test]
fn logistic_calibration_is_decreasing_and_half_near_the_crossing() {
    let g: Vec<f32> = (0..200).map(|k| 0.2 + 0.3 * (k as f32 / 200.0)).collect();
    let i: Vec<f32> = (0..800).map(|k| 0.4 + 0.6 * (k as f32 / 800.0)).collect();
    let s = metrics::fit_logistic(&g, &i);
    assert!(s.b < 0.0);
    assert!(s.score(0.1) > 0.9 && s.score(1.2) < 0.1);
    let mid = -s.a / s.b;
    assert!(mid > 0.4 && mid < 0.5, "p = ½ at {mid}");
}
