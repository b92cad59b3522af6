"""A very small POSIX-ish shell for simulated guests and nodes (no processes, no real files).

Supported: ``;`` ``&&`` ``||`` ``|``, ``if ...; then ...; [else ...;] fi``, single/double quotes, ``$VAR`` ``${VAR}`` ``$?`` ``"$@"``,
redirections ``>`` ``>>`` ``2>`` ``2>>`` ``2>&1`` ``>&2`` ``<``, ``export``, ``VAR=x cmd``,
``exec``, ``exit N`` and nested ``sh -c``. Programs are supplied by the caller (``run_program``);
files live in a dict. Enough for what patchwave and the contract suite send; not a real shell.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

OPERATORS = ("2>&1", ">&2", "2>>", "&&", "||", ">>", "2>", ";", "|", ">", "<", "\n")
_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+)|(\?))")


@dataclass
class Outcome:
    exitcode: int | None = 0
    stdout: str = ""
    stderr: str = ""
    duration: float = 0.0
    signal: int | None = None


@dataclass
class Shell:
    """State of one shell invocation: environment, positional args, files, last status."""

    run_program: Callable[[list[str], Shell, str], Outcome]
    files: dict[str, str]
    env: dict[str, str] = field(default_factory=dict)
    positional: list[str] = field(default_factory=list)
    status: int = 0
    exited: bool = False

    def child(self, positional: list[str]) -> Shell:
        return Shell(self.run_program, self.files, dict(self.env), positional)


Segment = tuple[str, str]  # (quoting: "sq" | "dq" | "bare", text)
Token = tuple[str, object]  # ("op", str) | ("word", list[Segment])


def lex(script: str) -> list[Token]:
    tokens: list[Token] = []
    i, n = 0, len(script)
    while i < n:
        if script[i] in " \t":
            i += 1
            continue
        op = next((o for o in OPERATORS if script.startswith(o, i)), None)
        if op is not None:
            tokens.append(("op", ";" if op == "\n" else op))
            i += len(op)
            continue
        segments: list[Segment] = []
        while i < n and script[i] not in " \t\n" and not any(script.startswith(o, i) for o in OPERATORS[2:]):
            if script[i] == "'":
                end = script.index("'", i + 1)
                segments.append(("sq", script[i + 1 : end]))
                i = end + 1
            elif script[i] == '"':
                end = i + 1
                while script[end] != '"':
                    end += 2 if script[end] == "\\" else 1
                segments.append(("dq", script[i + 1 : end].replace('\\"', '"')))
                i = end + 1
            elif script[i] == "\\" and i + 1 < n:
                segments.append(("sq", script[i + 1]))  # an escaped character is literal
                i += 2
            else:
                start = i
                while (
                    i < n
                    and script[i] not in " \t\n'\"\\"
                    and not any(script.startswith(o, i) for o in OPERATORS[2:])
                ):
                    i += 1
                segments.append(("bare", script[start:i]))
        tokens.append(("word", segments))
    return tokens


def expand(segments: list[Segment], shell: Shell) -> list[str]:
    if len(segments) == 1 and segments[0][0] != "sq" and segments[0][1] == "$@":
        return list(shell.positional[1:])

    def value(match: re.Match[str]) -> str:
        if match.group(3):
            return str(shell.status)
        return shell.env.get(match.group(1) or match.group(2), "")

    return ["".join(text if kind == "sq" else _VAR.sub(value, text) for kind, text in segments)]


def run_script(script: str, shell: Shell, stdin: str = "") -> Outcome:
    """Run ``script``; stdout/stderr are collected, durations add up."""
    return _run_tokens(lex(script), shell, stdin)


def _run_tokens(tokens: list[Token], shell: Shell, stdin: str) -> Outcome:
    total = Outcome()
    joiner, i = ";", 0
    while i <= len(tokens) and not shell.exited:
        block = _if_block(tokens, i) if i < len(tokens) and _keyword(tokens[i]) == "if" else None
        end = (
            block[3]
            if block is not None
            else next(
                (j for j in range(i, len(tokens)) if tokens[j] in (("op", ";"), ("op", "&&"), ("op", "||"))),
                len(tokens),
            )
        )
        pipeline = tokens[i:end]
        skip = (joiner == "&&" and shell.status != 0) or (joiner == "||" and shell.status == 0)
        if pipeline and not skip:
            result = _run_if(block, shell, stdin) if block is not None else _pipeline(pipeline, shell, stdin)
            shell.status = result.exitcode if result.exitcode is not None else 128 + (result.signal or 0)
            total = Outcome(
                result.exitcode,
                total.stdout + result.stdout,
                total.stderr + result.stderr,
                total.duration + result.duration,
                result.signal,
            )
        if end >= len(tokens):
            break
        joiner, i = str(tokens[end][1]), end + 1
    return total


def _keyword(token: Token) -> str | None:
    kind, value = token
    if kind == "word" and isinstance(value, list) and len(value) == 1 and value[0][0] == "bare":
        return str(value[0][1])
    return None


IfBlock = tuple[list[Token], list[Token], list[Token], int]  # condition, then, else, index after fi


def _if_block(tokens: list[Token], start: int) -> IfBlock:
    """``if LIST; then LIST; [else LIST;] fi`` starting at ``tokens[start]`` (no ``elif``)."""
    parts: list[list[Token]] = [[]]
    depth = 0
    for j in range(start + 1, len(tokens)):
        word = _keyword(tokens[j])
        command_position = tokens[j - 1][0] == "op" or _keyword(tokens[j - 1]) in ("if", "then", "else")
        if word is not None and command_position:
            if word == "if":
                depth += 1
            elif word == "fi" and depth:
                depth -= 1
            elif depth == 0 and word in ("then", "else"):
                parts.append([])
                continue
            elif depth == 0 and word == "fi":
                cond, then, other = (parts + [[], []])[:3]
                return _strip(cond), _strip(then), _strip(other), j + 1
        parts[-1].append(tokens[j])
    raise ValueError("sh: syntax error: 'if' without a matching 'fi'")


def _strip(tokens: list[Token]) -> list[Token]:
    while tokens and tokens[-1] == ("op", ";"):
        tokens = tokens[:-1]
    return tokens


def _run_if(block: IfBlock, shell: Shell, stdin: str) -> Outcome:
    cond, then, other, _end = block
    first = _run_tokens(cond, shell, stdin)
    branch = then if shell.status == 0 else other
    second = _run_tokens(branch, shell, stdin) if branch else Outcome(0)
    return Outcome(
        second.exitcode if branch else 0,
        first.stdout + second.stdout,
        first.stderr + second.stderr,
        first.duration + second.duration,
        second.signal,
    )


def _pipeline(tokens: list[Token], shell: Shell, stdin: str) -> Outcome:
    stages, current = [], []
    for token in tokens:
        if token == ("op", "|"):
            stages.append(current)
            current = []
        else:
            current.append(token)
    stages.append(current)
    result = Outcome(0, stdin)
    duration, errors = 0.0, ""
    for stage in stages:
        result = _command(stage, shell, result.stdout)
        duration += result.duration
        errors += result.stderr
    return Outcome(result.exitcode, result.stdout, errors, duration, result.signal)


def _command(tokens: list[Token], shell: Shell, stdin: str) -> Outcome:
    argv: list[str] = []
    redirects: list[tuple[str, str]] = []
    i = 0
    while i < len(tokens):
        kind, value = tokens[i]
        if kind == "op" and value in ("2>&1", ">&2"):
            redirects.append((str(value), ""))
        elif kind == "op" and i + 1 < len(tokens):
            redirects.append((str(value), expand(tokens[i + 1][1], shell)[0]))  # type: ignore[arg-type]
            i += 1
        elif kind == "word":
            argv.extend(expand(value, shell))  # type: ignore[arg-type]
        i += 1
    env_prefix: dict[str, str] = {}
    while argv and re.match(r"^\w+=", argv[0]):
        key, val = argv.pop(0).split("=", 1)
        env_prefix[key] = val
    for op, target in redirects:
        if op == "<":
            stdin = shell.files.get(target, "")
    if not argv:
        shell.env.update(env_prefix)
        return Outcome(0)
    result = _builtin(argv, shell, stdin, env_prefix)
    return _redirect(result, redirects, shell)


def _builtin(argv: list[str], shell: Shell, stdin: str, env_prefix: dict[str, str]) -> Outcome:
    name, args = argv[0].rsplit("/", 1)[-1], argv[1:]
    if name == "export":
        shell.env.update(a.split("=", 1) for a in args if "=" in a)  # type: ignore[misc]
        return Outcome(0)
    if name == "exec" and args:
        return _builtin(args, shell, stdin, env_prefix)
    if name == "exit":
        shell.exited = True
        return Outcome(int(args[0]) if args else shell.status)
    if name in ("sh", "bash", "dash") and args[:1] == ["-c"] and len(args) >= 2:
        child = shell.child(args[2:] or [name])
        child.env.update(env_prefix)
        return run_script(args[1], child, stdin)
    scoped = shell.child(shell.positional)
    scoped.env.update(env_prefix)
    return shell.run_program(argv, scoped, stdin)


def _redirect(result: Outcome, redirects: list[tuple[str, str]], shell: Shell) -> Outcome:
    out, err = result.stdout, result.stderr
    out_file: str | None = None  # where stdout was redirected to (``>f 2>&1`` sends stderr there too)
    for op, target in redirects:
        if op == "2>&1" and out_file is not None:
            if out_file != "/dev/null":
                shell.files[out_file] = shell.files.get(out_file, "") + err
            err = ""
        elif op == "2>&1":
            out, err = out + err, ""
        elif op == ">&2":
            out, err = "", err + out
        elif op in (">", ">>", "2>", "2>>"):
            data = out if op in (">", ">>") else err
            if target != "/dev/null":
                shell.files[target] = (shell.files.get(target, "") if op.endswith(">>") else "") + data
            out, err = ("", err) if op in (">", ">>") else (out, "")
            out_file = target if op in (">", ">>") else out_file
    return Outcome(result.exitcode, out, err, result.duration, result.signal)


def common_program(argv: list[str], shell: Shell, stdin: str) -> Outcome | None:
    """Programs every simulated machine has; ``None`` when ``argv[0]`` is not one of them."""
    name, args = argv[0].rsplit("/", 1)[-1], argv[1:]
    match name:
        case "true" | ":" | "sync":
            return Outcome(0)
        case "false":
            return Outcome(1)
        case "echo":
            newline = args[:1] != ["-n"]
            return Outcome(0, " ".join(args if newline else args[1:]) + ("\n" if newline else ""))
        case "printf":
            return Outcome(
                0,
                (args[0] % tuple(args[1:2]) if args and "%s" in args[0] else "".join(args[:1])).replace(
                    "\\n", "\n"
                ),
            )
        case "cat":
            missing = [a for a in args if a not in shell.files]
            if missing:
                return Outcome(1, stderr=f"cat: {missing[0]}: No such file or directory\n")
            return Outcome(0, "".join(shell.files[a] for a in args) if args else stdin)
        case "rm":
            for path in (a for a in args if not a.startswith("-")):
                shell.files.pop(path, None)
            return Outcome(0)
        case "touch":
            for path in args:
                shell.files.setdefault(path, "")
            return Outcome(0)
        case "test" | "[":
            flags = [a for a in args if a != "]"]
            if len(flags) == 2 and flags[0] in ("-f", "-e"):
                return Outcome(0 if flags[1] in shell.files else 1)
            return Outcome(1)
        case "sleep":
            return Outcome(0, duration=float(args[0]) if args else 0.0)
        case "env" | "printenv":
            return Outcome(0, "".join(f"{k}={v}\n" for k, v in shell.env.items()))
        case "id":
            return Outcome(0, "0\n" if "-u" in args else "uid=0(root) gid=0(root) groups=0(root)\n")
        case "mkdir":
            return Outcome(0)
    return None
