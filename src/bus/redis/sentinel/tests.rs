use super::*;

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, 0, 1], port))
}

fn bulk(text: &str) -> Value {
    Value::Bulk(text.as_bytes().to_vec())
}

/// Discovery over `n` Sentinels, following `primary` (named by Sentinel
/// 0, subscribed there), at `now`.
fn following(n: usize, primary: SocketAddr, now: Instant) -> Discovery {
    let (mut d, _) = Discovery::new(n, now);
    d.handle(
        Input::Named {
            sentinel: 0,
            named: Named::At(primary),
        },
        now,
    );
    let actions = d.handle(
        Input::Role {
            addr: primary,
            role: Role::Master,
        },
        now,
    );
    assert_eq!(
        actions,
        [Action::Use(primary), Action::Subscribe { sentinel: 0 }]
    );
    d
}

#[test]
fn the_primary_is_asked_of_a_sentinel_then_checked_with_role() {
    let now = Instant::now();
    let p = addr(6379);
    let (mut d, actions) = Discovery::new(3, now);
    assert_eq!(actions, [Action::Ask { sentinel: 0 }]);
    assert_eq!(d.primary(), None);
    let named = Input::Named {
        sentinel: 0,
        named: Named::At(p),
    };
    assert_eq!(d.handle(named, now), [Action::CheckRole(p)]);
    assert_eq!(d.primary(), None, "not before ROLE says master");
    let master = Input::Role {
        addr: p,
        role: Role::Master,
    };
    assert_eq!(
        d.handle(master, now),
        [Action::Use(p), Action::Subscribe { sentinel: 0 }]
    );
    assert_eq!(d.primary(), Some(p));
    assert_eq!(d.deadline(), now + CONFIRM_EVERY);
}

#[test]
fn sentinels_that_fail_or_do_not_know_the_service_are_passed_over() {
    let now = Instant::now();
    let p = addr(6379);
    let (mut d, _) = Discovery::new(3, now);
    let failed = Input::Named {
        sentinel: 0,
        named: Named::Failed,
    };
    assert_eq!(d.handle(failed, now), [Action::Ask { sentinel: 1 }]);
    let unknown = Input::Named {
        sentinel: 1,
        named: Named::Unknown,
    };
    assert_eq!(d.handle(unknown, now), [Action::Ask { sentinel: 2 }]);
    let named = Input::Named {
        sentinel: 2,
        named: Named::At(p),
    };
    assert_eq!(d.handle(named, now), [Action::CheckRole(p)]);
    let master = Input::Role {
        addr: p,
        role: Role::Master,
    };
    assert_eq!(
        d.handle(master, now),
        [Action::Use(p), Action::Subscribe { sentinel: 2 }]
    );
    // The one that answered is asked first from now on.
    let later = now + CONFIRM_EVERY;
    assert_eq!(d.on_deadline(later), [Action::Ask { sentinel: 2 }]);
}

#[test]
fn a_sentinel_that_does_not_answer_in_time_is_passed_over() {
    let now = Instant::now();
    let (mut d, _) = Discovery::new(2, now);
    assert_eq!(d.deadline(), now + ASK_TIMEOUT);
    assert!(d.on_deadline(now + ASK_TIMEOUT / 2).is_empty(), "not yet");
    assert_eq!(
        d.on_deadline(now + ASK_TIMEOUT),
        [Action::Ask { sentinel: 1 }]
    );
    // Its answer, late, changes nothing.
    let late = Input::Named {
        sentinel: 0,
        named: Named::At(addr(1)),
    };
    assert!(d.handle(late, now + ASK_TIMEOUT).is_empty());
}

