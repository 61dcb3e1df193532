//! Which failures mean "the master is not where we thought": the server is gone or unreachable, or it
//! answers that it is no longer (or not yet) a writable master.

use redis::{ErrorKind, RedisError, ServerErrorKind};

/// The server answered, but as a replica or a server still loading its data: after a failover, the old
/// master comes back as a replica of the new one and refuses writes with `READONLY`.
fn server_is_not_master(e: &RedisError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Server(ServerErrorKind::ReadOnly | ServerErrorKind::MasterDown | ServerErrorKind::BusyLoading)
    )
}

/// Whether `e` means the master may have moved, so the Sentinels should be asked again: an I/O error
/// (refused, reset, timed out, dropped) or an answer from a server that is not a writable master.
pub(crate) fn master_may_have_moved(e: &RedisError) -> bool {
    e.is_io_error()
        || e.is_timeout()
        || e.is_connection_dropped()
        || e.is_connection_refusal()
        || server_is_not_master(e)
}

/// Whether the command certainly did not run, so sending it again (to a new master) cannot run it twice:
/// the server refused it, or no connection could be made. A connection cut while waiting for the answer is
/// not such a case: the command may have run.
pub(crate) fn certainly_not_run(e: &RedisError) -> bool {
    server_is_not_master(e) || e.is_connection_refusal()
}

/// Whether `e` is about reaching the server rather than about the command (a script's own error, a wrong
/// type): only those are reported as the link's last error.
pub(crate) fn is_link_failure(e: &RedisError) -> bool {
    master_may_have_moved(e)
        || matches!(
            e.kind(),
            ErrorKind::MasterNameNotFoundBySentinel
                | ErrorKind::NoValidReplicasFoundBySentinel
                | ErrorKind::EmptySentinelList
                | ErrorKind::AuthenticationFailed
                | ErrorKind::InvalidClientConfig
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The error a server's `-TEXT` reply becomes.
    fn server(text: &str) -> RedisError {
        let reply = redis::parse_redis_value(format!("-{text}\r\n").as_bytes()).unwrap();
        reply.extract_error().unwrap_err()
    }

    #[test]
    fn refusals_and_replicas_mean_the_master_moved() {
        let refused: RedisError = std::io::Error::from(std::io::ErrorKind::ConnectionRefused).into();
        let reset: RedisError = std::io::Error::from(std::io::ErrorKind::ConnectionReset).into();
        for e in [&refused, &reset] {
            assert!(master_may_have_moved(e) && is_link_failure(e), "{e}");
        }
        assert!(certainly_not_run(&refused));
        assert!(!certainly_not_run(&reset), "the command may have run before the connection was cut");
        for text in ["READONLY You can't write against a read only replica.", "LOADING loading", "MASTERDOWN down"] {
            let e = server(text);
            assert!(master_may_have_moved(&e) && certainly_not_run(&e), "{text}: {e}");
        }
        for text in ["QUOTA max_keys", "ERR value is not an integer or out of range"] {
            let e = server(text);
            assert!(!master_may_have_moved(&e) && !is_link_failure(&e), "{text}");
        }
    }
}
