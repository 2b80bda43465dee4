//! What the package's `Architecture` and `Depends` fields are read from: the binaries'
//! own ELF headers, read with the `object` crate. The machine gives the Debian
//! architecture (so a cross-built binary is packaged for its target, not the build
//! host); the dynamic section's `NEEDED` libraries and the symbol versions required of
//! them (`.gnu.version_r`) give the packages and the lowest glibc the binaries run on.
//! dpkg-shlibdeps does this for debhelper packages; it needs dpkg-dev, and a Rust
//! binary links only the C library and libgcc_s (the daemon also libxmlsec1, libxml2 and
//! libcrypto, for SAML), so the mapping below is all it takes.

use std::fs::File;
use std::path::Path;

use object::elf::{
    DT_NEEDED, EM_386, EM_AARCH64, EM_ARM, EM_PPC64, EM_RISCV, EM_S390, EM_X86_64, FileHeader32,
    FileHeader64, Machine,
};
use object::read::elf::FileHeader;
use object::{Endianness, FileKind, ReadCache, ReadRef};

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
    // The auth service's WebAuthn (webauthn-rs verifies signatures with OpenSSL 3).
    ("libssl.so.3", "libssl3", Some("OPENSSL_")),
    // SAML's XML signatures (`jumpgate-saml`): libxmlsec1 with its OpenSSL engine, libxml2,
    // and OpenSSL's libcrypto (Debian's libssl3 package). The daemon
    // only; jsh and jctl link none of them. Package names are Debian 12's.
    ("libxmlsec1.so.1", "libxmlsec1", None),
    ("libxmlsec1-openssl.so.1", "libxmlsec1-openssl", None),
    ("libxml2.so.2", "libxml2", Some("LIBXML2_")),
    ("libcrypto.so.3", "libssl3", Some("OPENSSL_")),
];

/// Reads what `path` (an ELF executable) needs. An unknown machine gives `arch: None`.
pub fn needs(path: &Path) -> Result<Needs, ElfError> {
    let shown = path.display().to_string();
    let file = File::open(path).map_err(|source| ElfError::Io {
        path: shown.clone(),
        source,
    })?;
    // Reads only the parts asked for (headers, dynamic section, version needs), not
    // the whole binary.
    parse(&shown, &ReadCache::new(file))
}