#[test]
fn a_named_server_that_is_not_a_master_is_not_used() {
    let now = Instant::now();
    let (old, new) = (addr(1), addr(2));
    let (mut d, _) = Discovery::new(3, now);
    d.handle(
        Input::Named {
            sentinel: 0,
            named: Named::At(old),
        },
        now,
    );
    // A replica (the Sentinel's answer is out of date): the next one.
    let replica = Input::Role {
        addr: old,
        role: Role::Replica,
    };
    assert_eq!(d.handle(replica, now), [Action::Ask { sentinel: 1 }]);
    d.handle(
        Input::Named {
            sentinel: 1,
            named: Named::At(old),
        },
        now,
    );
    // No answer to ROLE in time (a frozen server): the next one.
    assert_eq!(
        d.on_deadline(now + ROLE_TIMEOUT),
        [Action::Ask { sentinel: 2 }]
    );
    d.handle(
        Input::Named {
            sentinel: 2,
            named: Named::At(new),
        },
        now,
    );
    // A ROLE answer from a server no longer being checked is ignored.
    let stale = Input::Role {
        addr: old,
        role: Role::Master,
    };
    assert!(d.handle(stale, now).is_empty());
    assert_eq!(d.primary(), None);
    let master = Input::Role {
        addr: new,
        role: Role::Master,
    };
    assert_eq!(d.handle(master, now)[0], Action::Use(new));
}

#[test]
fn a_round_without_a_primary_pauses_longer_each_time_and_an_announcement_ends_it() {
    let mut now = Instant::now();
    let (mut d, _) = Discovery::new(2, now);
    let mut pauses = Vec::new();
    for _ in 0..6 {
        for sentinel in 0..2 {
            d.handle(
                Input::Named {
                    sentinel,
                    named: Named::Failed,
                },
                now,
            );
        }
        assert_eq!(d.primary(), None);
        let resume = d.deadline();
        pauses.push(resume - now);
        assert!(d.on_deadline(resume - Duration::from_millis(1)).is_empty());
        now = resume;
        assert_eq!(d.on_deadline(now), [Action::Ask { sentinel: 0 }]);
    }
    assert_eq!(
        pauses,
        [100, 200, 400, 800, 1000, 1000].map(Duration::from_millis)
    );
    // Paused: an announcement is acted on at once.
    for sentinel in 0..2 {
        d.handle(
            Input::Named {
                sentinel,
                named: Named::Failed,
            },
            now,
        );
    }
    let p = addr(7);
    assert_eq!(
        d.handle(Input::Switched { to: p }, now),
        [Action::CheckRole(p)]
    );
    let master = Input::Role {
        addr: p,
        role: Role::Master,
    };
    d.handle(master, now);
    assert_eq!(d.primary(), Some(p));
    // Found: the next outage pauses from the start again.
    d.handle(Input::PrimaryFailed, now);
    for sentinel in 0..2 {
        d.handle(
            Input::Named {
                sentinel,
                named: Named::Failed,
            },
            now,
        );
    }
    assert_eq!(d.deadline() - now, MIN_ROUND_PAUSE);
}

#[test]
fn an_announced_switch_releases_the_primary_and_checks_the_new_one() {
    let now = Instant::now();
    let (p, q) = (addr(1), addr(2));
    let mut d = following(3, p, now);
    assert!(
        d.handle(Input::Switched { to: p }, now).is_empty(),
        "the primary in use"
    );
    assert_eq!(
        d.handle(Input::Switched { to: q }, now),
        [Action::Release, Action::CheckRole(q)]
    );
    assert_eq!(d.primary(), None);
    let master = Input::Role {
        addr: q,
        role: Role::Master,
    };
    // Subscribed already: no second subscription.
    assert_eq!(d.handle(master, now), [Action::Use(q)]);
}

#[test]
fn a_failing_primary_is_released_and_the_sentinels_asked_again() {
    let now = Instant::now();
    let p = addr(1);
    let mut d = following(3, p, now);
    assert_eq!(
        d.handle(Input::PrimaryFailed, now),
        [Action::Release, Action::Ask { sentinel: 0 }]
    );
    assert_eq!(d.primary(), None);
    // Not a failover after all (a restart on the same address).
    d.handle(
        Input::Named {
            sentinel: 0,
            named: Named::At(p),
        },
        now,
    );
    let master = Input::Role {
        addr: p,
        role: Role::Master,
    };
    assert_eq!(d.handle(master, now), [Action::Use(p)]);
    // A second report of the same failure, once released, does nothing.
    d.handle(Input::PrimaryFailed, now);
    assert!(d.handle(Input::PrimaryFailed, now).is_empty());
}

