"""Lower layers never import higher ones (docs/style.md): a walk over every import in gateway/ with `ast`.

Imports inside functions and under TYPE_CHECKING count too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from functools import cache
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[2] / "gateway"
FOUNDATIONS = ("errors", "clock", "fsio", "xmlsafe", "identifiers", "environments", "config_fields", "config")
# config.yaml's channels section is parsed by each channel: config reaches the channels through their registry only.
FOUNDATION_DOORS = {"gateway.config": {"gateway.channels.registry"}}
# The sidecar's options blocks are the channels': the contract asks their registry which there are, nothing else.
CONTRACT_DOORS = {"gateway.channels.registry"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_ROOT.parent).with_suffix("").parts
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _is_module(dotted: str) -> bool:
    candidate = PACKAGE_ROOT.parent.joinpath(*dotted.split("."))
    return candidate.with_suffix(".py").is_file() or (candidate / "__init__.py").is_file()


def _dynamic_import_target(node: ast.AST) -> str:
    """The module named by `importlib.import_module("gateway.x")` or `__import__("gateway.x")`, else ""."""
    if not isinstance(node, ast.Call) or not node.args:
        return ""
    name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
    first = node.args[0]
    if name in ("import_module", "__import__") and isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value
    return ""


def _imports_of(path: Path) -> set[str]:
    """Every gateway module `path` imports, by full dotted name (relative imports resolved)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, node.module] if node.module else base)
            else:
                source = node.module or ""
            for alias in node.names:
                # `from gateway import commands` imports the module gateway.commands
                submodule = f"{source}.{alias.name}"
                found.add(submodule if _is_module(submodule) else source)
        elif _dynamic_import_target(node):
            found.add(_dynamic_import_target(node))
    return {name for name in found if name == "gateway" or name.startswith("gateway.")}


@cache
def import_graph() -> dict[str, frozenset[str]]:
    return {_module_name(path): frozenset(_imports_of(path)) for path in sorted(PACKAGE_ROOT.rglob("*.py"))}


def _in(module: str, *areas: str) -> bool:
    """Whether `module` is one of gateway.<area> or inside it."""
    return any(module == f"gateway.{area}" or module.startswith(f"gateway.{area}.") for area in areas)


def _violations(importers, forbidden: tuple[str, ...]) -> list[str]:
    return sorted(
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        if importers(module)
        for target in targets
        if _in(target, *forbidden)
    )


# ---- the walker itself ------------------------------------------------------------------------------


def test_the_walker_sees_the_imports_it_must_see():
    graph = import_graph()
    assert len(graph) > 40
    assert "gateway.journal.store" in graph["gateway.intake.service"]
    assert "gateway.errors" in graph["gateway.config"]
    # a lazy import inside a function, and `from gateway import commands` in cli.py
    assert "gateway.sandbox.network" in graph["gateway.commands"]
    assert "gateway.commands" in graph["gateway.cli"]


# ---- the rules ----------------------------------------------------------------------------------------


def test_foundations_import_only_foundations():
    foundation_modules = {f"gateway.{name}" for name in FOUNDATIONS}
    violations = sorted(
        f"{module} imports {target}"
        for module in foundation_modules
        for target in import_graph()[module]
        if target not in foundation_modules and target not in FOUNDATION_DOORS.get(module, set())
    )
    assert violations == []


def test_formats_know_nothing_of_the_pipeline():
    forbidden = ("journal", "intake", "outbound", "inbound", "channels", "daemon", "sandbox")
    assert _violations(lambda m: _in(m, "formats"), forbidden) == []


def test_formats_know_no_disk_layout_routing_or_status_files():
    forbidden = ("config", "contract", "receipts", "routing", "jobs", "wiring", "commands", "cli")
    assert _violations(lambda m: _in(m, "formats"), forbidden) == []


def test_only_the_command_line_and_the_sandbox_itself_import_the_sandbox():
    def importer(module: str) -> bool:
        return not _in(module, "sandbox", "cli", "commands")

    assert _violations(importer, ("sandbox",)) == []


def test_the_daemon_never_imports_the_sandbox_even_indirectly():
    graph = import_graph()
    seen: set[str] = set()
    todo = ["gateway.daemon"]
    while todo:
        module = todo.pop()
        if module in seen or module not in graph:
            continue
        seen.add(module)
        todo.extend(graph[module])
    assert sorted(m for m in seen if _in(m, "sandbox")) == []


def test_channels_never_touch_the_journal_or_the_intake():
    assert _violations(lambda m: _in(m, "channels"), ("journal", "intake")) == []


def test_channels_never_touch_folders_or_the_pipeline_around_them():
    forbidden = ("receipts", "outbound", "inbound", "jobs", "daemon", "config", "contract")
    assert _violations(lambda m: _in(m, "channels"), forbidden) == []


def test_the_journal_and_the_contract_do_not_reach_up_into_the_pipeline():
    forbidden = ("intake", "outbound", "inbound", "channels", "routing", "jobs", "daemon", "sandbox", "wiring")
    violations = _violations(lambda m: _in(m, "journal", "contract"), forbidden)
    assert [v for v in violations if not (v.startswith("gateway.contract") and v.split()[-1] in CONTRACT_DOORS)] == []


