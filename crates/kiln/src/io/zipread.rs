//! The one zip reader of kiln's zip-based formats (`.npz` now, `.keras` next), written for
//! files from strangers.
//!
//! What it guarantees, each with a test in `tests/suite/npy_io.rs`:
//! * The end record is found in the last 64 KiB + 22 bytes only, and must end the file
//!   exactly; the central directory must end where it begins (a file of repeated end
//!   records costs one linear scan of that tail, then fails).
//! * Every size and offset is checked against the file before anything is allocated or read:
//!   the central directory must lie before the end record, each member's data before the
//!   central directory, members may not overlap or share data, and the entry count must fit
//!   the directory's size.
//! * A member never inflates past the size the central directory declares (an error at the
//!   first extra byte), the declared size may be at most [`ZipLimits::max_ratio`] times the
//!   compressed size (deflate's own limit is about 1032), and all members together at most
//!   [`ZipLimits::max_total`] bytes.
//! * The CRC-32 of every member is verified (`Bad CRC-32`, as NumPy's zipfile says), and a
//!   member that ends early is an error.
//! * Member names are UTF-8 without control characters, absolute paths, drive letters or
//!   `..`; no two are the same; the local header's name must equal the directory's.
//! * Encrypted members, methods other than stored and deflate, and multi-disk archives are
//!   refused. Every message names the file and the member (escaped).

use crate::error::{KilnError, Result};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

/// Bounds on what reading an archive may inflate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ZipLimits {
    /// A member's declared size over its compressed size, at most (default 1100: deflate
    /// cannot expand more than about 1032 times).
    pub max_ratio: u64,
    /// All members' declared sizes together, at most (default 16 GiB).
    pub max_total: u64,
}

impl Default for ZipLimits {
    fn default() -> Self {
        ZipLimits {
            max_ratio: 1100,
            max_total: 16 << 30,
        }
    }
}

/// One member, as the central directory (checked against its local header) describes it.
#[derive(Clone, Debug)]
pub(crate) struct Member {
    pub name: String,
    deflated: bool,
    crc: u32,
    compressed: u64,
    /// The uncompressed size, which reading never exceeds.
    pub size: u64,
    local: u64,
    data: u64,
}

/// An open archive: its members, in directory order.
#[derive(Debug)]
pub(crate) struct Archive {
    file: File,
    path: String,
    pub members: Vec<Member>,
}

const EOCD: u32 = 0x0605_4b50;
const ZIP64_EOCD: u32 = 0x0606_4b50;
const ZIP64_LOCATOR: u32 = 0x0706_4b50;
const CENTRAL: u32 = 0x0201_4b50;
const LOCAL: u32 = 0x0403_4b50;

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(i..i + 2)?.try_into().ok()?))
}
fn u32_at(b: &[u8], i: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(i..i + 4)?.try_into().ok()?))
}
fn u64_at(b: &[u8], i: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(i..i + 8)?.try_into().ok()?))
}

/// A member name as it may appear in a message: escaped and at most 80 characters.
pub(crate) fn shown(name: &str) -> String {
    let e = format!("{name:?}");
    if e.chars().count() > 80 {
        format!("{}...\"", e.chars().take(76).collect::<String>())
    } else {
        e
    }
}

fn check_name(raw: &[u8]) -> std::result::Result<String, String> {
    let name = std::str::from_utf8(raw).map_err(|_| {
        format!(
            "a member name is not UTF-8: {}",
            shown(&String::from_utf8_lossy(raw))
        )
    })?;
    let bad = if name.is_empty() {
        Some("is empty")
    } else if name.chars().any(|c| c.is_control()) {
        Some("holds control characters")
    } else if name.starts_with('/') || name.starts_with('\\') {
        Some("is an absolute path")
    } else if name.as_bytes().get(1) == Some(&b':') {
        Some("starts with a drive letter")
    } else if name.split(['/', '\\']).any(|p| p == "..") {
        Some("climbs out of the archive with '..'")
    } else {
        None
    };
    match bad {
        Some(why) => Err(format!("the member name {} {why}", shown(name))),
        None => Ok(name.to_string()),
    }
}

impl Archive {
    fn err(&self, m: impl Into<String>) -> KilnError {
        KilnError::Format {
            path: self.path.clone(),
            message: m.into(),
        }
    }

