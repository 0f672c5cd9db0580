"""A fresh Debian machine runs everything: every program that src/, tests/, bench/ and .ci/ start comes from a
Debian package that .ci/setup installs (or from the base system every Debian has).

Programs are found where they are started: the argv[0] of subprocess/asyncio/popen_in_netns/run_in_netns calls
(a list literal, or a name bound to one), the program after `ip netns exec <ns>`, shutil.which("..."), absolute
program paths (/usr/sbin/bird, /usr/lib/frr/bgpd), and the commands of the .ci shell scripts. argv built at run
time from a variable is covered by the constant that feeds it (BIRD = "/usr/sbin/bird", shutil.which("kubectl")).
A program missing from PROVIDER fails the test: a new dependency has to be given its package here and in .ci/setup.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SETUP = ROOT / ".ci" / "setup"

# program -> the Debian package that provides it
PROVIDER = {
    "ip": "iproute2", "ping": "iputils-ping", "arping": "iputils-arping", "ndisc6": "ndisc6", "rdisc6": "ndisc6",
    "tcpdump": "tcpdump", "curl": "curl", "nft": "nftables", "dnsmasq": "dnsmasq-base", "ps": "procps",
    "pkill": "procps", "sysctl": "procps", "bird": "bird2", "birdc": "bird2", "vtysh": "frr", "bgpd": "frr", "zebra": "frr",
    "gobgp": "gobgpd", "gobgpd": "gobgpd", "exabgp": "exabgp", "kubectl": "kubernetes-client",
    "python3": "python3", "systemctl": "systemd", "sudo": "sudo", "git": "git",
    # the base system: .ci/setup runs with them before it has installed anything
    "bash": "bash", "env": "coreutils", "id": "coreutils", "dirname": "coreutils", "readlink": "coreutils",
    "mktemp": "coreutils", "cat": "coreutils", "rm": "coreutils", "cp": "coreutils", "mkdir": "coreutils",
    "tail": "coreutils", "date": "coreutils", "true": "coreutils", "false": "coreutils", "grep": "grep", "sed": "sed", "tar": "tar",
    "dpkg-query": "dpkg", "apt-get": "apt",
}
# Every Debian has these (Essential, or apt itself): never in .ci/setup's list.
BASE_SYSTEM = {"bash", "coreutils", "grep", "sed", "tar", "dpkg", "apt"}
# Used only when present, and checked with `command -v` first.
OPTIONAL = {"sudo": "only to become root when not root", "systemctl": "only to keep daemons from running as services",
            "git": "only to name the commit a mutation run saw (.ci/mutation)"}
# Programs from one of the project's optional pip extras (pyproject.toml), never needed by .ci/run: the extra
# must list the package (checked below), and they are not looked up in Debian.
FROM_PIP_EXTRA = {"py-spy": ("bench", "py-spy")}
# Packages that may hold a program instead of PROVIDER's, as `dpkg -S` reports them.
ALSO_FROM = {"kubectl": {"kubectl"}, "python3": {"python3-minimal"}}

SPAWNERS = {"run", "Popen", "check_output", "check_call", "call", "create_subprocess_exec", "popen_in_netns",
            "run_in_netns"}
PROGRAM_PATH = re.compile(r"^/(?:usr/)?(?:s?bin|lib/frr)/([\w.+-]+)$")
# Words before a command (dropped), and builtins whose arguments are no command (the segment is skipped).
KEYWORDS = {"if", "then", "else", "elif", "do", "while", "until", "exec", "!", "time"}
BUILTINS = {"fi", "done", "esac", "for", "in", "case", "function", "set", "export", "cd", "local", "return", "exit",
            "echo", "printf", "read", "true", "false", "trap", "shift", "wait", "eval", "source", ".", "unset",
            "declare", "readonly", "[", "[[", "test", "break", "continue", "pwd", "command", "]", "]]"}


def program_name(node: ast.AST, constants: dict[str, str]) -> str | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        value = node.value
    elif isinstance(node, ast.Name) and node.id in constants:
        value = constants[node.id]
    else:
        return None  # sys.executable, a parameter, an expression: not a named program
    match = PROGRAM_PATH.match(value)
    return match.group(1) if match else value


def python_programs(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    constants: dict[str, str] = {}  # NAME = "..." and name = [...] anywhere in the file (first wins)
    lists: dict[str, ast.List] = {}
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                constants.setdefault(name, node.value.value)
            elif isinstance(node.value, ast.List):
                lists.setdefault(name, node.value)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and PROGRAM_PATH.match(node.value):
            found.add(PROGRAM_PATH.match(node.value).group(1))
    for node in ast.walk(tree):
        if isinstance(node, ast.List):  # ["ip", "netns", "exec", ns, PROGRAM, ...]
            words = [program_name(e, constants) for e in node.elts]
            if words[:3] == ["ip", "netns", "exec"] and len(words) > 4 and words[4]:
                found.add(words[4])
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
        if name == "which" and node.args:
            found.add(program_name(node.args[0], constants) or "")
        if name not in SPAWNERS:
            continue
        position = 1 if name.endswith("_in_netns") else 0
        if len(node.args) <= position:
            continue
        argv = node.args[position]
        if name == "create_subprocess_exec":
            first: ast.AST | None = argv
        else:
            argv = lists.get(argv.id, argv) if isinstance(argv, ast.Name) else argv
            first = argv.elts[0] if isinstance(argv, (ast.List, ast.Tuple)) and argv.elts else None
        if first is not None and (program := program_name(first, constants)):
            found.add(program)
    found.discard("")
    return found


def command_substitutions(line: str) -> tuple[str, list[str]]:
    """`line` with each $( ... ) replaced by "$Q", and the texts of those substitutions."""
    inner: list[str] = []
    while (start := line.find("$(")) >= 0:
        depth, end = 0, start + 1
        for end in range(start + 1, len(line)):
            depth += {"(": 1, ")": -1}.get(line[end], 0)
            if depth == 0:
                break
        if not line.startswith("$((", start):  # $(( ... )) is arithmetic, not a command
            inner.append(line[start + 2:end])
        line = line[:start] + '"$Q"' + line[end + 1:]
    return line, inner


def shell_commands(line: str) -> set[str]:
    """First words of the commands on one line of bash without $( ... )."""
    line = re.sub(r"'[^']*'|\"(?:[^\"\\]|\\.)*\"", '"$Q"', line)  # quoted text is never a command here
    line = re.sub(r"(?:^|\s)#.*", "", line)
    line = re.sub(r"\$\{[^}]*\}", "$Q", line)  # ${name...} expansions
    line = re.sub(r"\b\w+\+?=\([^)]*\)", " ", line)  # name=(...) and name+=(...)
    found = set()
    for segment in re.split(r"&&|\|\||[|;(){}`]", line):
        words = [w for w in segment.split() if not re.match(r"^\d*[<>]", w)]  # redirections
        while words and (words[0] in KEYWORDS or re.match(r"^\w+\+?=", words[0])
                         or (words[0] == "command" and len(words) > 1 and words[1] != "-v")):
            words = words[1:]
        if not words or words[0] in BUILTINS or words[0].startswith(("$", '"$', ".")) \
                or ("/" in words[0] and not words[0].startswith("/")):
            continue
        match = PROGRAM_PATH.match(words[0])
        found.add(match.group(1) if match else words[0])
    return found


def shell_programs(text: str) -> set[str]:
    """Programs a bash script runs (array contents, heredocs, quoted text, its own functions skipped)."""
    functions = set(re.findall(r"^\s*(\w+)\(\)\s*\{", text, re.MULTILINE))
    found: set[str] = set()
    heredoc_end = None
    in_array = False
    for line in text.splitlines()[1:]:  # the shebang is /usr/bin/env bash: env and bash are in PROVIDER
        if heredoc_end is not None:
            heredoc_end = None if line.strip() == heredoc_end else heredoc_end
            continue
        if in_array:
            in_array = not line.strip().startswith(")")
            continue
        if re.match(r"^\s*\w+\+?=\(\s*(#.*)?$", line):
            in_array = True
            continue
        if match := re.search(r"<<-?\s*[\"']?(\w+)", line):
            heredoc_end = match.group(1)
        line, substitutions = command_substitutions(line)
        for part in [line, *substitutions]:
            found |= shell_commands(part)
    return found - functions


@cache
def programs_in_project() -> dict[str, Path]:
    """program -> the first file (relative) that runs it."""
    used: dict[str, Path] = {}
    for top in ("src", "tests", "bench"):
        for path in sorted((ROOT / top).rglob("*.py")):
            for program in python_programs(path):
                used.setdefault(program, path.relative_to(ROOT))
    for path in sorted((ROOT / ".ci").iterdir()):
        if path.is_file() and path.read_text(errors="ignore").startswith("#!/usr/bin/env bash"):
            for program in shell_programs(path.read_text()):
                used.setdefault(program, path.relative_to(ROOT))
    return used


def packages_installed_by_setup(text: str) -> set[str]:
    """The words of .ci/setup's `packages=( ... )` array and of its `need+=(...)` additions."""
    array = re.search(r"^packages=\((.*?)^\)", text, re.DOTALL | re.MULTILINE)
    assert array, ".ci/setup has no packages=( ... ) list"
    words = {line.split("#")[0].strip() for line in array.group(1).splitlines()} - {""}
    return words | set(re.findall(r"need\+=\(([\w.+-]+)\)", text))


