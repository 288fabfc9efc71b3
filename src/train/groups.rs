//! Layer groups for transfer learning. A network's variables fall into groups `stage0` … `stage{N-1}` (from
//! the input on) and `head` (the projection to the embedding); each group is one optimiser group, so a run
//! can keep groups fixed (`freeze`: no gradient, batch-norm statistics as loaded) and give each group its own
//! learning-rate multiplier (`lr_mult`: smaller near the input).

use tch::nn;

/// The group names of a network with `stages` stages, in optimiser-group order.
pub fn names(stages: usize) -> Vec<String> {
    (0..stages).map(|i| format!("stage{i}")).chain(std::iter::once("head".to_string())).collect()
}

/// The optimiser group called `name` (`stage{i}` or `head`).
pub fn parse(name: &str, stages: usize) -> Result<usize, String> {
    let unknown = || format!("unknown layer group '{name}' (this network has {})", names(stages).join(", "));
    if name == "head" {
        return Ok(stages);
    }
    let i: usize = name.strip_prefix("stage").and_then(|n| n.parse().ok()).ok_or_else(unknown)?;
    if i < stages {
        Ok(i)
    } else {
        Err(unknown())
    }
}

/// The group of the variable `var` (its `VarStore` name): `stage{i}.…` is stage `i` (dlib's fully
/// connected layer lives under `stage{N}` and is the head), anything else (`proj.…`) the head. An ensemble's
/// `member{j}.` prefix is looked through.
pub fn of_variable(var: &str, stages: usize) -> usize {
    let var = match var.strip_prefix("member") {
        Some(rest) => rest.split_once('.').map_or(rest, |(_, v)| v),
        None => var,
    };
    var.strip_prefix("stage")
        .and_then(|r| r.split('.').next())
        .and_then(|n| n.parse::<usize>().ok())
        .map_or(stages, |i| i.min(stages))
}

/// Stop the gradient of every variable in a `frozen` group.
pub fn freeze(vs: &nn::VarStore, frozen: &[usize], stages: usize) {
    for (name, t) in vs.variables() {
        if frozen.contains(&of_variable(&name, stages)) {
            let _ = t.set_requires_grad(false);
        }
    }
}

/// Each group's learning rate: `base` times its multiplier (1 for a group `mult` does not cover).
pub fn learning_rates(base: f64, mult: &[f64], stages: usize) -> Vec<f64> {
    (0..=stages).map(|g| base * mult.get(g).copied().unwrap_or(1.0)).collect()
}

