//! Folder-per-identity datasets (`DIR/<identity>/<image>`; the AT&T layout works as is), identity-disjoint
//! splits, and the pairs that training and evaluation compare.

use rand::seq::SliceRandom;
use rand::Rng;
use std::path::{Path, PathBuf};

/// One identity (person, writer) and its image files, sorted by name.
#[derive(Debug, Clone)]
pub struct Identity {
    pub name: String,
    pub images: Vec<PathBuf>,
    /// Skilled forgeries of this identity (signature datasets); never a genuine sample of anyone.
    pub forgeries: Vec<PathBuf>,
}

/// A set of identities.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub root: PathBuf,
    pub identities: Vec<Identity>,
}

const IMAGE_EXTS: &[&str] = &["pgm", "pnm", "ppm", "pbm", "png", "jpg", "jpeg", "bmp", "gif", "tif", "tiff", "webp"];

/// Errors reading a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    #[error("cannot read dataset directory {0}: {1}")]
    Io(PathBuf, std::io::Error),
    #[error("identity '{0}' is not in the dataset at {1}")]
    UnknownIdentity(String, PathBuf),
    #[error("bad identity list '{0}': use names separated by commas, or a range like s31-s35")]
    BadList(String),
    #[error("pairs file {0}, line {1}: {2}")]
    BadPairs(PathBuf, usize, String),
}

/// Compare names so that `s2 < s10` and `original_41_2.png < original_41_10.png`: every run of digits
/// compares as a number, the rest as text (ties, e.g. `07` vs `7`, fall back to plain order).
pub fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return a.cmp(b),
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(p), Some(q)) if p.is_ascii_digit() && q.is_ascii_digit() => {
                let run = |s: &[u8]| s.iter().take_while(|c| c.is_ascii_digit()).count();
                let (m, n) = (run(x), run(y));
                // Compare the digit runs as numbers of any length: without leading zeros, the longer is larger.
                let trim = |s: &[u8]| {
                    let z = s.iter().take_while(|c| **c == b'0').count();
                    s[z..].to_vec()
                };
                let (u, v) = (trim(&x[..m]), trim(&y[..n]));
                let o = u.len().cmp(&v.len()).then_with(|| u.cmp(&v));
                if o != Ordering::Equal {
                    return o;
                }
                (x, y) = (&x[m..], &y[n..]);
            }
            (Some(p), Some(q)) => {
                if p != q {
                    return p.cmp(q);
                }
                (x, y) = (&x[1..], &y[1..]);
            }
        }
    }
}