def test_setup_installs_the_package_of_every_program_the_project_runs() -> None:
    used = programs_in_project()
    installed = packages_installed_by_setup(SETUP.read_text())
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    unlisted = [f"{p} (pip extra [{extra}] should list {package})" for p, (extra, package) in FROM_PIP_EXTRA.items()
                if p in used and not any(re.match(rf"{re.escape(package)}\b", r) for r in extras.get(extra, []))]
    assert not unlisted, f"programs from a pip extra that does not list them: {unlisted}"
    used = {p: where for p, where in used.items() if p not in FROM_PIP_EXTRA}
    unknown = [f"{p} (run in {where})" for p, where in sorted(used.items()) if p not in PROVIDER]
    assert not unknown, f"programs with no Debian package in PROVIDER (add it here and to .ci/setup): {unknown}"
    missing = [f"{p} (run in {where}; Debian package {PROVIDER[p]})" for p, where in sorted(used.items())
               if PROVIDER[p] not in installed | BASE_SYSTEM and p not in OPTIONAL]
    assert not missing, f".ci/setup does not install: {missing}"


def test_the_scan_finds_the_programs_it_is_meant_to_find() -> None:
    # One per kind of place a program is named: a netns exec, a constant path, which(), a shell command.
    used = programs_in_project()
    for program in ("ip", "curl", "ping", "bird", "birdc", "bgpd", "zebra", "vtysh", "gobgpd", "exabgp", "kubectl",
                    "apt-get", "dpkg-query"):
        assert program in used, program


