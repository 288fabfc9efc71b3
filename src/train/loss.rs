//! Contrastive loss (Hadsell, Chopra & LeCun 2006) with **Y = 0 for a similar pair** and Y = 1 for a
//! dissimilar one: `L = (1 − Y)·½·D² + Y·½·max(0, m − D)²`, D the Euclidean distance of the two embeddings, m
//! the margin; over explicit pairs, over every pair of a batch, and with skilled forgeries as a third kind.
//! And [`nt_xent`] for self-supervised training, where the two views of one image are the only positives.

use tch::{Kind, Tensor};

/// Contrastive loss with margin `m` (Y = 0 for similar pairs).
#[derive(Debug, Clone, Copy)]
pub struct ContrastiveLoss {
    pub margin: f64,
}

impl ContrastiveLoss {
    /// `ea`, `eb`: `[B, E]`; `dissimilar`: `[B]` float, 0 = same identity (Y = 0), 1 = different.
    pub fn forward(&self, ea: &Tensor, eb: &Tensor, dissimilar: &Tensor) -> Tensor {
        let d2 = (ea - eb).square().sum_dim_intlist([1i64].as_slice(), false, Kind::Float);
        let d = (&d2 + 1e-12).sqrt();
        let similar_term: Tensor = (1.0 - dissimilar) * 0.5 * &d2;
        let dissimilar_term: Tensor = dissimilar * 0.5 * (self.margin - d).relu().square();
        (similar_term + dissimilar_term).mean(Kind::Float)
    }
}

impl ContrastiveLoss {
    /// Every pair within a batch: `e` `[N, E]`, `labels` `[N]` identity indices. Positive and negative
    /// pairs are averaged separately and added, so the two kinds weigh the same however many there are.
    pub fn forward_all_pairs(&self, e: &Tensor, labels: &Tensor) -> Tensor {
        let n = e.size()[0];
        let d2 = (e.unsqueeze(1) - e.unsqueeze(0)).square().sum_dim_intlist([2i64].as_slice(), false, Kind::Float);
        let d = (&d2 + 1e-12).sqrt();
        let same = labels.unsqueeze(1).eq_tensor(&labels.unsqueeze(0));
        let eye = Tensor::eye(n, (Kind::Bool, e.device()));
        let pos = same.logical_and(&eye.logical_not()).to_kind(Kind::Float);
        let neg = same.logical_not().to_kind(Kind::Float);
        let lp = (&pos * 0.5 * &d2).sum(Kind::Float) / pos.sum(Kind::Float).clamp_min(1.0);
        let ln =
            (&neg * 0.5 * (self.margin - d).relu().square()).sum(Kind::Float) / neg.sum(Kind::Float).clamp_min(1.0);
        lp + ln
    }

    /// Every pair within a batch that holds skilled forgeries: `labels` `[N]` identity indices (each forgery
    /// a label of its own), `owner` `[N]` the identity each row belongs to or imitates. Three kinds of pair
    /// are averaged separately and added: genuine pairs of one identity, an identity's genuine sample against
    /// a forgery of it (the hard case), and rows of different identities. The skilled forgeries would
    /// otherwise be outnumbered many times by the easy pairs of different people.
    pub fn forward_with_forgeries(&self, e: &Tensor, labels: &Tensor, owner: &Tensor) -> Tensor {
        let n = e.size()[0];
        let d2 = (e.unsqueeze(1) - e.unsqueeze(0)).square().sum_dim_intlist([2i64].as_slice(), false, Kind::Float);
        let d = (&d2 + 1e-12).sqrt();
        let same = labels.unsqueeze(1).eq_tensor(&labels.unsqueeze(0));
        let same_owner = owner.unsqueeze(1).eq_tensor(&owner.unsqueeze(0));
        let genuine = labels.eq_tensor(owner);
        // A row is genuine when its label is its owner; a skilled pair has one genuine row and one forgery.
        let one_genuine = genuine.unsqueeze(1).logical_xor(&genuine.unsqueeze(0));
        let eye = Tensor::eye(n, (Kind::Bool, e.device()));
        let pos = same.logical_and(&eye.logical_not()).to_kind(Kind::Float);
        let skilled = same_owner.logical_and(&one_genuine).to_kind(Kind::Float);
        let other = same_owner.logical_not().to_kind(Kind::Float);
        let hinge = (self.margin - d).relu().square() * 0.5;
        let avg = |mask: &Tensor, v: &Tensor| (mask * v).sum(Kind::Float) / mask.sum(Kind::Float).clamp_min(1.0);
        avg(&pos, &(&d2 * 0.5)) + avg(&skilled, &hinge) + avg(&other, &hinge)
    }
}

