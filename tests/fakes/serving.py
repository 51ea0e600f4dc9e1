"""What every fake server shares: a server thread on 127.0.0.1, its clock, `with` support and its URL."""

from __future__ import annotations

import threading
from typing import Any, Self

from .clock import FakeClock


class ServedFake:
    """Subclasses set `self.clock` and build their server in `_make_server()` (anything with
    serve_forever / shutdown / server_close / server_address); `_before_stop()` runs first on stop()."""

    clock: FakeClock
    thread_name = "fake-server"

    def __init__(self) -> None:
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def _make_server(self) -> Any:
        raise NotImplementedError

    def _before_stop(self) -> None:
        pass

    def start(self) -> Self:
        self._server = self._make_server()
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=self.thread_name, daemon=True)
        self._thread.start()
        self.clock.start()
        return self

    def stop(self) -> None:
        self._before_stop()
        self.clock.stop()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        assert self._server is not None, "call start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def advance(self, seconds: float) -> None:
        """Manual clock: let `seconds` of fake time pass, firing what falls due."""
        self.clock.advance(seconds)
