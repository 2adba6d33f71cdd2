//! Your own images on the minions without a registry (`drover images push`): from the Docker
//! Engine on the drover host to each minion over its usual transport, sending only the layers a
//! minion lacks. Nothing is installed on a minion and drover writes no file: the local engine's
//! `docker save` stream is filtered on the fly and fed to the minion's `docker load` (the
//! engines stage the image in their own temporary space, as those commands do).
//!
//! Which layers a minion has is asked by chain id (a layer is only the same layer on top of the
//! same layers below it): the chain ids of every image it holds. The layers of ours whose chain
//! ids it has form a prefix of our layer list, and their `layer.tar` files are left out of the
//! stream; `docker load` finds those layers by the chain ids it computes from the image's
//! config and reads no file for them. Where the save stream puts a layer's file is read first
//! from its `manifest.json` (in Docker's classic layout the entries are ordered by a legacy
//! id, not by layer, and the manifest comes last), so when a minion has some of the layers the
//! local image is read twice: once for its manifest, once to send. One save stream feeds every
//! minion that needs the image, each through its own filter.
//!
//! A push that is cut off (drover killed, the connection lost) leaves no image on the minion:
//! `docker load` tags the image only once every layer is in, and releases the layers it added
//! when the stream ends early.

use crate::minion::{Minion, MinionError};
use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The chain id of each layer of an image, from its diff ids (bottom first): the first is its
/// diff id, each next the SHA-256 of `"<chain below> <diff id>"` (the OCI image spec's).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chains: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match chains.last() {
            None => d.clone(),
            Some(below) => {
                let digest = Sha256::digest(format!("{below} {d}").as_bytes());
                let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
                format!("sha256:{hex}")
            }
        };
        chains.push(next);
    }
    chains
}

/// The layer files left out for a minion that has the first `present` layers: theirs, less
/// any a layer above also names (in the OCI layout a file is named by its digest, so two
/// layers with the same content, such as empty ones, share it).
pub fn skipped_files(layer_paths: &[String], present: usize) -> HashSet<String> {
    let needed: HashSet<&String> = layer_paths[present..].iter().collect();
    layer_paths[..present]
        .iter()
        .filter(|p| !needed.contains(p))
        .cloned()
        .collect()
}

/// How many of an image's layers (bottom first) a minion holding the layers `has` (chain ids)
/// needs not be sent.
pub fn present_prefix(chains: &[String], has: &HashSet<String>) -> usize {
    chains.iter().take_while(|c| has.contains(*c)).count()
}

/// The layer files named by a save stream's `manifest.json`, in layer order (bottom first).
pub fn layer_paths(manifest_json: &[u8]) -> Result<Vec<String>, String> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Entry {
        layers: Vec<String>,
    }
    let entries: Vec<Entry> = serde_json::from_slice(manifest_json)
        .map_err(|e| format!("the image's manifest.json cannot be read: {e}"))?;
    match entries.as_slice() {
        [one] => Ok(one.layers.clone()),
        _ => Err(format!(
            "the saved image holds {} images, not one",
            entries.len()
        )),
    }
}

const BLOCK: usize = 512;

/// A tar stream with some regular files left out, filtered as it passes: `push` gives it the
/// bytes as they come, it gives back the bytes to send. Metadata entries that describe the
/// next entry (PAX headers, GNU long names) go or stay with it.
#[derive(Debug)]
pub struct TarFilter {
    /// Paths of the files to leave out.
    skip: HashSet<String>,
    /// A header being assembled (fewer than 512 bytes seen so far).
    header: Vec<u8>,
    /// Metadata entries (header and data) held until the entry they describe.
    held: Vec<u8>,
    /// A long name given by a GNU `L` entry for the next entry.
    long_name: Option<String>,
    /// Bytes of the current entry's data and padding still to come, and what to do with them.
    remaining: u64,
    now: Data,
    /// Files left out, and the bytes they would have cost.
    pub skipped: usize,
    pub skipped_bytes: u64,
    /// Every entry seen: its path, and the bytes it takes in the stream (header and data).
    pub entries: Vec<(String, u64)>,
    /// The file whose data is kept in `captured` (a save stream's `manifest.json`).
    capture: Option<String>,
    capturing: bool,
    pub captured: Vec<u8>,
    /// The size of the last entry whose header was read.
    last_size: u64,
    /// A size given by a PAX `size` record for the next entry (Go's tar writes entries of 8 GiB
    /// and more so, with 0 in the ustar field).
    pax_size: Option<u64>,
    /// The end-of-archive blocks have passed.
    ended: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Data {
    Keep,
    Drop,
    Hold,
}

impl TarFilter {
    pub fn new(skip: HashSet<String>) -> TarFilter {
        TarFilter {
            skip,
            header: Vec::with_capacity(BLOCK),
            held: Vec::new(),
            long_name: None,
            remaining: 0,
            now: Data::Keep,
            skipped: 0,
            skipped_bytes: 0,
            entries: Vec::new(),
            capture: None,
            capturing: false,
            captured: Vec::new(),
            last_size: 0,
            pax_size: None,
            ended: false,
        }
    }