/// NT-Xent (SimCLR, Chen et al. 2020) over `e` `[2N, E]`: rows `i` and `i + N` are two augmented views of
/// one image (the positive pair), every other row of the batch a negative. Cosine similarities divided by
/// `temperature`; cross-entropy of each row's positive against all its other rows.
pub fn nt_xent(e: &Tensor, temperature: f64) -> Tensor {
    let n2 = e.size()[0];
    let n = n2 / 2;
    let z = e / e.norm_scalaropt_dim(2.0, [1i64].as_slice(), true).clamp_min(1e-12);
    let sim = z.matmul(&z.transpose(0, 1)) / temperature;
    let eye = Tensor::eye(n2, (Kind::Bool, e.device()));
    let sim = sim.masked_fill(&eye, -1e9);
    let targets = Tensor::arange(n2, (Kind::Int64, e.device())).remainder(n2).g_add_scalar(n).remainder(n2);
    sim.cross_entropy_for_logits(&targets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nt_xent_is_low_when_the_two_views_agree_and_high_when_they_do_not() {
        // Two images, two views each: views of one image together, the images apart.
        let agree = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0, 1.0, 0.05, 0.05, 1.0]).reshape([4, 2]);
        let swapped = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0, 0.05, 1.0, 1.0, 0.05]).reshape([4, 2]);
        let (a, b) = (nt_xent(&agree, 0.1).double_value(&[]), nt_xent(&swapped, 0.1).double_value(&[]));
        assert!(a < 0.01 && b > 5.0, "{a} {b}");
    }

    #[test]
    fn forgery_aware_loss_averages_the_three_kinds_of_pair_separately() {
        // Rows: writer 0 genuine ×2, a forgery of writer 0, writer 1 genuine. 2-d embeddings on a line.
        let e = Tensor::from_slice(&[0.0f32, 0.0, 0.2, 0.0, 0.5, 0.0, 3.0, 0.0]).reshape([4, 2]);
        let labels = Tensor::from_slice(&[0i64, 0, 2, 1]);
        let owner = Tensor::from_slice(&[0i64, 0, 0, 1]);
        let m = 1.0;
        let got = ContrastiveLoss { margin: m }.forward_with_forgeries(&e, &labels, &owner).double_value(&[]);
        let hinge = |d: f64| 0.5 * (m - d).max(0.0).powi(2);
        // Positives: (0,1) both ways, D = 0.2. Skilled: (0,2) D = 0.5, (1,2) D = 0.3, both ways.
        // Others: every pair with row 3: D = 3.0, 2.8, 2.5 — beyond the margin.
        let want = 0.5 * 0.2f64.powi(2) + (hinge(0.5) + hinge(0.3)) / 2.0 + 0.0;
        assert!((got - want).abs() < 1e-6, "{got} vs {want}");
    }

    #[test]
    fn forgeries_sharing_a_forger_class_label_are_positives_of_each_other() {
        // Rows: writer 0 genuine ×2, two forgeries of writer 0 (one forger class, label 7), writer 1 genuine.
        let e = Tensor::from_slice(&[0.0f32, 0.0, 0.2, 0.0, 0.5, 0.0, 0.9, 0.0, 3.0, 0.0]).reshape([5, 2]);
        let owner = Tensor::from_slice(&[0i64, 0, 0, 0, 1]);
        let m = 1.0;
        let hinge = |d: f64| 0.5 * (m - d).max(0.0).powi(2);
        let loss = |labels: &[i64]| {
            ContrastiveLoss { margin: m }
                .forward_with_forgeries(&e, &Tensor::from_slice(labels), &owner)
                .double_value(&[])
        };
        // Skilled pairs either way: genuine rows 0, 1 against forgeries 2, 3: D = 0.5, 0.9, 0.3, 0.7.
        let skilled = (hinge(0.5) + hinge(0.9) + hinge(0.3) + hinge(0.7)) / 4.0;
        // Unique forgery labels: the only positive pair is (0,1), D = 0.2.
        let unique = loss(&[0, 0, 7, 8, 1]);
        assert!((unique - (0.5 * 0.04 + skilled)).abs() < 1e-6, "{unique}");
        // One forger class: (2,3), D = 0.4, is a positive too.
        let shared = loss(&[0, 0, 7, 7, 1]);
        let want = 0.5 * (0.04 + 0.16) / 2.0 + skilled;
        assert!((shared - want).abs() < 1e-6, "{shared} vs {want}");
    }
}
