//! A connection as a stream: heartbeats, the queue limit, half-closes,
//! deliveries, replays and the shutdown, over the in-memory stream of
//! `super`.

use super::*;

#[test]
fn a_stream_gets_heartbeats_only_when_idle() {
    let t0 = Instant::now();
    let second = Duration::from_secs(1);
    let (mut conn, wire, grid) = streaming(t0, None);
    let first_check = conn.deadline().unwrap();
    assert!(first_check > t0 && first_check <= t0 + second);
    // Not due yet: the deadline moves on.
    let early = t0 + second / 2;
    assert_eq!(conn.on_deadline(early, &grid), Expired::NotDue);
    assert!(conn.deadline().unwrap() > early);
    let due = t0 + second;
    assert_eq!(
        conn.on_deadline(due, &grid),
        Expired::Heartbeat(Next::Flush(Lane::Stream))
    );
    assert!(matches!(flush(&mut conn, due), AfterFlush::Done));
    assert_eq!(
        wire.take_written().as_bytes(),
        sse::heartbeat(Framing::Chunked)
    );
    // Bytes the kernel refuses are not idleness: no heartbeat joins them.
    wire.set_room(Some(0));
    assert_eq!(
        conn.deliver(&event(1), 1, 1, LIMIT, &mut everyone()),
        Delivered::Queued { list: true }
    );
    assert!(matches!(flush(&mut conn, due), AfterFlush::Done));
    assert!(conn.wants_writable());
    let later = due + 2 * second;
    assert_eq!(conn.on_deadline(later, &grid), Expired::NotIdle(Next::Wait));
    assert_eq!(conn.queued(), event(1).wire(Framing::Chunked).len());
}

#[test]
fn a_subscriber_past_the_queue_limit_is_cut_off_with_what_it_began_whole() {
    let t0 = Instant::now();
    let (mut conn, wire, _) = streaming(t0, None);
    wire.set_room(Some(5));
    let first = event(1);
    assert!(matches!(
        conn.deliver(&first, 1, 1, LIMIT, &mut everyone()),
        Delivered::Queued { list: true }
    ));
    assert!(matches!(flush(&mut conn, t0), AfterFlush::Done));
    let per_event = first.wire(Framing::Chunked).len();
    let mut seq = 1;
    let over = loop {
        seq += 1;
        match conn.deliver(&event(seq), seq, seq, LIMIT, &mut everyone()) {
            // Waiting for writable readiness: not listed again.
            Delivered::Queued { list } => assert!(!list),
            Delivered::OverLimit => break conn.queued(),
            Delivered::Skipped => panic!("skipped {seq}"),
        }
    };
    assert!(over > LIMIT && over <= LIMIT + per_event);
    let (ended, next) = conn.cut_off(t0);
    assert!(ended.is_some());
    // Blocked: the flush waits for writable readiness.
    assert_eq!(next, Next::Wait);
    wire.set_room(None);
    assert!(matches!(flush(&mut conn, t0), AfterFlush::ResumeInput));
    // The event begun is finished, the rest dropped, the stream ended.
    let mut want = first.wire(Framing::Chunked).to_vec();
    want.extend_from_slice(LAST_CHUNK);
    assert_eq!(wire.take_written().as_bytes(), want);
}

#[test]
fn a_half_close_keeps_the_stream_and_a_reset_ends_it() {
    let t0 = Instant::now();
    let (mut conn, wire, _) = streaming(t0, None);
    // A FIN alone: the client may still read. A heartbeat goes out at once,
    // so that a client gone for good answers with a reset.
    assert_eq!(conn.on_hangup(false, true), Next::Flush(Lane::Stream));
    assert!(conn.is_stream());
    assert!(matches!(flush(&mut conn, t0), AfterFlush::Done));
    assert_eq!(
        wire.take_written().as_bytes(),
        sse::heartbeat(Framing::Chunked)
    );
    // Told again: nothing more.
    assert_eq!(conn.on_hangup(false, true), Next::Wait);
    // Events still flow to it.
    assert!(matches!(
        conn.deliver(&event(1), 1, 1, LIMIT, &mut everyone()),
        Delivered::Queued { list: true }
    ));
    assert_eq!(conn.on_hangup(true, true), Next::Close("peer gone"));
}