def test_a_new_program_in_a_shell_script_or_an_argv_is_found() -> None:
    script = "#!/usr/bin/env bash\nlist=(\n  iproute2 # ip\n)\nx=$(frobnicate --all) && need+=(pkg)\necho $((1 + n))\n" \
             "cat <<'EOF'\nnot a command\nEOF\n[ -x a ] || widget \"$1\" >/dev/null 2>&1\n"
    assert shell_programs(script) == {"frobnicate", "cat", "widget"}


def packages_dpkg_names(programs: set[str]) -> dict[str, set[str]]:
    """program -> the packages `dpkg -S` names for the files of that name in the program directories."""
    directories = ("/usr/sbin", "/usr/bin", "/sbin", "/bin", "/usr/lib/frr")  # /usr-merged: dpkg knows one of two
    paths = [f"{d}/{p}" for p in sorted(programs) for d in directories if os.path.exists(f"{d}/{p}")]
    run = subprocess.run(["dpkg-query", "-S", *paths], check=False, capture_output=True, text=True)
    said: dict[str, set[str]] = {}
    for line in run.stdout.splitlines():
        packages, _, path = line.partition(": ")
        said.setdefault(Path(path).name, set()).update(p.strip().split(":")[0] for p in packages.split(","))
    return said


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="not a Debian machine")
def test_the_provider_table_agrees_with_dpkg_where_the_program_is_installed() -> None:
    used = set(programs_in_project())
    wrong = {p: f"table says {PROVIDER.get(p)}, dpkg says {sorted(said)}"
             for p, said in packages_dpkg_names(used).items()
             if PROVIDER.get(p) not in said and not said & ALSO_FROM.get(p, set())}
    assert not wrong, wrong
