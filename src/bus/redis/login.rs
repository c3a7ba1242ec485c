//! Logging in to a Redis server or Sentinel: the commands pipelined
//! ahead of everything else on a new connection, and what their replies
//! mean. Pure.

use super::link::Tls;
use crate::bus::resp::{self, Value};

/// How to log in after connecting.
#[derive(Clone, Debug, Default)]
pub struct Login {
    /// ACL user, with `password`.
    pub user: Option<String>,
    /// `AUTH` when set.
    pub password: Option<String>,
    /// `SELECT` when not 0.
    pub db: u32,
    /// Ask `ROLE` and go on only with a primary (a server the Sentinels
    /// named may have been demoted since).
    pub primary_only: bool,
    /// Over TLS, made so; `None`: plain TCP.
    pub tls: Option<Tls>,
}

/// What a login command's reply is checked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LoginStep {
    /// `AUTH`, `SELECT`, `CLIENT SETNAME`: anything but an error.
    Ok,
    /// `ROLE`: a primary.
    Primary,
}

impl Login {
    /// The login commands, encoded, and what each reply is checked for.
    /// The connection is named `client` (in `CLIENT LIST`, for operators).
    pub fn commands(&self, client: &str) -> (Vec<u8>, Vec<LoginStep>) {
        let mut out = Vec::new();
        let mut steps = Vec::new();
        if let Some(password) = &self.password {
            match &self.user {
                Some(user) => {
                    resp::command(&mut out, &[b"AUTH", user.as_bytes(), password.as_bytes()])
                }
                None => resp::command(&mut out, &[b"AUTH", password.as_bytes()]),
            }
            steps.push(LoginStep::Ok);
        }
        if self.db != 0 {
            resp::command(&mut out, &[b"SELECT", self.db.to_string().as_bytes()]);
            steps.push(LoginStep::Ok);
        }
        resp::command(&mut out, &[b"CLIENT", b"SETNAME", client.as_bytes()]);
        steps.push(LoginStep::Ok);
        if self.primary_only {
            resp::command(&mut out, &[b"ROLE"]);
            steps.push(LoginStep::Primary);
        }
        (out, steps)
    }
}

/// Whether an error reply says Redis cannot serve now but will (loading
/// its data after a restart, busy with a script, a replica that lost its
/// master, out of client slots): worth trying again, unlike a refused
/// login or a key of the wrong type.
pub fn is_transient(error: &[u8]) -> bool {
    [
        &b"LOADING"[..],
        b"BUSY",
        b"TRYAGAIN",
        b"MASTERDOWN",
        b"READONLY",
        b"ERR max number of clients",
    ]
    .iter()
    .any(|prefix| error.starts_with(prefix))
}

impl LoginStep {
    /// Whether the reply lets the connection go on; else why not, and
    /// whether Redis refused it for good (a wrong login: connecting again
    /// will not help).
    pub fn check(self, value: &Value) -> Result<(), (String, bool)> {
        if let Some(e) = value.error() {
            let text = String::from_utf8_lossy(e);
            if is_transient(e) {
                return Err((format!("not ready: {text}"), false));
            }
            return Err((format!("login refused: {text}"), true));
        }
        if self == LoginStep::Primary {
            let first = match value {
                Value::Array(items) => items.first().and_then(Value::bytes),
                _ => None,
            };
            if first != Some(b"master") {
                // The owner asks again where the primary is.
                return Err(("not the primary (ROLE)".into(), false));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_busy_is_tried_again_a_wrong_setup_is_not() {
        for busy in [
            &b"LOADING Redis is loading the dataset in memory"[..],
            b"BUSY Redis is busy running a script",
            b"MASTERDOWN Link with MASTER is down",
            b"READONLY You can't write against a read only replica.",
        ] {
            assert!(is_transient(busy));
        }
        for wrong in [
            &b"WRONGPASS invalid username-password pair"[..],
            b"NOAUTH Authentication required.",
            b"WRONGTYPE Operation against a key holding the wrong kind of value",
            b"SSELOOP-FOREIGN k holds entries sseloop did not add",
        ] {
            assert!(!is_transient(wrong));
        }
    }

    #[test]
    fn a_login_wanting_the_primary_asks_role_last() {
        let login = Login {
            user: Some("u".into()),
            password: Some("p".into()),
            db: 3,
            primary_only: true,
            tls: None,
        };
        let (bytes, steps) = login.commands("me");
        let text = String::from_utf8(bytes).unwrap();
        let order: Vec<&str> = ["AUTH", "SELECT", "SETNAME", "ROLE"]
            .into_iter()
            .filter(|c| text.contains(c))
            .collect();
        assert_eq!(order, ["AUTH", "SELECT", "SETNAME", "ROLE"]);
        assert!(text.find("SETNAME") < text.find("ROLE"));
        assert_eq!(steps.len(), 4);
        let role = |first: &str| Value::Array(vec![Value::Bulk(first.as_bytes().to_vec())]);
        assert_eq!(LoginStep::Primary.check(&role("master")), Ok(()));
        assert!(matches!(
            LoginStep::Primary.check(&role("slave")),
            Err((_, false))
        ));
        assert!(matches!(
            LoginStep::Ok.check(&Value::Error(b"WRONGPASS x".to_vec())),
            Err((_, true))
        ));
        assert!(matches!(
            LoginStep::Ok.check(&Value::Error(b"LOADING x".to_vec())),
            Err((_, false))
        ));
    }
}