/// The multipliers of `--stage-lr-decay F`: each stage `F` times the rate of the next, the head 1.
pub fn decay_multipliers(decay: f64, stages: usize) -> Vec<f64> {
    (0..=stages).map(|g| decay.powi((stages - g) as i32)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Architecture, Head, InputSpec, Network, Preprocess};
    use tch::nn::OptimizerConfig;
    use tch::{Device, Kind, Tensor};

    fn input(w: u32, h: u32, c: u32) -> InputSpec {
        InputSpec {
            width: w,
            height: h,
            channels: c,
            mean: vec![0.5; c as usize],
            std: vec![0.5; c as usize],
            mirror_average: false,
            tta: vec![],
            preprocess: Preprocess::Resize,
        }
    }

    /// A few optimiser steps of `net` with `frozen` groups and per-group rates from `mult`, on random
    /// data; returns every variable before and after.
    fn steps(
        vs: &nn::VarStore,
        net: &mut Network,
        spec: &InputSpec,
        frozen: &[usize],
        mult: &[f64],
    ) -> Vec<(String, Tensor, Tensor)> {
        let stages = net.num_stages();
        net.frozen = frozen.to_vec();
        freeze(vs, frozen, stages);
        let before: Vec<(String, Tensor)> = vs.variables().into_iter().map(|(k, v)| (k, v.copy())).collect();
        let mut opt = nn::Adam::default().build(vs, 1e-2).unwrap();
        for (g, lr) in learning_rates(1e-2, mult, stages).into_iter().enumerate() {
            opt.set_lr_group(g, lr);
        }
        tch::manual_seed(3);
        for _ in 0..2 {
            let x = Tensor::rand(
                [4, spec.channels as i64, spec.height as i64, spec.width as i64],
                (Kind::Float, Device::Cpu),
            );
            let e = net.forward(&x, true);
            let loss = (e.narrow(0, 0, 2) - e.narrow(0, 2, 2)).square().sum(Kind::Float);
            opt.zero_grad();
            loss.backward();
            opt.step();
        }
        let after = vs.variables();
        before.into_iter().map(|(k, b)| (k.clone(), b, after[&k].copy())).collect()
    }

    fn same(a: &Tensor, b: &Tensor) -> bool {
        a.equal(b)
    }

    #[test]
    fn group_names_parse_and_unknown_groups_are_refused() {
        assert_eq!(names(3), ["stage0", "stage1", "stage2", "head"]);
        assert_eq!(parse("stage1", 3), Ok(1));
        assert_eq!(parse("head", 3), Ok(3));
        for bad in ["stage3", "stage", "conv1", "Stage0", ""] {
            let e = parse(bad, 3).unwrap_err();
            assert!(e.contains("unknown layer group"), "{e}");
        }
        assert_eq!(of_variable("stage2.conv0.weight", 3), 2);
        assert_eq!(of_variable("proj.weight", 3), 3);
        assert_eq!(of_variable("member1.stage0.bn0.running_mean", 3), 0);
        assert_eq!(of_variable("stage6.fc.weight", 6), 6);
        assert_eq!(decay_multipliers(0.5, 2), vec![0.25, 0.5, 1.0]);
        assert_eq!(learning_rates(0.1, &[0.5], 2), vec![0.05, 0.1, 0.1]);
    }

    #[test]
    fn frozen_groups_stay_bit_identical_and_a_zero_rate_group_does_not_move_on_a_small_network() {
        let spec = input(24, 16, 1);
        let arch = Architecture::ConvNet {
            channels: vec![4, 8, 8],
            convs: vec![1, 1, 1],
            embedding: 8,
            dropout: 0.0,
            l2_normalize: true,
            head: Head::GlobalAverage,
        };
        tch::manual_seed(1);
        let vs = nn::VarStore::new(Device::Cpu);
        let mut net = Network::new(&vs.root(), &arch, &spec);
        // stage0 frozen; stage1 learns at rate 0 (its batch-norm statistics still follow the data); the
        // rest learns.
        let moved = steps(&vs, &mut net, &spec, &[0], &[1.0, 0.0, 1.0, 1.0]);
        for (name, before, after) in &moved {
            let g = of_variable(name, 3);
            let stat = name.contains("running_");
            match g {
                0 => assert!(same(before, after), "frozen {name} changed"),
                1 if !stat => assert!(same(before, after), "{name} moved at learning rate 0"),
                2 | 3 if !stat => assert!(!same(before, after), "{name} did not learn"),
                _ => {}
            }
        }
    }

    #[test]
    fn frozen_groups_stay_bit_identical_on_the_dlib_encoders_real_groups() {
        let spec = InputSpec { width: 150, height: 150, ..input(150, 150, 3) };
        let arch = Architecture::DlibResnet { l2_normalize: true };
        tch::manual_seed(2);
        let vs = nn::VarStore::new(Device::Cpu);
        let mut net = Network::new(&vs.root(), &arch, &spec);
        let stages = net.num_stages();
        assert_eq!(names(stages).len(), crate::dlib::STAGES + 1);
        // Every variable is in a real group, and every group has variables.
        let mut seen = vec![0; stages + 1];
        for (name, _) in vs.variables() {
            seen[of_variable(&name, stages)] += 1;
        }
        assert!(seen.iter().all(|n| *n > 0), "variables per group {seen:?}");
        // Stages 0–3 frozen, stage 4 at a tenth of the rate, stage 5 and the head at full rate.
        let mult = [1.0, 1.0, 1.0, 1.0, 0.1, 1.0, 1.0];
        let moved = steps(&vs, &mut net, &spec, &[0, 1, 2, 3], &mult);
        let mut change = vec![0f64; stages + 1];
        for (name, before, after) in &moved {
            let g = of_variable(name, stages);
            if g <= 3 {
                assert!(same(before, after), "frozen {name} changed");
            }
            change[g] = change[g].max((after - before).abs().max().double_value(&[]));
        }
        assert!(change[4] > 0.0 && change[5] > 0.0 && change[6] > 0.0, "unfrozen groups learn: {change:?}");
        // Adam's first steps move a weight by about its rate each: a tenth of the rate, about a tenth the move.
        assert!(change[4] < 0.25 * change[5], "stage4's rate is a tenth of stage5's: {change:?}");
    }
}
