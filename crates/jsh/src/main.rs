//! `jsh`: the Jumpgate user tool. [`cli`] parses the arguments; [`run`] runs each command
//! through `jumpgate_client` (login, listing, dialling through the proxy, SSH, copying,
//! recordings) and prints the result.
#![forbid(unsafe_code)]

mod cli;
mod run;

fn main() -> std::process::ExitCode {
    run::jsh_main()
}
