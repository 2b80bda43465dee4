//! `jsh`: the Jumpgate user tool (see `jumpgate::jsh_main`).

fn main() -> std::process::ExitCode {
    jumpgate::jsh_main()
}
