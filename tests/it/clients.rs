//! Library clients: the npm package `eventsource` (v4, pinned in
//! `tests/clients/package-lock.json`) in a short Node script,
//! `tests/clients/eventsource-client.mjs`, reporting to the collector as
//! the browsers' page does. It receives a published sequence of every kind
//! of event in order and on time, and resumes after its connection is cut
//! in the middle of a burst, with `Last-Event-ID`, missing nothing.

use std::time::Duration;

use crate::real::collector::Collector;
use crate::real::forwarder::Forwarder;
use crate::real::scenario::{TYPES, deliver_sequence, resume_after_cut};
use crate::real::{
    ProcGroup, TempDir, clients_dir, command_in, npm_package_version, require_program,
};
use crate::support::TestServer;

/// Node's start-up to the first `open`.
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);

#[test]
fn node_eventsource_receives_in_order_and_resumes_after_a_drop() {
    let node = require_program(&["node", "nodejs"], "nodejs");
    let version = npm_package_version("eventsource");
    assert!(
        version.starts_with("4."),
        "tests/clients pins eventsource ^4, found {version}"
    );
    let collector = Collector::start();
    let server = TestServer::start(&["--retry", "200ms"]);
    let forwarder = Forwarder::start(server.addr());
    let home = TempDir::new("node");
    let mut command = command_in(&node, home.path());
    command
        .current_dir(clients_dir())
        .arg("eventsource-client.mjs")
        .arg(format!("http://{}/events?topic=lib", forwarder.addr()))
        .arg(collector.report_url())
        .arg(TYPES);
    let mut client = ProcGroup::spawn("node eventsource", command, &home.join("node.log"));
    collector.wait_kind_while_running(&mut client, "open", 1, OPEN_TIMEOUT);
    let who = format!("eventsource {version}");
    let sent = deliver_sequence(&who, &server, &collector, "lib");
    resume_after_cut(&who, &server, &collector, &forwarder, "lib", sent);
}
