//! What `serve` would refuse at start-up beyond the configuration file's own rules, checked the same way by
//! `check`: a configuration `check` calls ok starts.

use palisade_config::Config;

use crate::admin;

/// Refuses an admin API open to the network without a token (or with an empty token file), an admin
/// certificate that does not load, a `data_dir` that is not a directory, and an admin listener on the port of a
/// traffic listener. Returns the admin token.
pub(crate) fn check(config: &Config) -> anyhow::Result<Option<String>> {
    let data_dir = &config.server.data_dir;
    if let Ok(meta) = std::fs::metadata(data_dir)
        && !meta.is_dir()
    {
        anyhow::bail!("{}: data_dir {} is not a directory", config.file.display(), data_dir.display());
    }
    let Some(admin) = &config.admin else {
        return Ok(None);
    };
    let token = admin::token(admin)?;
    admin::tls_acceptor(admin)?;
    let listeners = config.server.listen.iter().chain(&config.server.tls_listen);
    if let Some(clash) = listeners.into_iter().find(|l| {
        l.port() == admin.listen.port()
            && admin.listen.port() != 0
            && (l.ip() == admin.listen.ip() || l.ip().is_unspecified() || admin.listen.ip().is_unspecified())
    }) {
        anyhow::bail!(
            "{}: the admin API's listen address {} is also a listener for traffic ({clash}): give it a port of its own",
            admin.location,
            admin.listen
        );
    }
    Ok(token)
}
