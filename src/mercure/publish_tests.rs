use super::*;

const HUB: &str = "http://127.0.0.1:8080/.well-known/mercure";
const LIMITS: Limits = Limits {
    max_body: 64 << 10,
    max_topics: 64,
};

fn publish(body: &str) -> Result<Update, PublishError> {
    parse(body.as_bytes(), &HubUrl::parse(HUB).unwrap(), LIMITS)
}

fn topics(u: &Update) -> Vec<&str> {
    u.topics.iter().map(|t| &**t).collect()
}

/// The draft's example request.
#[test]
fn the_drafts_example() {
    let u = publish("topic=https://example.com/foo&data=the%20content").unwrap();
    assert_eq!(topics(&u), ["https://example.com/foo"]);
    assert_eq!(u.data, "the content");
    assert!(!u.private);
    assert_eq!((u.id, u.event_type, u.retry), (None, None, None));
}

#[test]
fn every_field() {
    let u = publish(
        "topic=https%3A%2F%2Fexample.com%2Fbooks%2F1&topic=https%3A%2F%2Fexample.com%2Fusers%2F42%2Fbooks%2F1\
         &private=on&id=urn%3Auuid%3A1&type=update&retry=3000&data=line1%0Aline2%0D%0A&unknown=x&data=second",
    )
    .unwrap();
    assert_eq!(
        topics(&u),
        [
            "https://example.com/books/1",
            "https://example.com/users/42/books/1"
        ]
    );
    assert!(u.private);
    assert_eq!(u.id.as_deref(), Some("urn:uuid:1"));
    assert_eq!(u.event_type.as_deref(), Some("update"));
    assert_eq!(u.retry, Some(3000));
    assert_eq!(u.data, "line1\nline2\r\n");
}

#[test]
fn private_by_presence_alone() {
    for body in [
        "topic=a&private",
        "topic=a&private=",
        "topic=a&private=off",
        "topic=a&private=false&private=0",
    ] {
        assert!(publish(body).unwrap().private, "{body}");
    }
    assert!(!publish("topic=a&privat=on&Private=on").unwrap().private);
}

#[test]
fn topics_in_order_with_repeats_and_plain_strings() {
    let u = publish("topic=b&topic=a&topic=b&topic=caf%C3%A9").unwrap();
    assert_eq!(topics(&u), ["b", "a", "b", "caf\u{e9}"]);
    assert_eq!(u.data, "");
}

#[test]
fn empty_optional_fields_are_absent() {
    let u = publish("topic=a&id=&type=&retry=").unwrap();
    assert_eq!((u.id, u.event_type, u.retry), (None, None, None));
    // The first occurrence counts, even when it is empty.
    let u = publish("topic=a&id=&id=x&type=t1&type=t2").unwrap();
    assert_eq!((u.id, u.event_type.as_deref()), (None, Some("t1")));
}

#[test]
fn bad_requests() {
    for (body, want) in [
        ("", PublishError::NoTopic),
        ("data=x", PublishError::NoTopic),
        ("Topic=a", PublishError::NoTopic),
        ("topic=%FF", PublishError::NotUtf8),
        ("topic=a&data=%C3", PublishError::NotUtf8),
        ("topic=a%00b", PublishError::TopicCharacters),
        ("topic=a%0Ab", PublishError::TopicCharacters),
        ("topic=a%C2%85", PublishError::TopicCharacters),
        ("topic=a%E2%80%AEb", PublishError::TopicCharacters),
        ("topic=ok&topic=%7F", PublishError::TopicCharacters),
        ("topic=*", PublishError::WildcardTopic),
        ("topic=a&topic=%2A", PublishError::WildcardTopic),
        (
            "topic=%2F.well-known%2Fmercure",
            PublishError::ReservedTopic,
        ),
        (
            "topic=%2F.well-known%2Fmercure%2Fsubscriptions%2Fx",
            PublishError::ReservedTopic,
        ),
        (
            "topic=https%3A%2F%2Fevil.example%2F.well-known%2Fmercure%2Fx",
            PublishError::ReservedTopic,
        ),
        (
            "topic=%2F.well-known%2F%256Dercure%2Fx",
            PublishError::ReservedTopic,
        ),
        (
            "topic=%2F.well-known%2Fmercure%2F..%2Fmercure%2Fx",
            PublishError::ReservedTopic,
        ),
        ("topic=mercure", PublishError::ReservedTopic),
        ("topic=a&topic=%3Fx", PublishError::ReservedTopic),
        ("topic=a&id=%23frag", PublishError::IdFragment),
        ("topic=a&id=earliest", PublishError::IdEarliest),
        ("topic=a&id=a%0D%0Aevent%3A+x", PublishError::IdCharacters),
        ("topic=a&id=%E2%80%8B", PublishError::IdCharacters),
        ("topic=a&type=a%0Ab", PublishError::TypeCharacters),
        ("topic=a&type=%EF%BB%BF", PublishError::TypeCharacters),
        ("topic=a&type=mercure", PublishError::TypeReserved),
        ("topic=a&retry=1.5", PublishError::RetryNotDigits),
        ("topic=a&retry=-1", PublishError::RetryNotDigits),
        ("topic=a&retry=+5", PublishError::RetryNotDigits),
        ("topic=a&retry=%EF%BC%91", PublishError::RetryNotDigits),
        (
            "topic=a&retry=18446744073709551616",
            PublishError::RetryTooLarge,
        ),
    ] {
        let got = publish(body).unwrap_err();
        assert_eq!(got, want, "{body}");
        assert_eq!(got.status(), 400, "{body}");
    }
    // Nearby values that are fine.
    for body in [
        "topic=%2F.well-known%2Fmercurex",
        "topic=%2F.WELL-KNOWN%2Fmercure",
        "topic=**",
        "topic=a&id=x%23y",
        "topic=a&id=Earliest",
        "topic=a&type=Mercure",
        "topic=a&retry=007",
        "topic=a&retry=18446744073709551615",
        "topic=a&data=%00%0A%E2%80%8B",
    ] {
        assert!(publish(body).is_ok(), "{body}");
    }
}

