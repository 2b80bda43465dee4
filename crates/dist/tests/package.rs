//! The Debian package as an operator gets it, checked with the real tools: dpkg-deb
//! reads it, dpkg installs, upgrades and purges it (maintainer scripts included) in a
//! throwaway root, bash, zsh and fish load its completions, man renders its pages, and
//! systemd-analyze verifies its unit and the hardening drop-in.
//!
//! The package is built from the debug binaries test.sh builds first (a release build
//! only for this would cost CI many minutes), uncompressed (`--compression none`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use jumpgate_test_support::{output_within, run_ok, text};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const PROGRAMS: [&str; 3] = ["jumpgate", "jctl", "jsh"];

/// The directory of the binaries cargo built (`target/debug`): jumpgate-dist's own,
/// and the three programs beside it.
fn bin_dir() -> PathBuf {
    let dist = Path::new(env!("CARGO_BIN_EXE_jumpgate-dist"));
    let dir = dist.parent().unwrap().to_path_buf();
    for program in PROGRAMS {
        assert!(
            dir.join(program).is_file(),
            "{} is missing: build every binary first with `cargo build --workspace --bins` (test.sh does)",
            dir.join(program).display()
        );
    }
    dir
}

/// A program the test needs, from the Debian package `package` (test.sh installs it).
fn program(name: &str, package: &str) -> PathBuf {
    for dir in ["/usr/bin", "/bin", "/usr/sbin", "/sbin"] {
        let path = Path::new(dir).join(name);
        if path.is_file() {
            return path;
        }
    }
    panic!("{name} not found: install Debian's {package} (./test.sh does)");
}

/// Builds the package into `dir`; returns its path.
fn build_package(dir: &Path) -> PathBuf {
    let out = run_ok(
        Command::new(env!("CARGO_BIN_EXE_jumpgate-dist"))
            .arg("deb")
            .arg("--bin-dir")
            .arg(bin_dir())
            .arg("--out-dir")
            .arg(dir)
            .args(["--compression", "none"]),
        None,
    );
    let package = PathBuf::from(out.trim());
    assert!(package.is_file(), "{out}");
    package
}

/// The package's files, unpacked under `dir`/root.
fn unpack(package: &Path, dir: &Path) -> PathBuf {
    let root = dir.join("root");
    run_ok(
        Command::new(program("dpkg-deb", "dpkg"))
            .arg("-x")
            .arg(package)
            .arg(&root),
        None,
    );
    root
}

fn within(command: &mut Command, limit_secs: u64) -> (bool, String, String) {
    let out = output_within(command, None, Duration::from_secs(limit_secs));
    (out.status.success(), text(&out.stdout), text(&out.stderr))
}

