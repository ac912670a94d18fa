//! The `balancer` binary: parse the command line, call the library, print
//! an error once, and map it to the exit code of SPEC 1.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = balancer::cli::Cli::parse();
    match balancer::cli::execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            for line in err.to_string().lines() {
                eprintln!("error: {line}");
            }
            ExitCode::from(err.exit_code())
        }
    }
}