    fn read_at(&mut self, offset: u64, n: usize, what: &str) -> Result<Vec<u8>> {
        let mut buf = Vec::new();
        buf.try_reserve_exact(n)
            .map_err(|_| self.err(format!("{what}: cannot allocate {n} bytes")))?;
        self.file
            .seek(SeekFrom::Start(offset))
            .map_err(|e| self.err(format!("{what}: {e}")))?;
        (&mut self.file)
            .take(n as u64)
            .read_to_end(&mut buf)
            .map_err(|e| self.err(format!("{what}: {e}")))?;
        if buf.len() != n {
            return Err(self.err(format!("{what}: truncated")));
        }
        Ok(buf)
    }

    /// Opens `path` and checks its whole structure (but no member's data).
    pub fn open(path: &std::path::Path, limits: ZipLimits) -> Result<Archive> {
        let name = path.display().to_string();
        let file = File::open(path).map_err(|e| KilnError::Io {
            path: name.clone(),
            message: e.to_string(),
        })?;
        let len = file
            .metadata()
            .map_err(|e| KilnError::Io {
                path: name.clone(),
                message: e.to_string(),
            })?
            .len();
        let mut a = Archive {
            file,
            path: name,
            members: Vec::new(),
        };
        let not_zip = |a: &Archive, why: &str| a.err(format!("not a valid zip archive: {why}"));
        if len < 22 {
            return Err(not_zip(&a, "shorter than an end-of-directory record"));
        }
        // The end record: within the last 22 + 65535 bytes, and its comment ends the file.
        let tail_len = len.min(22 + 65_535);
        let tail = a.read_at(len - tail_len, tail_len as usize, "the end of the file")?;
        let mut eocd = None;
        for i in (0..=tail.len() - 22).rev() {
            if u32_at(&tail, i) == Some(EOCD)
                && u16_at(&tail, i + 20).map(|c| i + 22 + c as usize) == Some(tail.len())
            {
                eocd = Some(i);
                break;
            }
        }
        let e = eocd.ok_or_else(|| not_zip(&a, "no end-of-directory record"))?;
        let eocd_pos = len - tail_len + e as u64;
        let f = |o: usize| u16_at(&tail, e + o).unwrap_or(0);
        if f(4) != 0 || f(6) != 0 {
            return Err(a.err("multi-disk archives are not supported"));
        }
        let mut entries = f(10) as u64;
        let mut cd_size = u32_at(&tail, e + 12).unwrap_or(0) as u64;
        let mut cd_off = u32_at(&tail, e + 16).unwrap_or(0) as u64;
        let mut cd_end_limit = eocd_pos;
        if entries == 0xFFFF || cd_size == 0xFFFF_FFFF || cd_off == 0xFFFF_FFFF {
            // Zip64: the locator sits right before the end record.
            let loc_pos = eocd_pos
                .checked_sub(20)
                .ok_or_else(|| not_zip(&a, "no zip64 locator"))?;
            let loc = a.read_at(loc_pos, 20, "the zip64 locator")?;
            if u32_at(&loc, 0) != Some(ZIP64_LOCATOR) {
                return Err(not_zip(&a, "no zip64 locator"));
            }
            let z_pos = u64_at(&loc, 8).unwrap_or(u64::MAX);
            if z_pos.checked_add(56).is_none_or(|end| end > loc_pos) {
                return Err(not_zip(&a, "the zip64 end record lies outside the file"));
            }
            let z = a.read_at(z_pos, 56, "the zip64 end record")?;
            if u32_at(&z, 0) != Some(ZIP64_EOCD) {
                return Err(not_zip(&a, "bad zip64 end record"));
            }
            entries = u64_at(&z, 32).unwrap_or(u64::MAX);
            cd_size = u64_at(&z, 40).unwrap_or(u64::MAX);
            cd_off = u64_at(&z, 48).unwrap_or(u64::MAX);
            cd_end_limit = z_pos;
        }
        // The directory ends where the end record begins (no data hidden between them; a
        // file of repeated end records fails here).
        if cd_off.checked_add(cd_size) != Some(cd_end_limit) {
            return Err(not_zip(
                &a,
                &format!(
                    "the central directory ({cd_size} bytes at {cd_off}) does not end where the end record begins ({cd_end_limit})"
                ),
            ));
        }
        if entries > cd_size / 46 {
            return Err(not_zip(
                &a,
                &format!("{entries} entries cannot fit a {cd_size}-byte directory"),
            ));
        }
        let cd = a.read_at(cd_off, cd_size as usize, "the central directory")?;
        let mut at = 0usize;
        let mut total: u64 = 0;
        let mut members: Vec<Member> = Vec::new();
        for k in 0..entries {
            let bad = |m: String| KilnError::Format {
                path: a.path.clone(),
                message: format!("central directory entry {k}: {m}"),
            };
            let hdr = cd.get(at..at + 46).ok_or_else(|| bad("truncated".into()))?;
            if u32_at(hdr, 0) != Some(CENTRAL) {
                return Err(bad("bad signature".into()));
            }
            let flags = u16_at(hdr, 8).unwrap_or(0);
            let method = u16_at(hdr, 10).unwrap_or(0);
            let crc = u32_at(hdr, 16).unwrap_or(0);
            let mut compressed = u32_at(hdr, 20).unwrap_or(0) as u64;
            let mut size = u32_at(hdr, 24).unwrap_or(0) as u64;
            let (nl, el, cl) = (
                u16_at(hdr, 28).unwrap_or(0) as usize,
                u16_at(hdr, 30).unwrap_or(0) as usize,
                u16_at(hdr, 32).unwrap_or(0) as usize,
            );
            let disk = u16_at(hdr, 34).unwrap_or(0);
            let mut local = u32_at(hdr, 42).unwrap_or(0) as u64;
            let raw_name = cd
                .get(at + 46..at + 46 + nl)
                .ok_or_else(|| bad("truncated name".into()))?;
            let extra = cd
                .get(at + 46 + nl..at + 46 + nl + el)
                .ok_or_else(|| bad("truncated extra field".into()))?;
            at += 46 + nl + el + cl;
            if at > cd.len() {
                return Err(bad("truncated comment".into()));
            }
            let name = check_name(raw_name).map_err(bad)?;
            let bad = |m: String| KilnError::Format {
                path: a.path.clone(),
                message: format!("member {}: {m}", shown(&name)),
            };
            // The zip64 extra field holds, in order, the fields whose 32-bit value is all ones.
            let mut i = 0;
            while i + 4 <= extra.len() {
                let id = u16_at(extra, i).unwrap_or(0);
                let n = u16_at(extra, i + 2).unwrap_or(0) as usize;
                let body = extra
                    .get(i + 4..i + 4 + n)
                    .ok_or_else(|| bad("truncated extra field".into()))?;
                if id == 1 {
                    let mut j = 0;
                    for field in [&mut size, &mut compressed, &mut local] {
                        if *field == 0xFFFF_FFFF {
                            *field = u64_at(body, j)
                                .ok_or_else(|| bad("truncated zip64 field".into()))?;
                            j += 8;
                        }
                    }
                }
                i += 4 + n;
            }
            if flags & 1 != 0 {
                return Err(bad("is encrypted".into()));
            }
            if disk != 0 && disk != 0xFFFF {
                return Err(bad("lies on another disk".into()));
            }
            let deflated = match method {
                0 => false,
                8 => true,
                m => {
                    return Err(bad(format!(
                        "compression method {m} is not supported (only stored and deflate)"
                    )))
                }
            };
            if !deflated && compressed != size {
                return Err(bad(format!(
                    "is stored but declares {size} bytes in {compressed}"
                )));
            }
            if deflated
                && size
                    > compressed
                        .saturating_mul(limits.max_ratio)
                        .saturating_add(1024)
            {
                return Err(bad(format!(
                    "declares {size} bytes from {compressed} compressed, over the {}:1 limit (ZipLimits::max_ratio)",
                    limits.max_ratio
                )));
            }
            total = total.saturating_add(size);
            if total > limits.max_total {
                return Err(bad(format!(
                    "the members declare over {} bytes in all (ZipLimits::max_total)",
                    limits.max_total
                )));
            }
            if members.iter().any(|m| m.name == name) {
                return Err(bad("appears twice".into()));
            }
            members.push(Member {
                name,
                deflated,
                crc,
                compressed,
                size,
                local,
                data: 0,
            });
        }
        // Each local header must match its entry, and the data must lie before the directory
        // without overlapping another member's.
        for slot in members.iter_mut() {
            let m = slot.clone();
            let bad = |a: &Archive, msg: String| a.err(format!("member {}: {msg}", shown(&m.name)));
            if m.local.checked_add(30).is_none_or(|e| e > cd_off) {
                return Err(bad(
                    &a,
                    "its local header lies outside the data area".into(),
                ));
            }
            let lh = a.read_at(m.local, 30, "a local header")?;
            if u32_at(&lh, 0) != Some(LOCAL) {
                return Err(bad(&a, "bad local header signature".into()));
            }
            let (nl, el) = (
                u16_at(&lh, 26).unwrap_or(0) as u64,
                u16_at(&lh, 28).unwrap_or(0) as u64,
            );
            let local_name = a.read_at(m.local + 30, nl as usize, "a local name")?;
            if local_name != m.name.as_bytes() {
                return Err(bad(
                    &a,
                    format!(
                        "the local header names it {}",
                        shown(&String::from_utf8_lossy(&local_name))
                    ),
                ));
            }
            let data = m.local + 30 + nl + el;
            if data.checked_add(m.compressed).is_none_or(|e| e > cd_off) {
                return Err(bad(&a, "its data runs past the data area".into()));
            }
            slot.data = data;
        }
        let mut spans: Vec<(u64, u64, usize)> = members
            .iter()
            .enumerate()
            .map(|(i, m)| (m.local, m.data + m.compressed, i))
            .collect();
        spans.sort_unstable();
        for w in spans.windows(2) {
            if w[1].0 < w[0].1 {
                return Err(a.err(format!(
                    "members {} and {} overlap",
                    shown(&members[w[0].2].name),
                    shown(&members[w[1].2].name)
                )));
            }
        }
        a.members = members;
        Ok(a)
    }