#[test]
fn the_primary_is_confirmed_every_second_and_kept_while_sentinels_are_silent() {
    let now = Instant::now();
    let (p, q) = (addr(1), addr(2));
    let mut d = following(3, p, now);
    let at = now + CONFIRM_EVERY;
    assert!(d.on_deadline(at - Duration::from_millis(1)).is_empty());
    assert_eq!(d.on_deadline(at), [Action::Ask { sentinel: 0 }]);
    assert_eq!(d.primary(), Some(p), "in use while it is confirmed");
    let same = Input::Named {
        sentinel: 0,
        named: Named::At(p),
    };
    assert!(d.handle(same, at).is_empty());
    assert_eq!(d.deadline(), at + CONFIRM_EVERY);
    // Every Sentinel silent: the primary that works stays in use.
    let at = at + CONFIRM_EVERY;
    assert_eq!(d.on_deadline(at), [Action::Ask { sentinel: 0 }]);
    assert_eq!(
        d.on_deadline(at + ASK_TIMEOUT),
        [Action::Ask { sentinel: 1 }]
    );
    let failed = Input::Named {
        sentinel: 1,
        named: Named::Failed,
    };
    assert_eq!(d.handle(failed, at), [Action::Ask { sentinel: 2 }]);
    assert!(d.on_deadline(at + ASK_TIMEOUT * 2).is_empty());
    assert_eq!(d.primary(), Some(p));
    // A Sentinel that names another: released, and that one checked.
    let at = d.deadline();
    d.on_deadline(at);
    let other = Input::Named {
        sentinel: 0,
        named: Named::At(q),
    };
    assert_eq!(d.handle(other, at), [Action::Release, Action::CheckRole(q)]);
}

#[test]
fn a_lost_subscription_is_made_again_at_the_next_confirmation() {
    let now = Instant::now();
    let p = addr(1);
    let mut d = following(2, p, now);
    assert!(
        d.handle(Input::SubscriptionLost, now).is_empty(),
        "not at once"
    );
    let at = now + CONFIRM_EVERY;
    d.on_deadline(at);
    let failed = Input::Named {
        sentinel: 0,
        named: Named::Failed,
    };
    d.handle(failed, at);
    let same = Input::Named {
        sentinel: 1,
        named: Named::At(p),
    };
    assert_eq!(d.handle(same, at), [Action::Subscribe { sentinel: 1 }]);
}

/// The failover measured on this machine: the primary frozen, the
/// Sentinels still naming it for ~3 s, then announcing the replica; the
/// old primary thawed answers as a master. The node uses the replica once
/// announced, and never the old primary again while the Sentinels name
/// the new one.
#[test]
fn a_frozen_primary_is_followed_to_the_promoted_replica_and_never_taken_back() {
    let start = Instant::now();
    let (old, new) = (addr(1), addr(2));
    let mut d = following(3, old, start);
    let mut now = start + Duration::from_millis(300);
    // The node's connection to the frozen primary times out.
    d.handle(Input::PrimaryFailed, now);
    let mut used = Vec::new();
    let announced = start + Duration::from_secs(3);
    while now < announced {
        let mut actions = d.on_deadline(now);
        while let Some(action) = actions.pop() {
            match action {
                // Before the failover, every Sentinel names the frozen one…
                Action::Ask { sentinel } => actions.extend(d.handle(
                    Input::Named {
                        sentinel,
                        named: Named::At(old),
                    },
                    now,
                )),
                // …which does not answer ROLE: its deadline passes.
                Action::CheckRole(_) => {}
                Action::Use(addr) => used.push(addr),
                Action::Release | Action::Subscribe { .. } => {}
            }
        }
        now = d.deadline().min(announced);
    }
    assert!(used.is_empty(), "used {used:?} while frozen");
    assert_eq!(
        d.handle(Input::Switched { to: new }, announced),
        [Action::CheckRole(new)]
    );
    let master = Input::Role {
        addr: new,
        role: Role::Master,
    };
    assert_eq!(d.handle(master, announced), [Action::Use(new)]);
    // Thawed, the old primary says master; the Sentinels name the new one.
    for n in 1..=10 {
        let at = announced + CONFIRM_EVERY * n;
        assert_eq!(d.on_deadline(at), [Action::Ask { sentinel: 0 }]);
        let named = Input::Named {
            sentinel: 0,
            named: Named::At(new),
        };
        assert!(d.handle(named, at).is_empty());
        assert_eq!(d.primary(), Some(new));
    }
}