#[test]
fn a_delivery_reaches_a_subscriber_once_and_only_when_it_is_live() {
    let t0 = Instant::now();
    let (mut conn, _wire, _) = streaming(t0, None);
    let frame = event(1);
    assert!(matches!(
        conn.deliver(&frame, 1, 1, LIMIT, &mut everyone()),
        Delivered::Queued { .. }
    ));
    // The same fan-out again (a second topic of the same event): skipped.
    assert_eq!(
        conn.deliver(&frame, 1, 1, LIMIT, &mut everyone()),
        Delivered::Skipped
    );
    // A private update, and it has no token.
    let topics: Vec<Box<str>> = vec!["secret".into()];
    let hub = hub();
    let mut private = Audience::of(None, &topics, true, &hub);
    assert_eq!(
        conn.deliver(&event(2), 2, 2, LIMIT, &mut private),
        Delivered::Skipped
    );
    // Resumed after 5: 5 and before are not sent again.
    let (mut resumed, _, _) = streaming(t0, Some(5));
    assert!(resumed.replaying());
    assert_eq!(
        resumed.deliver(&event(6), 6, 1, LIMIT, &mut everyone()),
        Delivered::Skipped,
        "live events wait for the replay"
    );
}

#[test]
fn a_replay_queues_what_was_missed_then_goes_live() {
    let t0 = Instant::now();
    let mut history = History::new(Epoch::new(Run::NONE, 0), 16);
    let topics: Arc<[Box<str>]> = Arc::from(vec![Box::from("t")]);
    for seq in 1..=3 {
        history.record(&Delivery::plain(seq, event(seq), Arc::clone(&topics)));
    }
    let (mut conn, wire, _) = streaming(t0, Some(0));
    let room = event(1).wire(Framing::Chunked).len();
    let plenty = 1 << 20;
    // A queue full after one event: the flush that drains it goes on.
    let allowance = ReplayAllowance {
        units: plenty,
        fill_to: room,
    };
    let once = conn.replay(&history, allowance, None, &hub());
    assert_eq!((once.events, once.bytes), (1, room));
    assert_eq!(once.then, ReplayThen::WhenWritten);
    assert!(conn.replaying());
    assert!(matches!(flush(&mut conn, t0), AfterFlush::Replay));
    let allowance = ReplayAllowance {
        units: plenty,
        fill_to: plenty,
    };
    let rest = conn.replay(&history, allowance, None, &hub());
    assert_eq!(rest.events, 2);
    assert_eq!(rest.then, ReplayThen::Live);
    assert!(!conn.replaying());
    let _ = flush(&mut conn, t0);
    let written = wire.take_written();
    assert!(
        written.contains("id: r-1\n")
            && written.contains("id: r-2\n")
            && written.contains("id: r-3\n"),
        "{written:?}"
    );
    // Live now: what it replayed is not sent twice, what follows is.
    assert_eq!(
        conn.deliver(&event(3), 3, 1, LIMIT, &mut everyone()),
        Delivered::Skipped
    );
    assert!(matches!(
        conn.deliver(&event(4), 4, 2, LIMIT, &mut everyone()),
        Delivered::Queued { .. }
    ));
}

#[test]
fn a_shutdown_ends_streams_and_closes_the_idle() {
    let t0 = Instant::now();
    let (mut idle, _) = accepted(t0);
    let (ended, next) = idle.on_shutdown(t0);
    assert!(ended.is_none());
    assert_eq!(next, Next::Close("shutdown"));
    // Half a request: still answered (the loop says 503), then closed.
    let (mut busy, wire) = accepted(t0);
    wire.send(b"GET /hea");
    assert_eq!(next_request(&mut busy, t0), Some(Step::NeedMore));
    assert_eq!(busy.on_shutdown(t0).1, Next::Wait);
    let (mut stream, wire, _) = streaming(t0, Some(0));
    let (ended, next) = stream.on_shutdown(t0);
    assert!(ended.is_some_and(|e| e.was_replaying));
    assert_eq!(next, Next::Flush(Lane::Stream));
    let _ = flush(&mut stream, t0);
    assert_eq!(wire.take_written().as_bytes(), LAST_CHUNK);
}
