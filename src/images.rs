//! Your own images on the minions without a registry (`drover images push`): from the Docker
//! Engine on the drover host to each minion over its usual transport, sending only the layers a
//! minion lacks. Nothing is installed on a minion and drover writes no file: the local engine's
//! `docker save` stream is filtered on the fly and fed to the minion's `docker load` (the
//! engines stage the image in their own temporary space, as those commands do).
//!
//! Which layers a minion has is asked by chain id (a layer is only the same layer on top of the
//! same layers below it): the chain ids of every image it holds. The layers of ours whose chain
//! ids it has form a prefix of our layer list, and their files are left out of the stream;
//! `docker load` finds those layers by the chain ids it computes from the image's config and
//! reads no file for them. Which file holds which layer is told as the stream passes, in one
//! read of the local image: in the OCI layout (Docker 25 and later) a layer's file is named by
//! its digest, which for the uncompressed layers of a save is its diff id; in Docker's classic
//! layout each layer has a directory named by a legacy id, whose `json` comes before its
//! `layer.tar` and proves which layer it is (see [`legacy_layer_id`]). A file told apart by
//! neither is sent: the push is then larger, never wrong. One save stream feeds every minion
//! that needs the image, each through its own filter.
//!
//! A push that is cut off (drover killed, the connection lost) leaves no image on the minion:
//! `docker load` tags the image only once every layer is in, and releases the layers it added
//! when the stream ends early.

use crate::minion::{Minion, MinionError};
use futures_util::{StreamExt, TryStreamExt};
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
                let hash = crate::store::content_hash(format!("{below} {d}").as_bytes());
                format!("sha256:{hash}")
            }
        };
        chains.push(next);
    }
    chains
}

/// How many of an image's layers (bottom first) a minion holding the layers `has` (chain ids)
/// needs not be sent.
pub fn present_prefix(chains: &[String], has: &HashSet<String>) -> usize {
    chains.iter().take_while(|c| has.contains(*c)).count()
}

/// Which layer files of a save stream one minion is not sent, told apart by name as the
/// stream passes.
#[derive(Debug, Clone, Default)]
pub struct LayerSkip {
    /// The image's chain ids (bottom first), to prove a classic layer directory's layer.
    chains: Vec<String>,
    diff_ids: Vec<String>,
    /// Diff ids of the layers whose files are left out.
    skip: HashSet<String>,
    /// Classic layout: each directory its `json` proved, and whether its layer is left out.
    dirs: HashMap<String, bool>,
}

impl LayerSkip {
    /// For a minion holding the first `present` of the layers `diff_ids` (bottom first): their
    /// files, less any a layer above also has (two layers with the same content, such as empty
    /// ones, share a file).
    pub fn new(diff_ids: &[String], present: usize) -> LayerSkip {
        let needed: HashSet<&String> = diff_ids[present..].iter().collect();
        LayerSkip {
            chains: chain_ids(diff_ids),
            diff_ids: diff_ids.to_vec(),
            skip: diff_ids[..present]
                .iter()
                .filter(|d| !needed.contains(d))
                .cloned()
                .collect(),
            dirs: HashMap::new(),
        }
    }

    /// Nothing left out.
    pub fn none() -> LayerSkip {
        LayerSkip::default()
    }

    /// Whether the regular file `path` is left out.
    fn leaves_out(&self, path: &str) -> bool {
        if self.skip.is_empty() {
            return false;
        }
        if let Some(hex) = path.strip_prefix("blobs/sha256/") {
            return self.skip.contains(&format!("sha256:{hex}"));
        }
        match path.strip_suffix("/layer.tar") {
            Some(dir) => self.dirs.get(dir).copied().unwrap_or(false),
            None => false,
        }
    }

    /// Whether `path` is a classic layer directory's `json`, to be read.
    fn wants(&self, path: &str) -> bool {
        !self.skip.is_empty()
            && path
                .strip_suffix("/json")
                .is_some_and(|dir| !dir.contains('/'))
    }