impl Dataset {
    /// Read every sub-directory of `root` that holds at least one image; a CEDAR-style root (with
    /// `full_org/` and `full_forg/`) is read with [`Dataset::open_cedar`].
    pub fn open(root: &Path) -> Result<Self, DatasetError> {
        if root.join("full_org").is_dir() {
            return Self::open_cedar(root);
        }
        let io = |e| DatasetError::Io(root.to_path_buf(), e);
        let mut identities = Vec::new();
        for entry in std::fs::read_dir(root).map_err(io)? {
            let dir = entry.map_err(io)?.path();
            if !dir.is_dir() {
                continue;
            }
            let mut images: Vec<PathBuf> = std::fs::read_dir(&dir)
                .map_err(|e| DatasetError::Io(dir.clone(), e))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .and_then(|e| e.to_str())
                        .is_some_and(|e| IMAGE_EXTS.contains(&e.to_ascii_lowercase().as_str()))
                })
                .collect();
            images.sort_by(|a, b| natural_cmp(&a.to_string_lossy(), &b.to_string_lossy()));
            if !images.is_empty() {
                let name = dir.file_name().unwrap_or_default().to_string_lossy().into_owned();
                identities.push(Identity { name, images, forgeries: Vec::new() });
            }
        }
        identities.sort_by(|a, b| natural_cmp(&a.name, &b.name));
        Ok(Dataset { root: root.to_path_buf(), identities })
    }

    /// The identities named, in the order named.
    pub fn subset(&self, names: &[String]) -> Result<Dataset, DatasetError> {
        let identities = names
            .iter()
            .map(|n| {
                self.identities
                    .iter()
                    .find(|i| &i.name == n)
                    .cloned()
                    .ok_or_else(|| DatasetError::UnknownIdentity(n.clone(), self.root.clone()))
            })
            .collect::<Result<_, _>>()?;
        Ok(Dataset { root: self.root.clone(), identities })
    }

    /// Shuffle identities with `rng` and split off `ratio` of them (at least one) as the second set.
    pub fn split_ratio(&self, ratio: f64, rng: &mut impl Rng) -> (Dataset, Dataset) {
        let mut ids = self.identities.clone();
        ids.shuffle(rng);
        let k = ((ids.len() as f64 * ratio).round() as usize).clamp(1, ids.len().saturating_sub(1).max(1));
        let second = ids.split_off(ids.len() - k);
        (Dataset { root: self.root.clone(), identities: ids }, Dataset { root: self.root.clone(), identities: second })
    }

    pub fn names(&self) -> Vec<String> {
        self.identities.iter().map(|i| i.name.clone()).collect()
    }

    /// CEDAR layout: `full_org/original_<w>_<n>.png` (genuine) and `full_forg/forgeries_<w>_<n>.png`
    /// (skilled forgeries of writer `w`). Writers are named `w<N>`.
    pub fn open_cedar(root: &Path) -> Result<Self, DatasetError> {
        use std::collections::BTreeMap;
        let mut by_writer: BTreeMap<u32, Identity> = BTreeMap::new();
        for (dir, prefix, genuine) in [("full_org", "original_", true), ("full_forg", "forgeries_", false)] {
            let d = root.join(dir);
            if !d.is_dir() {
                continue;
            }
            for entry in std::fs::read_dir(&d).map_err(|e| DatasetError::Io(d.clone(), e))? {
                let path = entry.map_err(|e| DatasetError::Io(d.clone(), e))?.path();
                let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
                let Some(rest) = stem.strip_prefix(prefix) else { continue };
                let Some(w) = rest.split('_').next().and_then(|w| w.parse::<u32>().ok()) else { continue };
                let id = by_writer.entry(w).or_insert_with(|| Identity {
                    name: format!("w{w}"),
                    images: Vec::new(),
                    forgeries: Vec::new(),
                });
                if genuine {
                    id.images.push(path);
                } else {
                    id.forgeries.push(path);
                }
            }
        }
        let mut identities: Vec<Identity> = by_writer.into_values().filter(|i| !i.images.is_empty()).collect();
        for i in &mut identities {
            i.images.sort_by(|a, b| natural_cmp(&a.to_string_lossy(), &b.to_string_lossy()));
            i.forgeries.sort_by(|a, b| natural_cmp(&a.to_string_lossy(), &b.to_string_lossy()));
        }
        Ok(Dataset { root: root.to_path_buf(), identities })
    }

    /// Every skilled forgery with the index of the identity it imitates.
    pub fn forgery_samples(&self) -> Vec<(PathBuf, usize)> {
        self.identities
            .iter()
            .enumerate()
            .flat_map(|(k, id)| id.forgeries.iter().map(move |p| (p.clone(), k)))
            .collect()
    }

    /// Every image with the index of its identity.
    pub fn samples(&self) -> Vec<(PathBuf, usize)> {
        self.identities.iter().enumerate().flat_map(|(k, id)| id.images.iter().map(move |p| (p.clone(), k))).collect()
    }
}

/// Parse `s31,s32` or `s31-s35` (a range of names sharing a prefix) or a mix: `s1-s3,s7`.
pub fn parse_identity_list(s: &str) -> Result<Vec<String>, DatasetError> {
    let mut out = Vec::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let pa = a.trim_end_matches(|c: char| c.is_ascii_digit());
            let pb = b.trim_end_matches(|c: char| c.is_ascii_digit());
            let (na, nb) = (a[pa.len()..].parse::<u64>(), b[pb.len()..].parse::<u64>());
            match (na, nb) {
                (Ok(x), Ok(y)) if pa == pb && x <= y => out.extend((x..=y).map(|n| format!("{pa}{n}"))),
                _ => return Err(DatasetError::BadList(s.to_string())),
            }
        } else {
            out.push(part.to_string());
        }
    }
    if out.is_empty() {
        return Err(DatasetError::BadList(s.to_string()));
    }
    Ok(out)
}

/// Index pairs `(i, j)`, `i < j`.
pub type IndexPairs = Vec<(usize, usize)>;

/// Indices of every genuine pair (same identity) and every impostor pair among `labels`.
pub fn all_pairs(labels: &[usize]) -> (IndexPairs, IndexPairs) {
    let (mut gen, mut imp) = (Vec::new(), Vec::new());
    for i in 0..labels.len() {
        for j in i + 1..labels.len() {
            if labels[i] == labels[j] {
                gen.push((i, j));
            } else {
                imp.push((i, j));
            }
        }
    }
    (gen, imp)
}

