"""What the Python clients of sseloop's integration tests send to the test's
collector (tests/it/real/collector.rs), as report-events.mjs does for the
browsers and Node: each observation as a form-encoded POST, in order (each
waits for the one before), with `at` = the time in ms when it was made and
`seq` counting from 1. Standard library only, so that the client library
under test is the only one that reads the stream."""

import sys
import time
import urllib.parse
import urllib.request


class Reporter:
    def __init__(self, url):
        self.url = url
        self.seq = 0

    def __call__(self, **fields):
        self.seq += 1
        fields["at"] = str(time.time() * 1000.0)
        fields["seq"] = str(self.seq)
        body = urllib.parse.urlencode(fields).encode("utf-8")
        try:
            with urllib.request.urlopen(self.url, data=body, timeout=10) as answer:
                answer.read()
        except OSError as e:
            print(f"report failed: {e}", file=sys.stderr)


def args(usage):
    """STREAM_URL REPORT_URL [RETRY_MS] from the command line."""
    argv = sys.argv[1:]
    if len(argv) not in (2, 3):
        print(usage, file=sys.stderr)
        sys.exit(2)
    retry_ms = int(argv[2]) if len(argv) == 3 else 200
    return argv[0], Reporter(argv[1]), retry_ms / 1000.0