    /// A filter that also keeps the data of the file `name` (in `captured`).
    pub fn capturing(skip: HashSet<String>, name: &str) -> TarFilter {
        TarFilter {
            capture: Some(name.to_string()),
            ..TarFilter::new(skip)
        }
    }

    /// Takes the next bytes of the stream; appends what is to be sent to `out`.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        while !input.is_empty() {
            if self.remaining > 0 {
                let n = (self.remaining.min(input.len() as u64)) as usize;
                if self.capturing {
                    // The data without the padding after it.
                    let room = (self.last_size as usize).saturating_sub(self.captured.len());
                    self.captured.extend_from_slice(&input[..n.min(room)]);
                    if self.captured.len() > 1 << 20 {
                        return Err("a manifest.json over 1 MiB".into());
                    }
                }
                match self.now {
                    Data::Keep => out.extend_from_slice(&input[..n]),
                    Data::Hold => {
                        self.held.extend_from_slice(&input[..n]);
                        if self.held.len() > 1 << 20 {
                            return Err("a tar metadata entry over 1 MiB".into());
                        }
                    }
                    Data::Drop => {}
                }
                self.remaining -= n as u64;
                input = &input[n..];
                if self.remaining == 0 {
                    self.capturing = false;
                    if self.now == Data::Hold {
                        self.read_long_name();
                    }
                }
                continue;
            }
            let want = BLOCK - self.header.len();
            let n = want.min(input.len());
            self.header.extend_from_slice(&input[..n]);
            input = &input[n..];
            if self.header.len() == BLOCK {
                let header = std::mem::replace(&mut self.header, Vec::with_capacity(BLOCK));
                self.on_header(&header, out)?;
            }
        }
        Ok(())
    }

    /// A metadata entry just ended, its data at the end of `held`: a GNU long name (the name,
    /// NUL-terminated) or a PAX header's `path` record names the next entry.
    fn read_long_name(&mut self) {
        let data_start = self.held.len() - padded(self.last_size);
        let kind = self.held[data_start - BLOCK + 156];
        let data = &self.held[data_start..data_start + self.last_size as usize];
        match kind {
            b'L' => {
                let name = data.split(|b| *b == 0).next().unwrap_or_default();
                self.long_name = Some(String::from_utf8_lossy(name).into_owned());
            }
            b'x' => {
                let (path, size) = pax_records(data);
                if path.is_some() {
                    self.long_name = path;
                }
                self.pax_size = size.or(self.pax_size);
            }
            _ => {}
        }
    }

    /// Whether the stream so far is a whole archive: its end-of-archive block passed, and no
    /// entry or header is left half-read. A save stream that stops anywhere else is cut short,
    /// and must not reach a minion as if it were whole.
    pub fn complete(&self) -> bool {
        self.ended && self.remaining == 0 && self.header.is_empty()
    }

    fn on_header(&mut self, header: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        if header.iter().all(|b| *b == 0) {
            // The end-of-archive blocks.
            out.extend_from_slice(&self.held);
            self.held.clear();
            out.extend_from_slice(header);
            self.ended = true;
            return Ok(());
        }
        if !checksum_ok(header) {
            return Err("a tar header with a wrong checksum in the save stream".into());
        }
        let kind = header[156];
        let size = match kind {
            b'x' | b'L' | b'K' | b'g' => entry_size(header)?,
            _ => match self.pax_size.take() {
                Some(size) => size,
                None => entry_size(header)?,
            },
        };
        self.last_size = size;
        self.remaining = padded(size) as u64;
        if matches!(kind, b'x' | b'L' | b'K' | b'g') {
            // Describes the next entry: held until that entry is judged.
            self.held.extend_from_slice(header);
            self.now = Data::Hold;
            if self.remaining == 0 {
                self.read_long_name();
            }
            return Ok(());
        }
        let name = self.long_name.take().unwrap_or_else(|| ustar_name(header));
        let regular = matches!(kind, b'0' | 0);
        self.entries.push((
            name.clone(),
            (BLOCK + padded(size)) as u64 + self.held.len() as u64,
        ));
        self.capturing = regular && self.capture.as_deref() == Some(name.as_str());
        if regular && self.skip.contains(&name) {
            self.held.clear();
            self.now = Data::Drop;
            self.skipped += 1;
            self.skipped_bytes += size;
        } else {
            out.extend_from_slice(&self.held);
            self.held.clear();
            out.extend_from_slice(header);
            self.now = Data::Keep;
        }
        Ok(())
    }
}

