//! What the package's `Architecture` and `Depends` fields are read from: the binaries'
//! own ELF headers. The machine gives the Debian architecture (so a cross-built binary
//! is packaged for its target, not the build host); the dynamic section's `NEEDED`
//! libraries and the symbol versions required of them (`.gnu.version_r`) give the
//! packages and the lowest glibc the binaries run on. dpkg-shlibdeps does this for
//! debhelper packages; it needs dpkg-dev, and a Rust binary links only the C library
//! and libgcc_s, so the mapping below is all it takes.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

/// Why a binary's needs could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("{path}: cannot read: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Malformed { path: String, reason: String },
    #[error(
        "{path} needs {library}, whose Debian package this tool does not know: add it to LIBRARIES in crates/dist/src/elf.rs (or link it statically)"
    )]
    UnknownLibrary { path: String, library: String },
}

/// A binary's architecture and the packages it needs at run time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needs {
    /// The Debian architecture (`amd64`, `arm64`, ...); `None` for a machine this
    /// module does not map.
    pub arch: Option<&'static str>,
    /// The ELF machine number, to report one that is not mapped.
    pub machine: u16,
    /// Debian packages with their lowest version, e.g. `("libc6", Some("2.34"))`.
    pub packages: Vec<(&'static str, Option<String>)>,
}

/// Shared libraries a Rust binary may need, with their Debian package and the prefix
/// of the symbol versions that say which release of it is required.
const LIBRARIES: &[(&str, &str, Option<&str>)] = &[
    ("libc.so.6", "libc6", Some("GLIBC_")),
    ("libm.so.6", "libc6", Some("GLIBC_")),
    ("libpthread.so.0", "libc6", Some("GLIBC_")),
    ("libdl.so.2", "libc6", Some("GLIBC_")),
    ("librt.so.1", "libc6", Some("GLIBC_")),
    ("libutil.so.1", "libc6", Some("GLIBC_")),
    ("ld-linux-x86-64.so.2", "libc6", Some("GLIBC_")),
    ("ld-linux-aarch64.so.1", "libc6", Some("GLIBC_")),
    ("libgcc_s.so.1", "libgcc-s1", None),
];

const EM_386: u16 = 3;
const EM_ARM: u16 = 40;
const EM_PPC64: u16 = 21;
const EM_S390: u16 = 22;
const EM_X86_64: u16 = 62;
const EM_AARCH64: u16 = 183;
const EM_RISCV: u16 = 243;

const SHT_DYNAMIC: u32 = 6;
const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;