/// [`needs`] of `data`, the contents of the file `path`.
fn parse<'data, R: ReadRef<'data>>(path: &str, data: R) -> Result<Needs, ElfError> {
    let malformed = |reason: String| ElfError::Malformed {
        path: path.to_string(),
        reason,
    };
    let elf = match FileKind::parse(data) {
        Ok(FileKind::Elf64) => read::<FileHeader64<Endianness>, _>(data),
        Ok(FileKind::Elf32) => read::<FileHeader32<Endianness>, _>(data),
        Ok(_) => return Err(malformed("not an ELF file".to_string())),
        Err(err) => return Err(malformed(format!("not an ELF file ({err})"))),
    }
    .map_err(|err| malformed(format!("malformed ELF file: {err}")))?;
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
    for library in elf.needed {
        let Some((_, package, prefix)) = LIBRARIES.iter().find(|(name, _, _)| *name == library)
        else {
            return Err(ElfError::UnknownLibrary {
                path: path.to_string(),
                library,
            });
        };
        let highest = prefix.and_then(|prefix| {
            elf.versions
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
        machine: elf.machine.0,
        packages,
    })
}

/// What [`needs`] reads from the file, before the mapping to Debian names.
struct Parsed {
    machine: Machine,
    class64: bool,
    little_endian: bool,
    /// The dynamic section's `NEEDED` entries: library file names.
    needed: Vec<String>,
    /// `.gnu.version_r`: (library, version name) for every version a symbol needs.
    versions: Vec<(String, String)>,
}

fn read<'data, Elf, R>(data: R) -> object::read::Result<Parsed>
where
    Elf: FileHeader<Endian = Endianness>,
    R: ReadRef<'data>,
{
    let header = Elf::parse(data)?;
    let endian = header.endian()?;
    let sections = header.sections(endian, data)?;
    let dynamic = sections.dynamic_table(endian, data)?;
    let needed = dynamic
        .iter()
        .filter(|entry| entry.tag == DT_NEEDED)
        .map(|entry| dynamic.string(entry).map(text))
        .collect::<object::read::Result<_>>()?;
    let mut versions = Vec::new();
    if let Some((mut libraries, link)) = sections.gnu_verneed(endian, data)? {
        let strings = sections.strings(endian, data, link)?;
        while let Some((library, mut needed)) = libraries.next()? {
            let file = text(library.file(endian, strings)?);
            while let Some(version) = needed.next()? {
                versions.push((file.clone(), text(version.name(endian, strings)?)));
            }
        }
    }
    Ok(Parsed {
        machine: header.e_machine(endian),
        class64: header.is_class_64(),
        little_endian: header.is_little_endian(),
        needed,
        versions,
    })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
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

#[cfg(test)]
mod tests {
    use super::*;
    use object::build::elf::{Builder, Dynamic, SectionData, VersionData, VersionNeed};
    use object::elf::{
        EM_MIPS, ET_DYN, PF_R, SHF_ALLOC, SHT_DYNAMIC, SHT_DYNSYM, SHT_GNU_VERNEED, SHT_GNU_VERSYM,
        SHT_STRTAB, VersionFlags,
    };
    use std::path::PathBuf;

    /// An ELF file for `machine` that needs `libraries`, each with the symbol versions
    /// given (as a linker writes `.dynamic` and `.gnu.version_r`).
    fn elf(
        machine: Machine,
        is_64: bool,
        endian: Endianness,
        libraries: &[(&str, &[&str])],
    ) -> Vec<u8> {
        let mut builder = Builder::new(endian, is_64);
        builder.header.e_machine = machine;
        builder.header.e_type = ET_DYN;
        builder.header.e_phoff = if is_64 { 64 } else { 52 };
        let shstrtab = builder.sections.add();
        shstrtab.name = b".shstrtab"[..].into();
        shstrtab.sh_type = SHT_STRTAB;
        shstrtab.data = SectionData::SectionString;
        let mut loaded = Vec::new();
        let mut add = |name: &'static [u8], kind, align, data| {
            let section = builder.sections.add();
            section.name = name.into();
            section.sh_type = kind;
            section.sh_flags = SHF_ALLOC;
            section.sh_addralign = align;
            section.data = data;
            loaded.push(section.id());
            section.id()
        };
        let dynstr = add(b".dynstr", SHT_STRTAB, 1, SectionData::DynamicString);
        let needed = libraries
            .iter()
            .map(|(library, _)| Dynamic::String {
                tag: DT_NEEDED,
                val: library.as_bytes().into(),
            })
            .collect();
        let dynamic = add(b".dynamic", SHT_DYNAMIC, 8, SectionData::Dynamic(needed));
        let dynsym = add(b".dynsym", SHT_DYNSYM, 8, SectionData::DynamicSymbol);
        let versym = add(b".gnu.version", SHT_GNU_VERSYM, 2, SectionData::GnuVersym);
        let verneed = add(
            b".gnu.version_r",
            SHT_GNU_VERNEED,
            8,
            SectionData::GnuVerneed,
        );
        for id in [dynamic, dynsym, verneed] {
            builder.sections.get_mut(id).sh_link_section = Some(dynstr);
        }
        builder.sections.get_mut(versym).sh_link_section = Some(dynsym);
        for (library, versions) in libraries {
            let file = builder.version_files.add(library.as_bytes().into());
            // A version is written only if a symbol uses it.
            for (index, version) in versions.iter().enumerate() {
                let version = builder.versions.add(VersionData::Need(VersionNeed {
                    file,
                    name: version.as_bytes().into(),
                    flags: VersionFlags(0),
                }));
                let symbol = builder.dynamic_symbols.add();
                symbol.name = format!("{library}_symbol_{index}").into_bytes().into();
                symbol.version = version;
            }
        }
        // One loaded segment holding them all, after the file and program headers.
        builder.set_section_sizes();
        let segment = builder.segments.add_load_segment(PF_R, 0x100);
        segment.p_offset = 0x100;
        segment.p_vaddr = 0x100;
        segment.p_paddr = 0x100;
        for id in loaded {
            segment.append_section(builder.sections.get_mut(id));
        }
        let mut bytes = Vec::new();
        builder.write(&mut bytes).unwrap();
        bytes
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    const GLIBC: &[&str] = &["GLIBC_2.2.5", "GLIBC_2.34", "GLIBC_2.17", "GLIBC_PRIVATE"];

    #[test]
    fn libraries_map_to_packages_at_the_highest_glibc_version() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = elf(
            EM_AARCH64,
            true,
            Endianness::Little,
            &[
                ("libgcc_s.so.1", &["GCC_3.0", "GCC_4.2.0"]),
                ("libc.so.6", GLIBC),
                ("libm.so.6", &["GLIBC_2.38"]),
                ("ld-linux-aarch64.so.1", &[]),
            ],
        );
        let needs = needs(&write(dir.path(), "jumpgate", &bytes)).unwrap();
        assert_eq!(
            needs,
            Needs {
                arch: Some("arm64"),
                machine: EM_AARCH64.0,
                packages: vec![("libgcc-s1", None), ("libc6", Some("2.38".to_string()))],
            }
        );
    }

    #[test]
    fn the_machine_class_and_byte_order_give_the_architecture() {
        let dir = tempfile::tempdir().unwrap();
        for (machine, is_64, endian, arch) in [
            (EM_X86_64, true, Endianness::Little, Some("amd64")),
            (EM_RISCV, true, Endianness::Little, Some("riscv64")),
            (EM_PPC64, true, Endianness::Little, Some("ppc64el")),
            (EM_PPC64, true, Endianness::Big, None),
            (EM_S390, true, Endianness::Big, Some("s390x")),
            (EM_386, false, Endianness::Little, Some("i386")),
            (EM_ARM, false, Endianness::Little, Some("armhf")),
            (EM_X86_64, false, Endianness::Little, None),
            (EM_MIPS, false, Endianness::Big, None),
        ] {
            let bytes = elf(machine, is_64, endian, &[("libc.so.6", &["GLIBC_2.4"])]);
            let needs = needs(&write(dir.path(), "jumpgate", &bytes)).unwrap();
            let what = format!("{machine:?} 64-bit {is_64} {endian:?}");
            assert_eq!(needs.arch, arch, "{what}");
            assert_eq!(needs.machine, machine.0, "{what}");
            assert_eq!(needs.packages, vec![("libc6", Some("2.4".to_string()))]);
        }
    }

    #[test]
    fn a_library_without_a_known_package_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = elf(
            EM_X86_64,
            true,
            Endianness::Little,
            &[("libc.so.6", GLIBC), ("libfoo.so.1", &["FOO_1.0"])],
        );
        let path = write(dir.path(), "jctl", &bytes);
        let err = needs(&path).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{} needs libfoo.so.1,", path.display())),
            "{err}"
        );
    }

    /// `target/debug`: the unit tests run from `target/debug/deps`.
    fn debug_dir() -> PathBuf {
        let exe = std::env::current_exe().unwrap();
        exe.parent().unwrap().parent().unwrap().to_path_buf()
    }

    #[test]
    fn the_built_programs_need_glibc_and_libgcc_and_the_daemon_openssl() {
        let test_binary = std::env::current_exe().unwrap();
        let programs = ["jumpgate", "jctl", "jsh"].map(|name| debug_dir().join(name));
        for path in programs.iter().chain([&test_binary]) {
            assert!(
                path.is_file(),
                "{} is missing: build every binary first with `cargo build --workspace --bins` (test.sh does)",
                path.display()
            );
            let needs = needs(path).unwrap();
            if cfg!(target_arch = "x86_64") {
                assert_eq!(needs.arch, Some("amd64"));
            } else if cfg!(target_arch = "aarch64") {
                assert_eq!(needs.arch, Some("arm64"));
            }
            let mut names: Vec<_> = needs.packages.iter().map(|(name, _)| *name).collect();
            names.sort_unstable();
            // The daemon verifies WebAuthn signatures with OpenSSL 3 and SAML signatures with
            // libxmlsec1 (jumpgate-saml); jsh and jctl link no server code.
            let expected: &[&str] = if path.ends_with("jumpgate") {
                &[
                    "libc6",
                    "libgcc-s1",
                    "libssl3",
                    "libxml2",
                    "libxmlsec1",
                    "libxmlsec1-openssl",
                ]
            } else {
                &["libc6", "libgcc-s1"]
            };
            assert_eq!(names, expected, "{}", path.display());
            let libc = needs
                .packages
                .iter()
                .find_map(|(name, version)| (*name == "libc6").then_some(version.clone()))
                .flatten()
                .unwrap();
            assert!(version_key(&libc) >= vec![2, 17], "{libc}");
        }
    }

    #[test]
    fn what_is_not_elf_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        for (name, bytes) in [
            ("script", &b"#!/bin/sh\necho hi\n"[..]),
            ("empty", b""),
            ("magic-only", b"\x7fELF"),
            ("class-3", b"\x7fELF\x03\x01\x01\0\0\0\0\0\0\0\0\0\0\0\0\0"),
        ] {
            let path = write(dir.path(), name, bytes);
            let err = needs(&path).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("{}: not an ELF file", path.display())),
                "{err}"
            );
        }
        let missing = dir.path().join("missing");
        let err = needs(&missing).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}: cannot read: ", missing.display())),
            "{err}"
        );
    }

    #[test]
    fn a_cut_short_or_corrupt_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = elf(
            EM_X86_64,
            true,
            Endianness::Little,
            &[("libgcc_s.so.1", &["GCC_3.0"]), ("libc.so.6", GLIBC)],
        );
        // Through the file (read in pieces as asked for) and from memory, where every
        // length is quick to try.
        for len in [0, 3, 20, 64, 0x100, 0x200, bytes.len() - 1] {
            let path = write(dir.path(), "cut", &bytes[..len]);
            let err = needs(&path).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("{}: ", path.display())) && err.contains("ELF"),
                "cut to {len} bytes: {err}"
            );
        }
        for len in 0..bytes.len() {
            let err = parse("cut", &bytes[..len]).unwrap_err().to_string();
            assert!(
                err.starts_with("cut: ") && err.contains("ELF"),
                "cut to {len} bytes: {err}"
            );
        }
        // Every byte in turn made 0xff: whatever it hits (offsets, counts, string
        // indices, chain links), the answer is needs or an error.
        let mut malformed = 0;
        for at in 0..bytes.len() {
            let mut corrupt = bytes.clone();
            corrupt[at] = 0xff;
            if parse("corrupt", corrupt.as_slice()).is_err() {
                malformed += 1;
            }
        }
        assert!(malformed > 0);
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
