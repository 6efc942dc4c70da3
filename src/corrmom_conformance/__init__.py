"""The corrmom conformance suite: checks any momentum-SGD implementation.

It compares an implementation, through a small adapter (:mod:`corrmom_conformance.protocol`),
with an oracle written here from Goyal et al.'s equations and Chainer 7.8.1's
documented machinery, independent of :mod:`corrmom_ref`. Run it with
``pytest -p corrmom_conformance.plugin --pyargs corrmom_conformance.checks --corrmom-impl=NAME``
or ``nox -s conformance -- --impl=NAME``.
"""
