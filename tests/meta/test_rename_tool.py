"""tools/rename_conformance_package.py: module paths renamed, file names and folder paths kept."""

from __future__ import annotations

from tools.rename_conformance_package import rewrite


def test_module_paths_are_renamed():
    before = (
        "from conformance.protocol import Adapter\n"
        "from conformance import oracle\n"
        "import conformance.adapters\n"
        '    "ref-torch": "conformance.adapters.ref_torch:make_adapter",\n'
        'session.run("pytest", "--pyargs", "conformance.checks", "-p", "conformance.plugin")\n'
        ":mod:`~conformance.oracle`\n"
    )
    after = (
        "from corrmom_conformance.protocol import Adapter\n"
        "from corrmom_conformance import oracle\n"
        "import corrmom_conformance.adapters\n"
        '    "ref-torch": "corrmom_conformance.adapters.ref_torch:make_adapter",\n'
        'session.run("pytest", "--pyargs", "corrmom_conformance.checks", "-p", "corrmom_conformance.plugin")\n'
        ":mod:`~corrmom_conformance.oracle`\n"
    )
    assert rewrite(before) == after


def test_file_names_folders_and_other_words_are_kept():
    text = (
        "see docs/conformance.md and conformance/checks/test_hooks.py\n"
        "reports/conformance-ref-numpy.json, the conformance suite, nox -s conformance\n"
        "corrmom_conformance.plugin stays, my_conformance.x stays, conformance.toml stays\n"
    )
    assert rewrite(text) == text
    assert rewrite(rewrite("from conformance.x import y")) == "from corrmom_conformance.x import y"