def test_the_delivery_rules_know_no_pipeline_and_no_channel():
    """Back-off and the channel circuit count results and seconds: outbound and inbound share them."""
    forbidden = ("journal", "intake", "outbound", "inbound", "operator", "channels", "routing", "receipts",
                 "contract", "config", "jobs", "daemon", "wiring")
    assert _violations(lambda m: _in(m, "delivery"), forbidden) == []


def test_inbound_takes_nothing_from_outbound_but_the_status_message_it_composes():
    """The status rules sit beside the journal and the delivery rules below both: inbound reaches up for neither."""
    violations = sorted(
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        if _in(module, "inbound")
        for target in targets
        if _in(target, "outbound") and target != "gateway.outbound.compose"
    )
    assert violations == []


def test_the_sender_and_the_operator_file_drops_without_reaching_into_the_intake():
    """Claim ids and parking in failed/ sit below all three (gateway.drops); the operator may still show the
    intake's verdict on a drop."""
    violations = sorted(
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        if _in(module, "outbound", "operator")
        for target in targets
        if _in(target, "intake") and not (_in(module, "operator") and target == "gateway.intake.validate")
    )
    assert violations == []
    forbidden = ("intake", "outbound", "inbound", "operator", "channels", "routing", "jobs", "daemon", "wiring")
    assert _violations(lambda m: _in(m, "drops"), forbidden) == []


def test_nothing_below_the_composition_root_imports_it():
    def importer(module: str) -> bool:
        return not _in(module, "cli", "commands", "daemon", "sandbox")

    assert _violations(importer, ("daemon", "cli", "commands")) == []


@pytest.mark.parametrize("area", ["formats", "channels", "routing", "journal", "contract", "receipts"])
def test_lower_layers_do_not_import_the_daemons_wiring(area):
    assert _violations(lambda m: _in(m, area), ("wiring", "daemon", "commands", "cli")) == []


def test_the_walker_sees_dynamic_imports():
    call = ast.parse("importlib.import_module('gateway.sandbox.network')").body[0]
    assert isinstance(call, ast.Expr)
    assert _dynamic_import_target(call.value) == "gateway.sandbox.network"
    assert _dynamic_import_target(ast.parse("logging.getLogger('gateway.sandbox')").body[0].value) == ""


def _package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "gateway"


def _package_cycles() -> list[tuple[str, str]]:
    edges: dict[str, set[str]] = {}
    for module, targets in import_graph().items():
        for target in targets:
            if _package(module) != _package(target):
                edges.setdefault(_package(module), set()).add(_package(target))

    def reachable(start: str) -> set[str]:
        seen: set[str] = set()
        todo = [start]
        while todo:
            for following in edges.get(todo.pop(), ()):
                if following not in seen:
                    seen.add(following)
                    todo.append(following)
        return seen

    packages = sorted(set(edges) | {b for targets in edges.values() for b in targets})
    return [(a, b) for a in packages for b in packages if a < b and b in reachable(a) and a in reachable(b)]


def test_packages_do_not_import_each_other_in_a_circle():
    assert _package_cycles() == []


# ---- channels plug in side by side ----------------------------------------------------------------

PIPELINE = ("intake", "outbound", "inbound", "journal", "receipts", "jobs", "daemon", "contract", "wiring")
# Words of a channel's wire: its transport, its package names, its adapter classes.
CHANNEL_WIRE = re.compile(
    r"broker|correspondence|sbd\.zip|asic\.zip|svar(ut|inn)|fiks|filetransfer|altinn|Dp[ovfi]Channel", re.IGNORECASE
)


def _pipeline_files() -> list[Path]:
    return [
        path for path in sorted(PACKAGE_ROOT.rglob("*.py"))
        if _in(_module_name(path), *PIPELINE)
    ]


def test_the_pipeline_imports_channels_only_through_their_interface_and_registry():
    allowed = {"gateway.channels", "gateway.channels.base", "gateway.channels.registry"}
    violations = sorted(
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        if _in(module, *PIPELINE)
        for target in targets
        if _in(target, "channels") and target not in allowed
    )
    assert violations == []


def test_no_pipeline_module_names_a_channels_wire():
    named = [
        f"{path.relative_to(PACKAGE_ROOT.parent)}:{number}: {line.strip()}"
        for path in _pipeline_files()
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if CHANNEL_WIRE.search(line)
    ]
    assert named == []


def test_the_wire_check_would_see_a_channel_named_in_the_pipeline():
    assert len(_pipeline_files()) > 20
    assert CHANNEL_WIRE.search("from gateway.channels.dpo.client import BrokerClient")
    assert CHANNEL_WIRE.search('UPLOAD_FILE_NAME = "sbd.zip"')
    assert CHANNEL_WIRE.search("channel = DpvChannel(...)")
    assert not CHANNEL_WIRE.search("channel.send(package, reference, remember)")