/// Without the subscription (lost, or the announcement missed), a switch
/// is still followed within one confirmation period and one check.
#[test]
fn a_missed_announcement_is_followed_within_a_bounded_time() {
    let start = Instant::now();
    let (old, new) = (addr(1), addr(2));
    let mut d = following(3, old, start);
    d.handle(Input::SubscriptionLost, start);
    let switched_at = start + Duration::from_millis(10);
    let at = d.deadline();
    assert_eq!(d.on_deadline(at), [Action::Ask { sentinel: 0 }]);
    let named = Input::Named {
        sentinel: 0,
        named: Named::At(new),
    };
    assert_eq!(
        d.handle(named, at),
        [Action::Release, Action::CheckRole(new)]
    );
    let answered = at + Duration::from_millis(1);
    let master = Input::Role {
        addr: new,
        role: Role::Master,
    };
    let actions = d.handle(master, answered);
    assert_eq!(actions[0], Action::Use(new));
    assert!(answered - switched_at <= CONFIRM_EVERY + ASK_TIMEOUT + ROLE_TIMEOUT);
}

#[test]
fn sentinel_answers_are_read_as_addresses() {
    let at = Value::Array(vec![bulk("127.0.0.1"), bulk("6380")]);
    assert_eq!(
        named(&at),
        Named::At(SocketAddr::from(([127, 0, 0, 1], 6380)))
    );
    let v6 = Value::Array(vec![bulk("::1"), bulk("6380")]);
    assert_eq!(named(&v6), Named::At("[::1]:6380".parse().unwrap()));
    assert_eq!(named(&Value::Nil), Named::Unknown);
    for bad in [
        Value::Array(vec![bulk("redis-1.example"), bulk("6380")]),
        Value::Array(vec![bulk("127.0.0.1"), bulk("0")]),
        Value::Array(vec![bulk("127.0.0.1"), bulk("x")]),
        Value::Array(vec![bulk("127.0.0.1")]),
        Value::Error(b"ERR unknown command".to_vec()),
        Value::Integer(1),
    ] {
        assert_eq!(named(&bad), Named::Failed, "{bad:?}");
    }
}

#[test]
fn role_answers_say_master_or_replica() {
    let master = Value::Array(vec![
        bulk("master"),
        Value::Integer(0),
        Value::Array(vec![]),
    ]);
    assert_eq!(role(&master), Role::Master);
    let replica = Value::Array(vec![
        bulk("slave"),
        bulk("127.0.0.1"),
        Value::Integer(6379),
        bulk("connected"),
        Value::Integer(10),
    ]);
    assert_eq!(role(&replica), Role::Replica);
    let sentinel = Value::Array(vec![bulk("sentinel"), Value::Array(vec![])]);
    assert_eq!(role(&sentinel), Role::Failed);
    assert_eq!(
        role(&Value::Error(b"NOAUTH Authentication required".to_vec())),
        Role::Failed
    );
}

#[test]
fn switch_announcements_name_the_new_primary_of_the_service() {
    let message =
        |channel: &str, text: &str| Value::Array(vec![bulk("message"), bulk(channel), bulk(text)]);
    assert_eq!(
        switched(
            &message("+switch-master", "mymaster 127.0.0.1 6379 127.0.0.1 6380"),
            "mymaster"
        ),
        Some(SocketAddr::from(([127, 0, 0, 1], 6380)))
    );
    for bad in [
        message("+switch-master", "other 127.0.0.1 6379 127.0.0.1 6380"),
        message("+sdown", "mymaster 127.0.0.1 6379 127.0.0.1 6380"),
        message("+switch-master", "mymaster 127.0.0.1 6379"),
        message("+switch-master", "mymaster 127.0.0.1 6379 host 6380"),
        Value::Array(vec![
            bulk("subscribe"),
            bulk("+switch-master"),
            Value::Integer(1),
        ]),
    ] {
        assert_eq!(switched(&bad, "mymaster"), None, "{bad:?}");
    }
}

#[test]
fn wait_confirms_a_publish_only_with_enough_replicas() {
    assert!(replicated(&Value::Integer(1), 1));
    assert!(replicated(&Value::Integer(2), 1));
    assert!(!replicated(&Value::Integer(0), 1));
    assert!(replicated(&Value::Integer(0), 0));
    assert!(!replicated(
        &Value::Error(b"ERR WAIT cannot be used".to_vec()),
        1
    ));
}