/// The `path` and `size` of a PAX header's records, each `<length> <key>=<value>\n` where the
/// length counts the whole record (a value may hold newlines).
fn pax_records(data: &[u8]) -> (Option<String>, Option<u64>) {
    let (mut path, mut size) = (None, None);
    let mut rest = data;
    while !rest.is_empty() {
        let Some(space) = rest.iter().position(|b| *b == b' ') else {
            break;
        };
        let Some(len) = std::str::from_utf8(&rest[..space])
            .ok()
            .and_then(|l| l.parse::<usize>().ok())
            .filter(|l| *l > space + 1 && *l <= rest.len())
        else {
            break;
        };
        let record = &rest[space + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(eq) = record.iter().position(|b| *b == b'=') {
            let (key, value) = (&record[..eq], &record[eq + 1..]);
            match key {
                b"path" => path = Some(String::from_utf8_lossy(value).into_owned()),
                b"size" => size = std::str::from_utf8(value).ok().and_then(|v| v.parse().ok()),
                _ => {}
            }
        }
        rest = &rest[len..];
    }
    (path, size)
}

/// Whether a header's checksum field matches its bytes (summed with the field as spaces).
fn checksum_ok(header: &[u8]) -> bool {
    let field: String = header[148..156]
        .iter()
        .take_while(|b| **b != 0 && **b != b' ')
        .map(|b| *b as char)
        .collect();
    let Ok(stated) = u32::from_str_radix(field.trim(), 8) else {
        return false;
    };
    let sum: u32 = header
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    sum == stated
}

/// `size` rounded up to whole blocks.
fn padded(size: u64) -> usize {
    (size as usize).div_ceil(BLOCK) * BLOCK
}

/// An entry's size: octal, or base-256 when the high bit of the field is set.
fn entry_size(header: &[u8]) -> Result<u64, String> {
    let field = &header[124..136];
    if field[0] & 0x80 != 0 {
        let mut n: u64 = u64::from(field[0] & 0x7f);
        for b in &field[1..] {
            n = n
                .checked_mul(256)
                .and_then(|n| n.checked_add(u64::from(*b)))
                .ok_or("a tar entry size out of range")?;
        }
        return Ok(n);
    }
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    let text = text.trim();
    if text.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(text, 8).map_err(|_| format!("a tar header with size `{text}`"))
}

/// A ustar entry's path: its prefix (when there is one) and its name.
fn ustar_name(header: &[u8]) -> String {
    let field = |range: std::ops::Range<usize>| {
        let bytes = &header[range];
        let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    };
    let name = field(0..100);
    let prefix = if &header[257..262] == b"ustar" {
        field(345..500)
    } else {
        String::new()
    };
    if prefix.is_empty() {
        name
    } else {
        format!("{prefix}/{name}")
    }
}

/// An image as the drover host's engine holds it: its id, and its layers' chain ids.
#[derive(Debug, Clone)]
pub struct LocalImage {
    pub name: String,
    pub id: String,
    pub chains: Vec<String>,
}

/// What one pass over an image's save stream tells: where each layer's file is (in layer
/// order) and the bytes each entry and the whole stream take.
struct Scan {
    layer_paths: Vec<String>,
    entry_bytes: HashMap<String, u64>,
    total_bytes: u64,
}

/// Why an image could not be pushed.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("the local Docker Engine: {0}")]
    Local(String),
    #[error("image {0} is not in the local Docker Engine (build or pull it there first)")]
    Missing(String),
    #[error("{0}")]
    Minion(#[from] MinionError),
    /// The push to this minion stopped because the stream from the local engine failed.
    #[error("the stream from the local Docker Engine ended: {0}")]
    Stream(String),
}

/// The drover host's Docker Engine (its socket, or `DOCKER_HOST`).
pub fn local_engine() -> Result<bollard::Docker, PushError> {
    // `docker save` sends nothing until the engine has written the image out: the wait for
    // its answer is as long as a transfer may take (10 minutes), not bollard's two.
    bollard::Docker::connect_with_defaults()
        .map(|d| d.with_timeout(Duration::from_secs(600)))
        .map_err(|e| PushError::Local(e.to_string()))
}

/// `name` as the local engine holds it.
pub async fn inspect_local(docker: &bollard::Docker, name: &str) -> Result<LocalImage, PushError> {
    let inspected = crate::minion::found(docker.inspect_image(name).await)
        .map_err(|e| PushError::Local(e.to_string()))?
        .ok_or_else(|| PushError::Missing(name.to_string()))?;
    let diff_ids = inspected.root_fs.and_then(|r| r.layers).unwrap_or_default();
    Ok(LocalImage {
        name: name.to_string(),
        id: inspected.id.unwrap_or_default(),
        chains: chain_ids(&diff_ids),
    })
}

/// One pass over the save stream, sending nothing: where the layer files are.
async fn scan(docker: &bollard::Docker, image: &LocalImage) -> Result<Scan, PushError> {
    let mut scan = TarFilter::capturing(HashSet::new(), "manifest.json");
    let mut stream = docker.export_image(&image.name);
    let mut sink = Vec::new();
    let mut total_bytes = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| PushError::Local(format!("saving {}: {e}", image.name)))?;
        total_bytes += chunk.len() as u64;
        sink.clear();
        scan.push(&chunk, &mut sink).map_err(PushError::Local)?;
    }
    let layer_paths = layer_paths(&scan.captured).map_err(PushError::Local)?;
    if layer_paths.len() != image.chains.len() {
        return Err(PushError::Local(format!(
            "image {}: its save stream names {} layer files for {} layers",
            image.name,
            layer_paths.len(),
            image.chains.len()
        )));
    }
    Ok(Scan {
        layer_paths,
        entry_bytes: scan.entries.into_iter().collect(),
        total_bytes,
    })
}