def test_channel_packages_do_not_import_each_other():
    packages = {"dpo", "dpv", "dpf", "dpi"}
    violations = sorted(
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        for own in packages if _in(module, f"channels.{own}")
        for target in targets
        for other in packages - {own} if _in(target, f"channels.{other}")
    )
    assert violations == []


# ---- a channel is known inside gateway/channels/ (and the sandbox that plays it) only ----------------------

# A channel's name as a word or a word's part (DPO, dpf_svarut, DpvSettings), and the words of the channels' own
# services. Code only: names and string literals, not comments or docstrings, which may say which channel a
# general rule was written for.
CHANNEL_NAME = re.compile(r"(?<![A-Za-z])(?:dp[ovfi]|Dp[ovfi]|DP[OVFI])(?![a-z])")
CHANNEL_WORDS = re.compile(r"svarut|svarinn|correspondence|broker|forsendelse|varsel|digipost|krr|corner", re.I)
# Modules that still know a channel, each with why; the list only shrinks.
CHANNEL_WORDS_ALLOWED = {
    # KS's certificate for DPF is a trust rule: trust.svarut_orgnr and ReceiverTrust's dpf check. It moves into
    # the DPF package with trust/receivers.py's rule, not in this change.
    "gateway/config.py": "trust.svarut_orgnr (the trust section's key for KS's certificate)",
    "gateway/credentials.py": "hands trust.svarut_orgnr to ReceiverTrust",
    "gateway/trust/policy.py": "KS's organisation number per environment",
    "gateway/trust/receivers.py": "whose certificate DPF documents are encrypted to",
    # Maskinporten's error codes for Altinn system users name the DPO keys that fix them.
    "gateway/maskinporten.py": "MP-301/MP-303 hints name channels.dpo.system_user_*",
}


def _docstring_starts(source: str) -> set[tuple[int, int]]:
    starts = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
                first.value.value, str
            ):
                starts.add((first.lineno, first.col_offset))
    return starts


def channel_words_in(source: str) -> list[tuple[int, str]]:
    """(line, token) for every name or string literal (docstrings aside) that names a channel or its service."""
    docstrings = _docstring_starts(source)
    kinds = {tokenize.NAME, tokenize.STRING, getattr(tokenize, "FSTRING_MIDDLE", tokenize.STRING)}
    return [
        (token.start[0], token.string)
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type in kinds and not (token.type == tokenize.STRING and token.start in docstrings)
        and (CHANNEL_NAME.search(token.string) or CHANNEL_WORDS.search(token.string))
    ]


def _outside_the_channels() -> list[Path]:
    return [path for path in sorted(PACKAGE_ROOT.rglob("*.py")) if not _in(_module_name(path), "channels", "sandbox")]


def test_no_module_outside_the_channels_names_a_channel():
    named = [
        f"{relative}:{line}: {token[:80]}"
        for path in _outside_the_channels()
        if (relative := str(path.relative_to(PACKAGE_ROOT.parent))) not in CHANNEL_WORDS_ALLOWED
        for line, token in channel_words_in(path.read_text(encoding="utf-8"))
    ]
    assert named == []


def test_the_allowances_are_still_needed():
    # An allowance whose module no longer names a channel goes, so the list only shrinks.
    stale = [
        relative for relative in CHANNEL_WORDS_ALLOWED
        if not (PACKAGE_ROOT.parent / relative).is_file()
        or not channel_words_in((PACKAGE_ROOT.parent / relative).read_text(encoding="utf-8"))
    ]
    assert stale == []


def test_the_channel_word_check_sees_code_and_not_comments():
    assert len(_outside_the_channels()) > 60
    source = '''"""Docstring: DPO and SvarUt may be named here."""
# a comment about the broker
def route(channel):
    """A DPF rule."""
    with ThreadPoolExecutor() as pool:  # threadPOOL is no DPO
        endpoint = channel
    return DpvSettings(varsel="x"), "channels.dpf.svarut_url", endpoint
'''
    found = channel_words_in(source)
    assert [token for _line, token in found] == ["DpvSettings", "varsel", '"channels.dpf.svarut_url"']
    assert all(line == 7 for line, _token in found)
    assert channel_words_in('x = "KRR"') and channel_words_in("corner2_url = 1") and channel_words_in("dpi = 1")


def _module_cycles() -> list[list[str]]:
    """Groups of modules that import each other, directly or round a longer circle (Tarjan's components)."""
    graph = import_graph()
    index: dict[str, int] = {}
    lowest: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = lowest[module] = len(index)
        stack.append(module)
        for target in graph[module]:
            if target not in graph:
                continue
            if target not in index:
                visit(target)
                lowest[module] = min(lowest[module], lowest[target])
            elif target in stack:
                lowest[module] = min(lowest[module], index[target])
        if lowest[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return sorted(cycles)


def test_modules_do_not_import_each_other_in_a_circle():
    """A lazy import inside a function hides a circle (formats.sbd and formats.sbd_xml had one): none is left."""
    assert _module_cycles() == []
    assert "gateway.formats.sbd" in import_graph()["gateway.formats.sbd_xml"]
