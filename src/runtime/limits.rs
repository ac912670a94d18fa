//! The open-file limit (`ulimit -n`) against what the config may need:
//! every proxied connection holds two sockets (and a pipe pair while it
//! splices a chunk). Raised to the hard limit when the soft one is short,
//! and a warning at start when even that is not enough, so a full file
//! table is no surprise (connects that fail with "too many open files"
//! are then counted as `local_resources` rejections, never blamed on a
//! backend).

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

use crate::config::Config;

/// File descriptors one proxied connection holds: its client and backend
/// sockets.
const PER_CONNECTION: u64 = 2;

/// File descriptors the process holds besides connections: listen sockets
/// come on top; this covers the runtime, the log, health checks, pipes.
const BASE: u64 = 64;

/// The open files `config` may need at its connection cap.
fn needed(config: &Config) -> u64 {
    let connections = u64::try_from(config.global.max_connections).unwrap_or(u64::MAX);
    let listeners = u64::try_from(config.listeners.len()).unwrap_or(u64::MAX);
    connections
        .saturating_mul(PER_CONNECTION)
        .saturating_add(listeners)
        .saturating_add(BASE)
}

/// Raises the soft open-file limit towards what `config` needs (up to the
/// hard limit), and warns when the limit stays below it.
pub fn fit_open_files(config: &Config) {
    let needed = needed(config);
    let limit = getrlimit(Resource::Nofile);
    let soft = limit.current.unwrap_or(u64::MAX);
    if soft >= needed {
        return;
    }
    let hard = limit.maximum.unwrap_or(u64::MAX);
    let wanted = needed.min(hard);
    let raised = wanted > soft
        && setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(wanted),
                maximum: limit.maximum,
            },
        )
        .is_ok();
    let now = if raised { wanted } else { soft };
    if raised {
        tracing::info!(from = soft, to = now, "raised the open file limit");
    }
    if now < needed {
        let fit = now.saturating_sub(BASE) / PER_CONNECTION;
        tracing::warn!(
            max_connections = config.global.max_connections,
            needed,
            limit = now,
            "max_connections needs about {needed} open files but ulimit -n allows {now}: \
             past about {fit} connections clients will be closed; raise the limit \
             (ulimit -n, LimitNOFILE=) or lower [global] max_connections"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::needed;
    use crate::testing;

    #[test]
    fn each_connection_needs_two_files_on_top_of_a_base() {
        let config = testing::config(
            "[global]\nmax_connections = 1000",
            &[testing::listener("web").backend("127.0.0.1:1")],
        );
        assert_eq!(needed(&config), 2000 + 1 + 64);
    }
}