/// Balanced training pairs drawn afresh: for every sample, one partner of the same identity (if it has
/// one) and one of another identity. Returns `(i, j, same)`.
pub fn balanced_pairs(labels: &[usize], rng: &mut impl Rng) -> Vec<(usize, usize, bool)> {
    let n_ids = labels.iter().copied().max().map_or(0, |m| m + 1);
    let mut by_id: Vec<Vec<usize>> = vec![Vec::new(); n_ids];
    for (i, l) in labels.iter().enumerate() {
        by_id[*l].push(i);
    }
    let mut pairs = Vec::with_capacity(labels.len() * 2);
    for (i, l) in labels.iter().enumerate() {
        let same = &by_id[*l];
        if same.len() > 1 {
            let mut j = i;
            while j == i {
                j = same[rng.gen_range(0..same.len())];
            }
            pairs.push((i, j, true));
        }
        if n_ids > 1 {
            let mut other = *l;
            while other == *l || by_id[other].is_empty() {
                other = rng.gen_range(0..n_ids);
            }
            let j = by_id[other][rng.gen_range(0..by_id[other].len())];
            pairs.push((i, j, false));
        }
    }
    pairs.shuffle(rng);
    pairs
}

/// One line of an LFW-style pairs file: two image paths and whether they show the same person.
#[derive(Debug, Clone)]
pub struct ListedPair {
    pub a: PathBuf,
    pub b: PathBuf,
    pub same: bool,
}

/// Read an LFW pairs file (`name n1 n2` = same, `name1 n1 name2 n2` = different; a first line with counts
/// is skipped). Images are `root/<name>/<name>_<NNNN>.<ext>` (jpg first, then png, pgm).
pub fn read_pairs_file(path: &Path, root: &Path) -> Result<Vec<ListedPair>, DatasetError> {
    let text = std::fs::read_to_string(path).map_err(|e| DatasetError::Io(path.to_path_buf(), e))?;
    let img = |name: &str, n: &str, line: usize| -> Result<PathBuf, DatasetError> {
        let n: u32 =
            n.parse().map_err(|_| DatasetError::BadPairs(path.to_path_buf(), line, format!("bad number '{n}'")))?;
        for ext in ["jpg", "png", "pgm"] {
            let p = root.join(name).join(format!("{name}_{n:04}.{ext}"));
            if p.exists() {
                return Ok(p);
            }
        }
        Err(DatasetError::BadPairs(
            path.to_path_buf(),
            line,
            format!("no image {name}_{n:04} under {}", root.display()),
        ))
    };
    let mut out = Vec::new();
    for (k, line) in text.lines().enumerate() {
        let f: Vec<&str> = line.split_whitespace().collect();
        match f.len() {
            0 => {}
            1 | 2 if k == 0 => {}
            3 => out.push(ListedPair { a: img(f[0], f[1], k + 1)?, b: img(f[0], f[2], k + 1)?, same: true }),
            4 => out.push(ListedPair { a: img(f[0], f[1], k + 1)?, b: img(f[2], f[3], k + 1)?, same: false }),
            _ => return Err(DatasetError::BadPairs(path.to_path_buf(), k + 1, "expected 3 or 4 fields".into())),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::natural_cmp;
    use std::cmp::Ordering::*;

    #[test]
    fn natural_order_compares_every_digit_run_as_a_number() {
        assert_eq!(natural_cmp("s2", "s10"), Less);
        // A path: the number sits before the extension (plain order would put 10 before 2).
        assert_eq!(natural_cmp("full_org/original_41_2.png", "full_org/original_41_10.png"), Less);
        assert_eq!(natural_cmp("att/s3/9.pgm", "att/s3/10.pgm"), Less);
        assert_eq!(natural_cmp("att/s10/1.pgm", "att/s9/2.pgm"), Greater);
        assert_eq!(natural_cmp("a_0001.jpg", "a_0002.jpg"), Less);
        assert_eq!(natural_cmp("x123456789012345678901234567890", "x99"), Greater, "runs longer than u64");
        assert_eq!(natural_cmp("a7", "a07"), "a7".cmp("a07"), "equal numbers fall back to plain order");
        assert_eq!(natural_cmp("ab", "ab"), Equal);
        let mut v = vec!["w1_10", "w1_2", "w1_1", "w10_1", "w2_1"];
        v.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(v, ["w1_1", "w1_2", "w1_10", "w2_1", "w10_1"]);
    }
}
