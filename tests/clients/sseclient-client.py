"""A client for sseloop's integration tests (tests/it/corpus.rs): the PyPI
package sseclient-py (pinned in requirements.txt) over a `requests`
streaming response, the way its README shows.

    python sseclient-client.py STREAM_URL REPORT_URL [RETRY_MS]

Reports `open`, each event (`message` with type, id, data), and how each
stream ended (`end` for a clean end, `error`) to REPORT_URL. sseclient-py
is a parser only: it does not reconnect, so, as an application would, this
script does, RETRY_MS (default 200) after any end, sending as
Last-Event-ID the id of the last event the library handed over. Runs
until killed."""

import time
from importlib.metadata import version

import requests
import sseclient

from report_events import args

url, report, retry = args(__doc__.split("\n\n")[1].strip())
report(kind="loaded", lib=f"sseclient-py {version('sseclient-py')}", ua=f"requests {requests.__version__}")
last_id = None
while True:
    headers = {"Accept": "text/event-stream", "Cache-Control": "no-store"}
    if last_id is not None:
        headers["Last-Event-ID"] = last_id
    try:
        with requests.get(url, stream=True, headers=headers, timeout=(5, 60)) as response:
            report(kind="open", status=str(response.status_code))
            for event in sseclient.SSEClient(response).events():
                if event.id is not None:
                    last_id = event.id
                report(
                    kind="message",
                    type=event.event,
                    id=event.id if event.id is not None else "",
                    data=event.data,
                )
        report(kind="end")
    except requests.RequestException as e:
        report(kind="error", message=f"{type(e).__name__}: {e}")
    time.sleep(retry)
