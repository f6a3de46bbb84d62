"""Local simulators of the services Referral Sync talks to, served over TLS on loopback.

The infrastructure every simulator shares lives here: :mod:`sandbox.clock` (a clock that can
run faster than real time), :mod:`sandbox.tls` (a throw-away CA), :mod:`sandbox.http` (WSGI
servers in threads), :mod:`sandbox.requestlog` and :mod:`sandbox.faults` (what was asked, and
what went wrong on purpose). :mod:`sandbox.entra` issues the tokens the other simulators check;
:mod:`sandbox.app` starts them all and :mod:`sandbox.cli` is ``referral-sync sandbox serve``.
"""
