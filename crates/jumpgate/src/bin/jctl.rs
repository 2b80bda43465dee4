//! `jctl`: the Jumpgate admin tool (see `jumpgate::jctl_main`).

fn main() -> std::process::ExitCode {
    jumpgate::jctl_main()
}
