//! A `docker save` stream read as it arrives for `POST /images/load`: every file's name and
//! size, and the content of the small ones (`manifest.json`, image configs). Layer contents
//! are counted and dropped: a hollow engine keeps no files.

use crate::util::{hex, sha256};
use std::collections::HashMap;

/// Files up to this size are kept (configs, manifests); larger ones only counted.
const KEPT: u64 = 1 << 20;

#[derive(Default)]
pub struct Loaded {
    pub files: HashMap<String, Vec<u8>>,
    pub sizes: HashMap<String, u64>,
}

enum Step {
    Header,
    Data {
        name: String,
        kind: u8,
        size: u64,
        left: u64,
        kept: Option<Vec<u8>>,
    },
    End,
}

pub struct TarReader {
    pending: Vec<u8>,
    step: Step,
    long_name: Option<String>,
    pax_path: Option<String>,
    pub loaded: Loaded,
}

impl TarReader {
    pub fn new() -> TarReader {
        TarReader {
            pending: Vec::new(),
            step: Step::Header,
            long_name: None,
            pax_path: None,
            loaded: Loaded::default(),
        }
    }

    pub fn push(&mut self, mut input: &[u8]) -> Result<(), String> {
        while !input.is_empty() {
            match &mut self.step {
                Step::End => return Ok(()),
                Step::Header => {
                    let need = 512 - self.pending.len();
                    let take = need.min(input.len());
                    self.pending.extend_from_slice(&input[..take]);
                    input = &input[take..];
                    if self.pending.len() == 512 {
                        let header = std::mem::take(&mut self.pending);
                        self.header(&header)?;
                    }
                }
                Step::Data {
                    name,
                    kind,
                    size,
                    left,
                    kept,
                } => {
                    let take = (*left).min(input.len() as u64) as usize;
                    let data_left = left.saturating_sub(size.div_ceil(512) * 512 - *size);
                    if let Some(k) = kept.as_mut() {
                        let useful = take.min(data_left as usize);
                        k.extend_from_slice(&input[..useful]);
                    }
                    *left -= take as u64;
                    input = &input[take..];
                    if *left == 0 {
                        let (name, kind, size, kept) =
                            (std::mem::take(name), *kind, *size, kept.take());
                        self.step = Step::Header;
                        self.entry_done(name, kind, size, kept);
                    }
                }
            }
        }
        Ok(())
    }

    fn header(&mut self, h: &[u8]) -> Result<(), String> {
        if h.iter().all(|b| *b == 0) {
            self.step = Step::End;
            return Ok(());
        }
        let stored: u32 = octal(&h[148..156]) as u32;
        let sum: u32 = h
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    *b as u32
                }
            })
            .sum();
        if stored != sum {
            return Err("archive/tar: invalid tar header".into());
        }
        let size = if h[124] & 0x80 != 0 {
            h[125..136].iter().fold(0u64, |n, b| (n << 8) | *b as u64)
        } else {
            octal(&h[124..136])
        };
        let kind = h[156];
        let field = |r: std::ops::Range<usize>| {
            let f = &h[r];
            let end = f.iter().position(|b| *b == 0).unwrap_or(f.len());
            String::from_utf8_lossy(&f[..end]).into_owned()
        };
        let mut name = field(0..100);
        if &h[257..262] == b"ustar" {
            let prefix = field(345..500);
            if !prefix.is_empty() {
                name = format!("{prefix}/{name}");
            }
        }
        if let Some(long) = self.long_name.take() {
            name = long;
        }
        if let Some(path) = self.pax_path.take() {
            name = path;
        }
        let name = name.trim_start_matches("./").to_string();
        let keep = matches!(kind, b'L' | b'x') || (matches!(kind, b'0' | 0) && size <= KEPT);
        let padded = size.div_ceil(512) * 512;
        if padded == 0 {
            self.entry_done(name, kind, 0, keep.then(Vec::new));
            return Ok(());
        }
        self.step = Step::Data {
            name,
            kind,
            size,
            left: padded,
            kept: keep.then(|| Vec::with_capacity(size as usize)),
        };
        Ok(())
    }

    fn entry_done(&mut self, name: String, kind: u8, size: u64, kept: Option<Vec<u8>>) {
        match kind {
            b'L' => {
                let k = kept.unwrap_or_default();
                let end = k.iter().position(|b| *b == 0).unwrap_or(k.len());
                self.long_name = Some(String::from_utf8_lossy(&k[..end]).into_owned());
            }
            b'x' => {
                self.pax_path = pax_path(&kept.unwrap_or_default());
            }
            b'0' | 0 => {
                self.loaded.sizes.insert(name.clone(), size);
                if let Some(k) = kept {
                    self.loaded.files.insert(name, k);
                }
            }
            _ => {}
        }
    }
}

fn octal(f: &[u8]) -> u64 {
    f.iter()
        .skip_while(|b| **b == b' ')
        .take_while(|b| (b'0'..=b'7').contains(*b))
        .fold(0u64, |n, b| n * 8 + (b - b'0') as u64)
}

/// The `path` record of a PAX header, if any (records are `"<len> key=value\n"`).
fn pax_path(data: &[u8]) -> Option<String> {
    let mut rest = data;
    let mut path = None;
    while !rest.is_empty() {
        let space = rest.iter().position(|b| *b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..space]).ok()?.parse().ok()?;
        if len == 0 || len > rest.len() {
            break;
        }
        let record = &rest[space + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(v) = record.strip_prefix(b"path=") {
            path = Some(String::from_utf8_lossy(v).into_owned());
        }
        rest = &rest[len..];
    }
    path
}

/// The chain id of each layer (OCI image spec): the first its diff id, each next the SHA-256
/// of `"<chain below> <diff id>"`.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chains: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match chains.last() {
            None => d.clone(),
            Some(below) => format!("sha256:{}", hex(&sha256(format!("{below} {d}").as_bytes()))),
        };
        chains.push(next);
    }
    chains
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, data: &[u8]) -> Vec<u8> {
        let mut h = [0u8; 512];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..108].copy_from_slice(b"0000644\0");
        h[124..136].copy_from_slice(format!("{:011o}\0", data.len()).as_bytes());
        h[156] = b'0';
        h[257..263].copy_from_slice(b"ustar\0");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| *b as u32).sum();
        h[148..156].copy_from_slice(format!("{sum:06o}\0 ").as_bytes());
        let mut out = h.to_vec();
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
        out
    }

    #[test]
    fn files_are_told_at_any_chunking() {
        let mut tar = entry("manifest.json", b"[{}]");
        tar.extend(entry("abc/layer.tar", &vec![7u8; 3000]));
        tar.extend([0u8; 1024]);
        for chunk in [1, 7, 512, 100_000] {
            let mut r = TarReader::new();
            for c in tar.chunks(chunk) {
                r.push(c).unwrap();
            }
            assert_eq!(r.loaded.files["manifest.json"], b"[{}]");
            assert_eq!(r.loaded.sizes["abc/layer.tar"], 3000);
            assert_eq!(r.loaded.files["abc/layer.tar"].len(), 3000);
        }
    }
}
