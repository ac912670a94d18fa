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

/// jemalloc's options, read at its start (the C string its
/// `malloc_conf` symbol points to). Each thread's cache keeps at least 64
/// freed objects of each small size, not 20: an http request's state and
/// head buffer (about 4 KiB each, live while it waits for its backend)
/// outnumber 20 with a few dozen keep-alive clients, and then every
/// request moved objects between the thread's cache and the arena
/// (measured: 3.5% -> 2.2% of the balancer's CPU in the allocator, 50
/// clients; docs/benchmarks.md). What the caches can hold is bounded and
/// small beside the connections' own memory.
#[cfg(all(target_os = "linux", not(target_env = "musl")))]
#[unsafe(export_name = "_rjem_malloc_conf")]
static MALLOC_CONF: &u8 = &b"tcache_nslots_small_min:64\0"[0];

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