    /// A reader of member `i`'s uncompressed bytes: never more than its declared size, its
    /// CRC-32 checked at the end (call [`MemberReader::finish`] after reading what you need).
    pub fn member(&mut self, i: usize) -> Result<MemberReader<'_>> {
        let m = self
            .members
            .get(i)
            .cloned()
            .ok_or_else(|| self.err(format!("no member {i}")))?;
        self.file
            .seek(SeekFrom::Start(m.data))
            .map_err(|e| self.err(format!("member {}: {e}", shown(&m.name))))?;
        let raw = (&mut self.file).take(m.compressed);
        let inner: Box<dyn Read + '_> = if m.deflated {
            Box::new(flate2::read::DeflateDecoder::new(std::io::BufReader::new(
                raw,
            )))
        } else {
            Box::new(std::io::BufReader::new(raw))
        };
        Ok(MemberReader {
            inner,
            left: m.size,
            hasher: crc32fast::Hasher::new(),
            member: m,
            path: self.path.clone(),
        })
    }
}

/// One member's bytes (see [`Archive::member`]).
pub(crate) struct MemberReader<'a> {
    inner: Box<dyn Read + 'a>,
    left: u64,
    hasher: crc32fast::Hasher,
    member: Member,
    path: String,
}

fn invalid(m: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, m)
}

