"""corrmom-ref conformance suite: checks an optimizer against Goyal et al. eq. (9)/(10) and Chainer's machinery.

Run it with ``pytest --impl=NAME`` (the plugin in :mod:`conformance.plugin`),
or ``nox -s conformance -- --impl=NAME``. An implementation is plugged in
through the small adapter protocol in :mod:`conformance.protocol`.
"""