#[test]
fn the_package_has_its_fields_and_its_files_and_nothing_in_etc() {
    let dir = tempfile::tempdir().unwrap();
    let package = build_package(dir.path());
    let name = package.file_name().unwrap().to_str().unwrap();
    assert!(
        name.starts_with(&format!("jumpgate_{}_", env!("CARGO_PKG_VERSION"))),
        "{name}"
    );

    let dpkg_deb = program("dpkg-deb", "dpkg");
    let info = run_ok(Command::new(&dpkg_deb).arg("--info").arg(&package), None);
    for field in [
        "Package: jumpgate\n",
        "Section: admin\n",
        "Recommends: openssh-sftp-server\n",
        "Description: ",
    ] {
        assert!(info.contains(field), "{field} missing:\n{info}");
    }
    // Read from the binaries: glibc at the version they need, libgcc_s for unwinding.
    let depends = info
        .lines()
        .find_map(|line| line.trim().strip_prefix("Depends: "))
        .unwrap_or_else(|| panic!("no Depends:\n{info}"));
    assert!(depends.starts_with("libc6 (>= 2."), "{depends}");
    assert!(depends.contains("libgcc-s1"), "{depends}");
    // The daemon's SAML signatures (jumpgate-saml: libxmlsec1, libxml2, libcrypto) and
    // WebAuthn's (webauthn-rs: OpenSSL 3).
    for library in [
        "libxmlsec1",
        "libxmlsec1-openssl",
        "libxml2 (>= 2.",
        "libssl3 (>= 3.",
    ] {
        assert!(depends.contains(library), "{library} missing: {depends}");
    }
    assert!(depends.contains("passwd"), "{depends}");
    let arch = run_ok(
        Command::new(&dpkg_deb)
            .args(["--field"])
            .arg(&package)
            .arg("Architecture"),
        None,
    );
    let host_arch = run_ok(
        Command::new(program("dpkg", "dpkg")).arg("--print-architecture"),
        None,
    );
    assert_eq!(arch.trim(), host_arch.trim());
    for script in ["postinst", "prerm", "postrm"] {
        assert!(info.contains(script), "{script} missing:\n{info}");
    }

    let listing = run_ok(
        Command::new(&dpkg_deb).arg("--contents").arg(&package),
        None,
    );
    // "-rwxr-xr-x root/root 123 2026-01-01 00:00 ./usr/bin/jsh"
    let entries: Vec<(&str, &str, &str)> = listing
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            Some((*fields.first()?, *fields.get(1)?, *fields.last()?))
        })
        .collect();
    let mode_of = |path: &str| {
        entries
            .iter()
            .find(|(_, _, name)| *name == path)
            .map(|(mode, _, _)| *mode)
            .unwrap_or_else(|| panic!("{path} missing:\n{listing}"))
    };
    for program in PROGRAMS {
        assert_eq!(mode_of(&format!("./usr/bin/{program}")), "-rwxr-xr-x");
        assert_eq!(
            mode_of(&format!(
                "./usr/share/bash-completion/completions/{program}"
            )),
            "-rw-r--r--"
        );
        mode_of(&format!("./usr/share/zsh/vendor-completions/_{program}"));
        mode_of(&format!(
            "./usr/share/fish/vendor_completions.d/{program}.fish"
        ));
        mode_of(&format!("./usr/share/man/man1/{program}.1.gz"));
    }
    for path in [
        "./lib/systemd/system/jumpgate.service",
        "./usr/share/jumpgate/hardening.conf",
        "./usr/share/doc/jumpgate/copyright",
        "./usr/share/doc/jumpgate/install.md",
        "./usr/share/doc/jumpgate/examples/jumpgate.yaml",
        "./usr/share/man/man1/jumpgate-start.1.gz",
        "./usr/share/man/man1/jctl-users-add.1.gz",
        "./usr/share/man/man1/jsh-ssh.1.gz",
    ] {
        assert_eq!(mode_of(path), "-rw-r--r--", "{path}");
    }
    for (mode, owner, name) in &entries {
        assert_eq!(*owner, "root/root", "{name}");
        assert!(
            !name.starts_with("./etc"),
            "the package must not ship {name}: /etc/jumpgate.yaml is the operator's"
        );
        if mode.starts_with('d') {
            assert_eq!(*mode, "drwxr-xr-x", "{name}");
        }
    }
}

