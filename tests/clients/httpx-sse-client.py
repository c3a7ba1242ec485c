"""A client for sseloop's integration tests (tests/it/corpus.rs): the PyPI
package httpx-sse (pinned in requirements.txt) on an httpx client, the way
its README shows.

    python httpx-sse-client.py STREAM_URL REPORT_URL [RETRY_MS]

Reports `open`, each event (`message` with type, id, data), and how each
stream ended (`end` for a clean end, `error`) to REPORT_URL. httpx-sse
does not reconnect, so, as an application would, this script does,
RETRY_MS (default 200) after any end, sending as Last-Event-ID the last
non-empty id the library handed over (its decoder starts afresh on each
connection). Runs until killed."""

import time
from importlib.metadata import version

import httpx
from httpx_sse import connect_sse

from report_events import args

url, report, retry = args(__doc__.split("\n\n")[1].strip())
report(kind="loaded", lib=f"httpx-sse {version('httpx-sse')}", ua=f"httpx {httpx.__version__}")
last_id = None
with httpx.Client(timeout=httpx.Timeout(60.0, connect=5.0)) as client:
    while True:
        headers = {}
        if last_id is not None:
            headers["Last-Event-ID"] = last_id
        try:
            with connect_sse(client, "GET", url, headers=headers) as source:
                report(kind="open", status=str(source.response.status_code))
                for sse in source.iter_sse():
                    if sse.id:
                        last_id = sse.id
                    report(kind="message", type=sse.event, id=sse.id, data=sse.data)
            report(kind="end")
        except httpx.HTTPError as e:
            report(kind="error", message=f"{type(e).__name__}: {e}")
        time.sleep(retry)
