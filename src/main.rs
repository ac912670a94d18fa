//! The `balancer` binary: parse the command line, call the library, print
//! an error once, and map it to the exit code of SPEC 1.

use std::process::ExitCode;

use clap::Parser;

/// jemalloc instead of glibc's malloc: each connection makes a few
/// 128-byte-aligned allocations (its task, tokio's two socket records), on
/// which glibc loses about 180 bytes apiece; jemalloc's size classes don't.
/// Measured: 1.9 KiB -> 1.4 KiB RSS per idle proxied connection, CPU per
/// request unchanged (docs/benchmarks.md).
#[cfg(all(target_os = "linux", not(target_env = "musl")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