    /// Learns from a classic directory's `json` which layer the directory holds.
    fn learn(&mut self, path: &str, json: &[u8]) {
        let Some(dir) = path.strip_suffix("/json") else {
            return;
        };
        for (i, chain) in self.chains.iter().enumerate() {
            let proven = [false, true]
                .iter()
                .any(|with_os| legacy_layer_id(json, chain, *with_os).as_deref() == Some(dir));
            if proven {
                let left_out = self.skip.contains(&self.diff_ids[i]);
                self.dirs.insert(dir.to_string(), left_out);
                return;
            }
        }
    }
}

/// The legacy id Docker's classic `docker save` names a layer's directory by, rebuilt from the
/// directory's `json` as `v1.CreateID` made it (Docker 20.10 `image/v1/imagev1.go`): the
/// SHA-256 of the json's fields in key order, without `id`, with `layer_id` set to the layer's
/// chain id and `parent` as a digest. The save adds `os` after the id was made for every layer
/// but the top one, hence `with_os`. `None` when the json is not an object.
pub fn legacy_layer_id(json: &[u8], chain: &str, with_os: bool) -> Option<String> {
    use serde_json::value::RawValue;
    let mut fields: std::collections::BTreeMap<String, Box<RawValue>> =
        serde_json::from_slice(json).ok()?;
    fields.remove("id");
    if !with_os {
        fields.remove("os");
    }
    let string = |s: &str| RawValue::from_string(serde_json::to_string(s).ok()?).ok();
    fields.insert("layer_id".into(), string(chain)?);
    if let Some(parent) = fields.get("parent") {
        let parent: String = serde_json::from_str(parent.get()).ok()?;
        if !parent.starts_with("sha256:") {
            fields.insert("parent".into(), string(&format!("sha256:{parent}"))?);
        }
    }
    let mut text = String::from("{");
    for (i, (key, value)) in fields.iter().enumerate() {
        if i > 0 {
            text.push(',');
        }
        text.push_str(&serde_json::to_string(key).ok()?);
        text.push(':');
        text.push_str(value.get());
    }
    text.push('}');
    Some(crate::store::content_hash(text.as_bytes()))
}

const BLOCK: usize = 512;

/// A tar stream with some regular files left out, filtered as it passes: `push` gives it the
/// bytes as they come, it gives back the bytes to send. Metadata entries that describe the
/// next entry (PAX headers, GNU long names) go or stay with it.
#[derive(Debug)]
pub struct TarFilter {
    /// Which files to leave out.
    rule: LayerSkip,
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
    /// The path of the file being read for the rule (a classic layer directory's `json`), and
    /// its data so far.
    reading: Option<String>,
    read: Vec<u8>,
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
    pub fn new(rule: LayerSkip) -> TarFilter {
        TarFilter {
            rule,
            header: Vec::with_capacity(BLOCK),
            held: Vec::new(),
            long_name: None,
            remaining: 0,
            now: Data::Keep,
            skipped: 0,
            skipped_bytes: 0,
            reading: None,
            read: Vec::new(),
            last_size: 0,
            pax_size: None,
            ended: false,
        }
    }

