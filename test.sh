#!/usr/bin/env bash
# Jumpgate's whole test suite, as CI runs it (.ci/run calls this script).
#
# 1. Installs what the tests need, idempotently: Debian's etcd-server (real etcd for
#    the backend conformance suite), postgresql (real PostgreSQL for the same suite: the
#    tests make their own clusters with initdb), protobuf-compiler (etcd-client's build) and
#    openssh-server/-client and openssl (real sshd, ssh and an independent X.509
#    verifier for the certificate tests), curl (a real HTTPS client for the proxy's web
#    API) and haproxy (a real layer-4 load balancer sending PROXY protocol headers),
#    tmux (interactive SSH sessions under a real terminal), asciinema (a standard
#    player for the session recordings), iproute2 (`ip`: the network namespaces that
#    jumpgate_test_support::Regions makes regions and hosts of), and zsh, fish, man-db and
#    systemd (systemd-analyze) for the Debian package's test, chromium (a real browser
#    for the web UI's tests, driven by playwright-core), libxmlsec1-dev, libxml2-dev,
#    libssl-dev, pkg-config and libclang-dev (jumpgate-saml verifies SAML's XML
#    signatures with libxmlsec1 through samael, whose bindings bindgen generates); from
#    npm (`npm ci` in web/, from its lockfile), the web UI's build tools and
#    playwright-core, and (`npm ci` in crates/saml/tests/idp) samlify, the SAML identity
#    provider jumpgate-saml's tests run against; from PyPI, ssh-audit and sslyze
#    (independent scanners of the node's SSH algorithms and the proxy's TLS) and
#    moto[server] (an emulator of DynamoDB for the DynamoDB backend's tests, run single-threaded by
#    jumpgate_test_support::DynamoEmulator: DynamoDB itself cannot run here); from
#    crates.io, s3s-fs (a real S3-compatible server that checks SigV4 signatures, for the
#    S3 recording store's tests; built once into ~/.cargo/bin, about 3.5 minutes on 2 cores).
# 2. The web UI rebuilt from its sources and compared with the committed web/dist, then
#    cargo fmt --check, cargo clippy -D warnings, then every test with cargo-nextest
#    (falling back to cargo test), then the doc tests.
set -euo pipefail
cd "$(dirname "$0")"

# A one-off build gains nothing from incremental compilation's caches, which would take
# about as much disk again as the build itself (16 GB here): CI's clone builds without them.
if [ "${CI:-}" = true ]; then
    export CARGO_INCREMENTAL=0
fi

log() { printf '\n==> %s\n' "$*"; }