impl Read for MemberReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.left == 0 {
            // One more byte would be past the declared size.
            let mut one = [0u8; 1];
            if self.inner.read(&mut one)? != 0 {
                return Err(invalid(format!(
                    "inflates past its declared {} bytes",
                    self.member.size
                )));
            }
            if self.hasher.clone().finalize() != self.member.crc {
                return Err(invalid("Bad CRC-32 (the data is corrupted)".into()));
            }
            return Ok(0);
        }
        let want = buf.len().min(self.left.min(usize::MAX as u64) as usize);
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 && want > 0 {
            return Err(invalid(format!(
                "ends {} bytes before its declared {} bytes",
                self.left, self.member.size
            )));
        }
        self.hasher.update(&buf[..n]);
        self.left -= n as u64;
        Ok(n)
    }
}

impl MemberReader<'_> {
    /// The member's name and the archive's path, for messages: `file[member]`.
    pub fn label(&self) -> String {
        format!("{}[{}]", self.path, shown(&self.member.name))
    }
    /// Reads what is left (bounded by the declared size) and checks the CRC-32 and the size.
    pub fn finish(mut self) -> Result<()> {
        let label = self.label();
        std::io::copy(&mut self, &mut std::io::sink()).map_err(|e| KilnError::Format {
            path: label,
            message: e.to_string(),
        })?;
        Ok(())
    }
}
