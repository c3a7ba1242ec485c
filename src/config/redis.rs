//! What `--redis` takes: one Redis (`redis://[user:password@]host[:port][/db]`,
//! [`RedisUrl`]) or the Sentinels that name the primary ([`SentinelUrl`]),
//! in the form
//!
//! ```text
//! redis+sentinel://[user:password@]host1[:port1][,host2[:port2]…]/service[/db]
//!                  [?sentinel_username=U&sentinel_password=P]
//! ```
//!
//! The form the redis-py world uses (LangChain's and RedisVL's Redis
//! integrations, Prefect, the `Redis-Sentinel-Url` package) and RedisVL for
//! Java, with the meaning Lettuce's `redis-sentinel://` gives the user
//! part: the credentials in front of the hosts are the data nodes' (the
//! primary's `AUTH`), as in a plain `redis://` URL, since that is what an
//! operator moving from one Redis to Sentinel already has. The Sentinels'
//! own credentials, when they have any (`requirepass` in sentinel.conf),
//! are the query parameters `sentinel_username` and `sentinel_password`,
//! the names Prefect and go-redis's `FailoverOptions` give them. Sentinel
//! hosts default to port 26379; the service is the name in `sentinel
//! monitor`; `db` is the data nodes' `SELECT`. Nothing else is taken: an
//! unknown parameter is an error, not silently ignored.
//!
//! `rediss://` and `rediss+sentinel://` are the same over TLS (to the
//! Sentinels and to the servers they name, as redis-py's `ssl=True` has
//! it); they need sseloop built with the cargo feature `tls`.
//!
//! Parsing only: resolving the hosts and asking the Sentinels is the
//! cluster bus's.

use super::{parse_plain_number, percent_decode};

/// `redis://[user:password@]host[:port][/db]`, as `--redis` takes it
/// (`rediss://` for TLS). Its `Debug` and `Display` forms hide the
/// password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisUrl {
    /// Host name or IP address (without brackets for IPv6).
    pub host: String,
    /// TCP port; 6379 when not given.
    pub port: u16,
    /// ACL user name (Redis 6 and later); `None`: the default user.
    pub user: Option<String>,
    /// Password for `AUTH`; `None`: no `AUTH`.
    pub password: Option<String>,
    /// Database number for `SELECT`.
    pub db: u32,
    /// `rediss://`: over TLS, the certificate checked against `host`.
    pub tls: bool,
}

/// What a TLS URL or option is told where TLS is not built in (the cargo
/// feature `tls`).
pub const NO_TLS: &str =
    "needs sseloop built with TLS (rediss://): cargo build --release --features tls";

/// Redis's port when a URL gives none.
pub const DEFAULT_REDIS_PORT: u16 = 6379;

impl RedisUrl {
    /// Parses `redis://[user:password@]host[:port][/db]` (or `rediss://`);
    /// user and password may be percent-encoded. The error says what is
    /// wrong.
    pub fn parse(url: &str) -> Result<RedisUrl, String> {
        let (tls, rest) = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("redis") => (false, rest),
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("rediss") => {
                if !cfg!(feature = "tls") {
                    return Err(NO_TLS.into());
                }
                (true, rest)
            }
            _ => return Err("must start with redis://".into()),
        };
        if rest.contains(['?', '#']) || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("takes no query, fragment or spaces".into());
        }
        let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
        let db = match path {
            "" => 0,
            n => parse_plain_number(n)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("database {n:?} is not a number"))?,
        };
        let (userinfo, hostport) = match authority.rsplit_once('@') {
            Some((userinfo, hostport)) => (Some(userinfo), hostport),
            None => (None, authority),
        };
        let (user, password) = match userinfo {
            None => (None, None),
            Some(info) => {
                let (user, password) = info.split_once(':').unwrap_or((info, ""));
                let user = percent_decode(user).ok_or("the user is badly percent-encoded")?;
                let password =
                    percent_decode(password).ok_or("the password is badly percent-encoded")?;
                if password.is_empty() {
                    return Err("a user needs a password (redis://user:password@host)".into());
                }
                ((!user.is_empty()).then_some(user), Some(password))
            }
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (host, after) = v6.split_once(']').ok_or("an IPv6 address needs its ]")?;
            (host, after.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (hostport, None),
            }
        };
        if host.is_empty() || host.contains(['[', ']', '@', ':']) && !hostport.starts_with('[') {
            return Err("needs a host".into());
        }
        let port = match port {
            None => DEFAULT_REDIS_PORT,
            Some(p) => parse_plain_number(p)
                .and_then(|n| u16::try_from(n).ok())
                .filter(|&n| n > 0)
                .ok_or_else(|| format!("port {p:?} is not a port number"))?,
        };
        Ok(RedisUrl {
            host: host.to_owned(),
            port,
            user,
            password,
            db,
            tls,
        })
    }
}