install_packages() {
    local missing=()
    command -v etcd >/dev/null 2>&1 || [ -x /usr/bin/etcd ] || missing+=(etcd-server)
    command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
    # protoc's well-known types (google/protobuf/*.proto), which etcd-client's protos import.
    [ -e /usr/include/google/protobuf/descriptor.proto ] || missing+=(libprotobuf-dev)
    # tmux drives interactive sessions under a real PTY; asciinema plays recordings.
    command -v tmux >/dev/null 2>&1 || missing+=(tmux)
    command -v asciinema >/dev/null 2>&1 || missing+=(asciinema)
    [ -x /usr/sbin/sshd ] || missing+=(openssh-server)
    command -v ssh >/dev/null 2>&1 && command -v ssh-keygen >/dev/null 2>&1 || missing+=(openssh-client)
    command -v openssl >/dev/null 2>&1 || missing+=(openssl)
    # OpenSSL 3's headers and pkg-config, to build webauthn-rs (the auth service's
    # WebAuthn), which verifies signatures with OpenSSL.
    [ -e /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
    command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
    command -v curl >/dev/null 2>&1 || missing+=(curl ca-certificates)
    command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
    # `ip netns`, veth and bridges for the multi-region tests (Regions in test-support).
    command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || missing+=(iproute2)
    # PostgreSQL's server binaries (initdb, postgres): the tests make private clusters.
    compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
    # The Debian package's test (crates/dist): zsh and fish load its completions, man
    # renders its pages, systemd-analyze verifies its unit (systemd is not started).
    command -v zsh >/dev/null 2>&1 || missing+=(zsh)
    command -v fish >/dev/null 2>&1 || missing+=(fish)
    command -v man >/dev/null 2>&1 && command -v lexgrog >/dev/null 2>&1 || missing+=(man-db)
    command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
    # The web UI's browser tests (crates/jumpgate/tests/web_ui.rs): Debian's Chromium,
    # driven by playwright-core (no browser of its own), and a font for its screenshots.
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    [ -d /usr/share/fonts/truetype/dejavu ] || missing+=(fonts-dejavu-core)
    # jumpgate-saml (crates/saml): samael links libxmlsec1 (with its OpenSSL engine),
    # libxml2 and OpenSSL, found with pkg-config, and bindgen needs libclang.
    [ -e /usr/include/xmlsec1/xmlsec/xmlsec.h ] || missing+=(libxmlsec1-dev)
    [ -e /usr/include/libxml2/libxml/parser.h ] || missing+=(libxml2-dev)
    [ -e /usr/include/openssl/ssl.h ] || missing+=(libssl-dev)
    command -v pkg-config >/dev/null 2>&1 || missing+=(pkg-config)
    compgen -G '/usr/lib/llvm-*/lib/libclang.so' >/dev/null || missing+=(libclang-dev)
    if [ ${#missing[@]} -eq 0 ]; then
        return
    fi
    log "installing ${missing[*]}"
    local sudo=()
    if [ "$(id -u)" -ne 0 ]; then
        sudo=(sudo)
    fi
    # The tests start their own etcd, PostgreSQL and sshd on free loopback ports: keep the packages'
    # system services from starting (policy-rc.d exit 101 = "not allowed").
    local policy=/usr/sbin/policy-rc.d made_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
        "${sudo[@]}" chmod +x "$policy"
        made_policy=yes
        # Removed even if the install fails, so later installs on this machine behave.
        trap "${sudo[*]:+${sudo[*]} }rm -f $(printf '%q' "$policy")" EXIT
    fi
    "${sudo[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" >/dev/null
    if [ -n "$made_policy" ]; then
        "${sudo[@]}" rm -f "$policy"
        trap - EXIT
    fi
}

# Pinned, so a new release's stricter rules change the suite only when we choose.
install_scanners() {
    # The tests run them as `python3 -m ssh_audit` / `python3 -m sslyze`.
    if python3 -c 'import ssh_audit, sslyze' >/dev/null 2>&1; then
        return
    fi
    log "installing ssh-audit and sslyze (PyPI)"
    python3 -m pip install --quiet --disable-pip-version-check \
        "ssh-audit==3.9.0" "sslyze==6.3.1"
}

# Pinned like the scanners: the DynamoDB backend's tests run against this emulator.
MOTO_VERSION=5.2.6
install_emulators() {
    if [ "$(python3 -c 'import moto, flask, flask_cors; print(moto.__version__)' 2>/dev/null)" = "$MOTO_VERSION" ]; then
        return
    fi
    log "installing moto[server] $MOTO_VERSION (PyPI), the DynamoDB emulator"
    python3 -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
}

# The S3 recording store's tests run s3s-fs (jumpgate_test_support::S3Server). Pinned:
# 0.14.1 is the newest release that builds with our Rust (1.95; 0.15 needs 1.96).
install_s3_server() {
    if command -v s3s-fs >/dev/null 2>&1 || [ -x "$HOME/.cargo/bin/s3s-fs" ]; then
        return
    fi
    log "installing s3s-fs (crates.io)"
    cargo install --locked --quiet s3s-fs --version 0.14.1 --features binary
}

# The web UI (docs/web.md): its build, web/dist, is committed and embedded into the proxy,
# so cargo alone builds a working binary. Here it is rebuilt from the sources with the
# locked npm packages; a difference fails the run (commit the output of `npm run build`).
# `npm ci` also brings playwright-core for the browser tests.
check_web() {
    if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
        echo "test.sh: node and npm are missing: the web UI's build (Vite) needs Node.js >= 20.19 with npm" >&2
        exit 1
    fi
    log "web UI: npm ci, npm run build, web/dist as committed"
    # Built beside, not over, web/dist: rewriting it would make cargo rebuild the proxy.
    local built
    built=$(mktemp -d)
    (cd web && npm ci --no-audit --no-fund --loglevel=error &&
        npm run build --silent -- --outDir "$built" --emptyOutDir --logLevel error)
    if ! diff -r "$built" web/dist >&2; then
        rm -rf "$built"
        echo "test.sh: web/dist is not what web/ builds to (above); rebuild it" \
            "(cd web && npm ci && npm run build) and commit web/dist" >&2
        exit 1
    fi
    rm -rf "$built"
    # Server strings are shown as text only (docs/web.md): no HTML from strings in the sources.
    if grep -rnE 'innerHTML|outerHTML|insertAdjacentHTML|dangerouslySetInnerHTML|document\.write' web/src; then
        echo "test.sh: web/src builds HTML from strings (above); render text with JSX instead" >&2
        exit 1
    fi
}

# jumpgate-saml's tests run a SAML identity provider built on samlify (Node), from the
# lockfile in crates/saml/tests/idp.
install_saml_idp() {
    log "SAML test IdP: npm ci in crates/saml/tests/idp"
    (cd crates/saml/tests/idp && npm ci --no-audit --no-fund --loglevel=error)
}

check_toolchain() {
    for component in fmt clippy; do
        if ! cargo "$component" --version >/dev/null 2>&1; then
            echo "test.sh: 'cargo $component' is missing; install it with: rustup component add ${component/fmt/rustfmt}" >&2
            exit 1
        fi
    done
}

install_packages
install_scanners
install_emulators
install_s3_server
check_toolchain
check_web
install_saml_idp

log "cargo fmt --check"
cargo fmt --all --check

log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

# jsh is a package of its own so that users' machines get no server code: it must not
# depend on the database, etcd, HTTP-server, metrics or AWS SDK crates.
log "jsh links no server dependencies"
server_deps=$(cargo tree --locked -p jsh -e normal --prefix none | grep -E '^(rusqlite|etcd-client|axum|prometheus|aws-config|aws-sdk-[a-z0-9]+) ' | sort -u || true)
if [ -n "$server_deps" ]; then
    echo "test.sh: jsh depends on server-only crates:" >&2
    echo "$server_deps" >&2
    echo "find the path with: cargo tree -p jsh -e normal -i CRATE" >&2
    exit 1
fi

# The end-to-end tests run jsh, a package of its own: cargo builds a package's binaries for
# its own tests only, so build every binary first.
log "cargo build --bins"
cargo build --workspace --bins --locked

log "tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --profile ci
else
    cargo test --workspace --locked
fi

log "doc tests"
cargo test --workspace --locked --doc
