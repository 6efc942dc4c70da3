"""Differential fuzz: random API sequences in lockstep on real Chainer 7.8.1 and on corrmom_ref.

``nox -s differential`` runs it (``-- --thorough`` for ten times the scenarios);
see ``tests/differential/README.md``.
"""
