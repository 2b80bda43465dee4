//! The `jumpgate` daemon. See `jumpgate --help`.
fn main() -> std::process::ExitCode {
    jumpgate::jumpgate_main()
}
