"""What real AWS does to a busy or under-privileged caller, on FakeAws' port: throttling and AccessDenied.

`fake.refusals.add("DescribeDBClusters", "Throttling", times=2)` makes the next two DescribeDBClusters
requests answer with the error; `fake.refusals.calls` counts every request by operation (the figures a
test quotes). The error bodies follow each protocol's documented shape, so botocore parses them as it
parses AWS's:
- EC2 (query protocol, its own shape): `<Response><Errors><Error><Code>..` with 400 for RequestLimitExceeded
  (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/errors-overview.html, "Request throttling");
  403 UnauthorizedOperation;
- the other query services (RDS, ElastiCache, STS, CloudWatch): `<ErrorResponse><Error><Type>Sender</Type>`
  `<Code>..` with 400 Throttling (https://docs.aws.amazon.com/AmazonRDS/latest/APIReference/CommonErrors.html:
  ThrottlingException, 400) and 403 AccessDenied;
- JSON protocols: `{"__type": code, "message": ..}`.
botocore's `standard` retry mode retries Throttling, ThrottlingException and RequestLimitExceeded
(https://boto3.amazonaws.com/v1/documentation/api/latest/guide/retries.html) and never AccessDenied.
"""

from __future__ import annotations

import collections
import io
import json
import re
import threading
from typing import Any, Callable
from urllib.parse import parse_qs

THROTTLE_STATUS = 400
DENIED_STATUS = 403


class Refusals:
    """Errors to answer instead of the fake's own response, per operation, and a count of every request."""

    def __init__(self) -> None:
        self.calls: collections.Counter[str] = collections.Counter()
        self._pending: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def add(self, operation: str, code: str, times: int = 1) -> None:
        with self._lock:
            self._pending.setdefault(operation, []).extend([code] * times)

    def clear(self) -> None:
        with self._lock:
            self._pending.clear()

    def answer(self, environ: dict[str, Any]) -> Callable[[dict[str, Any], Any], Any] | None:
        """A WSGI app answering the error due for this request, or None (the request goes on to moto)."""
        service, operation = _service_and_operation(environ)
        with self._lock:
            self.calls[operation] += 1
            pending = self._pending.get(operation)
            code = pending.pop(0) if pending else None
        if code is None:
            return None
        return _error_app(service, code, json_protocol="HTTP_X_AMZ_TARGET" in environ)


def _service_and_operation(environ: dict[str, Any]) -> tuple[str, str]:
    """(signing service, operation) of a request; the body is read and put back for moto."""
    length = int(environ.get("CONTENT_LENGTH") or 0)
    body = environ["wsgi.input"].read(length) if length else b""
    environ["wsgi.input"] = io.BytesIO(body)
    scope = re.search(r"Credential=[^/]+/[^/]+/[^/]+/([^/]+)/", environ.get("HTTP_AUTHORIZATION", ""))
    service = scope.group(1) if scope else ""
    target = environ.get("HTTP_X_AMZ_TARGET", "")
    if target:
        return service, target.rpartition(".")[2]
    action = parse_qs(body.decode("utf-8", "replace")).get("Action") or parse_qs(environ.get("QUERY_STRING", "")).get(
        "Action") or [f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')}"]
    return service, action[0]


def _error_app(service: str, code: str, json_protocol: bool) -> Callable[[dict[str, Any], Any], Any]:
    status = THROTTLE_STATUS if "Throttl" in code or "LimitExceeded" in code else DENIED_STATUS
    message = ("Rate exceeded" if status == THROTTLE_STATUS
               else "User: arn:aws:sts::123456789012:assumed-role/test is not authorized to perform this operation")
    if json_protocol:
        body, content_type = json.dumps({"__type": code, "message": message}).encode(), "application/x-amz-json-1.0"
    elif service == "ec2":
        body = (f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors>"
                f"<RequestID>fake</RequestID></Response>").encode()
        content_type = "text/xml"
    else:
        body = (f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error>"
                f"<RequestId>fake</RequestId></ErrorResponse>").encode()
        content_type = "text/xml"

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        start_response(f"{status} {'Bad Request' if status == 400 else 'Forbidden'}",
                       [("Content-Type", content_type), ("Content-Length", str(len(body)))])
        return [body]
    return app