#[test]
fn limits_answer_413() {
    let hub = HubUrl::parse(HUB).unwrap();
    let small = Limits {
        max_body: 20,
        max_topics: 2,
    };
    let e = parse(b"topic=a&data=0123456789abc", &hub, small).unwrap_err();
    assert_eq!((e, e.status()), (PublishError::BodyTooLarge, 413));
    let e = parse(
        b"topic=a&topic=b&topic=c",
        &hub,
        Limits {
            max_body: 100,
            ..small
        },
    )
    .unwrap_err();
    assert_eq!((e, e.status()), (PublishError::TooManyTopics, 413));
    assert!(parse(b"topic=a&topic=b", &hub, small).is_ok());
    let long_topic = format!("topic={}", "t".repeat(MAX_TOPIC_LEN + 1));
    let e = publish(&long_topic).unwrap_err();
    assert_eq!((e, e.status()), (PublishError::FieldTooLong, 413));
    let long = "x".repeat(MAX_FIELD_LEN + 1);
    for field in ["topic", "id", "type", "retry"] {
        let body = format!("topic=a&{field}={long}");
        let e = publish(&body).unwrap_err();
        assert_eq!(
            (e, e.status()),
            (PublishError::FieldTooLong, 413),
            "{field}"
        );
    }
    let fits = "7".repeat(MAX_FIELD_LEN);
    let topic = "7".repeat(MAX_TOPIC_LEN);
    assert!(
        publish(&format!(
            "topic={topic}&id={fits}&type={fits}&retry=0{}",
            "0".repeat(1022)
        ))
        .is_ok()
    );
    // Data is bounded by the body alone.
    assert!(publish(&format!("topic=a&data={}", "d".repeat(4 * MAX_FIELD_LEN))).is_ok());
}

#[test]
fn errors_never_repeat_the_request() {
    for e in [
        PublishError::ReservedTopic,
        PublishError::TopicCharacters,
        PublishError::IdEarliest,
    ] {
        let text = e.to_string();
        assert!(
            !text.is_empty() && !text.contains("well-known/mercure/"),
            "{text}"
        );
    }
}

/// The exactly-once key: none without an id; the same for the same update
/// however its form is written (field order, encoding, unknown fields);
/// another for any field that differs, fields never running into each
/// other; a key the bus takes, and never an `Idempotency-Key` (ASCII).
#[test]
fn once_key_names_one_update() {
    let key = |body: &str| publish(body).unwrap().once_key();
    assert_eq!(key("topic=t&data=d"), None);
    let base = key("topic=t&topic=u&data=d&id=x&type=e&retry=5&private").unwrap();
    assert_eq!(
        key("id=x&private=on&retry=5&type=e&data=%64&topic=t&topic=u&z=1"),
        Some(base.clone())
    );
    assert!(crate::bus::valid_key(&base));
    assert!(
        base.starts_with("mercure\u{b7}") && !base.is_ascii(),
        "{base}"
    );
    assert_eq!(base.len(), "mercure\u{b7}".len() + 64);
    let others = [
        "topic=t&topic=u&data=d&id=y&type=e&retry=5&private",
        "topic=u&topic=t&data=d&id=x&type=e&retry=5&private",
        "topic=t&data=d&id=x&type=e&retry=5&private",
        "topic=t&topic=u&data=D&id=x&type=e&retry=5&private",
        "topic=t&topic=u&data=d&id=x&type=e&retry=5",
        "topic=t&topic=u&data=d&id=x&retry=5&private",
        "topic=t&topic=u&data=d&id=x&type=e&retry=6&private",
        "topic=t&topic=u&data=d&id=x&type=e&private",
        "topic=t&topic=u&id=x&type=e&retry=5&private",
    ];
    let mut keys: Vec<Box<str>> = others.iter().map(|b| key(b).unwrap()).collect();
    keys.push(base);
    // Where one field ends and the next begins is part of the key.
    keys.push(key("topic=tu&data=d&id=x&type=e&retry=5&private").unwrap());
    keys.push(key("topic=t&data=&id=x&type=d").unwrap());
    keys.push(key("topic=t&data=d&id=x").unwrap());
    let count = keys.len();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), count, "every update has a key of its own");
}