impl std::fmt::Display for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let tls = cfg!(feature = "tls") && self.tls;
        f.write_str(if tls { "rediss://" } else { "redis://" })?;
        if self.password.is_some() {
            write!(f, "{}:***@", self.user.as_deref().unwrap_or(""))?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)?;
        } else {
            write!(f, "{}:{}", self.host, self.port)?;
        }
        if self.db != 0 {
            write!(f, "/{}", self.db)?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for RedisUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RedisUrl({self})")
    }
}

/// The Sentinels' port when a host gives none.
pub const DEFAULT_SENTINEL_PORT: u16 = 26379;
/// Most Sentinel hosts one URL may name (deployments run 3 or 5).
pub const MAX_SENTINELS: usize = 16;
/// Longest service name.
pub const MAX_SERVICE_LEN: usize = 128;

/// What `--redis` names: one Redis, or the Sentinels that know the
/// primary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RedisTarget {
    /// `redis://…`: this server.
    Direct(RedisUrl),
    /// `redis+sentinel://…`: whichever server the Sentinels name.
    Sentinel(SentinelUrl),
}

impl RedisTarget {
    /// Parses either form, by its scheme.
    pub fn parse(url: &str) -> Result<RedisTarget, String> {
        let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
        if scheme.eq_ignore_ascii_case("redis+sentinel")
            || scheme.eq_ignore_ascii_case("rediss+sentinel")
        {
            SentinelUrl::parse(url).map(RedisTarget::Sentinel)
        } else {
            RedisUrl::parse(url).map(RedisTarget::Direct)
        }
    }

    /// Whether it is reached over TLS (`rediss://`, `rediss+sentinel://`).
    pub fn tls(&self) -> bool {
        cfg!(feature = "tls")
            && match self {
                RedisTarget::Direct(url) => url.tls,
                RedisTarget::Sentinel(url) => url.tls,
            }
    }

    /// The data nodes' ACL user, password and database.
    pub fn login(&self) -> (Option<&str>, Option<&str>, u32) {
        match self {
            RedisTarget::Direct(url) => (url.user.as_deref(), url.password.as_deref(), url.db),
            RedisTarget::Sentinel(url) => (url.user.as_deref(), url.password.as_deref(), url.db),
        }
    }
}

impl std::fmt::Display for RedisTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RedisTarget::Direct(url) => url.fmt(f),
            RedisTarget::Sentinel(url) => url.fmt(f),
        }
    }
}

/// A parsed `redis+sentinel://` URL. `Debug` and `Display` hide both
/// passwords.
#[derive(Clone, PartialEq, Eq)]
pub struct SentinelUrl {
    /// The Sentinels, as (host, port), hosts without IPv6 brackets; in
    /// the URL's order, which is the order they are asked in.
    pub sentinels: Vec<(String, u16)>,
    /// The name the Sentinels monitor the primary under.
    pub service: String,
    /// ACL user for the data nodes; `None`: the default user.
    pub user: Option<String>,
    /// Password for the data nodes' `AUTH`; `None`: no `AUTH`.
    pub password: Option<String>,
    /// The data nodes' database, for `SELECT`.
    pub db: u32,
    /// ACL user for the Sentinels.
    pub sentinel_user: Option<String>,
    /// Password for the Sentinels' `AUTH`.
    pub sentinel_password: Option<String>,
    /// `rediss+sentinel://`: TLS to the Sentinels (checked against their
    /// host names) and to the servers they name (against the address
    /// they give).
    pub tls: bool,
}