/// What a push to one minion did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sent {
    /// The minion held this very image under this name: nothing was sent.
    pub already: bool,
    pub layers_sent: usize,
    pub layers_skipped: usize,
    /// Bytes of the save stream sent, and the bytes of the layer files left out.
    pub bytes_sent: u64,
    pub bytes_skipped: u64,
    pub took: Duration,
}

/// Told how a push goes: the bytes a minion will be sent (when known), then each chunk as it
/// leaves.
pub trait PushProgress: Send + Sync {
    fn starting(&self, minion: &str, bytes: Option<u64>);
    fn sent(&self, minion: &str, bytes: u64);
}

/// What a minion lacks of an image: nothing (it holds this very image under this name), or
/// the layers above the `present` ones.
async fn needs(minion: &Minion, image: &LocalImage) -> Result<Option<usize>, PushError> {
    if minion.image_id(&image.name).await?.as_deref() == Some(image.id.as_str()) {
        return Ok(None);
    }
    let has: HashSet<String> = minion
        .image_layers()
        .await?
        .iter()
        .flat_map(|layers| chain_ids(layers))
        .collect();
    Ok(Some(present_prefix(&image.chains, &has)))
}

/// How many chunks of the stream may wait for the slowest minion.
const QUEUE: usize = 16;

/// Pushes `image` to every minion at once: each is asked what it lacks; a minion holding the
/// image gets nothing; the others are fed from one save stream, each through its own filter,
/// at the pace of the slowest (a minion that fails drops out, the others go on).
pub async fn push(
    local: &bollard::Docker,
    image: &LocalImage,
    minions: &[Arc<Minion>],
    progress: Arc<dyn PushProgress>,
) -> Vec<(String, Result<Sent, PushError>)> {
    let started = Instant::now();
    let asked = futures_util::future::join_all(minions.iter().map(|m| needs(m, image))).await;
    let mut results: Vec<(String, Result<Sent, PushError>)> = Vec::new();
    // (index into results, minion, layers present)
    let mut to_feed: Vec<(usize, Arc<Minion>, usize)> = Vec::new();
    for (m, need) in minions.iter().zip(asked) {
        let result = match need {
            Ok(None) => Ok(Sent {
                already: true,
                layers_skipped: image.chains.len(),
                took: started.elapsed(),
                ..Sent::default()
            }),
            Ok(Some(present)) => {
                to_feed.push((results.len(), m.clone(), present));
                Ok(Sent::default())
            }
            Err(e) => Err(e),
        };
        results.push((m.name().to_string(), result));
    }
    if to_feed.is_empty() {
        return results;
    }
    // Where the layer files are matters only to a minion that has some of them.
    let scanned = if to_feed.iter().any(|(_, _, present)| *present > 0) {
        match scan(local, image).await {
            Ok(s) => Some(s),
            Err(e) => {
                let why = e.to_string();
                for (i, _, _) in &to_feed {
                    results[*i].1 = Err(PushError::Local(why.clone()));
                }
                return results;
            }
        }
    } else {
        None
    };
    let mut feeds = Vec::new();
    for (index, minion, present) in to_feed {
        let name = results[index].0.clone();
        feeds.push(Feed::start(
            index,
            name,
            minion,
            image,
            present,
            scanned.as_ref(),
            &*progress,
        ));
    }
    let broken = feed_all(local, image, &mut feeds, &*progress).await;
    for feed in feeds {
        let index = feed.index;
        results[index].1 = feed.finish(image, &broken, started).await;
    }
    results
}

