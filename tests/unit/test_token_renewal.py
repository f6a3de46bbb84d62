"""After a 401 the token is renewed once, whichever threads met it."""

from __future__ import annotations

import threading

from connector.http.tokens import TokenRenewal


class Source:
    def __init__(self) -> None:
        self.current = "t1"
        self.refreshes = 0
        self._lock = threading.Lock()

    def token(self) -> str:
        return self.current

    def refresh(self) -> str:
        with self._lock:
            self.refreshes += 1
            self.current = f"t{self.refreshes + 1}"
            return self.current


def test_eight_threads_refused_the_same_token_cause_one_renewal():
    source = Source()
    renewal = TokenRenewal(source)
    got: list[str] = []
    start = threading.Barrier(8)

    def refused() -> None:
        start.wait()
        got.append(renewal.after_401("t1"))

    threads = [threading.Thread(target=refused) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert source.refreshes == 1
    assert got == ["t2"] * 8


def test_a_renewed_token_refused_in_turn_is_renewed_again():
    source = Source()
    renewal = TokenRenewal(source)
    assert renewal.after_401("t1") == "t2"
    assert renewal.after_401("t2") == "t3"
    assert source.refreshes == 2
