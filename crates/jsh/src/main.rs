//! `jsh`: the Jumpgate user tool (see the library, `jsh::jsh_main`).

fn main() -> std::process::ExitCode {
    jsh::jsh_main()
}