/// One minion being fed: its filter, the queue its `docker load` reads from, and the load.
struct Feed {
    index: usize,
    name: String,
    filter: TarFilter,
    queue: Option<tokio::sync::mpsc::Sender<Result<bytes::Bytes, std::io::Error>>>,
    load: tokio::task::JoinHandle<Result<(), MinionError>>,
    sent: u64,
    skipped_bytes: u64,
    present: usize,
}

impl Feed {
    /// Starts `docker load` on `minion`, reading from a queue this feed fills.
    fn start(
        index: usize,
        name: String,
        minion: Arc<Minion>,
        image: &LocalImage,
        present: usize,
        scanned: Option<&Scan>,
        progress: &dyn PushProgress,
    ) -> Feed {
        let (skip, skipped_bytes, to_send) = match scanned {
            Some(s) => {
                let skip = skipped_files(&s.layer_paths, present);
                let bytes: u64 = skip
                    .iter()
                    .map(|p| s.entry_bytes.get(p).copied().unwrap_or(0))
                    .sum();
                (skip, bytes, Some(s.total_bytes.saturating_sub(bytes)))
            }
            None => (HashSet::new(), 0, None),
        };
        progress.starting(&name, to_send);
        let (queue, receiver) = tokio::sync::mpsc::channel(QUEUE);
        let tar = futures_util::stream::unfold(receiver, |mut r| async move {
            r.recv().await.map(|chunk| (chunk, r))
        });
        let image_name = image.name.clone();
        let load = tokio::spawn(async move { minion.load_image(&image_name, tar).await });
        Feed {
            index,
            name,
            filter: TarFilter::new(skip),
            queue: Some(queue),
            load,
            sent: 0,
            skipped_bytes,
            present,
        }
    }

    /// Waits for its load: what was sent, or why not.
    async fn finish(
        self,
        image: &LocalImage,
        broken: &Option<String>,
        started: Instant,
    ) -> Result<Sent, PushError> {
        let loaded = match self.load.await {
            Ok(r) => r.map_err(PushError::from),
            Err(e) => Err(PushError::Local(format!("the push task failed: {e}"))),
        };
        match (loaded, broken) {
            (Ok(()), None) => Ok(Sent {
                already: false,
                layers_sent: image.chains.len() - self.present,
                layers_skipped: self.present,
                bytes_sent: self.sent,
                bytes_skipped: self.skipped_bytes,
                took: started.elapsed(),
            }),
            (_, Some(why)) => Err(PushError::Stream(why.clone())),
            (Err(e), None) => Err(e),
        }
    }
}

