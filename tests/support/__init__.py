"""Test support: real registries and an independent client, shared by tests, examples, benchmarks.

* :mod:`support.registry`    - start ``docker-registry`` on 127.0.0.1: open, token auth, TLS.
* :mod:`support.tokenserver` - a Docker Hub-style token server (stdlib HTTP server in a thread).
* :mod:`support.certs`       - keys and certificates via the ``openssl`` CLI; RS256 in pure Python.
* :mod:`support.images`      - seed tiny images, read manifests back (never imports pushmanifest).
* :mod:`support.proxy`       - an HTTP/1.1 reverse proxy for counting, latency and fault injection.

Outside pytest: ``sys.path.insert(0, "<repo>/tests")``, then ``from support.registry import ...``.
"""