impl SentinelUrl {
    /// Parses the form above; the error says what is wrong.
    pub fn parse(url: &str) -> Result<SentinelUrl, String> {
        let (tls, rest) = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("redis+sentinel") => (false, rest),
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("rediss+sentinel") => {
                if !cfg!(feature = "tls") {
                    return Err(NO_TLS.into());
                }
                (true, rest)
            }
            _ => return Err("must start with redis+sentinel://".into()),
        };
        if rest.contains('#') || rest.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err("takes no fragment or spaces".into());
        }
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = rest
            .split_once('/')
            .ok_or("needs the service name: redis+sentinel://host:port/service")?;
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((userinfo, hosts)) => (Some(userinfo), hosts),
            None => (None, authority),
        };
        let (user, password) = credentials(userinfo)?;
        let sentinels = hosts
            .split(',')
            .map(host_port)
            .collect::<Result<Vec<_>, _>>()?;
        if sentinels.len() > MAX_SENTINELS {
            return Err(format!("names more than {MAX_SENTINELS} Sentinels"));
        }
        let (service, db) = path.split_once('/').unwrap_or((path, ""));
        let service = percent_decode(service).ok_or("the service is badly percent-encoded")?;
        if !valid_service(&service) {
            return Err(format!(
                "the service name {service:?} must be 1 to {MAX_SERVICE_LEN} letters, digits or _ - . :"
            ));
        }
        let db = match db {
            "" => 0,
            n => parse_plain_number(n)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| format!("database {n:?} is not a number"))?,
        };
        let (mut sentinel_user, mut sentinel_password) = (None, None);
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let slot = match name {
                "sentinel_username" => &mut sentinel_user,
                "sentinel_password" => &mut sentinel_password,
                other => {
                    return Err(format!(
                        "unknown parameter {other:?} (takes sentinel_username, sentinel_password)"
                    ));
                }
            };
            if slot.is_some() {
                return Err(format!("{name} is given twice"));
            }
            let value =
                percent_decode(value).ok_or_else(|| format!("{name} is badly percent-encoded"))?;
            if value.is_empty() {
                return Err(format!("{name} is empty"));
            }
            *slot = Some(value);
        }
        if sentinel_user.is_some() && sentinel_password.is_none() {
            return Err("sentinel_username needs sentinel_password".into());
        }
        Ok(SentinelUrl {
            sentinels,
            service,
            user,
            password,
            db,
            sentinel_user,
            sentinel_password,
            tls,
        })
    }

    /// The primary at `host:port` as a plain URL, with the data nodes'
    /// credentials and database: what the node connects to once the
    /// Sentinels named it.
    pub fn data_node(&self, host: &str, port: u16) -> RedisUrl {
        RedisUrl {
            host: host.to_owned(),
            port,
            user: self.user.clone(),
            password: self.password.clone(),
            db: self.db,
            tls: self.tls,
        }
    }
}

/// `user:password` decoded; a user needs a password, as `AUTH` does.
fn credentials(userinfo: Option<&str>) -> Result<(Option<String>, Option<String>), String> {
    let Some(info) = userinfo else {
        return Ok((None, None));
    };
    let (user, password) = info.split_once(':').unwrap_or((info, ""));
    let user = percent_decode(user).ok_or("the user is badly percent-encoded")?;
    let password = percent_decode(password).ok_or("the password is badly percent-encoded")?;
    if password.is_empty() {
        return Err("a user needs a password (redis+sentinel://user:password@host/service)".into());
    }
    Ok(((!user.is_empty()).then_some(user), Some(password)))
}

/// `host[:port]` or `[v6][:port]`; the port defaults to Sentinel's.
fn host_port(text: &str) -> Result<(String, u16), String> {
    let (host, port) = if let Some(v6) = text.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or("an IPv6 address needs its ]")?;
        match after {
            "" => (host, None),
            after => (
                host,
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or_else(|| format!("{text:?}: a port follows a colon"))?,
                ),
            ),
        }
    } else {
        match text.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty()
        || host.contains(['[', ']', '@', '/'])
        || !text.starts_with('[') && host.contains(':')
    {
        return Err(format!("{text:?} is not a Sentinel host[:port]"));
    }
    let port = match port {
        None => DEFAULT_SENTINEL_PORT,
        Some(p) => parse_plain_number(p)
            .and_then(|n| u16::try_from(n).ok())
            .filter(|&n| n > 0)
            .ok_or_else(|| format!("port {p:?} is not a port number"))?,
    };
    Ok((host.to_owned(), port))
}