/// Reads the save stream once and hands each chunk, filtered, to every feed; a feed whose load
/// ended drops out. Returns why the stream broke, if it did (every feed is then failed, so no
/// minion's load finishes on a stream cut short).
async fn feed_all(
    local: &bollard::Docker,
    image: &LocalImage,
    feeds: &mut [Feed],
    progress: &dyn PushProgress,
) -> Option<String> {
    let mut stream = local.export_image(&image.name);
    let mut broken: Option<String> = None;
    'chunks: while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                broken = Some(format!("saving {}: {e}", image.name));
                break;
            }
        };
        for feed in feeds.iter_mut() {
            let Some(queue) = &feed.queue else { continue };
            let mut out = Vec::with_capacity(chunk.len());
            if let Err(e) = feed.filter.push(&chunk, &mut out) {
                broken = Some(e);
                break 'chunks;
            }
            let n = out.len() as u64;
            if queue.send(Ok(bytes::Bytes::from(out))).await.is_err() {
                // Its load ended (failed): `finish` tells why; the others go on.
                feed.queue = None;
                continue;
            }
            feed.sent += n;
            progress.sent(&feed.name, n);
        }
    }
    if broken.is_none() && feeds.iter().any(|f| !f.filter.complete()) {
        broken = Some(format!(
            "the save stream of {} ended before the end of its archive",
            image.name
        ));
    }
    for feed in feeds.iter_mut() {
        let queue = feed.queue.take();
        if let (Some(queue), Some(why)) = (queue, &broken) {
            // An error in the stream makes the minion's load fail rather than finish.
            let _ = queue.send(Err(std::io::Error::other(why.clone()))).await;
        }
    }
    broken
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One ustar entry: header (with its checksum) and padded data.
    fn entry(name: &str, kind: u8, data: &[u8]) -> Vec<u8> {
        entry_sized(name, kind, data, data.len())
    }

    /// A PAX record, its length prefix counting itself.
    fn pax_record(key: &str, value: &str) -> Vec<u8> {
        let body = format!(" {key}={value}\n");
        let mut len = body.len() + 1;
        while format!("{len}{body}").len() != len {
            len += 1;
        }
        format!("{len}{body}").into_bytes()
    }

    /// An entry whose ustar size field says `size` whatever its data.
    fn entry_sized(name: &str, kind: u8, data: &[u8], size: usize) -> Vec<u8> {
        let mut h = vec![0u8; BLOCK];
        h[..name.len()].copy_from_slice(name.as_bytes());
        h[100..107].copy_from_slice(b"0000644");
        h[124..135].copy_from_slice(format!("{size:011o}").as_bytes());
        h[156] = kind;
        h[257..263].copy_from_slice(b"ustar\0");
        h[263..265].copy_from_slice(b"00");
        h[148..156].copy_from_slice(b"        ");
        let sum: u32 = h.iter().map(|b| u32::from(*b)).sum();
        h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
        let mut out = h;
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(BLOCK) * BLOCK, 0);
        out
    }

    fn filtered(archive: &[u8], skip: &[&str], chunk: usize) -> (Vec<u8>, TarFilter) {
        let skip = skip.iter().map(|s| s.to_string()).collect();
        let mut f = TarFilter::capturing(skip, "manifest.json");
        let mut out = Vec::new();
        for piece in archive.chunks(chunk) {
            f.push(piece, &mut out).unwrap();
        }
        (out, f)
    }

    #[test]
    fn a_layer_file_is_left_out_with_its_metadata_at_any_chunking() {
        let layer: Vec<u8> = (0..1500u32).map(|i| (i % 251) as u8).collect();
        let pax = entry("PaxHeaders/x", b'x', &pax_record("path", "aaaa/layer.tar"));
        let a_dir = entry("aaaa/", b'5', b"");
        let a_layer = entry("ignored-name", b'0', &layer);
        let b_json = entry("bbbb/json", b'0', b"{\"id\":\"bbbb\"}");
        let manifest = br#"[{"Config":"c.json","RepoTags":["app:1"],"Layers":["aaaa/layer.tar","bbbb/layer.tar"]}]"#;
        let m = entry("manifest.json", b'0', manifest);
        let end = vec![0u8; 2 * BLOCK];
        let archive = [
            a_dir.clone(),
            pax.clone(),
            a_layer.clone(),
            b_json.clone(),
            m.clone(),
            end.clone(),
        ]
        .concat();
        let expected = [a_dir, b_json, m.clone(), end].concat();
        for chunk in [1, 7, 511, 512, 513, 4096, archive.len()] {
            let (out, f) = filtered(&archive, &["aaaa/layer.tar"], chunk);
            assert_eq!(out, expected, "chunk {chunk}");
            assert_eq!((f.skipped, f.skipped_bytes), (1, 1500));
            assert_eq!(f.captured, manifest.to_vec());
            assert_eq!(
                f.entries.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
                ["aaaa/", "aaaa/layer.tar", "bbbb/json", "manifest.json"]
            );
            let costs: u64 = f.entries.iter().map(|e| e.1).sum();
            assert_eq!(
                costs as usize + 2 * BLOCK,
                archive.len(),
                "every byte counted"
            );
        }
        // Nothing to leave out: the stream unchanged.
        let (out, _) = filtered(&archive, &[], 100);
        assert_eq!(out, archive);
        assert_eq!(
            layer_paths(&filtered(&archive, &[], 100).1.captured).unwrap(),
            ["aaaa/layer.tar", "bbbb/layer.tar"]
        );
    }

    #[test]
    fn long_names_and_pax_sizes_name_and_bound_the_entry_they_describe() {
        let layer: Vec<u8> = (0..3000u32).map(|i| (i % 253) as u8).collect();
        let long = format!("{}/layer.tar", "d".repeat(120));
        // A GNU long name; then a PAX size over a ustar field of 0 (as Go writes entries of
        // 8 GiB and more), at every chunking.
        let archive = [
            entry("././@LongLink", b'L', format!("{long}\0").as_bytes()),
            entry("short-name", b'0', &layer),
            entry(
                "PaxHeaders/big",
                b'x',
                &[
                    pax_record("path", "eeee/layer.tar"),
                    pax_record("size", "3000"),
                ]
                .concat(),
            ),
            entry_sized("eeee/layer.tar", b'0', &layer, 0),
            entry("manifest.json", b'0', b"[]"),
            vec![0u8; 2 * BLOCK],
        ]
        .concat();
        for chunk in [1, 100, 512, 1000, archive.len()] {
            let (out, f) = filtered(&archive, &[&long, "eeee/layer.tar"], chunk);
            assert_eq!(f.skipped, 2, "chunk {chunk}");
            assert_eq!(f.skipped_bytes, 6000);
            assert_eq!(
                out,
                [entry("manifest.json", b'0', b"[]"), vec![0u8; 2 * BLOCK]].concat()
            );
            assert!(f.complete());
        }
        // Cut short: not a whole archive.
        let (_, f) = filtered(&archive[..archive.len() - 2 * BLOCK], &[], 512);
        assert!(!f.complete());
        // A damaged header is refused, not guessed at.
        let mut bad = archive.clone();
        bad[3] ^= 1;
        let mut f = TarFilter::new(HashSet::new());
        assert!(f.push(&bad, &mut Vec::new()).is_err());
    }

    #[test]
    fn a_layer_file_a_higher_layer_also_names_is_not_left_out() {
        let paths: Vec<String> = [
            "blobs/sha256/a",
            "blobs/sha256/e",
            "blobs/sha256/b",
            "blobs/sha256/e",
        ]
        .map(String::from)
        .to_vec();
        // The minion has the first two layers; the empty layer's file is named again above.
        assert_eq!(
            skipped_files(&paths, 2),
            HashSet::from(["blobs/sha256/a".to_string()])
        );
        assert_eq!(skipped_files(&paths, 4).len(), 3);
    }

    #[test]
    fn chain_ids_follow_the_oci_rule_and_a_minion_needs_what_is_above_its_prefix() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let chains = chain_ids(&[d('a'), d('b'), d('c')]);
        assert_eq!(chains[0], d('a'));
        // sha256("sha256:aaa… sha256:bbb…"), as `docker inspect` chains them.
        let expect = Sha256::digest(format!("{} {}", d('a'), d('b')).as_bytes());
        let hex: String = expect.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(chains[1], format!("sha256:{hex}"));
        let has: HashSet<String> = [chains[0].clone(), chains[1].clone()].into();
        assert_eq!(present_prefix(&chains, &has), 2);
        // The same top layer on other layers below is not the same layer.
        let other = chain_ids(&[d('x'), d('b'), d('c')]);
        let has: HashSet<String> = other.into_iter().collect();
        assert_eq!(present_prefix(&chains, &has), 0);
    }
}