    /// Takes the next bytes of the stream; appends what is to be sent to `out`.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<u8>) -> Result<(), String> {
        while !input.is_empty() {
            if self.remaining > 0 {
                let n = (self.remaining.min(input.len() as u64)) as usize;
                if self.reading.is_some() {
                    // The data without the padding after it.
                    let room = (self.last_size as usize).saturating_sub(self.read.len());
                    self.read.extend_from_slice(&input[..n.min(room)]);
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
                    if let Some(path) = self.reading.take() {
                        self.rule.learn(&path, &self.read);
                        self.read.clear();
                    }
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
        // A layer directory's json is small; one that is not is not read (its layer is sent).
        if regular && size > 0 && size <= 1 << 20 && self.rule.wants(&name) {
            self.reading = Some(name.clone());
        }
        if regular && self.rule.leaves_out(&name) {
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
    pub diff_ids: Vec<String>,
    pub chains: Vec<String>,
    /// The sum of its layers' sizes, as the engine counts them (near the bytes of a save).
    pub size: u64,
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
        diff_ids,
        size: inspected.size.unwrap_or(0).max(0) as u64,
    })
}

/// The `[images] push` patterns with the local engine's id of every tag they take (one list
/// of the local engine's images). Without patterns, the local engine is not asked.
pub async fn local_pins(patterns: &[String]) -> Result<crate::image_pins::ImagePins, PushError> {
    let mut ids = std::collections::BTreeMap::new();
    if !patterns.is_empty() {
        let docker = local_engine()?;
        let pins = crate::image_pins::ImagePins::new(patterns.to_vec(), Default::default());
        let images = docker
            .list_images(None::<bollard::query_parameters::ListImagesOptions>)
            .await
            .map_err(|e| PushError::Local(format!("listing its images: {e}")))?;
        for image in images {
            for tag in pins.taken(image.repo_tags.iter().map(String::as_str)) {
                ids.insert(tag.to_string(), image.id.clone());
            }
        }
    }
    Ok(crate::image_pins::ImagePins::new(patterns.to_vec(), ids))
}

/// Pulls `reference` into the local engine (a name in `[images] push` it lacks: minions
/// without a way to a registry get it through the drover host).
pub async fn pull_local(reference: &str) -> Result<(), PushError> {
    let docker = local_engine()?;
    let options = bollard::query_parameters::CreateImageOptionsBuilder::new()
        .from_image(reference)
        .build();
    docker
        .create_image(Some(options), None, None)
        .try_for_each(|_| async { Ok(()) })
        .await
        .map_err(|e| PushError::Local(format!("pulling {reference}: {e}")))
}

/// An image a plan's pods run on some minions, pinned to one build (`Container::image_id`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Delivery {
    pub reference: String,
    pub id: String,
}

/// One image's delivery during a plan: each minion's outcome (a failure in words).
pub type Delivered = (Delivery, Vec<(String, Result<Sent, String>)>);

/// Delivers each image to the minions about to run it that lack that build under its name,
/// one save stream per image for all of them. The local engine must still hold the very build
/// the plan pinned (a rebuild since is the next round's change, not this one's). Returns, per
/// image, each minion's outcome (`already` when it held the build).
pub async fn deliver(
    wanted: &[(Delivery, Vec<Arc<Minion>>)],
    progress: Arc<dyn PushProgress>,
) -> Vec<(Delivery, Vec<(String, Result<Sent, PushError>)>)> {
    let local = match local_engine() {
        Ok(l) => l,
        Err(e) => {
            let why = e.to_string();
            return wanted
                .iter()
                .map(|(d, ms)| {
                    let failed = ms
                        .iter()
                        .map(|m| (m.name().to_string(), Err(PushError::Local(why.clone()))));
                    (d.clone(), failed.collect())
                })
                .collect();
        }
    };
    let mut out = Vec::new();
    for (delivery, minions) in wanted {
        let results = match inspect_local(&local, &delivery.reference).await {
            Ok(image) if image.id == delivery.id => {
                push(&local, &image, minions, progress.clone()).await
            }
            Ok(image) => {
                let why = PushError::Local(format!(
                    "{} is now {}, not the build {} this plan runs (rebuilt since: the next round rolls it out)",
                    delivery.reference,
                    short_id(&image.id),
                    short_id(&delivery.id)
                ));
                fail_all(minions, &why)
            }
            Err(e) => fail_all(minions, &e),
        };
        out.push((delivery.clone(), results));
    }
    out
}

fn fail_all(minions: &[Arc<Minion>], why: &PushError) -> Vec<(String, Result<Sent, PushError>)> {
    minions
        .iter()
        .map(|m| (m.name().to_string(), Err(PushError::Local(why.to_string()))))
        .collect()
}

/// `sha256:0123456789ab…` cut to its first twelve hex digits, as `docker images` shows ids.
pub fn short_id(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
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

impl Sent {
    /// The push in words: layers and bytes sent and left out, and the time it took.
    pub fn summary(&self) -> String {
        let secs = self.took.as_secs_f64();
        if self.already {
            return format!("already there (the same image id), nothing sent, {secs:.1} s");
        }
        let layers = |n: usize| if n == 1 { "layer" } else { "layers" };
        format!(
            "sent {} {} ({}), {} {} there already ({} not sent), {secs:.1} s",
            self.layers_sent,
            layers(self.layers_sent),
            bytes(self.bytes_sent),
            self.layers_skipped,
            layers(self.layers_skipped),
            bytes(self.bytes_skipped),
        )
    }
}

/// Bytes in decimal units, as `docker images` shows sizes.
fn bytes(b: u64) -> String {
    match b {
        b if b >= 1_000_000_000 => format!("{:.1} GB", b as f64 / 1e9),
        b if b >= 1_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        b if b >= 1_000 => format!("{:.1} kB", b as f64 / 1e3),
        b => format!("{b} B"),
    }
}

/// Told how a push goes: the bytes a minion will be sent (when known), then each chunk as it
/// leaves.
pub trait PushProgress: Send + Sync {
    fn starting(&self, minion: &str, bytes: Option<u64>);
    fn sent(&self, minion: &str, bytes: u64);
}

/// Whether a minion holds this very image under this name (then it is sent nothing).
async fn holds(minion: &Minion, image: &LocalImage) -> Result<bool, PushError> {
    Ok(minion.image_id(&image.name).await?.as_deref() == Some(image.id.as_str()))
}

/// How many of the image's layers (bottom first) a minion has, asked by chain id.
async fn present_layers(minion: &Minion, image: &LocalImage) -> Result<usize, PushError> {
    let has: HashSet<String> = minion
        .image_layers()
        .await?
        .iter()
        .flat_map(|layers| chain_ids(layers))
        .collect();
    Ok(present_prefix(&image.chains, &has))
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
    let held = futures_util::future::join_all(minions.iter().map(|m| holds(m, image))).await;
    let mut results: Vec<(String, Result<Sent, PushError>)> = Vec::new();
    let mut lacking: Vec<(usize, Arc<Minion>)> = Vec::new();
    for (m, held) in minions.iter().zip(held) {
        let result = match held {
            Ok(true) => Ok(Sent {
                already: true,
                layers_skipped: image.chains.len(),
                took: started.elapsed(),
                ..Sent::default()
            }),
            Ok(false) => {
                lacking.push((results.len(), m.clone()));
                Ok(Sent::default())
            }
            Err(e) => Err(e),
        };
        results.push((m.name().to_string(), result));
    }
    if lacking.is_empty() {
        return results;
    }
    // The engine sends the first byte of a save only once it has written the image out: the
    // minions are asked which layers they have meanwhile.
    let mut stream = local.export_image(&image.name);
    let (asked, first) = tokio::join!(
        futures_util::future::join_all(lacking.iter().map(|(_, m)| present_layers(m, image))),
        stream.next()
    );
    // (index into results, minion, layers present)
    let mut to_feed: Vec<(usize, Arc<Minion>, usize)> = Vec::new();
    for ((index, m), present) in lacking.into_iter().zip(asked) {
        match present {
            Ok(present) => to_feed.push((index, m, present)),
            Err(e) => results[index].1 = Err(e),
        }
    }
    if to_feed.is_empty() {
        return results;
    }
    let mut feeds = Vec::new();
    for (index, minion, present) in to_feed {
        let name = results[index].0.clone();
        feeds.push(Feed::start(index, name, minion, image, present, &*progress));
    }
    let stream = futures_util::stream::iter(first).chain(stream);
    let broken = feed_all(stream, image, &mut feeds, &*progress).await;
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
}

impl Feed {
    /// Starts `docker load` on `minion`, reading from a queue this feed fills.
    fn start(
        index: usize,
        name: String,
        minion: Arc<Minion>,
        image: &LocalImage,
        present: usize,
        progress: &dyn PushProgress,
    ) -> Feed {
        // The bytes are known ahead only when the whole image goes (then near its size).
        progress.starting(&name, (present == 0).then_some(image.size));
        let (queue, receiver) = tokio::sync::mpsc::channel(QUEUE);
        let tar = futures_util::stream::unfold(receiver, |mut r| async move {
            r.recv().await.map(|chunk| (chunk, r))
        });
        let image_name = image.name.clone();
        let load = tokio::spawn(async move { minion.load_image(&image_name, tar).await });
        Feed {
            index,
            name,
            filter: TarFilter::new(LayerSkip::new(&image.diff_ids, present)),
            queue: Some(queue),
            load,
            sent: 0,
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
                layers_sent: image.chains.len() - self.filter.skipped,
                layers_skipped: self.filter.skipped,
                bytes_sent: self.sent,
                bytes_skipped: self.filter.skipped_bytes,
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
    stream: impl futures_util::Stream<Item = Result<bytes::Bytes, bollard::errors::Error>>,
    image: &LocalImage,
    feeds: &mut [Feed],
    progress: &dyn PushProgress,
) -> Option<String> {
    let mut stream = std::pin::pin!(stream);
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

    fn filtered(archive: &[u8], rule: LayerSkip, chunk: usize) -> (Vec<u8>, TarFilter) {
        let mut f = TarFilter::new(rule);
        let mut out = Vec::new();
        for piece in archive.chunks(chunk) {
            f.push(piece, &mut out).unwrap();
        }
        (out, f)
    }

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn blob(c: char) -> String {
        format!("blobs/sha256/{}", c.to_string().repeat(64))
    }

    #[test]
    fn a_layer_file_is_left_out_with_its_metadata_at_any_chunking() {
        let layer: Vec<u8> = (0..1500u32).map(|i| (i % 251) as u8).collect();
        let pax = entry("PaxHeaders/x", b'x', &pax_record("path", &blob('a')));
        let dir = entry("blobs/sha256/", b'5', b"");
        let a_layer = entry("ignored-name", b'0', &layer);
        let b_layer = entry(&blob('b'), b'0', b"the layer above");
        let m = entry("manifest.json", b'0', b"[]");
        let end = vec![0u8; 2 * BLOCK];
        let archive = [
            dir.clone(),
            pax.clone(),
            a_layer.clone(),
            b_layer.clone(),
            m.clone(),
            end.clone(),
        ]
        .concat();
        let expected = [dir, b_layer, m, end].concat();
        let layers = [digest('a'), digest('b')];
        for chunk in [1, 7, 511, 512, 513, 4096, archive.len()] {
            let (out, f) = filtered(&archive, LayerSkip::new(&layers, 1), chunk);
            assert_eq!(out, expected, "chunk {chunk}");
            assert_eq!((f.skipped, f.skipped_bytes), (1, 1500));
            assert!(f.complete());
        }
        // Nothing to leave out: the stream unchanged.
        let (out, _) = filtered(&archive, LayerSkip::new(&layers, 0), 100);
        assert_eq!(out, archive);
    }

    #[test]
    fn long_names_and_pax_sizes_name_and_bound_the_entry_they_describe() {
        let layer: Vec<u8> = (0..3000u32).map(|i| (i % 253) as u8).collect();
        // A GNU long name; then a PAX size over a ustar field of 0 (as Go writes entries of
        // 8 GiB and more), at every chunking.
        let archive = [
            entry("././@LongLink", b'L', format!("{}\0", blob('a')).as_bytes()),
            entry("short-name", b'0', &layer),
            entry(
                "PaxHeaders/big",
                b'x',
                &[pax_record("path", &blob('b')), pax_record("size", "3000")].concat(),
            ),
            entry_sized("ignored-name", b'0', &layer, 0),
            entry("manifest.json", b'0', b"[]"),
            vec![0u8; 2 * BLOCK],
        ]
        .concat();
        let layers = [digest('a'), digest('b'), digest('c')];
        for chunk in [1, 100, 512, 1000, archive.len()] {
            let (out, f) = filtered(&archive, LayerSkip::new(&layers, 2), chunk);
            assert_eq!(f.skipped, 2, "chunk {chunk}");
            assert_eq!(f.skipped_bytes, 6000);
            assert_eq!(
                out,
                [entry("manifest.json", b'0', b"[]"), vec![0u8; 2 * BLOCK]].concat()
            );
            assert!(f.complete());
        }
        // Cut short: not a whole archive.
        let (_, f) = filtered(
            &archive[..archive.len() - 2 * BLOCK],
            LayerSkip::none(),
            512,
        );
        assert!(!f.complete());
        // A damaged header is refused, not guessed at.
        let mut bad = archive.clone();
        bad[3] ^= 1;
        let mut f = TarFilter::new(LayerSkip::none());
        assert!(f.push(&bad, &mut Vec::new()).is_err());
    }

    #[test]
    fn a_layer_file_a_higher_layer_also_has_is_not_left_out() {
        // The minion has the first two layers; the empty layer's content comes again above.
        let layers = [digest('a'), digest('e'), digest('b'), digest('e')];
        assert_eq!(
            LayerSkip::new(&layers, 2).skip,
            HashSet::from([digest('a')])
        );
        assert_eq!(LayerSkip::new(&layers, 4).skip.len(), 3);
    }

    /// A classic save of a three-layer image by Docker 20.10.24 (`FROM scratch`, three
    /// `COPY`s, `CMD`): its layers' diff ids, and each directory with its `json`.
    const DIFF_IDS: [&str; 3] = [
        "sha256:85cce657fecba1fce59ac171ef098252787fff19ced995cfb2524b2a9e7dfd5b",
        "sha256:5f7b57d43a6b5b28ddb780ee224f9057e34dc6d8c9a00005ef1f7da829db9a5d",
        "sha256:aa767f5bd3e625fc676897195c2aec6aef4f31bef56d9823cf48ac79e08b1b38",
    ];
    const CONTAINER_CONFIG: &str = r#""container_config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null}"#;
    const DIRS: [&str; 3] = [
        "6421817c4940f4a6edf80657a63a396c608bd3afbc56ea74236ecde0f2df6192",
        "af4ce437706bd80929b9a7fa9f510eaa570ee6841e20fa933042efd95a8c36dc",
        "d73c4a03acfc8fd7b13127098ae51769bb811942f43c5aa5a543979bd45da9f5",
    ];
    const TOP_JSON: &str = r##"{"id":"d73c4a03acfc8fd7b13127098ae51769bb811942f43c5aa5a543979bd45da9f5","parent":"af4ce437706bd80929b9a7fa9f510eaa570ee6841e20fa933042efd95a8c36dc","created":"2026-12-07T21:23:45.074528372Z","container":"7c309da8d1ae82e9abdef206cfe48a71baa5657086ce23cdce94e273aad894cb","container_config":{"Hostname":"7c309da8d1ae","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/bin/sh","-c","#(nop) ","CMD [\"/a\"]"],"Image":"sha256:03a403902297c31746ce30d5d369e952c471d296a0a827fd1d299cec1ebac19d","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":{}},"docker_version":"20.10.24+dfsg1","config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],"Cmd":["/a"],"Image":"sha256:03a403902297c31746ce30d5d369e952c471d296a0a827fd1d299cec1ebac19d","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null},"architecture":"amd64","os":"linux"}"##;

    fn classic_json(layer: usize) -> String {
        match layer {
            0 => format!(
                r#"{{"id":"{}","created":"1970-01-01T00:00:00Z",{CONTAINER_CONFIG},"os":"linux"}}"#,
                DIRS[0]
            ),
            1 => format!(
                r#"{{"id":"{}","parent":"{}","created":"1970-01-01T00:00:00Z",{CONTAINER_CONFIG},"os":"linux"}}"#,
                DIRS[1], DIRS[0]
            ),
            _ => TOP_JSON.to_string(),
        }
    }

    #[test]
    fn a_classic_layer_directory_is_proven_by_its_json_as_docker_named_it() {
        let diff_ids = DIFF_IDS.map(String::from);
        let chains = chain_ids(&diff_ids);
        for (layer, dir) in DIRS.iter().enumerate() {
            let json = classic_json(layer);
            let named = [false, true]
                .map(|with_os| legacy_layer_id(json.as_bytes(), &chains[layer], with_os));
            assert!(
                named.iter().any(|id| id.as_deref() == Some(*dir)),
                "layer {layer}: {named:?}"
            );
            // Another layer's chain id does not prove it.
            let other = &chains[(layer + 1) % 3];
            assert!([false, true]
                .iter()
                .all(|o| legacy_layer_id(json.as_bytes(), other, *o).as_deref() != Some(*dir)));
        }
        // The stream: each directory, in name order, with its VERSION, json and layer.tar.
        let mut parts = Vec::new();
        for (layer, dir) in DIRS.iter().enumerate() {
            parts.push(entry(&format!("{dir}/"), b'5', b""));
            parts.push(entry(&format!("{dir}/VERSION"), b'0', b"1.0"));
            parts.push(entry(
                &format!("{dir}/json"),
                b'0',
                classic_json(layer).as_bytes(),
            ));
            parts.push(entry(
                &format!("{dir}/layer.tar"),
                b'0',
                &vec![layer as u8; 2048],
            ));
        }
        parts.push(vec![0u8; 2 * BLOCK]);
        let archive = parts.concat();
        for chunk in [1, 300, 512, 4096, archive.len()] {
            let (out, f) = filtered(&archive, LayerSkip::new(&diff_ids, 2), chunk);
            assert_eq!((f.skipped, f.skipped_bytes), (2, 4096), "chunk {chunk}");
            assert_eq!(out.len(), archive.len() - 2 * (BLOCK + 2048));
            assert!(f.complete());
        }
        // A json that proves nothing: its layer is sent, not guessed at.
        // (the same length, so the tar stays whole; its checksums are not read past a json)
        let tampered: Vec<u8> = parts[..parts.len() - 1]
            .iter()
            .enumerate()
            .flat_map(|(i, p)| {
                if i % 4 == 2 {
                    let json = String::from_utf8(p[BLOCK..].to_vec()).unwrap();
                    let mut e = p[..BLOCK].to_vec();
                    e.extend_from_slice(json.replace("1970", "1971").as_bytes());
                    e
                } else {
                    p.clone()
                }
            })
            .chain(vec![0u8; 2 * BLOCK])
            .collect();
        let (out, f) = filtered(&tampered, LayerSkip::new(&diff_ids, 2), 512);
        assert_eq!((f.skipped, out.len()), (0, tampered.len()));
    }

    #[test]
    fn chain_ids_follow_the_oci_rule_and_a_minion_needs_what_is_above_its_prefix() {
        let d = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let chains = chain_ids(&[d('a'), d('b'), d('c')]);
        assert_eq!(chains[0], d('a'));
        // sha256("sha256:aaa… sha256:bbb…"), as `docker inspect` chains them.
        use sha2::Digest;
        let expect = sha2::Sha256::digest(format!("{} {}", d('a'), d('b')).as_bytes());
        assert_eq!(chains[1], format!("sha256:{expect:x}"));
        let has: HashSet<String> = [chains[0].clone(), chains[1].clone()].into();
        assert_eq!(present_prefix(&chains, &has), 2);
        // The same top layer on other layers below is not the same layer.
        let other = chain_ids(&[d('x'), d('b'), d('c')]);
        let has: HashSet<String> = other.into_iter().collect();
        assert_eq!(present_prefix(&chains, &has), 0);
    }
}