/// dpkg itself installs, reinstalls (an upgrade: postinst with the old version) and
/// purges the package in a throwaway root. `--force-script-chrootless` runs the
/// maintainer scripts here with DPKG_ROOT set, so they make the user and the state
/// directory in that root (and touch no service).
#[test]
fn dpkg_installs_upgrades_and_purges_it_keeping_the_config_and_the_state() {
    if !is_root() {
        eprintln!("skipped: dpkg --root needs root to own the installed files (CI runs as root)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let package = build_package(dir.path());
    let root = dir.path().join("sysroot");
    for sub in ["var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    std::fs::write(root.join("var/lib/dpkg/status"), "").unwrap();
    // The account files useradd --prefix edits: root alone, as on a fresh system.
    std::fs::write(root.join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n").unwrap();
    std::fs::write(root.join("etc/group"), "root:x:0:\n").unwrap();
    for (file, line) in [
        ("shadow", "root:*:19000:0:99999:7:::\n"),
        ("gshadow", "root:*::\n"),
    ] {
        std::fs::write(root.join("etc").join(file), line).unwrap();
        std::fs::set_permissions(
            root.join("etc").join(file),
            PermissionsExt::from_mode(0o640),
        )
        .unwrap();
    }
    // The operator's config, which no package operation may touch.
    let config = "# mine\nversion: v3\n";
    std::fs::write(root.join("etc/jumpgate.yaml"), config).unwrap();

    let dpkg = |args: &[&str]| {
        let mut command = Command::new(program("dpkg", "dpkg"));
        command
            .arg(format!("--root={}", root.display()))
            .arg("--log=/dev/null")
            // The throwaway root has no libc6 or passwd to satisfy Depends, and no
            // shell to chroot into.
            .args([
                "--force-script-chrootless",
                "--force-depends",
                "--force-not-root",
            ])
            .args(args);
        let (ok, stdout, stderr) = within(&mut command, 120);
        assert!(ok, "dpkg {args:?} failed:\n{stdout}\n{stderr}");
        stdout + &stderr
    };
    let package_arg = package.to_str().unwrap();
    dpkg(&["--install", package_arg]);

    let status = dpkg(&["--status", "jumpgate"]);
    assert!(status.contains("Status: install ok installed"), "{status}");
    for program in PROGRAMS {
        let path = root.join("usr/bin").join(program);
        assert!(path.is_file(), "{} missing", path.display());
    }
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let user = passwd
        .lines()
        .find(|line| line.starts_with("jumpgate:"))
        .unwrap_or_else(|| panic!("no jumpgate user:\n{passwd}"));
    let fields: Vec<&str> = user.split(':').collect();
    assert!(
        fields[2].parse::<u32>().unwrap() < 1000,
        "not a system user: {user}"
    );
    assert_eq!(fields[5], "/var/lib/jumpgate", "{user}");
    assert_eq!(fields[6], "/usr/sbin/nologin", "{user}");
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap();
    assert!(
        group
            .lines()
            .any(|line| line.starts_with(&format!("jumpgate:x:{}:", fields[3]))),
        "the user's group is not jumpgate:\n{group}\n{user}"
    );
    let state = root.join("var/lib/jumpgate");
    let mode = std::fs::metadata(&state).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700, "{}", state.display());
    std::fs::write(state.join("host_uuid"), "kept\n").unwrap();

    // An upgrade (the same version again): postinst configure with the old version
    // runs again without a second user, and keeps what is there.
    dpkg(&["--install", package_arg]);
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert_eq!(
        passwd
            .lines()
            .filter(|line| line.starts_with("jumpgate:"))
            .count(),
        1,
        "{passwd}"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/jumpgate.yaml")).unwrap(),
        config
    );

    // Purge: the programs go; the config, the user and the state stay.
    let purged = dpkg(&["--purge", "jumpgate"]);
    assert!(purged.contains("/var/lib/jumpgate is kept"), "{purged}");
    assert!(!root.join("usr/bin/jumpgate").exists());
    assert!(!root.join("lib/systemd/system/jumpgate.service").exists());
    assert_eq!(
        std::fs::read_to_string(root.join("etc/jumpgate.yaml")).unwrap(),
        config
    );
    assert_eq!(
        std::fs::read_to_string(state.join("host_uuid")).unwrap(),
        "kept\n"
    );
    let (installed, stdout, stderr) = within(
        Command::new(program("dpkg", "dpkg"))
            .arg(format!("--root={}", root.display()))
            .args(["--status", "jumpgate"]),
        30,
    );
    assert!(!installed, "still known after the purge:\n{stdout}");
    assert!(stderr.contains("not installed"), "{stderr}");
}

fn is_root() -> bool {
    run_ok(Command::new("id").arg("-u"), None).trim() == "0"
}

/// Each program's completions load and complete: bash (`complete -p` and a completion
/// run), fish (`complete --do-complete`), zsh (registered with compinit).
#[test]
fn completions_load_and_complete_in_bash_zsh_and_fish() {
    let dir = tempfile::tempdir().unwrap();
    let root = unpack(&build_package(dir.path()), dir.path());
    let bash = program("bash", "bash");
    let zsh = program("zsh", "zsh");
    let fish = program("fish", "fish");
    // A word to complete and a subcommand it must offer.
    for (program, words, expected) in [
        ("jumpgate", "jumpgate st", "start"),
        ("jctl", "jctl users a", "add"),
        ("jsh", "jsh l", "login"),
    ] {
        let script = root
            .join("usr/share/bash-completion/completions")
            .join(program);
        let words_array: Vec<&str> = words.split(' ').collect();
        let current = words_array.last().unwrap();
        let previous = words_array[words_array.len() - 2];
        // bash calls the function with the command, the word and the one before.
        let shell = format!(
            "source {script} && complete -p {program} && \
             COMP_WORDS=({words}) COMP_CWORD={cword} COMP_LINE='{words}' COMP_POINT={point} && \
             _{function} {program} {current} {previous} && printf '%s\\n' \"${{COMPREPLY[@]}}\"",
            script = script.display(),
            cword = words_array.len() - 1,
            point = words.len(),
            function = program,
        );
        let (ok, stdout, stderr) = within(
            Command::new(&bash).args(["--norc", "--noprofile", "-c", &shell]),
            20,
        );
        assert!(ok, "bash: {program}: {stderr}");
        assert!(
            stdout.contains(&format!("-F _{program}")),
            "bash did not register {program}:\n{stdout}"
        );
        assert!(
            stdout.lines().any(|line| line == expected),
            "bash: {words:?} did not offer {expected}:\n{stdout}"
        );

        let script = root
            .join("usr/share/fish/vendor_completions.d")
            .join(format!("{program}.fish"));
        let shell = format!(
            "source {} ; complete --do-complete '{words}'",
            script.display()
        );
        let (ok, stdout, stderr) =
            within(Command::new(&fish).args(["--no-config", "-c", &shell]), 20);
        assert!(ok, "fish: {program}: {stderr}");
        assert!(
            stdout
                .lines()
                .any(|line| line.split('\t').next() == Some(expected)),
            "fish: {words:?} did not offer {expected}:\n{stdout}"
        );

        let functions = root.join("usr/share/zsh/vendor-completions");
        let shell = format!(
            "fpath=({} $fpath) && autoload -Uz compinit && compinit -u -D && print -r -- $_comps[{program}]",
            functions.display()
        );
        let (ok, stdout, stderr) = within(Command::new(&zsh).args(["-f", "-c", &shell]), 20);
        assert!(ok, "zsh: {program}: {stderr}");
        assert_eq!(stdout.trim(), format!("_{program}"), "zsh: {stderr}");
        let (ok, _, stderr) = within(
            Command::new(&zsh)
                .arg("-n")
                .arg(functions.join(format!("_{program}"))),
            20,
        );
        assert!(ok, "zsh cannot parse _{program}: {stderr}");
    }
}

/// Every man page renders without a warning from man (groff), has the NAME line
/// whatis/apropos index (lexgrog), and the top pages say what they are.
#[test]
fn every_man_page_renders_and_is_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let root = unpack(&build_package(dir.path()), dir.path());
    let man = program("man", "man-db");
    let lexgrog = program("lexgrog", "man-db");
    let pages_dir = root.join("usr/share/man/man1");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&pages_dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    pages.sort();
    assert!(pages.len() > 30, "{pages:?}");
    for page in &pages {
        let (ok, stdout, stderr) = within(
            Command::new(&man)
                .args(["--warnings", "-E", "UTF-8", "-l"])
                .arg(page)
                .env("MANWIDTH", "80")
                .env("MANPAGER", "cat"),
            20,
        );
        assert!(ok, "man {}: {stderr}", page.display());
        assert!(stderr.trim().is_empty(), "man {}: {stderr}", page.display());
        for section in ["NAME", "SYNOPSIS", "SEE ALSO"] {
            assert!(
                stdout.contains(section),
                "{}: no {section}:\n{stdout}",
                page.display()
            );
        }
        let (ok, stdout, stderr) = within(Command::new(&lexgrog).arg(page), 20);
        assert!(ok, "lexgrog {}: {stdout}{stderr}", page.display());
    }
    let (_, jumpgate, _) = within(
        Command::new(&man)
            .args(["-E", "UTF-8", "-l"])
            .arg(pages_dir.join("jumpgate.1.gz"))
            .env("MANWIDTH", "100")
            .env("MANPAGER", "cat"),
        20,
    );
    for needle in [
        "jumpgate-start(1)",
        "/etc/jumpgate.yaml",
        "FILES",
        "jctl(1)",
    ] {
        assert!(jumpgate.contains(needle), "{needle}:\n{jumpgate}");
    }
    let (_, jsh, _) = within(
        Command::new(&man)
            .args(["-E", "UTF-8", "-l"])
            .arg(pages_dir.join("jsh.1.gz"))
            .env("MANWIDTH", "100")
            .env("MANPAGER", "cat"),
        20,
    );
    for needle in ["EXAMPLES", "jsh ssh root@web-1", "JUMPGATE_HOME"] {
        assert!(jsh.contains(needle), "{needle}:\n{jsh}");
    }
}

/// systemd-analyze verifies the unit as installed (its ExecStart resolves in the
/// package), alone and with the hardening drop-in, which must leave little exposed.
#[test]
fn the_unit_and_the_hardening_drop_in_verify() {
    let dir = tempfile::tempdir().unwrap();
    let root = unpack(&build_package(dir.path()), dir.path());
    let analyze = program("systemd-analyze", "systemd");
    // The units ours names (network-online.target, multi-user.target, ...) and theirs,
    // from this host: verify resolves every dependency inside --root.
    run_ok(
        Command::new("cp")
            .args(["-rn", "/lib/systemd/system/."])
            .arg(root.join("lib/systemd/system")),
        None,
    );
    let verify = |root: &Path| {
        let (ok, stdout, stderr) = within(
            Command::new(&analyze)
                .arg("verify")
                .arg(format!("--root={}", root.display()))
                .arg("--man=no")
                .arg("jumpgate.service"),
            60,
        );
        // verify exits 0 on an unknown or misspelt setting, and only says so; what it
        // says about the host's units is not ours.
        let ours: Vec<&str> = stderr
            .lines()
            .filter(|line| line.contains("jumpgate") || line.contains("hardening.conf"))
            .collect();
        assert!(
            ok && ours.is_empty(),
            "systemd-analyze verify:\n{stdout}\n{stderr}"
        );
    };
    verify(&root);
    let drop_in = root.join("etc/systemd/system/jumpgate.service.d");
    std::fs::create_dir_all(&drop_in).unwrap();
    std::fs::copy(
        root.join("usr/share/jumpgate/hardening.conf"),
        drop_in.join("hardening.conf"),
    )
    .unwrap();
    verify(&root);
    let (_, stdout, stderr) = within(
        Command::new(&analyze)
            .args(["security", "--offline=yes", "--no-pager"])
            .arg(format!("--root={}", root.display()))
            .arg("jumpgate.service"),
        60,
    );
    let exposure = format!("{stdout}{stderr}")
        .lines()
        .find_map(|line| {
            let (_, rest) = line.split_once("Overall exposure level for jumpgate.service: ")?;
            rest.split_whitespace().next()?.parse::<f64>().ok()
        })
        .unwrap_or_else(|| panic!("no exposure level:\n{stdout}\n{stderr}"));
    // systemd rates 0 (nothing exposed) to 10; the unit alone is 9.6, "UNSAFE", as
    // sshd.service is. The drop-in scores 1.7 ("OK"): a rise means a setting was lost.
    assert!(exposure < 2.0, "exposure {exposure}:\n{stdout}");
}
