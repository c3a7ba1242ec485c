//! What a Redis connection tells its owner: replies by the tag the owner
//! gave each command, and what became of commands when a connection was
//! lost.

use crate::bus::resp::Value;

/// What an owner tags a command with, to know its reply: a number it
/// gives meaning to.
pub type Tag = u64;

/// Commands a lost connection took with it, by whether they left: one
/// written whole may have been carried out, one that was not cannot have
/// been.
#[derive(Debug)]
pub struct Lost {
    /// Written whole: Redis may have carried them out.
    pub sent: Vec<Tag>,
    /// Not written whole: Redis cannot have carried them out.
    pub unsent: Vec<Tag>,
    /// The connection ended on a reply it could not read (over the
    /// limits, or not RESP).
    pub unreadable: bool,
    /// The server said (`ROLE`) it is not the primary.
    pub not_primary: bool,
}

/// What happened on a connection, for its owner.
#[derive(Debug)]
pub enum ConnEvent {
    /// Connected, the login sent: the owner may send its commands (they
    /// follow the login, which Redis answers first).
    Up,
    /// The reply to the command sent with this tag.
    Reply(Tag, Value),
    /// A value no command asked for, on a connection that expects them
    /// (a subscription's messages).
    Message(Value),
    /// The connection is gone, with what it had not been answered.
    Down(Lost),
    /// A connect failed: nothing was up.
    Unreachable,
    /// Redis refused the login (or the owner's set-up): connecting again
    /// will not help without a change of configuration.
    Refused(String),
}