fn valid_service(name: &str) -> bool {
    (1..=MAX_SERVICE_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-.:".contains(&b))
}

impl std::fmt::Display for SentinelUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if cfg!(feature = "tls") && self.tls {
            "rediss+sentinel://"
        } else {
            "redis+sentinel://"
        })?;
        if self.password.is_some() {
            write!(f, "{}:***@", self.user.as_deref().unwrap_or(""))?;
        }
        for (n, (host, port)) in self.sentinels.iter().enumerate() {
            let comma = if n == 0 { "" } else { "," };
            if host.contains(':') {
                write!(f, "{comma}[{host}]:{port}")?;
            } else {
                write!(f, "{comma}{host}:{port}")?;
            }
        }
        write!(f, "/{}", self.service)?;
        if self.db != 0 {
            write!(f, "/{}", self.db)?;
        }
        match (&self.sentinel_user, &self.sentinel_password) {
            (Some(user), Some(_)) => write!(f, "?sentinel_username={user}&sentinel_password=***"),
            (None, Some(_)) => f.write_str("?sentinel_password=***"),
            _ => Ok(()),
        }
    }
}

impl std::fmt::Debug for SentinelUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SentinelUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(url: &SentinelUrl) -> Vec<(&str, u16)> {
        url.sentinels
            .iter()
            .map(|(h, p)| (h.as_str(), *p))
            .collect()
    }

    #[test]
    fn sentinel_urls() {
        let url = |text| SentinelUrl::parse(text);
        let one = url("redis+sentinel://s1/mymaster").unwrap();
        assert_eq!(hosts(&one), [("s1", 26379)]);
        assert_eq!((one.service.as_str(), one.db), ("mymaster", 0));
        assert_eq!((one.user, one.password), (None, None));
        assert_eq!((one.sentinel_user, one.sentinel_password), (None, None));

        let three = url("redis+sentinel://10.0.0.1:26379,10.0.0.2:26380,[::1]/hub/2").unwrap();
        assert_eq!(
            hosts(&three),
            [("10.0.0.1", 26379), ("10.0.0.2", 26380), ("::1", 26379)]
        );
        assert_eq!((three.service.as_str(), three.db), ("hub", 2));

        let full = url("REDIS+SENTINEL://app:s%40cr%3At@s1:1,s2:2/mymaster/3\
             ?sentinel_username=watch&sentinel_password=s%26p")
        .unwrap();
        assert_eq!(full.user.as_deref(), Some("app"));
        assert_eq!(full.password.as_deref(), Some("s@cr:t"));
        assert_eq!(full.sentinel_user.as_deref(), Some("watch"));
        assert_eq!(full.sentinel_password.as_deref(), Some("s&p"));
        let only_passwords = url("redis+sentinel://:data@s1/m?sentinel_password=watching").unwrap();
        assert_eq!(
            (only_passwords.user, only_passwords.password.as_deref()),
            (None, Some("data"))
        );
        assert_eq!(
            only_passwords.sentinel_password.as_deref(),
            Some("watching")
        );
    }

    #[test]
    fn passwords_never_show() {
        let full = SentinelUrl::parse(
            "redis+sentinel://app:secret1@s1:1,[::1]:2/m/3?sentinel_username=w&sentinel_password=secret2",
        )
        .unwrap();
        let shown = full.to_string();
        assert_eq!(
            shown,
            "redis+sentinel://app:***@s1:1,[::1]:2/m/3?sentinel_username=w&sentinel_password=***"
        );
        let debug = format!("{full:?}");
        assert!(!debug.contains("secret"), "{debug}");
        // What is shown parses back to the same places.
        let again = SentinelUrl::parse(&shown).unwrap();
        assert_eq!((again.sentinels, again.db), (full.sentinels, full.db));
    }

    #[test]
    fn bad_sentinel_urls_say_why() {
        for (bad, why) in [
            ("redis://s1/m", "must start with redis+sentinel://"),
            ("redis+sentinel://s1", "needs the service name"),
            ("redis+sentinel://s1/", "service name"),
            ("redis+sentinel://s1/my master", "spaces"),
            ("redis+sentinel://s1/m/x", "database"),
            ("redis+sentinel://s1/m/1/2", "database"),
            ("redis+sentinel:///m", "host"),
            ("redis+sentinel://s1,,s2/m", "host"),
            ("redis+sentinel://s1:0/m", "port"),
            ("redis+sentinel://s1:99999/m", "port"),
            ("redis+sentinel://s1:x/m", "port"),
            ("redis+sentinel://[::1/m", "]"),
            ("redis+sentinel://[::1]x/m", "colon"),
            ("redis+sentinel://::1/m", "host"),
            ("redis+sentinel://user@s1/m", "needs a password"),
            ("redis+sentinel://u:%zz@s1/m", "percent-encoded"),
            ("redis+sentinel://s1/m?db=2", "unknown parameter"),
            (
                "redis+sentinel://s1/m?sentinel_username=w",
                "needs sentinel_password",
            ),
            (
                "redis+sentinel://s1/m?sentinel_password=a&sentinel_password=b",
                "twice",
            ),
            ("redis+sentinel://s1/m?sentinel_password=", "empty"),
            ("redis+sentinel://s1/m#frag", "fragment"),
        ] {
            let err = SentinelUrl::parse(bad).expect_err(bad);
            assert!(err.contains(why), "{bad:?}: {err:?} does not say {why:?}");
        }
        let many = (0..=MAX_SENTINELS)
            .map(|n| format!("s{n}"))
            .collect::<Vec<_>>()
            .join(",");
        let err = SentinelUrl::parse(&format!("redis+sentinel://{many}/m")).unwrap_err();
        assert!(err.contains("more than"), "{err}");
        let long = "s".repeat(MAX_SERVICE_LEN + 1);
        assert!(SentinelUrl::parse(&format!("redis+sentinel://h/{long}")).is_err());
    }

    #[test]
    fn the_target_is_chosen_by_the_scheme() {
        assert!(matches!(
            RedisTarget::parse("redis://h:1/2"),
            Ok(RedisTarget::Direct(url)) if url.port == 1 && url.db == 2
        ));
        assert!(matches!(
            RedisTarget::parse("redis+sentinel://h/m"),
            Ok(RedisTarget::Sentinel(url)) if url.service == "m"
        ));
        assert!(RedisTarget::parse("redis-sentinel://h/m").is_err());
        let url = SentinelUrl::parse("redis+sentinel://u:p@h/m/4").unwrap();
        let node = url.data_node("10.0.0.9", 6380);
        assert_eq!(node.to_string(), "redis://u:***@10.0.0.9:6380/4");
        assert_eq!(node.password.as_deref(), Some("p"));
    }

    /// Without the feature `tls`, a TLS URL says how to build a sseloop
    /// that takes it.
    #[cfg(not(feature = "tls"))]
    #[test]
    fn tls_urls_need_the_feature() {
        for url in ["rediss://h", "REDISS://h:1", "rediss+sentinel://s1/m"] {
            let err = RedisTarget::parse(url).expect_err(url);
            assert!(err.contains("--features tls"), "{url}: {err}");
        }
    }

    /// With it, `rediss://` is `redis://` over TLS, in both forms, and
    /// shown as it was written (the password hidden).
    #[cfg(feature = "tls")]
    #[test]
    fn tls_urls_are_the_plain_forms_over_tls() {
        let direct = RedisUrl::parse("rediss://u:secret@redis.example.com:6380/2").unwrap();
        assert!(direct.tls);
        assert_eq!(
            (direct.host.as_str(), direct.port, direct.db),
            ("redis.example.com", 6380, 2)
        );
        assert_eq!(
            direct.to_string(),
            "rediss://u:***@redis.example.com:6380/2"
        );
        assert!(!RedisUrl::parse("redis://h").unwrap().tls);
        assert!(RedisUrl::parse("REDISS://10.0.0.1").unwrap().tls);
        assert!(RedisUrl::parse("rediss://").is_err());
        assert!(RedisUrl::parse("rediss://h?ssl_cert_reqs=none").is_err());
        let sentinel =
            SentinelUrl::parse("rediss+sentinel://:pw@s1,s2:26380/m?sentinel_password=x").unwrap();
        assert!(sentinel.tls);
        assert_eq!(sentinel.sentinels.len(), 2);
        assert_eq!(
            sentinel.to_string(),
            "rediss+sentinel://:***@s1:26379,s2:26380/m?sentinel_password=***"
        );
        // The servers the Sentinels name are reached over TLS too.
        assert!(sentinel.data_node("10.0.0.9", 6379).tls);
        assert!(RedisTarget::parse("rediss://h").unwrap().tls());
        assert!(RedisTarget::parse("rediss+sentinel://h/m").unwrap().tls());
        assert!(!RedisTarget::parse("redis+sentinel://h/m").unwrap().tls());
    }
}