/// Reads what `path` (an ELF executable) needs. An unknown machine gives `arch: None`.
pub fn needs(path: &Path) -> Result<Needs, ElfError> {
    let elf = Elf::open(path)?;
    let arch = match (elf.machine, elf.class64) {
        (EM_X86_64, true) => Some("amd64"),
        (EM_AARCH64, true) => Some("arm64"),
        (EM_RISCV, true) => Some("riscv64"),
        (EM_PPC64, true) if elf.little_endian => Some("ppc64el"),
        (EM_S390, true) => Some("s390x"),
        (EM_386, false) => Some("i386"),
        (EM_ARM, false) => Some("armhf"),
        _ => None,
    };
    let mut packages: Vec<(&'static str, Option<String>)> = Vec::new();
    let versions = elf.version_needs()?;
    for library in elf.needed()? {
        let Some((_, package, prefix)) = LIBRARIES.iter().find(|(name, _, _)| *name == library)
        else {
            return Err(ElfError::UnknownLibrary {
                path: elf.path.clone(),
                library,
            });
        };
        let highest = prefix.and_then(|prefix| {
            versions
                .iter()
                .filter(|(file, _)| *file == library)
                .filter_map(|(_, version)| version.strip_prefix(prefix))
                .filter(|number| number.split('.').all(|part| part.parse::<u32>().is_ok()))
                .max_by_key(|number| version_key(number))
                .map(str::to_string)
        });
        add_need(&mut packages, package, highest);
    }
    Ok(Needs {
        arch,
        machine: elf.machine,
        packages,
    })
}

/// Adds `package` (at least at `version`) to `packages`; a package listed already keeps
/// the higher of the two versions.
pub fn add_need(
    packages: &mut Vec<(&'static str, Option<String>)>,
    package: &'static str,
    version: Option<String>,
) {
    match packages.iter_mut().find(|(name, _)| *name == package) {
        Some((_, known)) => {
            if let Some(version) = version
                && known
                    .as_deref()
                    .is_none_or(|known| version_key(&version) > version_key(known))
            {
                *known = Some(version);
            }
        }
        None => packages.push((package, version)),
    }
}

/// A dotted version as numbers, for comparing (`2.34` is above `2.4`).
fn version_key(version: &str) -> Vec<u32> {
    version
        .split('.')
        .map(|part| part.parse().unwrap_or(0))
        .collect()
}

/// A section: where it is, and which section holds its strings.
#[derive(Debug, Clone, Copy)]
struct Section {
    kind: u32,
    offset: u64,
    size: u64,
    link: u32,
}

#[derive(Debug)]
struct Elf {
    path: String,
    file: File,
    class64: bool,
    little_endian: bool,
    machine: u16,
    sections: Vec<Section>,
}

/// A section's bytes may not exceed this (the string and version tables of a
/// binary are kilobytes; this guards against a corrupt size).
const MAX_SECTION: u64 = 64 << 20;

impl Elf {
    fn open(path: &Path) -> Result<Elf, ElfError> {
        let shown = path.display().to_string();
        let file = File::open(path).map_err(|source| ElfError::Io {
            path: shown.clone(),
            source,
        })?;
        let mut elf = Elf {
            path: shown,
            file,
            class64: false,
            little_endian: true,
            machine: 0,
            sections: Vec::new(),
        };
        let ident = elf.read(0, 16)?;
        if ident.get(..4) != Some(b"\x7fELF".as_slice()) {
            return Err(elf.malformed("not an ELF file"));
        }
        elf.class64 = match ident.get(4) {
            Some(1) => false,
            Some(2) => true,
            _ => return Err(elf.malformed("unknown ELF class")),
        };
        elf.little_endian = match ident.get(5) {
            Some(1) => true,
            Some(2) => false,
            _ => return Err(elf.malformed("unknown ELF byte order")),
        };
        let header = elf.read(0, if elf.class64 { 64 } else { 52 })?;
        elf.machine = elf.u16(&header, 18)?;
        let (shoff, shentsize, shnum) = if elf.class64 {
            (
                elf.u64(&header, 0x28)?,
                elf.u16(&header, 0x3A)?,
                elf.u16(&header, 0x3C)?,
            )
        } else {
            (
                u64::from(elf.u32(&header, 0x20)?),
                elf.u16(&header, 0x2E)?,
                elf.u16(&header, 0x30)?,
            )
        };
        let table = elf.read(shoff, u64::from(shentsize) * u64::from(shnum))?;
        for index in 0..usize::from(shnum) {
            let at = index * usize::from(shentsize);
            let entry = table
                .get(at..at + usize::from(shentsize))
                .ok_or_else(|| elf.malformed("section header table cut short"))?;
            let section = if elf.class64 {
                Section {
                    kind: elf.u32(entry, 4)?,
                    offset: elf.u64(entry, 0x18)?,
                    size: elf.u64(entry, 0x20)?,
                    link: elf.u32(entry, 0x28)?,
                }
            } else {
                Section {
                    kind: elf.u32(entry, 4)?,
                    offset: u64::from(elf.u32(entry, 0x10)?),
                    size: u64::from(elf.u32(entry, 0x14)?),
                    link: elf.u32(entry, 0x18)?,
                }
            };
            elf.sections.push(section);
        }
        Ok(elf)
    }

    /// The `NEEDED` entries of the dynamic section: library file names.
    fn needed(&self) -> Result<Vec<String>, ElfError> {
        let mut libraries = Vec::new();
        for section in self.sections.iter().filter(|s| s.kind == SHT_DYNAMIC) {
            let strings = self.linked_strings(section)?;
            let bytes = self.section_bytes(section)?;
            let entry = if self.class64 { 16 } else { 8 };
            for at in (0..bytes.len() / entry).map(|index| index * entry) {
                let (tag, value) = if self.class64 {
                    (self.u64(&bytes, at)?, self.u64(&bytes, at + 8)?)
                } else {
                    (
                        u64::from(self.u32(&bytes, at)?),
                        u64::from(self.u32(&bytes, at + 4)?),
                    )
                };
                match tag {
                    DT_NULL => break,
                    DT_NEEDED => libraries.push(self.string(&strings, value)?),
                    _ => {}
                }
            }
        }
        Ok(libraries)
    }

    /// `.gnu.version_r`: (library, version name) for every version a symbol needs.
    fn version_needs(&self) -> Result<Vec<(String, String)>, ElfError> {
        let mut needs = Vec::new();
        for section in self.sections.iter().filter(|s| s.kind == SHT_GNU_VERNEED) {
            let strings = self.linked_strings(section)?;
            let bytes = self.section_bytes(section)?;
            let mut at = 0usize;
            // Each entry names a library and chains its versions; the counts bound the
            // walk, so a corrupt chain cannot loop.
            for _ in 0..bytes.len() / 16 {
                let count = self.u16(&bytes, at + 2)?;
                let library = self.string(&strings, u64::from(self.u32(&bytes, at + 4)?))?;
                let mut aux = at + self.u32(&bytes, at + 8)? as usize;
                for _ in 0..count {
                    let name = self.string(&strings, u64::from(self.u32(&bytes, aux + 8)?))?;
                    needs.push((library.clone(), name));
                    let next = self.u32(&bytes, aux + 12)? as usize;
                    if next == 0 {
                        break;
                    }
                    aux += next;
                }
                let next = self.u32(&bytes, at + 12)? as usize;
                if next == 0 {
                    break;
                }
                at += next;
            }
        }
        Ok(needs)
    }

    fn linked_strings(&self, section: &Section) -> Result<Vec<u8>, ElfError> {
        let strings = self
            .sections
            .get(section.link as usize)
            .ok_or_else(|| self.malformed("a section links to no string table"))?;
        self.section_bytes(strings)
    }

    fn section_bytes(&self, section: &Section) -> Result<Vec<u8>, ElfError> {
        if section.size > MAX_SECTION {
            return Err(self.malformed("a section is implausibly large"));
        }
        self.read(section.offset, section.size)
    }

    fn string(&self, strings: &[u8], offset: u64) -> Result<String, ElfError> {
        let start = usize::try_from(offset).unwrap_or(usize::MAX);
        let tail = strings
            .get(start..)
            .ok_or_else(|| self.malformed("a string offset is past its table"))?;
        let end = tail
            .iter()
            .position(|byte| *byte == 0)
            .ok_or_else(|| self.malformed("an unterminated string"))?;
        let bytes = tail.get(..end).unwrap_or_default();
        Ok(String::from_utf8_lossy(bytes).into_owned())
    }

    fn read(&self, offset: u64, len: u64) -> Result<Vec<u8>, ElfError> {
        let len = usize::try_from(len).map_err(|_| self.malformed("a size is too large"))?;
        let mut buf = vec![0; len];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(|source| ElfError::Io {
                path: self.path.clone(),
                source,
            })?;
        Ok(buf)
    }

    fn field<const N: usize>(&self, bytes: &[u8], at: usize) -> Result<[u8; N], ElfError> {
        bytes
            .get(at..at + N)
            .and_then(|slice| <[u8; N]>::try_from(slice).ok())
            .ok_or_else(|| self.malformed("a header is cut short"))
    }

    fn u16(&self, bytes: &[u8], at: usize) -> Result<u16, ElfError> {
        let raw = self.field::<2>(bytes, at)?;
        Ok(if self.little_endian {
            u16::from_le_bytes(raw)
        } else {
            u16::from_be_bytes(raw)
        })
    }

    fn u32(&self, bytes: &[u8], at: usize) -> Result<u32, ElfError> {
        let raw = self.field::<4>(bytes, at)?;
        Ok(if self.little_endian {
            u32::from_le_bytes(raw)
        } else {
            u32::from_be_bytes(raw)
        })
    }

    fn u64(&self, bytes: &[u8], at: usize) -> Result<u64, ElfError> {
        let raw = self.field::<8>(bytes, at)?;
        Ok(if self.little_endian {
            u64::from_le_bytes(raw)
        } else {
            u64::from_be_bytes(raw)
        })
    }

    fn malformed(&self, reason: &str) -> ElfError {
        ElfError::Malformed {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_needs_glibc_and_libgcc() {
        let exe = std::env::current_exe().unwrap();
        let needs = needs(&exe).unwrap();
        if cfg!(target_arch = "x86_64") {
            assert_eq!(needs.arch, Some("amd64"));
        }
        let libc = needs
            .packages
            .iter()
            .find(|(name, _)| *name == "libc6")
            .and_then(|(_, version)| version.clone())
            .unwrap();
        assert!(version_key(&libc) >= vec![2, 17], "{libc}");
        assert!(needs.packages.iter().any(|(name, _)| *name == "libgcc-s1"));
    }

    #[test]
    fn what_is_not_elf_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("jumpgate");
        std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
        let err = needs(&script).unwrap_err().to_string();
        assert!(err.contains("not an ELF file"), "{err}");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "").unwrap();
        assert!(needs(&empty).is_err());
    }

    #[test]
    fn versions_compare_by_number_and_the_highest_need_wins() {
        assert!(version_key("2.34") > version_key("2.4"));
        assert!(version_key("2.2.5") < version_key("2.3"));
        let mut packages = Vec::new();
        add_need(&mut packages, "libc6", Some("2.17".to_string()));
        add_need(&mut packages, "libgcc-s1", None);
        add_need(&mut packages, "libc6", Some("2.34".to_string()));
        add_need(&mut packages, "libc6", Some("2.4".to_string()));
        add_need(&mut packages, "libc6", None);
        assert_eq!(
            packages,
            vec![("libc6", Some("2.34".to_string())), ("libgcc-s1", None)]
        );
    }
}
